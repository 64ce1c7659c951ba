"""The book a reader opens: no log noise or stray values in outputs, nothing loaded from other
hosts, an explorer that works without a kernel, and a browser check that reports all of it."""
from __future__ import annotations

import io
import re
from pathlib import Path

import nbformat
import pytest

from cxrdrift import book, book_check
from cxrdrift import config as cfg
from cxrdrift.explorer import ExplorerView, StaticExplorer, explorer_html

from test_book import write_chapter
from test_drift import make_run

REPO = Path(__file__).resolve().parents[1]
ABSL_NOISE = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
              "I0000 00:00:1795951076.549597   18534 port.cc:153] oneDNN custom operations are on. You may "
              "see slightly different numerical results due to floating-point round-off errors.\n")


# -- noise and stray values ------------------------------------------------------------------

def test_output_problems_find_log_noise_and_stray_values_but_keep_other_warnings():
    outputs = [
        {"kind": "stderr", "text": ABSL_NOISE},
        {"kind": "stderr", "text": "2026-11-29 10:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN"},
        {"kind": "stderr", "text": "WARNING:tensorflow:5 out of the last 13 calls to <function f> triggered "
                                   "tf.function retracing."},
        {"kind": "stderr", "text": "UserWarning: only 3 images were kept; the interval is wide"},
        {"kind": "text_plain", "text": "PosixPath('runs/smoke/figures/06_dissociation.png')"},
        {"kind": "text_plain", "text": "<Figure size 640x480 with 1 Axes>"},
        {"kind": "text_plain", "text": "   n  mean\n0  3  0.25"},
        {"kind": "stream", "text": "Dataset: runs/smoke/data (Path printed on purpose)"},
    ]
    noise, stray, stderr = book_check.output_problems(outputs)
    assert len(noise) == 4 and "absl::InitializeLog" in noise[0] and "oneDNN" in noise[1]
    assert "retracing" in noise[3]
    assert stray == ["PosixPath('runs/smoke/figures/06_dissociation.png')", "<Figure size 640x480 with 1 Axes>"]
    assert stderr == ["UserWarning: only 3 images were kept; the interval is wide"]


def test_kernel_drops_native_log_noise_and_keeps_python_warnings(tmp_path):
    """What C++ writes to the kernel's file descriptor 2 (TensorFlow's absl start-up lines) and
    progress bars stay out of the chapter; a Python warning, which a chapter can explain, still shows."""
    extra = (f"import os, sys, warnings\nos.write(2, {ABSL_NOISE.encode()!r})\n"
             "warnings.warn('only 3 images were kept')\n"
             "from cxrdrift import chapter\nchapter.setup({'profile': 'smoke'}, banner=False)\n"
             "import tensorflow as tf\ntf.get_logger().warning('5 calls triggered tf.function retracing')\n"
             "from tqdm.std import tqdm\nfor _ in tqdm(range(3)): pass\n"  # as cams and train use it
             "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['TQDM_DISABLE'], os.environ['MPLBACKEND'])")
    write_chapter(tmp_path / "notebooks", "01_noisy", extra=extra)
    book.execute_notebooks(cfg.profile("smoke"), root=tmp_path, progress_bar=False)
    notebook = nbformat.read(tmp_path / "book" / "chapters" / "01_noisy.ipynb", as_version=4)
    streams = [{"kind": output.name, "text": output.text} for cell in notebook.cells
               for output in cell.get("outputs", []) if output.output_type == "stream"]
    noise, _, stderr = book_check.output_problems(streams)
    assert noise == [] and not any("retracing" in s["text"] for s in streams)
    assert "WARNING:tensorflow:5 calls triggered tf.function retracing" in \
        (tmp_path / "book" / "chapters" / "01_noisy.kernel.log").read_text()
    assert "widgets" not in notebook.metadata  # no progress-bar widget that needs a kernel or a CDN
    assert any("only 3 images were kept" in line for line in stderr)
    # a bar as tqdm draws it ("100%|███| 3/3 [00:00<...]"); a bare "3/3" also matches the warning's
    # own file name, /tmp/ipykernel_<pid>/<hash>.py, when the pid ends in 3 and the hash starts with 3
    assert not any(re.search(r"\| ?[0-3]/3 \[", line) for line in stderr)  # no progress bar
    assert any(s["kind"] == "stdout" and s["text"].startswith("2 1 module://matplotlib_inline") for s in streams)


