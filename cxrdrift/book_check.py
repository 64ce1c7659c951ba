"""Open the built book in headless Chromium, offline: a screenshot per page, failing on console
errors, broken images, missing local files, any request to another host, log noise or stray return
values in cell outputs, and an interactive explorer that does not respond.

    python -m cxrdrift.book_check _build/html _build/screenshots      (= make check-book)

The HTML folder is served on localhost from a thread. Chromium is driven by Selenium through
Debian's `chromedriver` (`apt-get install chromium chromium-driver`): Selenium starts the browser
with its own throw-away profile and `quit()` waits for it to exit before that profile is removed,
so the check never races the browser for its files. The browser's DNS resolves nothing but
127.0.0.1 (`--host-resolver-rules`), i.e. it sees the book as a reader without a network would;
every request it *tries* to send elsewhere (read from the performance log) fails the page: the book
must serve everything it needs itself.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import sys
import threading
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_NAMES = ("chromedriver", "chromium-driver")
OFFLINE_RULES = "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", f"--host-resolver-rules={OFFLINE_RULES}")
INSTALL_HINT = ("headless Chromium and its driver are needed: on Debian/Ubuntu `sudo apt-get update && "
                "sudo apt-get install -y chromium chromium-driver`, or set CHROMIUM=/path/to/chrome and "
                "CHROMEDRIVER=/path/to/chromedriver")
SKIPPED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
WIDTH, MAX_HEIGHT = 1280, 12000

# Lines that TensorFlow, absl, oneDNN or CUDA write (at start-up, or TensorFlow's Python logger):
# never something a reader should see.
LOG_NOISE = tuple(re.compile(pattern) for pattern in (
    r"absl::InitializeLog\(\)",
    r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [\w./-]+:\d+\]",       # glog/absl line prefix
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] [\w./-]+:\d+\]",   # TensorFlow's own prefix
    r"oneDNN custom operations are on",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"TF-TRT Warning",
    r"^(?:WARNING|INFO|ERROR):tensorflow:",                          # its Python logger
))
# A cell's last value that only says what object it returned (a saved figure's path, a figure).
STRAY_VALUE = re.compile(r"^\s*(?:(?:Posix|Windows)?Path\(|<(?:Figure size|matplotlib\.|cxrdrift\.))")

# Wait until every image (lazy ones too) has loaded, then list the broken ones.
_IMAGES_JS = """
return (async () => {
  const images = Array.from(document.images);
  images.forEach(i => { i.loading = 'eager'; });
  await Promise.all(images.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 5000); })));
  return JSON.stringify({count: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src)});
})()
"""

# Formulas: how many the page has, and how many MathJax typeset (after its first pass finished).
_MATH_JS = """
return (async () => {
  const math = document.querySelectorAll('.math').length;
  if (!math) return JSON.stringify({math: 0, rendered: 0});
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return JSON.stringify({math, rendered: 0});
  await Promise.race([MathJax.startup.promise, new Promise(r => setTimeout(r, 10000))]);
  return JSON.stringify({math, rendered: document.querySelectorAll('mjx-container').length});
})()
"""

# The text of every cell output as the reader sees it, with its kind (stderr, stdout, text_plain...).
_OUTPUTS_JS = """
return Array.from(document.querySelectorAll('.cell_output .output')).map(o => ({
  kind: Array.from(o.classList).filter(c => c !== 'output' && !c.startsWith('highlight') && c !== 'notranslate').join(' '),
  text: o.innerText}));
"""

# An explorer (a `[data-explorer]` element) holds <select> controls and views `[data-view]`, of which
# exactly one is visible. Change the first control that has a choice; report the visible view before
# and after, and whether the new view's image has decoded.
_EXPLORER_JS = """
const done = arguments[arguments.length - 1];
const results = [];
const visible = e => Array.from(e.querySelectorAll('[data-view]')).filter(v => !v.hidden && v.offsetParent !== null);
const state = e => { const v = visible(e); const img = v.length ? v[0].querySelector('img') : null;
  return {count: v.length, view: v.length ? v[0].dataset.view : null, text: v.length ? v[0].innerText : '',
          image: img ? img.src.slice(-64) : null, decoded: !!(img && img.complete && img.naturalWidth > 0)}; };
