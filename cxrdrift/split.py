"""`cxrdrift data split`: a stratified train/val/test split of an unsplit dataset, as a manifest.

Public chest X-ray sets mostly come unsplit (`<root>/<class>/...`: the COVID-19 Radiography
Database, the TB Chest X-ray Database). A careless split puts one patient's images, or two copies
of one image, on both sides and inflates the test score. Here the unit of assignment is a *group*:
images whose file names yield the same patient identifier (the first capture group of
`--group-by`, or its whole match) and byte-identical images are joined (union-find), and a group
always lands in one split. Groups are dealt in a seeded random order, each to the split whose
class counts lag their targets most, so every class is split in the asked proportions (up to whole
groups).
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import write_csv
from .config import CLASSES
from .layouts import (LUNG_MASK_COLUMN, SPLITS, ClassMap, DatasetError, Problem, canonical_split, relative,
                      scan_unsplit)


class SplitError(DatasetError):
    """A dataset or option `split_dataset` cannot work with."""


def _is_split(name: str) -> bool:
    try:
        canonical_split(name)
    except DatasetError:
        return False
    return True


def _fractions(val: float, test: float) -> dict[str, float]:
    for name, value in (("val", val), ("test", test)):
        if not 0.0 < value < 1.0:
            raise SplitError(f"--{name} {value} must lie strictly between 0 and 1")
    if val + test >= 1.0:
        raise SplitError(f"--val {val} and --test {test} leave nothing to train on; their sum must be below 1")
    return {"train": 1.0 - val - test, "val": val, "test": test}


def _group_keys(names: list[str], group_by: str | None) -> tuple[list[str], list[str]]:
    """Each image's group key (its own name when `group_by` is None or finds nothing) and the
    names the expression found nothing in."""
    if not group_by:
        return list(names), []
    try:
        pattern = re.compile(group_by)
    except re.error as exc:
        raise SplitError(f"--group-by {group_by!r} is not a regular expression: {exc}") from None
    keys, unmatched = [], []
    for name in names:
        match = pattern.search(Path(name).name)
        if match is None:
            unmatched.append(name)
            keys.append(name)
        else:
            keys.append("group:" + (match.group(1) if pattern.groups else match.group(0)))
    return keys, unmatched


def _components(keys: list[str], digests: list[str]) -> np.ndarray:
    """Component id per image of the graph joining images that share a group key or a digest."""
    parent = list(range(len(keys)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for links in (keys, digests):
        first: dict[str, int] = {}
        for i, value in enumerate(links):
            j = first.setdefault(value, i)
            parent[root(i)] = root(j)
    return np.array([root(i) for i in range(len(keys))])


def _assign(labels: np.ndarray, components: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Split per image: whole components, dealt in a seeded order to the lagging split."""
    totals = Counter(labels.tolist())
    target = {s: {c: fractions[s] * n for c, n in totals.items()} for s in SPLITS}
    have = {s: Counter() for s in SPLITS}
    order = np.random.default_rng(seed).permutation(np.unique(components))
    members = pd.Series(np.arange(len(labels))).groupby(components).apply(list)
    split_of = np.empty(len(labels), dtype=object)
    for component in order:
        rows = members[component]
        classes = Counter(labels[rows].tolist())

        def lag(split: str) -> float:  # how far this split is behind on the group's classes, relatively
            return sum(n * (target[split][c] - have[split][c]) / totals[c] for c, n in classes.items())

        chosen = max(SPLITS, key=lambda s: (lag(s), fractions[s]))
        have[chosen].update(classes)
        split_of[rows] = chosen
    return split_of


def _digest(path: str) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def split_dataset(root: str | Path, val: float = 0.1, test: float = 0.2, seed: int = 0,
                  group_by: str | None = None,
                  class_map: ClassMap | None = None) -> tuple[pd.DataFrame, list[Problem]]:
    """The manifest rows (path relative to `root`, label, split[, lung_mask]) of an unsplit
    `<root>/<class>/` dataset, and the layout's problems (warnings; SplitError on errors)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SplitError(f"dataset root {root} is not a folder")
    fractions = _fractions(val, test)
    split_dirs = sorted(d.name for d in root.iterdir() if d.is_dir() and _is_split(d.name))
    if split_dirs:
        raise SplitError(f"{root} is already split (it has {', '.join(d + '/' for d in split_dirs)}); "
                         f"check it with `cxrdrift data check {root}`")
    scan = scan_unsplit(root, class_map)
    errors = [p.message for p in scan.problems if p.severity == "error"]
    if errors:
        raise SplitError(f"{root} cannot be split: " + "; ".join(errors))
    if not scan.records:
        raise SplitError(f"{root} holds no images in class folders (<root>/<class>/...); "
                         f"classes are {', '.join(CLASSES)}")
    frame = pd.DataFrame(scan.records).sort_values("sample_id", kind="stable").reset_index(drop=True)
    keys, unmatched = _group_keys(frame["sample_id"].tolist(), group_by)
    problems = [p for p in scan.problems if p.severity != "error"]
    if unmatched:
        problems.append(Problem("warning", f"--group-by {group_by!r} found no group in {len(unmatched)} file "
                                "name(s); each is its own group", tuple(unmatched[:20])))
    components = _components(keys, [_digest(p) for p in frame["path"]])
    frame["split"] = _assign(frame["label"].to_numpy(), components, fractions, seed)
    counts = pd.crosstab(frame["label"], frame["split"]).reindex(columns=list(SPLITS), fill_value=0)
    counts = counts.reindex([c for c in CLASSES if c in counts.index])  # in CLASSES order
    for label, row in counts.iterrows():
        empty = [s for s in SPLITS if row[s] == 0]
        if empty:
            problems.append(Problem("warning", f"class {label!r} has no images in {' and '.join(empty)}: its "
                                    f"{row.sum()} image(s) in {len(set(components[frame['label'] == label]))} "
                                    "group(s) are too few for the asked shares"))
    manifest = frame[["sample_id", "label", "split"]].rename(columns={"sample_id": "path"})
    if scan.lung_masks:
        manifest[LUNG_MASK_COLUMN] = [relative(Path(scan.lung_masks[s]), root.resolve())
                                      if s in scan.lung_masks else "" for s in frame["sample_id"]]
    return manifest, problems


def split_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Split × class image counts of a manifest, with totals."""
    table = pd.crosstab(manifest["split"], manifest["label"])
    table = table.reindex(index=list(SPLITS), columns=[c for c in CLASSES if c in table.columns], fill_value=0)
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    table.index.name, table.columns.name = "split", "class"
    return table


def write_split(root: str | Path, out: str | Path, **options) -> tuple[pd.DataFrame, list[Problem]]:
    """`split_dataset(root, **options)` written to `out`, a CSV manifest whose paths are relative
    to its own folder (`<root>/manifest.csv` is what `cxrdrift data check ROOT` reads)."""
    root, out = Path(root).expanduser().resolve(), Path(out).expanduser().resolve()
    if out.suffix.lower() != ".csv":
        raise SplitError(f"--out {out} must be a .csv file")
    manifest, problems = split_dataset(root, **options)
    written = manifest.copy()
    for column in written.columns.intersection(["path", LUNG_MASK_COLUMN]):
        written[column] = [Path(os.path.relpath(root / p, out.parent)).as_posix() if p else ""
                           for p in written[column]]
    write_csv(out, written)
    return manifest, problems
