"""Open the built book in headless Chromium: a screenshot per page, failing on console errors,
broken images and missing local files.

    python -m cxrdrift.book_check _build/html _build/screenshots      (= make check-book)

The HTML folder is served on localhost from a thread; Chromium is driven through the DevTools
protocol (a websocket, `websocket-client`), which reports console messages, uncaught exceptions and
failed loads as events, lets us wait until every image has decoded, and takes full-page
screenshots. Loads of *external* URLs that fail (no network, e.g. a CDN) are reported as warnings,
not failures: the book must work offline, but a theme's optional CDN script is not a broken page.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from base64 import b64decode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--remote-allow-origins=*", "--hide-scrollbars")
INSTALL_HINT = ("headless Chromium is needed: on Debian/Ubuntu `sudo apt-get update && sudo apt-get "
                "install -y chromium` (or `chromium-browser`), or set CHROMIUM=/path/to/chrome")
SKIPPED_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
WIDTH, MAX_HEIGHT = 1280, 12000

# Wait until every image (lazy ones too) has loaded, then list the broken ones.
_IMAGES_JS = """
(async () => {
  const images = Array.from(document.images);
  images.forEach(i => { i.loading = 'eager'; });
  await Promise.all(images.map(i => i.complete ? null : new Promise(r => {
    i.addEventListener('load', r); i.addEventListener('error', r); setTimeout(r, 5000); })));
  return JSON.stringify({count: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src)});
})()
"""


class BookCheckError(RuntimeError):
    """The check could not run (no Chromium, no HTML folder, the browser did not answer)."""


@dataclass
class PageReport:
    """What one page showed: images, failures (console errors, broken images, missing files)
    and warnings (failed external loads)."""

    page: str
    screenshot: Path | None = None
    images: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def find_chromium() -> str:
    """The Chromium executable: $CHROMIUM, else the first of CHROMIUM_NAMES on PATH."""
    candidate = os.environ.get("CHROMIUM")
    if candidate:
        if shutil.which(candidate):
            return shutil.which(candidate)
        raise BookCheckError(f"CHROMIUM={candidate} is not an executable; {INSTALL_HINT}")
    for name in CHROMIUM_NAMES:
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


class _DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, websocket_url: str, timeout: float) -> None:
        import websocket

        self.timeout = timeout
        self.socket = websocket.create_connection(websocket_url, timeout=timeout, suppress_origin=True)
        self.events: list[dict[str, Any]] = []
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        import websocket

        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        self.socket.settimeout(self.timeout)
        while True:
            try:
                message = json.loads(self.socket.recv())
            except websocket.WebSocketTimeoutException:
                raise BookCheckError(f"Chromium did not answer {method} in {self.timeout:.0f} s") from None
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise BookCheckError(f"DevTools {method}: {message['error'].get('message')}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, event: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e["method"] == event for e in self.events):
                return True
            self.socket.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                message = json.loads(self.socket.recv())
            except Exception:  # websocket timeout: nothing more arrived
                return False
            if "method" in message:
                self.events.append(message)
        return False

    def close(self) -> None:
        self.socket.close()


@contextlib.contextmanager
def chromium(executable: str, timeout: float = 30.0) -> Iterator[_DevTools]:
    """Start headless Chromium with a throw-away profile; yields a DevTools client of its page."""
    with tempfile.TemporaryDirectory(prefix="cxrdrift-chromium-") as profile:
        command = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                   "--remote-debugging-port=0", f"--window-size={WIDTH},900", "about:blank"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not port_file.exists() or not port_file.read_text().strip():
                if process.poll() is not None:
                    raise BookCheckError(f"{executable} exited at start ({process.returncode}): "
                                         + (process.stderr.read() or "")[-800:])
                if time.monotonic() > deadline:
                    raise BookCheckError(f"{executable} did not open its DevTools port in {timeout:.0f} s")
                time.sleep(0.1)
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as reply:
                targets = json.load(reply)
            page = next((t for t in targets if t.get("type") == "page"), None)
            if page is None:
                raise BookCheckError("Chromium opened no page target")
            client = _DevTools(page["webSocketDebuggerUrl"], timeout)
            try:
                yield client
            finally:
                client.close()
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _is_local(url: str, base: str) -> bool:
    return not url or url.startswith(base) or url.startswith(("data:", "about:", "blob:"))


def check_page(client: _DevTools, base: str, page: str, screenshot_dir: Path,
               timeout: float = 30.0) -> PageReport:
    """Load one page, wait for its images, screenshot the whole page and collect its problems."""
    report = PageReport(page)
    client.events.clear()
    client.call("Page.navigate", url=base + page)
    if not client.wait_for("Page.loadEventFired", timeout):
        report.errors.append(f"page did not finish loading in {timeout:.0f} s")
    result = client.call("Runtime.evaluate", expression=_IMAGES_JS, awaitPromise=True, returnByValue=True)
    images = json.loads(result.get("result", {}).get("value") or '{"count": 0, "broken": []}')
    report.images = images["count"]
    report.errors += [f"broken image: {src}" for src in images["broken"]]
    client.wait_for("__settle__", 0.3)  # let late console messages arrive
    for event in client.events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            report.errors.append(f"uncaught exception: {text.splitlines()[0] if text else '?'}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            report.errors.append(f"console.{params['type']}: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            message = f"{entry.get('text', '')} {entry.get('url', '')}".strip()
            (report.errors if _is_local(entry.get("url", ""), base) else report.warnings).append(message)
    height = client.call("Page.getLayoutMetrics").get("cssContentSize", {}).get("height", 900)
    client.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=int(min(max(height, 900), MAX_HEIGHT)),
                deviceScaleFactor=1, mobile=False)
    shot = client.call("Page.captureScreenshot", format="png")
    client.call("Emulation.clearDeviceMetricsOverride")
    target = screenshot_dir / (page.removesuffix(".html").replace("/", "__") + ".png")
    target.write_bytes(b64decode(shot["data"]))
    report.screenshot = target
    return report


def check_book(html_dir: str | Path, screenshot_dir: str | Path, pages: Sequence[str] | None = None,
               timeout: float = 30.0) -> list[PageReport]:
    """Serve `html_dir`, open every page (or `pages`) in headless Chromium, save a screenshot of
    each into `screenshot_dir`, and report console errors, broken images and missing files."""
    html_dir, screenshot_dir = Path(html_dir), Path(screenshot_dir)
    if not (html_dir / "index.html").exists():
        raise BookCheckError(f"{html_dir} holds no built book (no index.html); run `make book` first")
    executable = find_chromium()
    screenshot_dir.mkdir(parents=True, exist_ok=True)
    pages = list(pages) if pages is not None else book_pages(html_dir)
    reports = []
    with serve(html_dir) as (base, missing), chromium(executable, timeout) as client:
        for domain in ("Page", "Runtime", "Log"):
            client.call(f"{domain}.enable")
        for page in pages:
            missing.clear()
            report = check_page(client, base, page, screenshot_dir, timeout)
            report.errors += [f"missing file: {request}" for request in missing]
            reports.append(report)
    return reports


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
            print(f"     warning (external): {line}")
    failed = [r.page for r in reports if not r.ok]
    print(f"{len(reports) - len(failed)}/{len(reports)} pages passed; screenshots in {args.screenshot_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
