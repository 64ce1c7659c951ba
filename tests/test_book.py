"""The book machinery: banner, parameters, papermill orchestration, findings, build, browser check."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from cxrdrift import book, chapter
from cxrdrift import config as cfg

REPO = Path(__file__).resolve().parents[1]

DUMMY = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
---

# {title}

```{{code-cell}} ipython3
:tags: [parameters]

profile = "demo"
```

```{{code-cell}} ipython3
from pathlib import Path
run = Path("runs") / profile
run.mkdir(parents=True, exist_ok=True)
(run / "{artifact}").write_text(f"{{profile}} {{globals().get('threshold')}}")
{extra}
```
"""


def write_chapter(folder: Path, name: str, extra: str = "", artifact: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    path.write_text(DUMMY.format(title=name, artifact=artifact or f"{name}.txt", extra=extra))
    return path


# -- banner ----------------------------------------------------------------------------------

DEMO_RESOLVED = {"dataset": {"synthetic": True, "counts": {
    "train": {"Normal": 700, "COVID-19": 500}, "val": {"Normal": 200}, "test": {"Normal": 150, "Pneumonia": 250}}},
    "weights": {arch: {"kind": "synthetic", "path": f"/cache/{arch}.weights.h5"} for arch in cfg.ARCHITECTURES}}


def test_banner_of_demo_run_warns_and_shows_counts_weights_and_scaling():
    demo = cfg.profile("demo")
    text = chapter.banner_markdown(demo, DEMO_RESOLVED)
    assert text.startswith("````{admonition} Run: demo profile, not the paper's setting")
    assert ":class: warning" in text
    assert "synthetic radiographs (built-in generator): train 1,200 · val 200 · test 400 |" in text
    assert "every backbone: synthetic within-domain pre-training |" in text
    assert (f"{demo.epochs_tl} frozen + {demo.epochs_ft} fine-tuning epochs, compared at epochs "
            f"{demo.early_epoch} and {demo.late_epoch} (scaled down)") in text
    assert f"| Image size | {demo.image_size} px |" in text
    assert ("**This is a demo run on synthetic radiographs after within-domain pre-training with a "
            "scaled-down protocol; its numbers are not the paper's.**") in text
    assert text.rstrip().endswith("````")


def test_banner_of_smoke_run_before_training_says_weights_are_not_resolved():
    smoke = cfg.profile("smoke", weights="synthetic", synth_train=1500, synth_val=30, synth_test=40)
    text = chapter.banner_markdown(smoke, {})
    assert "Run: smoke profile" in text and "| Profile | `smoke` |" in text
    assert "train 1,500 · val 30 · test 40 (configured)" in text
    assert "synthetic within-domain pre-training (configured, not yet resolved)" in text
    assert "| Seed | 0 |" in text
    assert "its numbers are not the paper's" in text


def test_banner_of_paper_run_has_no_warning_only_with_imagenet_everywhere():
    config = cfg.profile("paper", data_dir="/data/cxr")
    resolved = {"dataset": {"counts": {"train": 11733, "val": 1675, "test": 3354}},
                "weights": {arch: {"kind": "imagenet", "path": "~/.keras/models"} for arch in cfg.ARCHITECTURES}}
    text = chapter.banner_markdown(config, resolved)
    assert ":class: note" in text and "not the paper's" not in text
    assert "real images from `/data/cxr`: train 11,733 · val 1,675 · test 3,354" in text
    assert "10 frozen + 10 fine-tuning epochs, compared at epochs 8 and 19 |" in text
    mixed = {**resolved, "weights": {**resolved["weights"], "ResNet50V2": {"kind": "file", "path": "/w/resnet.weights.h5"}}}
    text = chapter.banner_markdown(config, mixed)
    assert "ResNet50V2: weights file `/w/resnet.weights.h5`" in text
    assert "**This is a paper run on real images from ImageNet, weights file" in text


# -- parameters ------------------------------------------------------------------------------

def test_notebook_parameters_are_profile_plus_changed_fields():
    assert book.notebook_parameters(cfg.profile("demo")) == {"profile": "demo"}
    config = cfg.profile("smoke", threshold=0.4, architectures="ResNet50V2,InceptionV3")
    assert book.notebook_parameters(config) == {
        "profile": "smoke", "threshold": 0.4, "architectures": ["ResNet50V2", "InceptionV3"]}
    paper = cfg.profile("paper", data_dir="/data/cxr")
    assert book.notebook_parameters(paper) == {"profile": "paper", "data_dir": "/data/cxr"}


@pytest.mark.parametrize("parameters, message", [
    ({"profile": "demo", "treshold": 0.4}, "unknown parameter 'treshold'"),
    ({"profile": "demo", "image_size": "big"}, "image_size: expected int, got 'big'"),
    ({"profile": "demo", "late_epoch": 2}, "late_epoch=2 must lie in the fine-tuning phase"),
    ({"threshold": 0.4}, "must include 'profile'"),
    ({"profile": "nightly"}, "unknown profile 'nightly'"),
])
def test_validate_parameters_rejects_bad_names_and_values(parameters, message):
    with pytest.raises(cfg.ConfigError, match=re.escape(message)):
        book.validate_parameters(parameters)


def test_bad_parameter_stops_before_any_kernel_starts(tmp_path):
    source = write_chapter(tmp_path / "notebooks", "01_one")
    with pytest.raises(cfg.ConfigError, match="unknown parameter 'epochz'"):
        book.execute_notebook(source, tmp_path / "out.ipynb", {"profile": "demo", "epochz": 3})
    assert not (tmp_path / "out.ipynb").exists()


# -- orchestration ---------------------------------------------------------------------------

def statuses(results: list[book.ChapterResult]) -> list[tuple[str, str, str]]:
    return [(r.name, r.status, r.reason) for r in results]


def test_run_files_leave_out_what_every_execution_rewrites_a_replicates_records_included(tmp_path):
    for name in ("config.json", "logs/training.log", "figures/a.png", "tables/b.csv", "drift.parquet",
                 "replicates/seed_1/config.json", "replicates/seed_1/logs/training.log",
                 "replicates/seed_1/models/ResNet50V2/state.json", "replicates/seed_1/tables.csv"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    assert sorted(book.run_files(tmp_path)) == [
        "drift.parquet", "replicates/seed_1/models/ResNet50V2/state.json", "replicates/seed_1/tables.csv"]


def test_execute_skips_unchanged_chapters_and_reruns_what_changed(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    first = write_chapter(notebooks, "01_first")
    write_chapter(notebooks, "02_second")
    (notebooks / "README.md").write_text("not a chapter")
    config = cfg.profile("demo")
    run = lambda **kw: statuses(book.execute_notebooks(config, root=tmp_path, progress_bar=False, **kw))

    assert run() == [("01_first", "executed", "not executed yet"), ("02_second", "executed", "not executed yet")]
    out = tmp_path / "book" / "chapters"
    record = json.loads((out / "01_first.run.json").read_text())
    assert record["parameters"] == {"profile": "demo"} and record["kernel"] == "cxrdrift"
    assert record["run_files"]["01_first.txt"][0] == len("demo None")
    assert set(json.loads((out / "02_second.run.json").read_text())["upstream"]) == {"01_first"}
    assert run() == [("01_first", "skipped", "unchanged"), ("02_second", "skipped", "unchanged")]

    # a changed source reruns that chapter, and the chapters after it
    first.write_text(first.read_text().replace("# 01_first", "# The first chapter"))
    assert run() == [("01_first", "executed", "source changed"), ("02_second", "executed", "earlier chapters changed")]
    # an artifact a chapter saw was rewritten: that chapter and the later ones rerun
    (tmp_path / "runs" / "demo" / "01_first.txt").write_text("changed by hand")
    assert run(notebooks=["01"]) == [("01_first", "executed", "run directory changed (01_first.txt)")]
    assert run(notebooks=["02_second"]) == [("02_second", "executed", "earlier chapters changed")]
    # new parameters rerun everything, and reach the notebook
    assert [s[2] for s in statuses(book.execute_notebooks(cfg.profile("demo", threshold=0.3), root=tmp_path,
                                                         progress_bar=False))] == ["parameters changed"] * 2
    assert (tmp_path / "runs" / "demo" / "01_first.txt").read_text() == "demo 0.3"
    assert run(force=True) == [("01_first", "executed", "forced"), ("02_second", "executed", "forced")]
    # a chapter executed under other execution settings (an older cxrdrift) runs again
    monkeypatch.setattr(book, "KERNEL_ARGUMENTS", ())
    assert run(notebooks=["01"]) == [("01_first", "executed", "execution settings changed")]
    monkeypatch.undo()
    assert run() == [("01_first", "executed", "execution settings changed"),
                     ("02_second", "executed", "earlier chapters changed")]
    assert run() == [("01_first", "skipped", "unchanged"), ("02_second", "skipped", "unchanged")]
    # a profile default changed in the code (same parameters): every chapter reruns, the first too
    monkeypatch.setitem(cfg._PROFILE_DEFAULTS, "demo", {**cfg._PROFILE_DEFAULTS["demo"], "bootstrap_samples": 77})
    changed_default = cfg.profile("demo")
    assert book.notebook_parameters(changed_default) == {"profile": "demo"}
    assert [s[2] for s in statuses(book.execute_notebooks(changed_default, root=tmp_path, progress_bar=False))] \
        == ["configuration changed"] * 2
    with pytest.raises(book.BookError, match="no chapter notebook '09'"):
        run(notebooks=["09"])


def test_executed_chapter_removes_parameter_cells_and_collapses_setup(tmp_path):
    write_chapter(tmp_path / "notebooks", "01_first", extra="# chapter.setup(globals()) stands here")
    book.execute_notebooks(cfg.profile("demo", seed=3), root=tmp_path, progress_bar=False)
    notebook = nbformat.read(tmp_path / "book" / "chapters" / "01_first.ipynb", as_version=4)
    tagged = {tuple(cell.metadata.get("tags", [])) for cell in notebook.cells if cell.cell_type == "code"}
    assert ("parameters", "remove-cell") in tagged and ("injected-parameters", "remove-cell") in tagged
    assert ("hide-input",) in tagged  # the setup cell: its output (the banner) shows, its code collapses
    injected = next(c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'profile = "demo"' in injected.source and "seed = 3" in injected.source
    assert notebook.metadata.kernelspec.name == "cxrdrift"


def test_failing_chapter_names_cell_and_error_and_keeps_partial_copy(tmp_path):
    notebooks = tmp_path / "notebooks"
    write_chapter(notebooks, "01_ok")
    broken = write_chapter(notebooks, "02_broken", extra="value = 1 / 0")
    write_chapter(notebooks, "03_after")
    with pytest.raises(book.NotebookExecutionError) as caught:
        book.execute_notebooks(cfg.profile("demo"), root=tmp_path, progress_bar=False)
    error = caught.value
    out = tmp_path / "book" / "chapters"
    assert error.notebook == "02_broken.md" and error.cell_index == 3
    assert error.error == "ZeroDivisionError: division by zero"
    assert error.partial == out / ".failed" / "02_broken.ipynb"
    assert "notebook 02_broken.md failed at cell 3 ('from pathlib import Path')" in str(error)
    assert str(error.partial) in str(error)
    partial = nbformat.read(error.partial, as_version=4)
    assert any(o.get("ename") == "ZeroDivisionError" for c in partial.cells for o in c.get("outputs", []))
    assert (out / "01_ok.ipynb").exists()
    assert not (out / "02_broken.ipynb").exists() and not (out / "03_after.ipynb").exists()
    assert not list(out.glob(".02_broken*"))  # no temporary leftovers
    # fixed: the chapter runs, the partial copy goes away, the good chapter is not rerun
    broken.write_text(broken.read_text().replace("value = 1 / 0", "value = 1"))
    results = book.execute_notebooks(cfg.profile("demo"), root=tmp_path, progress_bar=False)
    assert [r.status for r in results] == ["skipped", "executed", "executed"]
    assert not error.partial.exists()


def test_chapter_without_parameters_cell_is_refused(tmp_path):
    source = tmp_path / "01_plain.md"
    source.write_text("# Plain\n\n```{code-cell} ipython3\nx = 1\n```\n")
    with pytest.raises(book.BookError, match="01_plain.md has no code cell tagged 'parameters'"):
        book.to_notebook(source)


# -- book pages ------------------------------------------------------------------------------

def test_protocol_page_lists_every_assumption_with_its_default():
    protocol = (REPO / "book" / "protocol.md").read_text()
    for row in cfg.assumptions():
        match = re.search(rf"`{row['field']}` = (\S+) \|", protocol)
        assert match, f"protocol.md does not give the value of assumption field {row['field']}"
        assert json.loads(match.group(1)) == json.loads(row["default"]), row["field"]


def test_toc_lists_intro_protocol_and_the_nine_chapters():
    names = book.toc_files(REPO)
    assert names[:2] == ["book/intro", "book/protocol"]
    chapters = [n.removeprefix("book/chapters/") for n in names if n.startswith("book/chapters/")]
    assert chapters == ["01_data", "02_training", "03_true_positive_filtering", "04_layercam",
                        "05_gradcampp", "06_drift", "07_discussion", "08_beyond", "09_audit"]
    config = (REPO / "_config.yml").read_text()
    assert 'execute_notebooks: "off"' in config and "only_build_toc_files: true" in config


def make_tiny_book(root: Path) -> None:
    """Our _config.yml and references, an intro citing a paper, one executed chapter with a banner."""
    (root / "book" / "chapters").mkdir(parents=True)
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copy(REPO / "book" / "references.bib", root / "book" / "references.bib")
    (root / "book" / "intro.md").write_text("# Tiny\n\nLayerCAM {cite}`jiang2021layercam`.\n\n"
                                            "```{bibliography}\n```\n")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "01_x.md").write_text("# must stay out of the book\n")
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": book.KERNELSPEC})
    banner = chapter.banner_markdown(cfg.profile("smoke"), {})
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Chapter one"),
        nbformat.v4.new_code_cell("profile = 'smoke'", metadata={"tags": ["parameters", "hide-input"]}),
        nbformat.v4.new_code_cell("banner()", execution_count=1, outputs=[nbformat.v4.new_output(
            "display_data", data={"text/markdown": banner, "text/plain": "<Markdown>"})]),
    ]
    nbformat.write(notebook, root / "book" / "chapters" / "01_x.ipynb")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/chapters/01_x\n")


def test_build_book_renders_banner_admonition_and_citations(tmp_path):
    make_tiny_book(tmp_path)
    html = book.build_book(tmp_path)
    assert html == tmp_path / "_build" / "html"
    page = (html / "book" / "chapters" / "01_x.html").read_text()
    assert re.search(r'class="warning admonition"', page), "the banner did not render as an admonition"
    assert "<table" in page and "its numbers are not the paper" in page
    intro = (html / "book" / "intro.html").read_text()
    assert "Jiang" in intro and "et al." in intro
    assert intro.count("const THEBE_JS_URL") <= 1
    assert not (html / "notebooks").exists()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/chapters/02_y\n")
    with pytest.raises(book.BookError, match="the book needs book/chapters/02_y"):
        book.build_book(tmp_path)


def test_book_check_flags_console_errors_and_broken_images(tmp_path):
    from cxrdrift import book_check

    pytest.importorskip("selenium")
    try:
        book_check.find_chromium(), book_check.find_driver()
    except book_check.BookCheckError:
        pytest.skip("no Chromium and chromedriver on this machine")
    html = tmp_path / "html"
    (html / "img").mkdir(parents=True)
    (html / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=good.html" />')
    shutil.copy(REPO / "book" / "references.bib", html / "img" / "not-an-image.png")
    pixel = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                          "1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d605d5"
                          "0000000049454e44ae426082")
    (html / "img" / "dot.png").write_bytes(pixel)
    (html / "good.html").write_text('<html><body><h1>Good</h1><img src="img/dot.png"></body></html>')
    (html / "bad.html").write_text('<html><body><img src="img/missing.png"><img src="img/not-an-image.png">'
                                   '<script>console.error("boom")</script></body></html>')
    reports = {r.page: r for r in book_check.check_book(html, tmp_path / "shots")}
    assert set(reports) == {"good.html", "bad.html"}
    assert reports["good.html"].ok and reports["good.html"].images == 1
    bad = reports["bad.html"]
    assert not bad.ok and bad.images == 2
    assert any("broken image" in e and "missing.png" in e for e in bad.errors)
    assert any("broken image" in e and "not-an-image.png" in e for e in bad.errors)
    assert any("console.error: boom" in e for e in bad.errors)
    assert any(e.startswith("missing file: 404 /img/missing.png") for e in bad.errors)
    assert (tmp_path / "shots" / "good.png").read_bytes()[:4] == b"\x89PNG"


def test_dead_kernel_names_the_cell_it_was_running(tmp_path):
    write_chapter(tmp_path / "notebooks", "01_dies", extra="import os\nos._exit(1)")
    with pytest.raises(book.NotebookExecutionError) as caught:
        book.execute_notebooks(cfg.profile("demo"), root=tmp_path, progress_bar=False)
    assert caught.value.cell_index == 3 and "DeadKernelError" in caught.value.error
    assert caught.value.partial.exists()


def test_chapters_keep_their_figures_whatever_the_callers_matplotlib_backend(tmp_path, monkeypatch):
    """A caller's MPLBACKEND (Agg here) must not reach the kernel, or every figure would vanish."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    source = tmp_path / "01_plot.md"
    source.write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  name: cxrdrift\n  display_name: cxrdrift\n  language: python\n---\n\n"
        "```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = \"smoke\"\n```\n\n"
        "```{code-cell} ipython3\nimport matplotlib.pyplot as plt\nplt.plot([0, 1]);\n```\n")
    output = book.execute_notebook(source, tmp_path / "01_plot.ipynb", {"profile": "smoke"},
                                   cwd=tmp_path, progress_bar=False)
    notebook = nbformat.read(output, as_version=4)
    assert any("image/png" in out.get("data", {}) for cell in notebook.cells for out in cell.get("outputs", []))
    assert os.environ["MPLBACKEND"] == "Agg"
