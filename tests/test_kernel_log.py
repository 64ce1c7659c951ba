"""A quiet terminal: what a chapter's kernel process writes itself (ipykernel's transport warning,
native library lines) goes to the chapter's kernel log, not to the terminal of `cxrdrift book`."""
import nbformat
import pytest

from cxrdrift import book
from cxrdrift.kernel_output import kernel_log

CHAPTER = (
    "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n---\n\n"
    "```{{code-cell}} ipython3\n:tags: [parameters]\n\nprofile = \"smoke\"\n```\n\n"
    "```{{code-cell}} ipython3\nimport os, sys\n"
    "os.write(2, b'native noise on descriptor 2\\n')\n"
    "print('a warning the chapter explains', file=sys.stderr)\n"
    "os.write(2, b'[terminal] chapter one: 3 of 3 steps\\n');\n{extra}\n```\n")


def _chapter(tmp_path, extra: str = ""):
    source = tmp_path / "01_noise.md"
    source.write_text(CHAPTER.format(extra=extra))
    return source


def test_kernel_output_goes_to_its_log_and_progress_stays_on_the_terminal(tmp_path, capfd):
    output = book.execute_notebook(_chapter(tmp_path), tmp_path / "out" / "01_noise.ipynb", {"profile": "smoke"},
                                   cwd=tmp_path, progress_bar=False)
    terminal = capfd.readouterr()
    assert "IPKernelApp" not in terminal.err + terminal.out
    assert "native noise" not in terminal.err + terminal.out
    assert terminal.err == "chapter one: 3 of 3 steps\n"  # the progress channel, without its prefix
    log = (tmp_path / "out" / "01_noise.kernel.log").read_text()
    assert kernel_log(output) == tmp_path / "out" / "01_noise.kernel.log"
    assert "[IPKernelApp] WARNING | Kernel is running over TCP without encryption" in log
    assert "native noise on descriptor 2" in log
    cell = nbformat.read(output, as_version=4).cells[-1]
    assert [out.get("text") for out in cell.outputs] == ["a warning the chapter explains\n"]


def test_a_dead_kernels_error_names_its_log(tmp_path, capfd):
    with pytest.raises(book.NotebookExecutionError) as caught:
        book.execute_notebook(_chapter(tmp_path, "os._exit(3)"), tmp_path / "01_noise.ipynb",
                              {"profile": "smoke"}, cwd=tmp_path, progress_bar=False)
    log = tmp_path / "01_noise.kernel.log"
    assert "DeadKernelError" in caught.value.error and f"(the kernel's own output: {log})" in caught.value.error
    assert "native noise on descriptor 2" in log.read_text()
    assert "native noise" not in capfd.readouterr().err


def test_only_prefixed_lines_and_carriage_return_updates_reach_the_terminal(tmp_path):
    import io
    import os

    from cxrdrift.kernel_output import TERMINAL_PREFIX, KernelOutput

    terminal = io.StringIO()
    written = (b"I0000 native line\n\r" + TERMINAL_PREFIX + b"pre-training  10%\r" + TERMINAL_PREFIX
               + b"pre-training 100%\n[IPKernelApp] WARNING | noise\n" + TERMINAL_PREFIX + b"no newline at the end")
    with KernelOutput(tmp_path / "x.kernel.log", terminal) as output:
        for start in range(0, len(written), 7):  # a pipe delivers any chunks
            os.write(output.write_fd, written[start:start + 7])
    assert terminal.getvalue() == "pre-training  10%\rpre-training 100%\nno newline at the end"
    assert (tmp_path / "x.kernel.log").read_bytes() == written
