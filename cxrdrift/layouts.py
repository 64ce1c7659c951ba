"""How datasets are laid out on disk, and how their folder and label names become the five classes.

Supported layouts (every one also as a CSV manifest `path,label,split[,lung_mask]`):

- split folders, `<root>/{train,val,test}/<class>/<image>` (val also `validation/`, `valid/`);
- inside a class folder, `images/` beside `masks/`, as the COVID-19 Radiography Database ships
  each class: the files in `masks/` are lung segmentations of the same-named images, kept as lung
  masks and never counted as images; any other subfolder is named by the check;
- unsplit class folders, `<root>/<class>/...` (the Radiography and TB Chest X-ray databases), which
  `cxrdrift data split` turns into a manifest.

Folder and label names map onto `CLASSES` through aliases (`COVID`, `TB`, `Lung_Opacity`, ...)
and an optional class map, `"Viral Pneumonia=Pneumonia,Bacterial Pneumonia=Pneumonia"`.
Nothing here decodes an image: `cxrdrift.data.check` does.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import pandas as pd

from .config import CLASSES

SPLITS: tuple[str, ...] = ("train", "val", "test")
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"}) | DICOM_SUFFIXES
MANIFEST_NAME = "manifest.csv"
MASKS_DIR = "masks"  # synthetic lesion masks at the root: <root>/masks/<split>/<class>/<id>.png
LUNG_MASKS_DIR = "lung_masks"  # synthetic lung fields at the root, same layout
MANIFEST_COLUMNS = ("path", "label", "split")
LUNG_MASK_COLUMN = "lung_mask"
CLASS_IMAGES_DIR, CLASS_MASKS_DIR = "images", "masks"  # inside a class folder (Radiography Database)
# Files operating systems leave in folders; never data, never worth a warning.
JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})
ALIAS_HINT = "(or an alias such as COVID, TB, Lung_Opacity)"
CLASS_MAP_HINT = ("folder or label names that are none of the five classes can be mapped onto one with "
                  "--class-map, e.g. --class-map 'Viral Pneumonia=Pneumonia'")

_CLASS_ALIASES: dict[str, str] = {
    "normal": "Normal",
    "pneumonia": "Pneumonia",
    "tuberculosis": "Tuberculosis", "tb": "Tuberculosis",
    "covid19": "COVID-19", "covid": "COVID-19",
    "lungopacity": "Lung Opacity", "opacity": "Lung Opacity",
}
_SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test",
}

ClassMap = Mapping[str, str]  # alias key of a folder or label name -> a class in CLASSES


class DatasetError(ValueError):
    """A dataset that cannot be used as given; the message says what is wrong and where."""


@dataclass(frozen=True)
class Problem:
    """One finding of the dataset check."""

    severity: str  # "error" (dataset unusable), "warning" or "info" (what was found, no fault)
    message: str
    paths: tuple[str, ...] = ()


def _alias_key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


def canonical_class(name: str, class_map: ClassMap | None = None) -> str:
    """The class in CLASSES that a folder or label name denotes: through `class_map`
    (`parse_class_map`) first, then the aliases (case, spaces, `_` and `-` ignored)."""
    key = _alias_key(name)
    if class_map and key in class_map:
        return class_map[key]
    try:
        return _CLASS_ALIASES[key]
    except KeyError:
        raise DatasetError(f"unknown class name {name!r}; expected one of {', '.join(CLASSES)} "
                           f"{ALIAS_HINT}") from None


def canonical_split(name: str) -> str:
    """'train', 'val' or 'test' for a split folder or manifest value (`validation`/`valid` mean val)."""
    try:
        return _SPLIT_ALIASES[_alias_key(name)]
    except KeyError:
        raise DatasetError(f"unknown split name {name!r}; expected train, val (or validation, "
                           "valid) or test") from None


def parse_class_map(text: str | None) -> dict[str, str]:
    """`"Viral Pneumonia=Pneumonia,COVID=COVID-19"` as {alias key of the name: class}; DatasetError
    when an entry is malformed, maps onto no class, or one name is mapped twice."""
    mapping: dict[str, str] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        name, sep, target = entry.partition("=")
        if not sep or not name.strip() or not target.strip():
            raise DatasetError(f"class map entry {entry.strip()!r} is not NAME=CLASS "
                               "(e.g. 'Viral Pneumonia=Pneumonia')")
        try:
            label = canonical_class(target.strip())
        except DatasetError:
            raise DatasetError(f"class map entry {entry.strip()!r}: {target.strip()!r} is none of "
                               f"{', '.join(CLASSES)}") from None
        key = _alias_key(name)
        if mapping.get(key, label) != label:
            raise DatasetError(f"class map maps {name.strip()!r} twice ({mapping[key]} and {label})")
        mapping[key] = label
    return mapping


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root` as a POSIX string (the sample id), or the path itself outside it."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


@dataclass
class Scan:
    """What a layout scan found: one record per image (sample_id, path, label, split), lung masks
    by sample id, problems, and the (split, class) pairs that have a folder."""

    records: list[dict[str, str]]
    problems: list[Problem]
    class_dirs: set[tuple[str, str]]
    lung_masks: dict[str, str]

    @classmethod
    def empty(cls, *problems: Problem) -> "Scan":
        return cls([], list(problems), set(), {})


def _files(folder: Path, problems: list[Problem], root: Path) -> Iterator[Path]:
    """Every file under `folder` (sorted, hidden names skipped); broken links and unreadable
    folders are reported as errors instead of skipped."""
    def unreadable(error: OSError) -> None:
        problems.append(Problem("error", f"cannot read folder {relative(Path(error.filename), root)}/: "
                                f"{error.strerror or error}", (str(error.filename),)))

    for current, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(current) / name
            if name.startswith(".") or name.lower() in JUNK_FILES:
                continue
            if path.is_symlink() and not path.exists():
                problems.append(Problem("error", f"broken symbolic link {relative(path, root)} (its target "
                                        f"{os.readlink(path)} does not exist); restore the target or remove "
                                        "the link", (str(path),)))
                continue
            yield path


def _scan_class(folder: Path, label: str, split: str, root: Path, scan: Scan) -> None:
    """Records of one class folder: its images (never its lung masks), lung masks paired by name."""
    problems = scan.problems
    subdirs = {d.name.lower(): d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")}
    masks_dir, images_dir = subdirs.get(CLASS_MASKS_DIR), subdirs.get(CLASS_IMAGES_DIR)
    # paired by name without suffix: a mask may be a PNG of a JPEG image
    masks: dict[str, Path] = {}  # name inside masks/ -> file
    to_pair: dict[str, str] = {}  # name inside images/ -> sample id
    found: dict[Path, int] = defaultdict(int)
    for path in _files(folder, problems, root):
        if masks_dir is not None and path.is_relative_to(masks_dir):
            if is_image(path):
                masks[relative(path.with_suffix(""), masks_dir)] = path
            continue
        rel = relative(path, root)
        if not is_image(path):
            problems.append(Problem("warning", f"not an image file (ignored): {rel}", (str(path),)))
            continue
        scan.records.append({"sample_id": rel, "path": str(path.resolve()), "label": label, "split": split})
        top = folder / path.relative_to(folder).parts[0]
        if top != path and top != images_dir:
            found[top] += 1
        if images_dir is not None and path.is_relative_to(images_dir):
            to_pair[relative(path.with_suffix(""), images_dir)] = rel
    for sub, n in found.items():
        problems.append(Problem("warning", f"class folder {relative(folder, root)}/ has a subfolder "
                                f"{sub.name}/ whose {n} image(s) are counted as {label!r}; move them up "
                                "or out if they are not radiographs of that class", (str(sub),)))
    if masks_dir is None:
        return
    if images_dir is None:
        problems.append(Problem("warning", f"class folder {relative(folder, root)}/ has {masks_dir.name}/ but no "
                                f"{CLASS_IMAGES_DIR}/ beside it: its {len(masks)} mask(s) are not counted as images "
                                "and pair with none", (str(masks_dir),)))
        return
    for name, sample_id in to_pair.items():
        if name in masks:
            scan.lung_masks[sample_id] = str(masks[name].resolve())
    unmasked = [sample_id for name, sample_id in to_pair.items() if name not in masks]
    if unmasked:
        problems.append(Problem("warning", f"{len(unmasked)} image(s) in {relative(images_dir, root)}/ have no "
                                f"lung mask of the same name in {masks_dir.name}/", tuple(unmasked)))
    orphans = sorted(set(masks) - set(to_pair))
    if orphans:
        problems.append(Problem("warning", f"{len(orphans)} lung mask(s) in {relative(masks_dir, root)}/ have no "
                                f"image of the same name in {images_dir.name}/ (ignored)",
                                tuple(str(masks[o]) for o in orphans)))


def _class_folders(parent: Path, root: Path, class_map: ClassMap | None,
                   problems: list[Problem]) -> Iterator[tuple[str, Path]]:
    """(class, folder) of every class folder in `parent`; loose files, unknown names and two
    folders of one class are reported."""
    seen: dict[str, Path] = {}
    for entry in sorted(parent.iterdir()):
        rel = relative(entry, root)
        if entry.name.startswith(".") or entry.name.lower() in JUNK_FILES:
            continue
        if not entry.is_dir():
            problems.append(Problem("warning", f"file {rel} lies outside any class folder and is ignored",
                                    (str(entry),)))
            continue
        try:
            label = canonical_class(entry.name, class_map)
        except DatasetError:
            problems.append(Problem("error", f"unknown class folder {rel}/; expected one of "
                                    f"{', '.join(CLASSES)} {ALIAS_HINT}", (str(entry),)))
            if not any(p.message == CLASS_MAP_HINT for p in problems):
                problems.append(Problem("info", CLASS_MAP_HINT))
            continue
        if label in seen:
            problems.append(Problem("error", f"folders {relative(seen[label], root)}/ and {rel}/ are both "
                                    f"class {label!r}; merge them", (str(seen[label]), str(entry))))
            continue
        seen[label] = entry
        yield label, entry


def _looks_unsplit(root: Path, class_map: ClassMap | None) -> list[str]:
    """Names of the root's folders that are class folders (an unsplit dataset has them on top)."""
    names = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            try:
                canonical_class(entry.name, class_map)
                names.append(entry.name)
            except DatasetError:
                pass
    return names


