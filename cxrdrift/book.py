"""Execute the chapter notebooks with papermill and build the Jupyter Book.

`notebooks/NN_name.md` (Jupytext MyST) → `book/chapters/NN_name.ipynb` (executed, git-ignored)
→ `_build/html`. A chapter is executed again only when its source, its parameters, the chapters
before it or the run-directory files it saw have changed; what it was run with is recorded next
to it in `book/chapters/NN_name.run.json`.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from . import config as cfg
from . import progress, provenance
from .artifacts import atomic_path, read_json, read_resolved, write_json, write_text
from .kernel_output import KernelOutput, kernel_log

KERNEL_NAME = "cxrdrift"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": "cxrdrift (Python 3)", "language": "python"}
NOTEBOOKS_DIR = "notebooks"
CHAPTERS_DIR = "book/chapters"
HTML_DIR = "_build/html"
# Parameter cells are removed from the page (the run banner shows every value they set); the cell
# that calls `chapter.setup(` (imports and the banner) keeps its output and collapses its input, so
# a reader meets the story and the banner before the machinery.
PARAMETER_TAGS = ("parameters", "injected-parameters")
SETUP_CALL = "chapter.setup("
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
# The environment of every kernel papermill starts. Kernels inherit the caller's environment: an
# `MPLBACKEND` such as Agg there would silently drop every figure, so it is set to the inline backend.
# TensorFlow's own logger honours TF_CPP_MIN_LOG_LEVEL ("2": no INFO or WARNING lines). Progress bars
# of tqdm.auto would be ipywidgets in a kernel: a box that needs a
# kernel or a CDN widget manager in the static book, and nothing a reader needs; TQDM_DISABLE turns
# them off in chapters only (tqdm >= 4.66 reads TQDM_* defaults from the environment). The study's
# own bars (cxrdrift.progress) see progress.CHAPTER_ENV and go to this build's terminal instead.
KERNEL_ENV = {"MPLBACKEND": INLINE_BACKEND, "TF_CPP_MIN_LOG_LEVEL": "2", "TQDM_DISABLE": "1",
              progress.CHAPTER_ENV: progress.CHAPTER_VALUE}
# TensorFlow 2.2x logs through absl *before* absl is initialized ("WARNING: All log messages before
# absl::InitializeLog() ...", "I0000 ... oneDNN custom operations are on"): written by C++ straight
# to file descriptor 2, which no environment variable silences. ipykernel forwards what reaches the
# descriptors into the cell's output by default; with capture_fd_output off these lines go to the
# kernel's log instead (cxrdrift.kernel_output), while Python's own warnings (sys.stderr) still reach the cell,
# where the chapter can explain them.
KERNEL_ARGUMENTS = ("--IPKernelApp.capture_fd_output=False",)
# Run-directory content that chapters rewrite on every execution, so it cannot signal a change
# upstream (config.json is compared by its "config" section instead): the run's figures and
# tables, and every run's config.json and logs, a replicate's (replicates/seed_N/) included.
_VOLATILE = ("figures", "tables")
_RUN_RECORDS = frozenset({"config.json", "logs"})
_CHAPTER_NAME = re.compile(r"^\d\d_[A-Za-z0-9_]+\.md$")
# The protocol page's table of the machine and software that built the book (generated, git-ignored
# with the chapters; book/protocol.md includes it).
ENVIRONMENT_TABLE = "book/chapters/environment.md"


class _KnownParameters(logging.Filter):
    """Drop papermill's "Passed unknown parameter" warning: the chapters' parameters cell names
    only `profile`, and every other name was already checked against RunConfig."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Passed unknown parameter" not in record.getMessage()


logging.getLogger("papermill").addFilter(_KnownParameters())


class BookError(ValueError):
    """A chapter could not be executed or the book could not be built; the message says where."""


class NotebookExecutionError(BookError):
    """A cell of a chapter raised; the partially executed copy is kept at `partial`."""

    def __init__(self, notebook: str, cell_index: int | None, cell_source: str, error: str,
                 partial: Path | None) -> None:
        self.notebook, self.cell_index, self.cell_source = notebook, cell_index, cell_source
        self.error, self.partial = error, partial
        first_line = next((line for line in cell_source.splitlines() if line.strip()), "")
        cell = f"cell {cell_index} ({first_line.strip()!r})" if cell_index is not None else "kernel start"
        kept = f"; the partially executed copy is {partial}" if partial else ""
        super().__init__(f"notebook {notebook} failed at {cell}: {error}{kept}")


