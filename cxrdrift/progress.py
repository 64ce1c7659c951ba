"""Progress of the long steps (pre-training, training epochs, CAM passes) for whoever runs them.

`cxrdrift run` shows tqdm bars on stderr. Inside a chapter kernel of `cxrdrift book`, stderr is the
cell's output, which becomes the page; there the bars go instead to the kernel process's own
descriptor 2 with `kernel_output.TERMINAL_PREFIX` at the start of every line, which the book's
kernel-output pump shows on its terminal and keeps out of the notebook. The book marks its kernels
with CHAPTER_ENV (`book.KERNEL_ENV`). Elsewhere tqdm's own switch (TQDM_DISABLE) is obeyed, by the
messages too.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator, TextIO

from tqdm.std import tqdm  # text bars: tqdm.auto would make ipywidgets in a kernel

from .kernel_output import TERMINAL_PREFIX

if TYPE_CHECKING:
    import keras

CHAPTER_ENV = "CXRDRIFT_PROGRESS"
CHAPTER_VALUE = "terminal"
HEARTBEAT_S = 30.0  # the longest the book's terminal stays quiet while a chapter runs
_PREFIX = TERMINAL_PREFIX.decode()
_AFTER_LINE_END = re.compile(r"(?<=[\r\n])")  # where the kernel-output pump splits lines too


def in_chapter() -> bool:
    """Whether this process is a chapter kernel of `cxrdrift book`."""
    return os.environ.get(CHAPTER_ENV) == CHAPTER_VALUE


class TerminalStream(io.TextIOBase):
    """Text written to `target` with TERMINAL_PREFIX at the start of every line; a line ends at
    "\\r" as well as "\\n", so every tqdm refresh reaches the terminal as its own prefixed line.

    tqdm starts a refresh with "\\r" ("\\rbar 10%"), and the book's pump shows a line once its end
    arrives: passed on as it comes, each refresh would reach the terminal only when the next one
    begins. So a write that starts with "\\r" is passed on with the "\\r" at its end."""

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self._line_start = True

    @property
    def encoding(self) -> str | None:  # tqdm draws unicode bars only on a stream that can take them
        return getattr(self.target, "encoding", None)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        length = len(text)
        if self._line_start and text.startswith("\r") and not text.endswith(("\r", "\n")):
            text = text[1:] + "\r"
        pieces = []
        for piece in filter(None, _AFTER_LINE_END.split(text)):
            pieces.append(_PREFIX + piece if self._line_start else piece)
            self._line_start = piece[-1] in "\r\n"
        self.target.write("".join(pieces))
        self.target.flush()  # the pump shows a line when it arrives; a buffered one would wait
        return length

    def flush(self) -> None:
        self.target.flush()


def stream() -> TextIO:
    """Where progress goes: the kernel's own stderr, prefixed, in a chapter; else sys.stderr."""
    return _terminal_stream(sys.__stderr__) if in_chapter() else sys.stderr


@functools.cache
def _terminal_stream(target: TextIO) -> TerminalStream:
    # one per target: the line a bar has left open is known to the next writer, and tqdm.write
    # clears the bars that share its stream
    return TerminalStream(target)


def bar(total: int | None, desc: str, unit: str = "img", **options: Any) -> tqdm:
    """A tqdm bar on `stream()` (rate and time left for a known `total`). In a chapter it is on
    even though the book's kernels set TQDM_DISABLE, which keeps other libraries' bars off the page."""
    if in_chapter():
        options = {"file": stream(), "disable": False, **options}
    return tqdm(total=total, desc=desc, unit=unit, **options)


def message(text: str) -> None:
    """One line of progress (what a step without a bar is doing), beside any open bar."""
    if in_chapter() or not os.environ.get("TQDM_DISABLE"):
        tqdm.write(text, file=stream())


class WatchedTerminal:
    """The book's terminal (a text stream) as the kernel-output pump and the heartbeat share it:
    writes are serialized, and it knows when it was last written to and whether a line is open."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.last_write = time.monotonic()
        self.line_open = False
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.target.write(text)
            self.target.flush()
            self.last_write = time.monotonic()
            if text:
                self.line_open = not text.endswith("\n")
        return len(text)

    def flush(self) -> None:
        self.target.flush()


@contextlib.contextmanager
def heartbeat(name: str, terminal: WatchedTerminal, every: float = HEARTBEAT_S) -> Iterator[None]:
    """While the block runs, a line "<name>: still running, M:SS so far" on `terminal` whenever
    nothing has been written to it for `every` seconds: a step without a bar (a table, a figure,
    a stage that is quick on a fast machine) still shows that the build is alive."""
    start, stop = time.monotonic(), threading.Event()

    def beat() -> None:
        while not stop.wait(min(1.0, every)):
            now = time.monotonic()
            if now - terminal.last_write >= every:
                minutes, seconds = divmod(int(now - start), 60)
                # below a bar's last refresh (its line ends with a carriage return), not over it
                terminal.write(("\n" if terminal.line_open else "")
                               + f"{name}: still running, {minutes}:{seconds:02d} so far\n")

    thread = threading.Thread(target=beat, name=f"heartbeat {name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def keras_progress(shown: tqdm, images: int, batch_size: int) -> "keras.callbacks.Callback":
    """A Keras callback that moves `shown` by the images of every batch Keras trains, evaluates or
    predicts, in passes of `images` images in batches of `batch_size`."""
    return _keras_progress_class()(shown, images, batch_size)


@functools.cache
def _keras_progress_class() -> type:
    # built on first use: `cxrdrift book` imports this module without loading TensorFlow
    import keras

    class KerasProgress(keras.callbacks.Callback):
        def __init__(self, shown: tqdm, images: int, batch_size: int) -> None:
            super().__init__()
            self.shown, self.images, self.batch_size = shown, images, batch_size
            self._start = 0

        def _pass_begins(self, *_: Any) -> None:
            self._start = self.shown.n

        def _batch_ends(self, batch: int, logs: Any = None) -> None:
            # Keras names the batch, not its size: the last one of a pass may be short
            done = self._start + min((batch + 1) * self.batch_size, self.images)
            self.shown.update(done - self.shown.n)

        on_epoch_begin = on_test_begin = on_predict_begin = _pass_begins
        on_train_batch_end = on_test_batch_end = on_predict_batch_end = _batch_ends

    return KerasProgress


__all__ = ["CHAPTER_ENV", "CHAPTER_VALUE", "HEARTBEAT_S", "in_chapter", "TerminalStream", "stream", "bar",
           "message", "WatchedTerminal", "heartbeat", "keras_progress"]