def _synthetic_lungs(root: Path, scan: Scan) -> None:
    """Pair records with `<root>/lung_masks/<sample_id>` (.png) where the generator wrote them."""
    if not (root / LUNG_MASKS_DIR).is_dir():
        return
    for record in scan.records:
        mask = (root / LUNG_MASKS_DIR / record["sample_id"]).with_suffix(".png")
        if mask.is_file():
            scan.lung_masks[record["sample_id"]] = str(mask.resolve())


def scan_folders(root: Path, class_map: ClassMap | None = None) -> Scan:
    """The records and structural problems of a `<root>/<split>/<class>/` tree."""
    scan = Scan.empty()
    split_dirs: dict[str, Path] = {}
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or entry.name.startswith(".") or entry.name in (MASKS_DIR, LUNG_MASKS_DIR):
            continue
        try:
            split = canonical_split(entry.name)
        except DatasetError:
            continue  # named below, with the rest of the root's folders
        if split in split_dirs:
            scan.problems.append(Problem("error", f"folders {split_dirs[split].name}/ and {entry.name}/ are both "
                                         f"the {split} split; keep one", (str(split_dirs[split]), str(entry))))
            continue
        split_dirs[split] = entry
    unsplit = _looks_unsplit(root, class_map)
    if unsplit and not split_dirs:
        return Scan.empty(Problem("error", f"{root} is not split into train/val/test: its folders "
                                  f"{', '.join(n + '/' for n in unsplit)} are classes; write a split with "
                                  f"`cxrdrift data split {root} --out {root / MANIFEST_NAME}` (add --group-by "
                                  "to keep each patient in one split)", (str(root),)))
    for entry in sorted(root.iterdir()):
        if (entry.is_dir() and not entry.name.startswith(".") and entry not in split_dirs.values()
                and entry.name not in (MASKS_DIR, LUNG_MASKS_DIR)):
            scan.problems.append(Problem("warning", f"folder {entry.name}/ is not a split (train, val, validation, "
                                         "valid, test) and is ignored", (str(entry),)))
    for split in SPLITS:
        if split not in split_dirs:
            scan.problems.append(Problem("error", f"split {split!r} is missing: expected a folder {root / split} "
                                         "(for val also validation/ or valid/)", (str(root),)))
    for split, split_dir in split_dirs.items():
        for label, folder in _class_folders(split_dir, root, class_map, scan.problems):
            scan.class_dirs.add((split, label))
            _scan_class(folder, label, split, root, scan)
    _synthetic_lungs(root, scan)
    return scan