@dataclass(frozen=True)
class ChapterResult:
    """What happened to one chapter: `status` is "executed" or "skipped", `reason` says why."""

    name: str
    output: Path
    status: str
    reason: str
    wall_s: float


# -- parameters ------------------------------------------------------------------------------

def validate_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Check notebook parameters against RunConfig (papermill itself only warns on unknown names)
    and return them JSON-ready: `profile` plus RunConfig fields of the right types."""
    if "profile" not in parameters:
        raise cfg.ConfigError("notebook parameters must include 'profile'")
    values = cfg.coerce_overrides(parameters)
    overrides = {name: value for name, value in values.items() if name != "profile"}
    cfg.profile(values["profile"], **overrides)  # the combination must be a valid RunConfig
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


def notebook_parameters(config: cfg.RunConfig) -> dict[str, Any]:
    """`profile` plus every field of `config` that differs from its profile's default."""
    base_overrides = {"data_dir": config.data_dir} if config.data_dir else {}
    base = cfg.profile(config.profile, **base_overrides).to_dict()
    current = config.to_dict()
    parameters = {"profile": config.profile, **base_overrides}
    parameters.update({name: value for name, value in current.items() if base[name] != value})
    return validate_parameters(parameters)


# -- one notebook ----------------------------------------------------------------------------

def chapter_sources(notebooks_dir: str | Path = NOTEBOOKS_DIR) -> list[Path]:
    """The chapter sources `NN_name.md` in `notebooks_dir`, in chapter order."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise BookError(f"notebook folder {folder} does not exist")
    return sorted(p for p in folder.glob("*.md") if _CHAPTER_NAME.match(p.name))


def to_notebook(source: str | Path):
    """Read a Jupytext MyST chapter into a notebook set to run on the `cxrdrift` kernel."""
    import jupytext

    source = Path(source)
    notebook = jupytext.read(source)
    if not any("parameters" in cell.metadata.get("tags", []) for cell in notebook.cells):
        raise BookError(f"notebook {source.name} has no code cell tagged 'parameters'")
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    notebook.metadata.pop("jupytext", None)
    return notebook


def ensure_kernel(name: str = KERNEL_NAME) -> None:
    """Fail with the fix when the Jupyter kernel `name` is not installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise BookError(
            f"Jupyter kernel {name!r} is not installed: run `make setup`, or "
            f"`{sys.executable} -m ipykernel install --sys-prefix --name {name} "
            f"--display-name \"{KERNELSPEC['display_name']}\"`") from None


def execution_settings() -> dict[str, Any]:
    """How chapters are executed and tagged, recorded with each chapter: a chapter executed under
    other settings (e.g. before the kernel kept native log lines out of outputs) runs again."""
    return {"env": dict(KERNEL_ENV), "arguments": list(KERNEL_ARGUMENTS), "remove": list(PARAMETER_TAGS),
            "collapse": SETUP_CALL}


