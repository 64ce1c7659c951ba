"""Progress for whoever runs the build: tqdm bars on stderr for `cxrdrift run`; inside a chapter kernel,
prefixed lines on the kernel's own stderr, which `cxrdrift book` shows on its terminal and keeps off the page."""
import io
import os
import re
import sys
import time

import nbformat
import numpy as np

from cxrdrift import book, progress
from cxrdrift.kernel_output import KernelOutput

# tqdm's text at 32 of 64 images: done/total, elapsed<remaining, rate
HALF_WAY = re.compile(r"DenseNet201 pre-training:  50%\|.*\| 32/64 \[\d\d:\d\d<\d\d:\d\d, +\d+\.\d\dimg/s\]")


def _half_and_full(total: int = 64) -> None:
    with progress.bar(total, "DenseNet201 pre-training", mininterval=0) as shown:
        shown.update(total // 2)
        shown.update(total - total // 2)


def test_inside_a_chapter_every_line_is_prefixed_on_the_kernels_own_stderr(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(progress.CHAPTER_ENV, progress.CHAPTER_VALUE)
    monkeypatch.setenv("TQDM_DISABLE", "1")  # what the book's kernels set: the study's bars stay on
    kernel_stderr = io.StringIO()
    monkeypatch.setattr(sys, "__stderr__", kernel_stderr)
    _half_and_full()
    progress.message("InceptionV3: drawing 1,200 held-out source images")
    written = kernel_stderr.getvalue()
    lines = [line for line in re.split(r"(?<=[\r\n])", written) if line]
    assert lines and all(line.startswith("[terminal] ") for line in lines)
    assert capsys.readouterr().err == ""  # the cell's stream: nothing reaches the page
    shown = io.StringIO()  # what the book's terminal shows of it
    with KernelOutput(tmp_path / "k.kernel.log", shown) as output:
        os.write(output.write_fd, written.encode())
    assert "[terminal]" not in shown.getvalue()
    assert HALF_WAY.search(shown.getvalue())
    assert "| 64/64 [" in shown.getvalue()
    assert shown.getvalue().endswith("\nInceptionV3: drawing 1,200 held-out source images\n")


def test_the_terminal_stream_prefixes_every_line_and_shows_each_refresh_at_once(tmp_path):
    target = io.StringIO()
    stream = progress.TerminalStream(target)
    for piece in ("\rcams 1/2", "\rcams 2/2", "\n", "done", " at last\n", "\r"):  # as tqdm writes
        stream.write(piece)
    assert target.getvalue() == ("[terminal] cams 1/2\r[terminal] cams 2/2\r[terminal] \n[terminal] done at last\n"
                                 "[terminal] \r")
    shown = io.StringIO()
    with KernelOutput(tmp_path / "k.kernel.log", shown) as output:
        os.write(output.write_fd, target.getvalue()[:len("[terminal] cams 1/2\r")].encode())
        time.sleep(0.2)
        assert shown.getvalue() == "cams 1/2\r"  # on the terminal before the next refresh
        os.write(output.write_fd, target.getvalue()[len("[terminal] cams 1/2\r"):].encode())
    assert shown.getvalue() == "cams 1/2\rcams 2/2\r\ndone at last\n\r"


def test_outside_a_chapter_a_plain_tqdm_bar_on_stderr(monkeypatch, capsys):
    monkeypatch.delenv(progress.CHAPTER_ENV, raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    _half_and_full()
    err = capsys.readouterr().err
    assert "[terminal]" not in err
    assert HALF_WAY.search(err) and "\r" in err


def test_tqdms_own_switch_silences_the_messages_too_outside_a_chapter(monkeypatch, capsys):
    # (tqdm reads TQDM_DISABLE when it is imported, so its bars cannot be switched off here)
    monkeypatch.delenv(progress.CHAPTER_ENV, raising=False)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    progress.message("not shown")
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("TQDM_DISABLE")
    progress.message("shown")
    assert capsys.readouterr().err == "shown\n"


def test_the_keras_callback_counts_images_of_every_batch_including_the_short_last_one(monkeypatch):
    import keras

    monkeypatch.delenv(progress.CHAPTER_ENV, raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # a disabled bar counts nothing
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.zeros((10, 3), "float32"), np.zeros(10, "int32")
    with progress.bar(2 * 10 + 10 + 10, "tiny", file=io.StringIO()) as shown:
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[progress.keras_progress(shown, 10, 4)])
        assert shown.n == 20
        model.evaluate(x, y, batch_size=4, verbose=0, callbacks=[progress.keras_progress(shown, 10, 4)])
        model.predict(x, batch_size=4, verbose=0, callbacks=[progress.keras_progress(shown, 10, 4)])
        assert shown.n == 40


CHAPTER = (
    "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n---\n\n"
    "```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = \"smoke\"\n```\n\n"
    "```{code-cell} ipython3\nfrom cxrdrift import progress\n"
    "with progress.bar(3, 'CAMs DenseNet201 epoch 8', unit='batch', mininterval=0) as shown:\n"
    "    for _ in range(3):\n        shown.update(1)\n"
    "progress.message('CAM stage done')\nprint('the chapter speaks')\n```\n")


def test_a_chapters_progress_reaches_the_terminal_and_never_its_saved_outputs(tmp_path, capfd):
    source = tmp_path / "01_progress.md"
    source.write_text(CHAPTER)
    output = book.execute_notebook(source, tmp_path / "out" / "01_progress.ipynb", {"profile": "smoke"},
                                   cwd=tmp_path, progress_bar=False)
    terminal = capfd.readouterr().err
    # the last refresh, padded to the one before, then the bar's end of line
    done = r"CAMs DenseNet201 epoch 8: 100%\|.*\| 3/3 \[\d\d:\d\d<\d\d:\d\d, +\d+\.\d\dbatch/s\] *\r\n"
    assert re.search(done, terminal)
    assert "CAM stage done\n" in terminal and "[terminal]" not in terminal
    cell = nbformat.read(output, as_version=4).cells[-1]
    assert [out.get("text") for out in cell.outputs] == ["the chapter speaks\n"]
    assert "CAM stage done" in (tmp_path / "out" / "01_progress.kernel.log").read_text()


def test_a_quiet_terminal_gets_a_heartbeat_line_below_an_open_bar():
    terminal = progress.WatchedTerminal(io.StringIO())
    with progress.heartbeat("02_training", terminal, every=0.3):
        terminal.write("DenseNet201 epoch 9/12 (finetune):  40%\r")
        time.sleep(0.8)
    shown = terminal.target.getvalue()
    assert shown.startswith("DenseNet201 epoch 9/12 (finetune):  40%\r\n02_training: still running, 0:00 so far\n")
    assert 1 <= shown.count("still running") <= 2  # each line restarts the quiet
    assert not terminal.line_open
