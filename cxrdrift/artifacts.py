"""The run directory: where each artifact lives, atomic writes, loading without pickle, and stamps.

Every write goes to a temporary file in the same folder and is renamed into place, so an
interrupted run never leaves a half-written file under a finished name.

A stamp says what an artifact was computed from: the `RunConfig` fields its stage lists in
`config.STAGE_FIELDS`, fingerprints of its input files, and facts such as the architecture and
epoch. It is stored inside the artifact (parquet metadata, a key of an `.npz` or a `.json`), and a
stage skips its work only when the stored stamp equals the one it would write now.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import pandas as pd

from .config import STAGE_FIELDS, RunConfig

STAMP_KEY = "cxrdrift_stamp"


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or "".join(target.suffixes),
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, data: Mapping[str, Any] | list, stamp: str | None = None) -> None:
    if stamp is not None:
        data = {**data, STAMP_KEY: stamp}
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(path: str | Path, frame: pd.DataFrame, stamp: str | None = None) -> None:
    if stamp is not None:
        frame = frame.copy(deep=False)
        frame.attrs[STAMP_KEY] = stamp  # pandas keeps attrs in the parquet metadata
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray], stamp: str | None = None) -> None:
    """Write plain (non-object) arrays; they load back with `allow_pickle=False`."""
    for name, array in arrays.items():
        if np.asarray(array).dtype == object:
            raise TypeError(f"{name}: object arrays would need pickle; store strings as str dtype")
    if stamp is not None:
        arrays = {**arrays, STAMP_KEY: np.array(stamp)}
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an `.npz`, without its stamp."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files if name != STAMP_KEY}


# -- stamps: an artifact records what it was computed from --------------------------------------

def fingerprint(files: Iterable[str | Path] | Mapping[str, str | Path]) -> str:
    """A hash of files' names and contents, in order: each file's own name, or the name a mapping
    gives it (a sample id). Where the files lie does not count, so a copied or moved run directory
    keeps its fingerprints."""
    named = files.items() if isinstance(files, Mapping) else ((Path(path).name, path) for path in files)
    digest = hashlib.sha256()
    for name, path in named:
        digest.update(f"{name}\0".encode())
        with Path(path).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def stamp(config: RunConfig, stage: str, inputs: Iterable[Path] = (), **facts: Any) -> str:
    """What an artifact of `stage` depends on: the fields `config.STAGE_FIELDS[stage]` names, the
    fingerprint of its input files and `facts` (JSON values: an architecture, an epoch, ...)."""
    values = config.to_dict()
    return json.dumps({"stage": stage, "config": {name: values[name] for name in STAGE_FIELDS[stage]},
                       "inputs": fingerprint(inputs), **facts}, sort_keys=True)


def stored_stamp(path: Path) -> str | None:
    """The stamp written into `path` (a `.parquet`, `.npz` or `.json`), or None: no file, no stamp,
    or a file that cannot be read."""
    path = Path(path)
    if path.suffix not in {".parquet", ".npz", ".json"}:
        raise ValueError(f"{path.name}: stamps are kept in .parquet, .npz and .json files only")
    if not path.is_file():
        return None
    try:
        if path.suffix == ".parquet":
            stored = pd.read_parquet(path, columns=[]).attrs.get(STAMP_KEY)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                stored = str(data[STAMP_KEY]) if STAMP_KEY in data.files else None
        else:
            stored = read_json(path).get(STAMP_KEY)
    except (OSError, ValueError, KeyError, AttributeError):  # unreadable: not current, computed again
        return None
    return stored if isinstance(stored, str) else None


def is_current(path: Path, expected: str) -> bool:
    """True when `path` exists and was written with the stamp `expected`."""
    return stored_stamp(path) == expected


@dataclass(frozen=True)
class RunPaths:
    """Every artifact's location inside one run directory (see DESIGN.md, "Run directory")."""

    root: Path

    @classmethod
    def of(cls, config: RunConfig) -> "RunPaths":
        return cls(Path(config.run_dir))

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.parquet"

    @property
    def true_positives(self) -> Path:
        return self.root / "true_positives.parquet"

    @property
    def drift(self) -> Path:
        return self.root / "drift.parquet"

    @property
    def localization(self) -> Path:
        return self.root / "localization.parquet"

    @property
    def randomization(self) -> Path:
        return self.root / "randomization.parquet"

    @property
    def trajectory(self) -> Path:
        return self.root / "trajectory.parquet"

    @property
    def noise_floor(self) -> Path:
        return self.root / "noise_floor.parquet"

    @property
    def evidence(self) -> Path:
        return self.root / "evidence.parquet"

    @property
    def evidence_threshold_free(self) -> Path:
        return self.root / "evidence_threshold_free.parquet"

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def training_log(self) -> Path:
        return self.logs / "training.log"

    def model_dir(self, arch: str) -> Path:
        return self.root / "models" / arch

    def last_weights(self, arch: str) -> Path:
        """Weights after the last finished epoch (resume)."""
        return self.model_dir(arch) / "last.weights.h5"

    def last_optimizer(self, arch: str) -> Path:
        """The optimizer's variables after the last finished epoch (resume)."""
        return self.model_dir(arch) / "last.optimizer.npz"

    def training_state(self, arch: str) -> Path:
        """The last finished epoch and the training stamp; written after the epoch's other files."""
        return self.model_dir(arch) / "state.json"

    def weights_description(self, arch: str) -> Path:
        """What the architecture started from (`weights.resolve_weights`), kept for later runs."""
        return self.model_dir(arch) / "weights.json"

    def frozen_features(self, arch: str) -> Path:
        """Pooled backbone features of the frozen phase (training and test images), for the linear probe."""
        return self.model_dir(arch) / "frozen_features.npz"

    def weights(self, arch: str, epoch: int) -> Path:
        return self.model_dir(arch) / f"epoch_{epoch:02d}.weights.h5"

    def cams(self, arch: str, epoch: int) -> Path:
        return self.root / "cams" / arch / f"epoch_{epoch:02d}.npz"

    def randomized_maps(self, arch: str) -> Path:
        """The raw maps of the late checkpoint with its top re-initialized (`cxrdrift.randomization`)."""
        return self.root / "randomization" / f"{arch}.npz"


def write_config(config: RunConfig, extra: Mapping[str, Any] | None = None) -> Path:
    """Write `<run_dir>/config.json`: the resolved config plus facts found while running
    (how weights were resolved, dataset counts, ...) under `"resolved"`, merged with what is there."""
    paths = RunPaths.of(config)
    resolved: dict[str, Any] = {}
    if paths.config.exists():
        previous = read_json(paths.config)
        if previous.get("config") == config.to_dict():
            resolved = previous.get("resolved", {})
    resolved.update(extra or {})
    write_json(paths.config, {"config": config.to_dict(), "resolved": resolved})
    return paths.config


def read_resolved(run_dir: str | Path) -> dict[str, Any]:
    """The `"resolved"` facts recorded in a run's config.json (empty if none yet)."""
    path = RunPaths(Path(run_dir)).config
    return read_json(path).get("resolved", {}) if path.exists() else {}