def _tag_machinery(path: Path) -> None:
    """Remove the parameter cells from the page and collapse the setup cell's input (see
    PARAMETER_TAGS); tags a chapter already sets are kept."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if any(tag in tags for tag in PARAMETER_TAGS):
            wanted = "remove-cell"
        elif SETUP_CALL in cell.source:
            wanted = "hide-input"
        else:
            continue
        if not any(tag in tags for tag in ("remove-cell", "remove-input", "hide-input", "hide-cell")):
            tags.append(wanted)
    nbformat.write(notebook, path)


@contextlib.contextmanager
def _kernel_environment() -> Iterator[None]:
    """Kernels started inside this block see KERNEL_ENV; the caller's environment is restored after."""
    previous = {name: os.environ.get(name) for name in KERNEL_ENV}
    os.environ.update(KERNEL_ENV)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute_notebook(source: str | Path, output: str | Path, parameters: Mapping[str, Any], *,
                     cwd: str | Path = ".", failed_dir: str | Path | None = None,
                     progress_bar: bool = True) -> Path:
    """Execute one chapter with papermill into `output`, written only when every cell succeeded.

    The parameters are validated first. On a failing cell the partial copy goes to
    `failed_dir/<output name>` (default `<output dir>/.failed`) and `NotebookExecutionError`
    names the notebook, the cell and the error. The kernel's own output goes to `kernel_log(output)`.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, output = Path(source), Path(output)
    params = validate_parameters(parameters)
    notebook = to_notebook(source)
    ensure_kernel()
    failed = Path(failed_dir or output.parent / ".failed") / output.name
    log = kernel_log(output)
    terminal = progress.WatchedTerminal(sys.stderr)
    with atomic_path(output) as running, _kernel_environment(), KernelOutput(log, terminal) as kernel_output, \
            progress.heartbeat(source.stem, terminal):
        try:
            papermill.execute_notebook(notebook, str(running), parameters=params,
                                       kernel_name=KERNEL_NAME, language="python",
                                       cwd=str(cwd), progress_bar=progress_bar,
                                       extra_arguments=list(KERNEL_ARGUMENTS),
                                       kernel_manager_class=kernel_output.manager_class())
        except PapermillExecutionError as error:
            partial = _keep_partial(running, failed)
            raise NotebookExecutionError(source.name, error.cell_index, error.source,
                                         f"{error.ename}: {error.evalue}", partial) from None
        except Exception as error:  # the kernel died or could not start
            partial = _keep_partial(running, failed)
            index, cell_source = _running_cell(partial)
            raise NotebookExecutionError(source.name, index, cell_source,
                                         f"{type(error).__name__}: {error} (the kernel's own output: {log})",
                                         partial) from error
        _tag_machinery(running)
        running.chmod(0o644)
    failed.unlink(missing_ok=True)
    return output


def _running_cell(partial: Path | None) -> tuple[int | None, str]:
    """The last cell papermill started in a partial copy (where a dead kernel stopped)."""
    if partial is None:
        return None, ""
    import nbformat

    cells = nbformat.read(partial, as_version=4).cells
    started = [i for i, cell in enumerate(cells) if cell.metadata.get("papermill", {}).get("start_time")]
    return (started[-1], cells[started[-1]].source) if started else (None, "")


def _keep_partial(running: Path, failed: Path) -> Path | None:
    if not running.exists() or running.stat().st_size == 0:
        return None
    failed.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(running, failed)
    return failed


# -- skip-if-unchanged ----------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _config_hash(config: cfg.RunConfig) -> str:
    """Hash of the resolved configuration the chapters run with. Taken from the config itself,
    not from config.json, which the first chapter to run rewrites: a changed profile default must
    rerun the chapters before that one too."""
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


def run_files(run_dir: Path) -> dict[str, list[int]]:
    """Size and modification time (ns) of every artifact in the run directory.

    A chapter's record keeps the stamps of the files it and the chapters before it produced
    (never those of later chapters, which may rewrite theirs); a changed stamp reruns it."""
    if not run_dir.is_dir():
        return {}
    snapshot = {}
    for path in sorted(run_dir.rglob("*")):
        relative = path.relative_to(run_dir)
        if (not path.is_file() or relative.parts[0] in _VOLATILE or _RUN_RECORDS & set(relative.parts)
                or path.name.startswith(".")):
            continue
        stat = path.stat()
        snapshot[relative.as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return snapshot


def _written_by(record: Path, before: Mapping[str, list[int]], after: Mapping[str, list[int]]) -> set[str]:
    """Run-directory files a chapter produced: changed during this execution, or recorded as its
    own by an earlier execution (an idempotent stage does not rewrite them)."""
    earlier = set(read_json(record).get("written", [])) if record.exists() else set()
    return {name for name, stamp in after.items() if before.get(name) != stamp} | (earlier & set(after))


def _written_by_chapters(out: Path, chapters: Sequence[Path]) -> set[str]:
    """Files the given (earlier) chapters produced, from their records."""
    names: set[str] = set()
    for chapter in chapters:
        record = out / f"{chapter.stem}.run.json"
        if record.exists():
            names.update(read_json(record).get("written", []))
    return names


def stale_reason(inputs: Mapping[str, Any], output: Path, record: Path, run_dir: Path) -> str | None:
    """Why the chapter must run again, or None when its output is up to date."""
    if not output.exists() or not record.exists():
        return "not executed yet"
    previous = read_json(record)
    for key, what in (("source_sha256", "source"), ("parameters", "parameters"), ("config_sha256", "configuration"),
                      ("kernel", "kernel"), ("execution", "execution settings"),
                      ("upstream", "earlier chapters")):
        if previous.get(key) != inputs[key]:
            return f"{what} changed"
    if previous.get("output_sha256") != _sha256(output):
        return "executed notebook changed"
    current = run_files(run_dir)
    changed = [name for name, stamp in previous.get("run_files", {}).items() if current.get(name) != stamp]
    if changed:
        return f"run directory changed ({changed[0]}{' …' if len(changed) > 1 else ''})"
    return None


def _matches(source: Path, wanted: str) -> bool:
    """A chapter is named by its stem ("04_layercam"), its number ("04") or its file name."""
    return source.stem == wanted or source.stem.startswith(f"{wanted}_") or source.name == wanted


def _select(sources: Sequence[Path], notebooks: Iterable[str] | None) -> list[Path]:
    if notebooks is None:
        return list(sources)
    wanted = list(notebooks)
    unknown = [w for w in wanted if not any(_matches(p, w) for p in sources)]
    if unknown:
        raise BookError(f"no chapter notebook {unknown[0]!r}; chapters are: "
                        f"{', '.join(p.stem for p in sources)}")
    return [p for p in sources if any(_matches(p, w) for w in wanted)]


def execute_notebooks(config: cfg.RunConfig, force: bool = False, notebooks: Iterable[str] | None = None,
                      *, root: str | Path = ".", notebooks_dir: str | Path | None = None,
                      out_dir: str | Path | None = None, progress_bar: bool = True) -> list[ChapterResult]:
    """Execute every chapter (or those named in `notebooks`, by stem or number, e.g. "04") in order.

    Parameters: `notebook_parameters(config)`. Notebooks run with `root` as working directory
    (where `config.run_dir` is relative to); outputs go to `out_dir` (default
    `<root>/book/chapters`), each with a `.run.json` record. Unchanged chapters are skipped
    unless `force`. Prints a line when a chapter starts and one with its wall time. Raises
    `NotebookExecutionError` on the first failing chapter.
    """
    root = Path(root)
    sources = chapter_sources(notebooks_dir or root / NOTEBOOKS_DIR)
    if not sources:
        raise BookError(f"no chapter notebooks NN_name.md in {notebooks_dir or root / NOTEBOOKS_DIR}")
    selected = _select(sources, notebooks)
    out = Path(out_dir or root / CHAPTERS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    params = notebook_parameters(config)
    run_dir = root / config.run_dir
    results = []
    for position, source in enumerate(sources):
        if source not in selected:
            continue
        output, record = out / f"{source.stem}.ipynb", out / f"{source.stem}.run.json"
        upstream = {p.stem: _sha256(out / f"{p.stem}.ipynb") for p in sources[:position]
                    if (out / f"{p.stem}.ipynb").exists()}
        inputs = {"source_sha256": _sha256(source), "parameters": params, "config_sha256": _config_hash(config),
                  "kernel": KERNEL_NAME, "execution": execution_settings(), "upstream": upstream}
        reason = "forced" if force else stale_reason(inputs, output, record, run_dir)
        label = f"[{position + 1}/{len(sources)}] {source.stem:<30}"
        if reason is None:
            results.append(ChapterResult(source.stem, output, "skipped", "unchanged", 0.0))
            print(f"{label} skipped (unchanged)", flush=True)
            continue
        print(f"{label} running ({reason}) ...", flush=True)
        before = run_files(run_dir)
        start = time.perf_counter()
        execute_notebook(source, output, params, cwd=root, failed_dir=out / ".failed",
                         progress_bar=progress_bar)
        wall = time.perf_counter() - start
        after = run_files(run_dir)
        written = _written_by(record, before, after)
        watched = written | _written_by_chapters(out, sources[:position])
        write_json(record, {**inputs, "output_sha256": _sha256(output),
                            "written": sorted(written),
                            "run_files": {name: after[name] for name in sorted(watched) if name in after},
                            "executed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "wall_s": round(wall, 2)})
        results.append(ChapterResult(source.stem, output, "executed", reason, wall))
        print(f"{label} executed in {wall:6.1f} s", flush=True)  # the reason is on its "running" line
    return results


# -- the book --------------------------------------------------------------------------------

def toc_files(root: str | Path = ".") -> list[str]:
    """Every document named in `<root>/_toc.yml` (root first), without suffix."""
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({key: value for key, value in toc.items() if key != "root"})
    return [str(Path(name).with_suffix("")) if Path(name).suffix in {".md", ".ipynb"} else name
            for name in files]


def write_environment_table(root: str | Path, run_dir: str | Path | None) -> Path:
    """Write ENVIRONMENT_TABLE, which the protocol page includes: the environment `run_dir`'s
    config.json records (`provenance.environment_markdown`). Without a run directory an existing
    table is kept. Rewritten only when it changes, so Sphinx reads the protocol page again only then."""
    path = Path(root) / ENVIRONMENT_TABLE
    if run_dir is None and path.exists():
        return path
    record = read_resolved(run_dir).get("environment") if run_dir is not None else None
    text = provenance.environment_markdown(record) + "\n"
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return path


def build_book(root: str | Path = ".", *, warnings_as_errors: bool = False,
               run_dir: str | Path | None = None) -> Path:
    """Build the Jupyter Book at `root` (execution off) and return its HTML folder.

    Every document of `_toc.yml` must exist (chapters are produced by `execute_notebooks`); the
    protocol page shows the environment `run_dir` recorded (`write_environment_table`).
    Sphinx warnings are printed; `warnings_as_errors` makes them fail the build.
    """
    root = Path(root).resolve()
    if not (root / "_toc.yml").exists() or not (root / "_config.yml").exists():
        raise BookError(f"{root} has no _toc.yml/_config.yml: not a Jupyter Book")
    write_environment_table(root, run_dir)
    missing = [name for name in toc_files(root)
               if not any((root / f"{name}{suffix}").exists() for suffix in (".md", ".ipynb", ".rst"))]
    if missing:
        raise BookError(f"the book needs {missing[0]} (.md or .ipynb), which does not exist; execute the "
                        f"notebooks first (`cxrdrift book --profile demo`)")
    executable = Path(sys.executable).with_name("jupyter-book")
    command = [str(executable) if executable.exists() else "jupyter-book", "build", str(root),
               "--path-output", str(root), "--builder", "html"]
    if warnings_as_errors:
        command += ["--warningiserror", "--keep-going"]
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=root, capture_output=True, text=True)
    log = completed.stdout + completed.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    for line in warnings:
        print(line, file=sys.stderr)
    if completed.returncode != 0:
        raise BookError(f"jupyter-book build failed (exit {completed.returncode}):\n"
                        + "\n".join(log.splitlines()[-30:]))
    html = root / HTML_DIR
    print(f"book built in {time.perf_counter() - start:6.1f} s ({len(warnings)} warnings): {html}",
          flush=True)
    return html


def run_book(config: cfg.RunConfig, force: bool = False, build: bool = True,
             root: str | Path = ".") -> Path | None:
    """Execute the chapters (skipping unchanged ones unless `force`), then build the book when
    `build`; returns the HTML folder, or None without a build."""
    start = time.perf_counter()
    # papermill's per-cell bar would share the terminal line with the kernels' own bars
    results = execute_notebooks(config, force=force, root=root, progress_bar=False)
    executed = sum(result.status == "executed" for result in results)
    print(f"notebooks: {executed} executed, {len(results) - executed} unchanged, "
          f"{time.perf_counter() - start:.1f} s", flush=True)
    return build_book(root, run_dir=Path(root) / config.run_dir) if build else None


__all__ = ["BookError", "NotebookExecutionError", "ChapterResult", "validate_parameters",
           "notebook_parameters", "chapter_sources", "to_notebook", "execute_notebook",
           "execute_notebooks", "stale_reason", "run_files", "toc_files", "write_environment_table", "build_book",
           "run_book"]
