"""The images of an audit as they come: the study's layouts with any class names, or a flat folder.

Layouts (checked in this order): `ROOT/manifest.csv` (`path,label,split`); split folders
`ROOT/<split>/<class>/<image>` (`validation`/`valid` mean val); class folders `ROOT/<class>/<image>`
(what `keras.utils.image_dataset_from_directory` reads); a flat folder of images, unlabelled.
Which model output is which class: the class folders (or manifest labels) in sorted order, the
convention `image_dataset_from_directory` assigns, unless the classes are given in output order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from . import data, dicom

KERAS_ORDER = "sorted class names (the keras.utils.image_dataset_from_directory convention)"
GIVEN_ORDER = "given in the models' output order (--classes)"


class AuditDataError(ValueError):
    """A dataset the audit cannot read or whose classes do not fit the models."""


@dataclass(frozen=True)
class AuditImages:
    """The audited images: `frame` has sample_id, path, label ('' when unlabelled) and
    label_index (-1 when unlabelled), in sample-id order; `classes` are in the models' output order."""

    root: Path
    frame: pd.DataFrame
    classes: tuple[str, ...]
    labelled: bool
    order: str
    layout: str


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in data.IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_dir(root: Path, split: str) -> Path | None:
    for entry in _visible_dirs(root):
        try:
            if data.canonical_split(entry.name) == split:
                return entry
        except data.DatasetError:
            continue
    return None


def _records(root: Path, split: str) -> tuple[list[dict[str, str]], str]:
    """(sample_id, path, label) records and the layout's name."""
    manifest = root / data.MANIFEST_NAME
    if manifest.is_file():
        table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
        table.columns = [str(c).strip().lower() for c in table.columns]
        missing = [c for c in data.MANIFEST_COLUMNS if c not in table.columns]
        if missing:
            raise AuditDataError(f"manifest {manifest} lacks column(s) {', '.join(missing)}")
        rows = table[[_safe_split(value) == split for value in table["split"]]]
        records = [{"sample_id": Path(p).as_posix(), "path": str((root / p).resolve()), "label": label}
                   for p, label in zip(rows["path"], rows["label"])]
        absent = [r["sample_id"] for r in records if not Path(r["path"]).is_file()]
        if absent:
            raise AuditDataError(f"manifest {manifest.name}: {len(absent)} listed file(s) do not exist "
                                 f"(first: {absent[0]})")
        return records, "manifest"
    split_dir = _split_dir(root, split)
    if split_dir is not None:
        return _class_records(root, split_dir), f"split folders, {split_dir.name}/ by class"
    if _images_in(root) and not _visible_dirs(root):
        return [{"sample_id": p.relative_to(root).as_posix(), "path": str(p.resolve()), "label": ""}
                for p in _images_in(root)], "flat folder (unlabelled)"
    if any(_images_in(d) for d in _visible_dirs(root)):
        return _class_records(root, root), "class folders"
    raise AuditDataError(f"no images in {root} for split {split!r}: expected {root}/manifest.csv, "
                         f"{root}/{split}/<class>/<image>, {root}/<class>/<image> or a folder of images "
                         f"({', '.join(sorted(data.IMAGE_SUFFIXES))})")


def _safe_split(value: str) -> str | None:
    try:
        return data.canonical_split(value)
    except data.DatasetError:
        return None


def _class_records(root: Path, folder: Path) -> list[dict[str, str]]:
    return [{"sample_id": p.relative_to(root).as_posix(), "path": str(p.resolve()), "label": class_dir.name}
            for class_dir in _visible_dirs(folder) for p in _images_in(class_dir)]


def class_order(found: Sequence[str], width: int, given: Sequence[str] | None,
                labelled: bool) -> tuple[tuple[str, ...], str]:
    """The class of each model output and how that order was chosen; an error when the data's
    classes do not fit the models' `width` outputs."""
    if given:
        classes = tuple(str(c).strip() for c in given)
        if len(classes) != width or len(set(classes)) != len(classes):
            raise AuditDataError(f"--classes names {len(classes)} distinct class(es) {list(classes)}, but the "
                                 f"models have {width} outputs: name each output's class once, in output order")
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise AuditDataError(f"the data has class(es) {unknown} that --classes {','.join(classes)} does not name")
        return classes, GIVEN_ORDER
    if not labelled:
        return tuple(f"class {i}" for i in range(width)), "output index (unlabelled data, no --classes)"
    classes = tuple(sorted(found))
    if len(classes) != width:
        raise AuditDataError(f"the data has {len(classes)} class(es) ({', '.join(classes)}) but the models output "
                             f"{width}: pass --classes with the {width} class names in the models' output order")
    return classes, KERAS_ORDER


def scan(root: str | Path, width: int, split: str = "test", classes: Sequence[str] | None = None) -> AuditImages:
    """The images of `split` under `root` (any layout above) with classes fitted to `width` outputs."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise AuditDataError(f"data folder {root} does not exist or is not a folder")
    split = _safe_split(split) or split
    records, layout = _records(root, split)
    if not records:
        raise AuditDataError(f"no images for split {split!r} in {root} ({layout})")
    frame = pd.DataFrame(records).sort_values("sample_id", kind="stable").reset_index(drop=True)
    labelled = bool((frame["label"] != "").all())
    order, how = class_order(sorted(set(frame["label"]) - {""}), width, classes, labelled)
    index = {name: i for i, name in enumerate(order)}
    frame["label_index"] = frame["label"].map(index).fillna(-1).astype("int64") if labelled else -1
    return AuditImages(root.resolve(), frame[["sample_id", "path", "label", "label_index"]], order, labelled,
                       how, layout)


def _readable_path(path: str) -> str | None:
    """What TensorFlow reads for `path`: the file itself, or a DICOM's decoded PNG (None if it has none)."""
    if not dicom.is_dicom(path):
        return path
    try:
        return str(dicom.decoded_png(path))
    except (dicom.DicomError, OSError, ValueError):
        return None


def undecodable(frame: pd.DataFrame) -> list[int]:
    """Positions of the rows whose file cannot be decoded as an image: TensorFlow's decoders, and
    for DICOM the study's (`cxrdrift.dicom`); every file is read once."""
    import tensorflow as tf

    def decodes(position, path):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        return position, tf.shape(image)  # the shape is returned so that the decode is not pruned

    readable = [(i, path) for i, path in enumerate(map(_readable_path, frame["path"].astype(str))) if path]
    if not readable:
        return list(range(len(frame)))
    positions, paths = zip(*readable)
    dataset = tf.data.Dataset.from_tensor_slices((np.array(positions), np.array(paths)))
    dataset = dataset.map(decodes, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
    good = set(int(position) for position, _ in dataset.as_numpy_iterator())
    return [position for position in range(len(frame)) if position not in good]


def batches(frame: pd.DataFrame, preprocess: Callable, image_size: int, batch_size: int):
    """Streamed (images, label_index) batches in `frame`'s order: the study's decoding and resizing
    (`data.make_dataset`), not cached, so memory does not grow with the dataset."""
    return data.make_dataset(frame, preprocess, image_size, batch_size, with_labels=True,
                             cache=False).as_numpy_iterator()


__all__ = ["AuditDataError", "AuditImages", "KERAS_ORDER", "GIVEN_ORDER", "class_order", "scan", "undecodable",
           "batches"]
