"""The run directory: where each artifact lives, atomic writes, and loading without pickle.

Every write goes to a temporary file in the same folder and is renamed into place, so an
interrupted run never leaves a half-written file under a finished name.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import RunConfig


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


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write plain (non-object) arrays; they load back with `allow_pickle=False`."""
    for name, array in arrays.items():
        if np.asarray(array).dtype == object:
            raise TypeError(f"{name}: object arrays would need pickle; store strings as str dtype")
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


# -- stamps: a derived table records what it was computed from ------------------------------------

_STAMP = "cxrdrift_stamp"


def stage_stamp(config: RunConfig, inputs: Sequence[Path], fields: Sequence[str]) -> str:
    """What a derived table depends on: the named config fields and the inputs' contents."""
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    values = config.to_dict()
    return json.dumps({"config": {f: values[f] for f in fields}, "inputs": digest.hexdigest()}, sort_keys=True)


def parquet_is_current(path: Path, stamp: str) -> bool:
    """True when `path` exists and was written by `write_stamped_parquet` with `stamp`."""
    if not path.exists():
        return False
    try:
        return pd.read_parquet(path, columns=[]).attrs.get(_STAMP) == stamp
    except (OSError, ValueError):
        return False


def write_stamped_parquet(path: Path, frame: pd.DataFrame, stamp: str) -> None:
    frame.attrs[_STAMP] = stamp  # pandas keeps attrs in the parquet metadata
    write_parquet(path, frame)


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
    def tables(self) -> Path:
        return self.root / "tables"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def model_dir(self, arch: str) -> Path:
        return self.root / "models" / arch

    def frozen_features(self, arch: str) -> Path:
        """Pooled backbone features of the frozen phase (training and test images), for the linear probe."""
        return self.model_dir(arch) / "frozen_features.npz"

    def weights(self, arch: str, epoch: int) -> Path:
        return self.model_dir(arch) / f"epoch_{epoch:02d}.weights.h5"

    def cams(self, arch: str, epoch: int) -> Path:
        return self.root / "cams" / arch / f"epoch_{epoch:02d}.npz"


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
    path = Path(run_dir) / "config.json"
    return read_json(path).get("resolved", {}) if path.exists() else {}
