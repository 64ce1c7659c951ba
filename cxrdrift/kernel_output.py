"""What a chapter's kernel process writes itself, on its descriptors 1 and 2 (not the cells' streams).

That is library noise a reader of `cxrdrift book`'s terminal can do nothing about: ipykernel's
"[IPKernelApp] WARNING | Kernel is running over TCP without encryption" (the kernel listens on
localhost only), TensorFlow's native log lines (see `book.KERNEL_ARGUMENTS`). It all goes to
`<chapter>.kernel.log` beside the executed chapter, where a kernel that dies leaves its last words.
Only lines that start with TERMINAL_PREFIX also reach the terminal, without the prefix: the channel
for progress a chapter wants the person running the build to see (a tqdm bar whose description
starts with the prefix works too: carriage-return updates are passed on as they come).
"""
from __future__ import annotations

import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

TERMINAL_PREFIX = b"[terminal] "
LOG_SUFFIX = ".kernel.log"
_AFTER_LINE_END = re.compile(rb"(?<=[\r\n])")


def kernel_log(output: str | Path) -> Path:
    """Where the kernel executing into `output` writes its own stdout and stderr."""
    output = Path(output)
    return output.with_name(output.stem + LOG_SUFFIX)


class KernelOutput:
    """A pipe for a kernel process's stdout and stderr: everything is appended to `log` (emptied
    first); lines starting with TERMINAL_PREFIX are also written to `terminal` (default stderr).
    Use as a context manager around the kernel's whole life."""

    def __init__(self, log: Path, terminal: TextIO | None = None) -> None:
        self.log, self.terminal = Path(log), terminal
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_bytes(b"")
        self._read, self.write_fd = os.pipe()
        self._thread = threading.Thread(target=self._pump, name=f"kernel output {self.log.name}", daemon=True)

    def __enter__(self) -> "KernelOutput":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        os.close(self.write_fd)  # the kernel has exited: its copies are closed, so the pump sees the end
        self._thread.join(timeout=10)

    def manager_class(self) -> type:
        """An AsyncKernelManager class (what nbclient starts kernels with; papermill takes a class,
        not an instance) whose kernel processes write their stdout and stderr into this pipe."""
        from jupyter_client.manager import AsyncKernelManager

        write_fd = self.write_fd

        class PipedKernelManager(AsyncKernelManager):
            async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
                # jupyter_client's documented hook for launching kernels differently
                await super()._async_launch_kernel(kernel_cmd, **{"stdout": write_fd, "stderr": write_fd, **kw})

        return PipedKernelManager

    def _pump(self) -> None:
        pending = b""
        with open(self._read, "rb", buffering=0) as pipe, self.log.open("ab") as log:
            while chunk := pipe.read(65536):
                log.write(chunk)
                log.flush()
                *segments, pending = _AFTER_LINE_END.split(pending + chunk)
                self._show(segments)
            self._show([pending])

    def _show(self, segments: list[bytes]) -> None:
        shown = [segment[len(TERMINAL_PREFIX):] for segment in segments if segment.startswith(TERMINAL_PREFIX)]
        if shown:
            terminal = self.terminal or sys.stderr
            terminal.write(b"".join(shown).decode(errors="replace"))
            terminal.flush()


__all__ = ["TERMINAL_PREFIX", "LOG_SUFFIX", "kernel_log", "KernelOutput"]