def scan_unsplit(root: Path, class_map: ClassMap | None = None) -> Scan:
    """The records of a `<root>/<class>/` tree (split "" for every record)."""
    scan = Scan.empty()
    for label, folder in _class_folders(root, root, class_map, scan.problems):
        scan.class_dirs.add(("", label))
        _scan_class(folder, label, "", root, scan)
    return scan


def _lines(rows: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, rows[:limit]))
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")


def scan_manifest(manifest: Path, class_map: ClassMap | None = None) -> Scan:
    """Records and problems of a `path,label,split[,lung_mask]` CSV manifest."""
    base = manifest.parent
    try:
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        return Scan.empty(Problem("error", f"manifest {manifest} cannot be read as CSV: {exc}", (str(manifest),)))
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        return Scan.empty(Problem("error", f"manifest {manifest} lacks column(s) {', '.join(missing)}; it needs "
                                  f"the header {','.join(MANIFEST_COLUMNS)} (it has {','.join(table.columns)})",
                                  (str(manifest),)))
    scan = Scan.empty()
    bad_labels: dict[str, list[int]] = defaultdict(list)
    bad_splits: dict[str, list[int]] = defaultdict(list)
    absent: list[str] = []
    masks = table[LUNG_MASK_COLUMN] if LUNG_MASK_COLUMN in table.columns else pd.Series("", index=table.index)
    for row, (path_text, label_text, split_text, mask_text) in enumerate(
            zip(*(table[c] for c in MANIFEST_COLUMNS), masks), start=2):
        try:
            label = canonical_class(label_text, class_map)
        except DatasetError:
            bad_labels[label_text].append(row)
            continue
        try:
            split = canonical_split(split_text)
        except DatasetError:
            bad_splits[split_text].append(row)
            continue
        full = _under(base, path_text)
        if full.is_symlink() and not full.exists():
            scan.problems.append(Problem("error", f"broken symbolic link {path_text} (line {row}; its target "
                                         f"{os.readlink(full)} does not exist)", (str(full),)))
            continue
        if not full.is_file():
            absent.append(str(full))
            continue
        if not is_image(full):
            scan.problems.append(Problem("warning", f"not an image file (ignored): {path_text}", (str(full),)))
            continue
        sample_id = Path(path_text).as_posix()
        scan.records.append({"sample_id": sample_id, "path": str(full.resolve()), "label": label, "split": split})
        if mask_text:
            mask = _under(base, mask_text)
            if mask.is_file():
                scan.lung_masks[sample_id] = str(mask.resolve())
            else:
                absent.append(str(mask))
    if bad_labels:
        scan.problems.append(Problem("info", CLASS_MAP_HINT))
    for text, rows in bad_labels.items():
        scan.problems.append(Problem("error", f"manifest {manifest.name}: unknown label {text!r} on line(s) "
                                     f"{_lines(rows)}; expected one of {', '.join(CLASSES)}", (str(manifest),)))
    for text, rows in bad_splits.items():
        scan.problems.append(Problem("error", f"manifest {manifest.name}: unknown split {text!r} on line(s) "
                                     f"{_lines(rows)}; expected train, val or test", (str(manifest),)))
    if absent:
        scan.problems.append(Problem("error", f"manifest {manifest.name}: {len(absent)} listed file(s) do not "
                                     "exist", tuple(absent)))
    present = {r["split"] for r in scan.records}
    for split in SPLITS:
        if split not in present:
            scan.problems.append(Problem("error", f"split {split!r} is missing: manifest {manifest.name} has no "
                                         "usable rows for it", (str(manifest),)))
    return scan


def _under(base: Path, text: str) -> Path:
    path = Path(text)
    return path if path.is_absolute() else base / path