for (const e of document.querySelectorAll('[data-explorer]')) {
  const before = state(e);
  const control = Array.from(e.querySelectorAll('select')).find(s => s.options.length > 1);
  if (!control) { results.push({before, after: null, control: null}); continue; }
  control.selectedIndex = (control.selectedIndex + 1) % control.options.length;
  control.dispatchEvent(new Event('change', {bubbles: true}));
  results.push({before, control: control.name || control.id, value: control.value});
}
setTimeout(() => { const all = Array.from(document.querySelectorAll('[data-explorer]'));
  all.forEach((e, i) => { results[i].after = results[i].control === null ? null : state(e); });
  done(JSON.stringify(results)); }, 300);
"""


class BookCheckError(RuntimeError):
    """The check could not run (no Chromium or driver, no HTML folder, the browser did not start or
    stop); the message is one line that says what to do."""


@dataclass
class PageReport:
    """What one page showed. `errors` fail the page: console errors, broken images, missing local
    files, requests to other hosts, log noise, stray values, an explorer that did not respond.
    `warnings` are shown but pass (stderr output that is not known noise, e.g. a Python warning)."""

    page: str
    screenshot: Path | None = None
    images: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)
    explorers: list[str] = field(default_factory=list)
    math: int = 0
    math_rendered: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def find_chromium() -> str:
    """The Chromium executable: $CHROMIUM, else the first of CHROMIUM_NAMES on PATH."""
    return _find("CHROMIUM", CHROMIUM_NAMES)


def find_driver() -> str:
    """The chromedriver executable: $CHROMEDRIVER, else the first of DRIVER_NAMES on PATH (Selenium
    is never asked to download one: the check runs offline)."""
    return _find("CHROMEDRIVER", DRIVER_NAMES)


def _find(variable: str, names: Sequence[str]) -> str:
    candidate = os.environ.get(variable)
    if candidate:
        if shutil.which(candidate):
            return shutil.which(candidate)
        raise BookCheckError(f"{variable}={candidate} is not an executable; {INSTALL_HINT}")
    for name in names:
        if shutil.which(name):
            return shutil.which(name)
    raise BookCheckError(INSTALL_HINT)


def book_pages(html_dir: Path) -> list[str]:
    """Every content page of the built book, relative to `html_dir` (no index redirect, search or
    generated index, nothing under `_static`/`_sources`)."""
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        relative = path.relative_to(html_dir)
        if relative.parts[0].startswith("_") or relative.name in SKIPPED_PAGES:
            continue
        if relative.as_posix() == "index.html" and "http-equiv=\"Refresh\"" in path.read_text()[:300]:
            continue
        pages.append(relative.as_posix())
    return pages


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files; remembers every local request that failed."""

    def __init__(self, *args: Any, missing: list[str], **kwargs: Any) -> None:
        self.missing = missing
        super().__init__(*args, **kwargs)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        if self.path.split("?")[0] == "/favicon.ico":  # requested by the browser, not the book
            self.send_response(204)
            self.end_headers()
            return
        self.missing.append(f"{code} {self.path}")
        super().send_error(code, message, explain)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(html_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve `html_dir` on 127.0.0.1 (a free port) from a thread; yields (base URL, failed requests)."""
    missing: list[str] = []
    handler = functools.partial(_Handler, directory=str(html_dir), missing=missing)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", missing
    finally:
        server.shutdown()
        server.server_close()


def _first_line(error: BaseException) -> str:
    text = getattr(error, "msg", None) or str(error) or type(error).__name__
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


@contextlib.contextmanager
def browser(executable: str, driver: str, timeout: float = 30.0) -> Iterator[Any]:
    """Headless, offline Chromium under Selenium; yields the WebDriver. A failure to start or to
    stop the browser is a one-line BookCheckError; `quit()` waits for the browser to exit and
    chromedriver then removes the profile it created."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = executable
    for flag in (*CHROMIUM_FLAGS, f"--window-size={WIDTH},900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    try:
        session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    except (WebDriverException, OSError) as error:
        raise BookCheckError(f"could not start Chromium ({executable} via {driver}): {_first_line(error)}") from None
    session.set_page_load_timeout(timeout)
    session.set_script_timeout(timeout)
    failed = False
    try:
        yield session
    except BaseException:
        failed = True
        raise
    finally:
        try:
            session.quit()
        except (WebDriverException, OSError) as error:
            if not failed:  # an error of the check itself says more than the failed shutdown
                raise BookCheckError(f"could not stop Chromium: {_first_line(error)}") from None


def _is_local(url: str, base: str) -> bool:
    return not url or url.startswith(base) or url.startswith(("data:", "about:", "blob:", "chrome"))


def output_problems(outputs: Sequence[dict[str, str]]) -> tuple[list[str], list[str], list[str]]:
    """(log noise, stray values, other stderr) among a page's cell outputs, each `{kind, text}` as
    the page shows them (kind e.g. "stderr", "stream", "text_plain")."""
    noise, stray, stderr = [], [], []
    for output in outputs:
        kind, text = output.get("kind", ""), output.get("text", "")
        lines = [line for line in text.splitlines() if line.strip()]
        noisy = [line for line in lines if any(pattern.search(line) for pattern in LOG_NOISE)]
        noise += [line.strip()[:160] for line in noisy]
        if "stderr" in kind and len(noisy) < len(lines):
            stderr.append(" / ".join(line.strip() for line in lines if line not in noisy)[:200])
        if "text_plain" in kind and STRAY_VALUE.match(text):
            stray.append(text.strip()[:120])
    return noise, stray, stderr


def _explorer_problems(results: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(passed, failed) descriptions of each explorer's interaction check."""
    passed, failed = [], []
    for index, result in enumerate(results, 1):
        before, after = result["before"], result.get("after")
        name = f"explorer {index}"
        if before["count"] != 1 or not before["decoded"]:
            failed.append(f"{name}: {before['count']} views visible at first, image decoded: {before['decoded']}")
        elif after is None:
            failed.append(f"{name}: no control with a choice")
        elif after["count"] != 1 or after["view"] == before["view"] or after["image"] == before["image"]:
            failed.append(f"{name}: changing {result['control']} to {result['value']!r} did not change the view "
                          f"({before['view']} -> {after['view']}, {after['count']} visible)")
        elif not after["decoded"] or not after["text"].strip():
            failed.append(f"{name}: the view {after['view']} shows no image or no values")
        else:
            passed.append(f"{name}: {result['control']} -> {result['value']!r} changed the view "
                          f"({before['view']} -> {after['view']})")
    return passed, failed


_CONSOLE = re.compile(r"^\S+ (?:\d+:\d+ )?(.*)$", re.S)


def _console_text(message: str) -> str:
    match = _CONSOLE.match(message)
    text = match.group(1) if match else message
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] == '"' else text


def check_page(session: Any, base: str, page: str, screenshot_dir: Path, timeout: float = 30.0) -> PageReport:
    """Load one page, wait for its images, check its outputs and explorers, screenshot it whole."""
    from selenium.common.exceptions import TimeoutException

    report = PageReport(page)
    session.get_log("browser"), session.get_log("performance")  # drop what earlier pages left
    try:
        session.get(base + page)
    except TimeoutException:
        report.errors.append(f"page did not finish loading in {timeout:.0f} s")
    images = json.loads(session.execute_script(_IMAGES_JS) or '{"count": 0, "broken": []}')
    report.images = images["count"]
    report.errors += [f"broken image: {src}" for src in images["broken"]]
    math = json.loads(session.execute_script(_MATH_JS) or '{"math": 0, "rendered": 0}')
    report.math, report.math_rendered = math["math"], math["rendered"]
    if report.math and not report.math_rendered:
        report.errors.append(f"{report.math} formulas, none typeset (MathJax did not load or run)")
    report.noise, report.stray, stderr = output_problems(session.execute_script(_OUTPUTS_JS) or [])
    report.errors += [f"log noise in an output: {line}" for line in report.noise]
    report.errors += [f"stray return value in an output: {text}" for text in report.stray]
    report.warnings += [f"stderr output: {text}" for text in stderr]
    if session.execute_script("return document.querySelectorAll('[data-explorer]').length"):
        passed, failed = _explorer_problems(json.loads(session.execute_async_script(_EXPLORER_JS)))
        report.explorers, report.errors = passed, report.errors + failed
    for entry in session.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not _is_local(url, base) and url not in report.external:
                report.external.append(url)
    report.errors += [f"request to another host: {url}" for url in report.external]
    for entry in session.get_log("browser"):
        if entry.get("level") != "SEVERE":
            continue
        source, text = entry.get("source", ""), entry.get("message", "")
        if source == "network":
            url = text.split(" ", 1)[0]
            if _is_local(url, base):
                report.errors.append(f"failed load: {text}")
        elif source == "console-api":
            report.errors.append(f"console.error: {_console_text(text)}")
        else:
            report.errors.append(f"uncaught exception: {_console_text(text).splitlines()[0]}")
    session.execute_script("return document.fonts.ready.then(() => true)")  # MathJax's web fonts too
    height = session.execute_cdp_cmd("Page.getLayoutMetrics", {}).get("cssContentSize", {}).get("height", 900)
    session.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": WIDTH, "height": int(min(max(height, 900), MAX_HEIGHT)), "deviceScaleFactor": 1, "mobile": False})
    shot = session.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    session.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    target = screenshot_dir / (page.removesuffix(".html").replace("/", "__") + ".png")
    target.write_bytes(b64decode(shot["data"]))
    report.screenshot = target
    return report


def check_book(html_dir: str | Path, screenshot_dir: str | Path, pages: Sequence[str] | None = None,
               timeout: float = 30.0) -> list[PageReport]:
    """Serve `html_dir`, open every page (or `pages`) in offline headless Chromium, save a
    screenshot of each into `screenshot_dir`, and report what each page got wrong."""
    html_dir, screenshot_dir = Path(html_dir), Path(screenshot_dir)
    if not (html_dir / "index.html").exists():
        raise BookCheckError(f"{html_dir} holds no built book (no index.html); run `make book` first")
    executable, driver = find_chromium(), find_driver()
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    pages = list(pages) if pages is not None else book_pages(html_dir)
    reports = []
    with serve(html_dir) as (base, missing), browser(executable, driver, timeout) as session:
        for page in pages:
            missing.clear()
            report = check_page(session, base, page, screenshot_dir, timeout)
            report.errors += [f"missing file: {request}" for request in missing]
            reports.append(report)
    return reports


def summary(reports: Sequence[PageReport]) -> dict[str, int]:
    """The check's counts over all pages."""
    return {"pages": len(reports), "passed": sum(r.ok for r in reports),
            "external_requests": sum(len(r.external) for r in reports),
            "log_noise_outputs": sum(len(r.noise) for r in reports),
            "stray_values": sum(len(r.stray) for r in reports),
            "explorer_checks_passed": sum(len(r.explorers) for r in reports),
            "images": sum(r.images for r in reports),
            "formulas": sum(r.math for r in reports), "formulas_typeset": sum(r.math_rendered for r in reports)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxrdrift.book_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("html_dir", help="the built book, e.g. _build/html")
    parser.add_argument("screenshot_dir", help="where the screenshots go, e.g. _build/screenshots")
    parser.add_argument("--page", action="append", help="check only this page (relative path); repeatable")
    args = parser.parse_args(argv)
    try:
        reports = check_book(args.html_dir, args.screenshot_dir, args.page)
    except BookCheckError as error:
        print(f"book check: {error}", file=sys.stderr)
        return 2
    for report in reports:
        status = "ok  " if report.ok else "FAIL"
        print(f"{status} {report.page:<45} {report.images:3d} images  -> {report.screenshot}")
        for line in report.errors:
            print(f"     error: {line}")
        for line in report.warnings:
            print(f"     warning: {line}")
        for line in report.explorers:
            print(f"     {line}")
    counts = summary(reports)
    print(f"{counts['passed']}/{counts['pages']} pages passed; {counts['external_requests']} external requests, "
          f"{counts['log_noise_outputs']} log-noise outputs, {counts['stray_values']} stray return values, "
          f"{counts['explorer_checks_passed']} explorer interaction checks passed, {counts['images']} images, "
          f"{counts['formulas']} formulas ({counts['formulas_typeset']} typeset elements); "
          f"screenshots in {args.screenshot_dir}")
    return 0 if counts["passed"] == counts["pages"] else 1


if __name__ == "__main__":
    sys.exit(main())