def test_chapters_end_no_cell_with_a_bare_save_figure_call():
    """`save_figure` returns the path it wrote (for code); as a cell's last line it must end in `;`
    or the page shows `PosixPath('...')`."""
    offenders = []
    for source in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.md")):
        import jupytext

        for cell in jupytext.read(source).cells:
            last = cell.source.rstrip().splitlines()[-1] if cell.cell_type == "code" and cell.source.strip() else ""
            if last.strip().startswith("save_figure(") and not last.rstrip().endswith(";"):
                offenders.append(f"{source.name}: {last.strip()}")
    assert offenders == []


# -- assets served by the book ---------------------------------------------------------------

def test_book_serves_mathjax_itself_and_loads_nothing_from_a_cdn(tmp_path):
    from test_book import make_tiny_book

    make_tiny_book(tmp_path)
    (tmp_path / "book" / "intro.md").write_text("# Tiny\n\n$$\\frac{a}{b}$$\n\nLayerCAM {cite}`jiang2021layercam`."
                                                "\n\n```{bibliography}\n```\n")
    html = book.build_book(tmp_path)
    page = (html / "book" / "intro.html").read_text()
    assert "_static/mathjax/tex-chtml.js" in page
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    # no script, style sheet or font from another host (sphinx-thebe's THEBE_JS_URL is only a string:
    # thebe is off in _config.yml, so nothing loads it)
    assert re.findall(r'(?:src|href)="(?:https?:)?//[^"]*\.(?:js|css|woff2?)[^"]*"', page) == []
    try:
        _need_browser()
    except pytest.skip.Exception:
        return
    report, = book_check.check_book(html, tmp_path / "shots", pages=["book/intro.html"])
    assert report.ok, report.errors
    assert report.math == 1 and report.math_rendered >= 1 and report.external == []  # typeset offline


# -- the static explorer ---------------------------------------------------------------------

def _png(value: float) -> bytes:
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(0.5, 0.5))
    fig.patch.set_facecolor(str(value))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=20)
    plt.close(fig)
    return buffer.getvalue()


def tiny_views() -> list[ExplorerView]:
    values = {"spatial_displacement": 0.1, "overlap_iou": 0.5, "pattern_correlation": 0.9,
              "concentration_change": float("nan")}
    views, shade = [], 0.1
    for arch in ("DenseNet201", "ResNet50V2"):
        for method in ("layercam", "gradcampp"):
            for sid, label in (("test/Normal/a.png", "Normal"), ("test/COVID-19/b.png", "COVID-19")):
                views.append(ExplorerView(arch, method, sid, label, _png(round(shade, 2)), values, "image/png"))
                shade += 0.1
    return views


def test_explorer_html_has_three_controls_one_view_per_selection_and_no_external_asset():
    views = tiny_views()
    page = explorer_html(views, 0.5)
    assert page.count("<select") == 3 and page.count("data-view=") == len(views)
    assert page.count(" hidden>") == len(views) - 1  # the first view shows even without JavaScript
    assert 'data-view="ResNet50V2|gradcampp|test/COVID-19/b.png"' in page and "data:image/png;base64," in page
    assert '<option value="gradcampp">Grad-CAM++</option>' in page
    assert "Normal | test/Normal/a.png" in page and "n/a (flat map)" in page
    assert "http" not in page and page == explorer_html(views, 0.5)  # self-contained, deterministic


def test_static_explorer_draws_every_architecture_method_and_chosen_image(tmp_path):
    from cxrdrift import drift
    from cxrdrift.artifacts import write_config

    config, ids, _ = make_run(tmp_path)
    drift.run_true_positive_filter(config)
    drift.run_drift_stage(config)
    write_config(config)
    explorer = StaticExplorer(config, max_images=3)
    stored = drift.load_drift(config).set_index(["arch", "method", "sample_id"])
    assert explorer.n_images == 3 and explorer.n_kept == stored.reset_index()["sample_id"].nunique()
    assert len(explorer.views) == len(config.architectures) * len(config.cam_methods) * 3
    assert ids[0] not in {v.sample_id for v in explorer.views}  # dropped by the filter: not offered
    for view in explorer.views:
        assert view.image[:3] == b"\xff\xd8\xff" and view.mime == "image/jpeg"  # JPEG
        assert view.values["overlap_iou"] == pytest.approx(
            stored.loc[(view.arch, view.method, view.sample_id), "overlap_iou"], nan_ok=True)
    assert len({v.label for v in explorer.views}) == min(3, stored.reset_index()["label"].nunique())
    assert explorer._repr_html_() == explorer.html and "data-explorer" in explorer.html


# -- the browser check -----------------------------------------------------------------------

def _need_browser() -> None:
    pytest.importorskip("selenium")
    try:
        book_check.find_chromium(), book_check.find_driver()
    except book_check.BookCheckError:
        pytest.skip("no Chromium and chromedriver on this machine")


def test_book_check_fails_cdn_scripts_log_noise_and_a_dead_explorer_and_drives_a_live_one(tmp_path):
    _need_browser()
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=explorer.html" />')
    views = tiny_views()
    (html / "explorer.html").write_text(f"<html><body><h1>Explore</h1>{explorer_html(views, 0.5)}</body></html>")
    dead = explorer_html(views, 0.5).split("<script>")[0] + "</div>"
    (html / "dead.html").write_text(f"<html><body>{dead}</body></html>")
    (html / "cdn.html").write_text('<html><head><script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/'
                                   'tex-mml-chtml.js"></script></head><body><p><span class="math">\\(x\\)</span></p></body></html>')
    (html / "noise.html").write_text(
        '<html><body><div class="cell_output docutils container"><div class="output stderr highlight-myst-ansi '
        f'notranslate"><pre>{ABSL_NOISE}</pre></div><div class="output text_plain highlight-myst-ansi '
        "notranslate\"><pre>PosixPath('runs/x.png')</pre></div></div></body></html>")
    reports = {r.page: r for r in book_check.check_book(html, tmp_path / "shots")}
    live = reports["explorer.html"]
    assert live.ok, live.errors
    assert live.explorers and "changed the view" in live.explorers[0] and live.images == len(views)
    assert not reports["dead.html"].ok and any("did not change the view" in e for e in reports["dead.html"].errors)
    cdn = reports["cdn.html"]
    assert not cdn.ok and cdn.external == ["https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"]
    assert any(e.startswith("request to another host: https://cdn.jsdelivr.net") for e in cdn.errors)
    noisy = reports["noise.html"]
    assert not noisy.ok and len(noisy.noise) == 2 and noisy.stray == ["PosixPath('runs/x.png')"]
    counts = book_check.summary(list(reports.values()))
    assert counts == {"pages": 4, "passed": 1, "external_requests": 1, "log_noise_outputs": 2,
                      "stray_values": 1, "explorer_checks_passed": 1, "images": 2 * len(views),
                      "formulas": 1, "formulas_typeset": 0}
    assert any("1 formulas, none typeset" in e for e in cdn.errors)
    assert book_check.main([str(html), str(tmp_path / "shots2"), "--page", "explorer.html"]) == 0
    assert book_check.main([str(html), str(tmp_path / "shots2"), "--page", "cdn.html"]) == 1


def test_book_check_says_in_one_line_when_the_browser_cannot_start(tmp_path, monkeypatch, capsys):
    _need_browser()
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text("<html><body>x</body></html>")
    fake = tmp_path / "not-chromium"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CHROMIUM", str(fake))
    assert book_check.main([str(html), str(tmp_path / "shots")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("book check: could not start Chromium") and "\n" not in error
