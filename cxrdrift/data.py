"""The dataset: the index, the dataset check, tf.data pipelines, class counts and weights.

Layouts (split folders, the Radiography Database's `images/` + `masks/`, CSV manifests) and class
names are read by `cxrdrift.layouts`; DICOM pixels by `cxrdrift.dicom`. Synthetic datasets also
carry lesion masks in `<root>/masks/<split>/<class>/<id>.png` and, when generated, lung fields in
`<root>/lung_masks/...`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from . import dicom
from .artifacts import RunPaths, read_json, read_resolved, write_config
from .config import CLASSES, RunConfig
# canonical_class, canonical_split, IMAGE_SUFFIXES and MANIFEST_COLUMNS are also data's public names
from .layouts import (IMAGE_SUFFIXES, MANIFEST_COLUMNS, MANIFEST_NAME, MASKS_DIR, SPLITS, ClassMap,  # noqa: F401
                      DatasetError, Problem, Scan, canonical_class, canonical_split, parse_class_map, scan_folders,
                      scan_manifest)
from .synth import PARAMS_FILE

# The paper's Table 1: test-set images per class (REPORTED.md).
PAPER_TEST_COUNTS: dict[str, int] = {
    "Normal": 317, "Pneumonia": 855, "Tuberculosis": 141, "COVID-19": 839, "Lung Opacity": 1202,
}
# Splits without a class are fatal for training (train) or for the weighted test metrics (test);
# a class missing from validation only makes validation accuracy less informative.
_REQUIRED_CLASS_SPLITS = ("train", "test")
# Images whose short side is below this are named by the check: the pipeline would upsample a
# thumbnail to the model's input without a word (prepare uses a quarter of image_size when smaller).
MIN_SIDE = 64

FRAME_COLUMNS = ("sample_id", "path", "label", "label_index", "split")


# ---------------------------------------------------------------------------------------------
# Index
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetIndex:
    """Every usable image of a dataset: `frame` has one row per image (see FRAME_COLUMNS)."""

    root: Path
    frame: pd.DataFrame
    lung_masks: Mapping[str, str] = field(default_factory=dict)  # sample_id -> lung mask file

    def split(self, name: str) -> pd.DataFrame:
        """The rows of one split, sorted by sample id (a fixed order)."""
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; choose one of {', '.join(SPLITS)}")
        rows = self.frame[self.frame["split"] == name]
        return rows.sort_values("sample_id", kind="stable").reset_index(drop=True)

    def counts(self) -> pd.DataFrame:
        """Images per split (rows, in SPLITS order) and class (columns, in CLASSES order)."""
        return count_table(self.frame)

    def mask_path(self, sample_id: str) -> Path | None:
        """The lesion mask of a sample (`<root>/masks/<sample_id>` as .png), or None if absent."""
        path = (self.root / MASKS_DIR / sample_id).with_suffix(".png")
        return path if path.is_file() else None

    @cached_property
    def identity(self) -> str:
        """What the dataset holds, wherever it lies: a digest of every image's sample id, split,
        label and path inside the dataset, and, for a generated dataset, of the generator's
        parameters (its version, seed, size and counts). Training stamps this instead of
        `data_dir`, so a moved or copied run, or a replicate reading its main run's data, stays
        current, while relabelled, added or regenerated images make it stale."""
        frame = self.frame.assign(path=[os.path.relpath(path, self.root) for path in self.frame["path"]])
        digest = hashlib.sha256(frame[["sample_id", "split", "label", "path"]].to_csv(index=False).encode())
        generator = self.root / PARAMS_FILE
        if generator.is_file():  # lung masks add files and change no image (synth_lung_masks is unstamped)
            params = {k: v for k, v in read_json(generator).items() if k != "lung_masks"}
            digest.update(json.dumps(params, sort_keys=True).encode())
        return digest.hexdigest()

    def lung_mask_path(self, sample_id: str) -> Path | None:
        """The lung mask of a sample (Radiography Database `masks/`, a manifest's lung_mask
        column, or the generator's `lung_masks/`), or None."""
        path = self.lung_masks.get(sample_id)
        return Path(path) if path else None


def count_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Split × class image counts with every split and class present (zeros included)."""
    table = pd.crosstab(frame["split"], frame["label"]) if len(frame) else pd.DataFrame()
    table = table.reindex(index=list(SPLITS), columns=list(CLASSES), fill_value=0).fillna(0)
    table.index.name, table.columns.name = "split", "class"
    return table.astype(int)


@dataclass
class CheckReport:
    """What `check` found: the split × class counts and every problem."""

    root: Path
    counts: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when the dataset can be used (warnings allowed, no errors)."""
        return not self.errors


def _frame(records: list[dict[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=["sample_id", "path", "label", "split"])
    frame["label_index"] = frame["label"].map({c: i for i, c in enumerate(CLASSES)}).astype("int64")
    frame["split_order"] = frame["split"].map({s: i for i, s in enumerate(SPLITS)})
    frame = frame.sort_values(["split_order", "sample_id"], kind="stable").reset_index(drop=True)
    return frame[list(FRAME_COLUMNS)]


def _coverage_problems(frame: pd.DataFrame, class_dirs: set[tuple[str, str]], root: Path) -> list[Problem]:
    """A class with no images in a split that exists: fatal in train and test, a warning in val."""
    problems = []
    counts = count_table(frame)
    present = set(frame["split"])
    for split in SPLITS:
        if split not in present and not any(s == split for s, _ in class_dirs):
            continue
        for label in CLASSES:
            if counts.loc[split, label]:
                continue
            severity = "error" if split in _REQUIRED_CLASS_SPLITS else "warning"
            where = " (its folder is empty)" if (split, label) in class_dirs else ""
            problems.append(Problem(severity, f"empty class: split {split!r} has no {label!r} images{where}",
                                    (str(root / split),)))
    return problems


def _scan(root: str | Path, class_map: ClassMap | None = None) -> tuple[Path, Scan]:
    """The dataset's base folder and layout scan, coverage problems included (nothing is decoded)."""
    root = Path(root).expanduser()
    if not root.exists():
        return root, Scan.empty(Problem("error", f"dataset root {root} does not exist", (str(root),)))
    if root.is_file():
        if root.suffix.lower() != ".csv":
            return root, Scan.empty(Problem("error", f"{root} is a file but not a .csv manifest; pass a "
                                            "dataset folder or a manifest.csv", (str(root),)))
        manifest, base = root, root.parent
    else:
        manifest, base = root / MANIFEST_NAME, root
    try:
        scan = scan_manifest(manifest, class_map) if manifest.is_file() else scan_folders(base, class_map)
    except OSError as exc:
        return base, Scan.empty(Problem("error", f"cannot read dataset {root}: {exc.strerror or exc} "
                                        f"({exc.filename})", (str(root),)))
    scan.problems += _coverage_problems(_frame(scan.records), scan.class_dirs, base)
    return base, scan


def load_index(root: str | Path, class_map: ClassMap | str | None = None) -> DatasetIndex:
    """Index a dataset (folders, `<root>/manifest.csv`, or a .csv path), names mapped through
    `class_map` (`layouts.parse_class_map`'s text or result); DatasetError if unusable."""
    if isinstance(class_map, str):
        class_map = parse_class_map(class_map)
    base, scan = _scan(root, class_map)
    errors = [p.message for p in scan.problems if p.severity == "error"]
    if errors:
        raise DatasetError(f"dataset {Path(root)} cannot be used: " + "; ".join(errors))
    return DatasetIndex(root=base.resolve(), frame=_frame(scan.records), lung_masks=scan.lung_masks)


def run_index(config: RunConfig) -> DatasetIndex:
    """The index of a run's dataset (its data_dir, or the generated one) under its class map."""
    return load_index(config.data_dir or RunPaths.of(config).data, config.class_map)


# ---------------------------------------------------------------------------------------------
# Check
# ---------------------------------------------------------------------------------------------

_DECODABLE_FORMATS = {"PNG", "JPEG", "MPO"}
_SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8": "JPEG"}


def _inspect_image(path: str) -> tuple[str | None, str | None, tuple[int, int]]:
    """(sha1, None, (height, width)) or (None, why the file cannot be decoded, (0, 0)). The hash
    is of the bytes, for DICOM of the decoded pixels (copies differ in their UIDs)."""
    from PIL import Image, UnidentifiedImageError

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})", (0, 0)
    if not data:
        return None, "is empty (0 bytes)", (0, 0)
    if dicom.is_dicom(path):
        try:
            pixels = dicom.read(data)
        except dicom.DicomError as exc:
            return None, f"DICOM {exc}", (0, 0)
        return hashlib.sha1(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest(), None, pixels.shape
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in _DECODABLE_FORMATS:
                return None, f"is a {image.format} file, not PNG, JPEG or DICOM", (0, 0)
            image.load()
            width, height = image.size
    except UnidentifiedImageError:
        for signature, name in _SIGNATURES.items():
            if data.startswith(signature):
                return None, f"is corrupt (a damaged or truncated {name} file)", (0, 0)
        return None, "is not a PNG or JPEG image (unrecognised content)", (0, 0)
    except (OSError, ValueError, SyntaxError) as exc:
        return None, f"is corrupt ({exc})", (0, 0)
    return hashlib.sha1(data).hexdigest(), None, (height, width)


def _content_problems(frame: pd.DataFrame, workers: int, min_side: int) -> list[Problem]:
    """Decode every image; report corrupt files, images smaller than `min_side` px on the short
    side, and identical images across (or within) splits."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(_inspect_image, frame["path"], chunksize=64))
    problems: list[Problem] = []
    by_hash: dict[str, list[int]] = defaultdict(list)
    small: list[int] = []
    for row, (digest, reason, shape) in enumerate(results):
        if reason is not None:
            path = frame["path"].iat[row]
            problems.append(Problem("error", f"unreadable image {frame['sample_id'].iat[row]}: {reason}",
                                    (path,)))
            continue
        by_hash[digest].append(row)
        if min(shape) < min_side:
            small.append(row)
    if small:
        named = ", ".join(f"{frame['sample_id'].iat[r]} ({results[r][2][1]} x {results[r][2][0]} px)"
                          for r in small[:10]) + (f" and {len(small) - 10} more" if len(small) > 10 else "")
        problems.append(Problem("warning", f"{len(small)} image(s) smaller than {min_side} px on the short side, "
                                f"which the pipeline would upsample to the model's input: {named}",
                                tuple(frame["path"].iat[r] for r in small)))
    for rows in by_hash.values():
        if len(rows) < 2:
            continue
        ids = [frame["sample_id"].iat[r] for r in rows]
        splits = sorted({frame["split"].iat[r] for r in rows}, key=SPLITS.index)
        paths = tuple(frame["path"].iat[r] for r in rows)
        if len(splits) > 1:
            problems.append(Problem("error", f"the same image is in splits {' and '.join(splits)}: "
                                    f"{', '.join(ids)}", paths))
        else:
            problems.append(Problem("warning", f"the same image appears {len(rows)} times in split "
                                    f"{splits[0]!r}: {', '.join(ids)}", paths))
    return problems


def check(root: str | Path, workers: int | None = None, class_map: ClassMap | str | None = None,
          min_side: int = MIN_SIDE) -> CheckReport:
    """Scan a dataset, decode every image and list every problem (never raises for bad data
    except a malformed `class_map`)."""
    if isinstance(class_map, str):
        class_map = parse_class_map(class_map)
    base, scan = _scan(root, class_map)
    frame, problems = _frame(scan.records), scan.problems
    if len(frame):
        problems += _content_problems(frame, workers or min(8, (os.cpu_count() or 1) + 2), min_side)
    if scan.lung_masks:
        problems.append(Problem("info", f"lung masks: {len(scan.lung_masks)} of {len(frame)} images have one "
                                "(kept for scoring, never counted as images)"))
    severity_order = {"error": 0, "warning": 1, "info": 2}
    problems.sort(key=lambda p: severity_order[p.severity])
    return CheckReport(root=base, counts=count_table(frame), problems=problems)


def format_report(report: CheckReport, max_paths: int = 5) -> str:
    """The check's findings as text: the counts table, every problem with its files, the verdict."""
    counts = report.counts.copy()
    counts["total"] = counts.sum(axis=1)
    counts.loc["total"] = counts.sum(axis=0)
    lines = [f"Dataset: {report.root}", ""]
    if counts.loc["total", "total"]:
        lines += [counts.to_string(), ""]
    for problem in report.problems:
        lines.append(f"{problem.severity.upper()}: {problem.message}")
        shown = [p for p in problem.paths if p not in problem.message][:max_paths]
        lines += [f"    {p}" for p in shown]
        hidden = len([p for p in problem.paths if p not in problem.message]) - len(shown)
        if hidden > 0:
            lines.append(f"    ... and {hidden} more")
    n_err, n_warn = len(report.errors), len(report.warnings)
    verdict = (f"OK: the dataset is usable ({n_warn} warning(s))." if report.ok else
               f"NOT USABLE: {n_err} error(s), {n_warn} warning(s).")
    lines.append(verdict)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Class weights and tables
# ---------------------------------------------------------------------------------------------

def inverse_frequency_weights(counts: Mapping[str, int]) -> dict[str, float]:
    """`w_c = (1/n_c) / sum_k (1/n_k)` for each class in `counts` (class name -> images), in CLASSES order."""
    counts = dict(counts)
    unknown = [c for c in counts if c not in CLASSES]
    if unknown:
        raise DatasetError(f"unknown class {unknown[0]!r} in counts; classes are {', '.join(CLASSES)}")
    if not counts:
        raise DatasetError("class counts are empty; need at least one class with images")
    for name, n in counts.items():
        if isinstance(n, (bool, np.bool_)) or not float(n).is_integer() or n <= 0:
            raise DatasetError(f"class {name!r} has count {n!r}; inverse-frequency weights need a "
                               "positive whole number of images per class")
    inverse = {c: 1.0 / float(counts[c]) for c in CLASSES if c in counts}
    total = sum(inverse.values())
    return {c: v / total for c, v in inverse.items()}


def class_table(test_counts: Mapping[str, int]) -> pd.DataFrame:
    """Table 1's layout: test images per class, their percentage and inverse-frequency weight."""
    weights = inverse_frequency_weights(test_counts)
    n = pd.Series({c: int(test_counts[c]) for c in weights}, name="test images")
    table = pd.DataFrame({"test images": n, "%": 100.0 * n / n.sum(), "weight": pd.Series(weights)})
    table.index.name = "class"
    return table


# ---------------------------------------------------------------------------------------------
# tf.data pipelines
# ---------------------------------------------------------------------------------------------

def _decode_resized(path, image_size: int):
    """Read, decode (PNG/JPEG; gray, RGB or RGBA) to 3 channels, bilinear resize, uint8."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, dtype=tf.uint8, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _augmenter(seed: int):
    """Mild random shift, zoom, brightness and contrast on 0..255 float batches.

    No horizontal flip: a chest radiograph's left and right are anatomically different (heart
    shadow on the left), and several lesion patterns have a typical side, so mirroring would
    create images that do not occur."""
    import keras

    return keras.Sequential([
        keras.layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", seed=seed),
        keras.layers.RandomZoom(0.05, fill_mode="nearest", seed=seed + 1),
        keras.layers.RandomBrightness(0.1, value_range=(0.0, 255.0), seed=seed + 2),
        keras.layers.RandomContrast(0.1, value_range=(0.0, 255.0), seed=seed + 3),
    ], name="augment")


def _uint8_dataset(frame: pd.DataFrame, image_size: int):
    import tensorflow as tf

    # DICOM files are read through their decoded 8-bit PNGs (decoded once, cached on disk): the
    # training pipeline is rebuilt every epoch, and pydicom in the graph would decode every epoch
    paths = tf.constant(dicom.decoded_paths(frame["path"].astype(str).tolist()), dtype=tf.string)
    labels = tf.constant(frame["label_index"].to_numpy(dtype=np.int32), dtype=tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    return dataset.map(lambda p, y: (_decode_resized(p, image_size), y),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def make_dataset(frame: pd.DataFrame, preprocess: Callable[[Any], Any], image_size: int, batch_size: int, *,
                 shuffle: bool = False, augment: bool = False, seed: int = 0,
                 with_labels: bool = True, cache: bool = True):
    """Batches of `(images, label_index)`: float32 images after `preprocess` (a backbone's
    `preprocess_input`, `cxrdrift.models.preprocess_input(arch)`), int32 labels; in `frame`'s order
    unless `shuffle`. Decoded images are cached in memory."""
    import tensorflow as tf

    _check_frame(frame)
    dataset = _uint8_dataset(frame, image_size)
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(max(len(frame), 1), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    augmenter = _augmenter(seed) if augment else None

    def to_model_input(images, labels):
        images = tf.cast(images, tf.float32)
        if augmenter is not None:
            images = tf.clip_by_value(augmenter(images, training=True), 0.0, 255.0)
        images = tf.cast(preprocess(images), tf.float32)
        return (images, labels) if with_labels else images

    dataset = dataset.map(to_model_input, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def load_images(frame: pd.DataFrame, image_size: int, batch_size: int = 64) -> np.ndarray:
    """Raw RGB images of `frame`'s rows, in order, as uint8 (N, S, S, 3) (the model input before
    `preprocess_input`)."""
    _check_frame(frame)
    if len(frame) == 0:
        return np.zeros((0, image_size, image_size, 3), np.uint8)
    dataset = _uint8_dataset(frame, image_size).map(lambda x, y: x).batch(batch_size)
    return np.concatenate(list(dataset.as_numpy_iterator()))


def _read_masks(paths: list[Path | None], image_size: int) -> np.ndarray | None:
    """Masks as bool (N, S, S) (nearest resize, nonzero is inside), or None when any is missing."""
    from PIL import Image

    if not paths or any(p is None for p in paths):
        return None
    masks = []
    for path in paths:
        with Image.open(path) as mask:
            resized = mask.convert("L").resize((image_size, image_size), Image.Resampling.NEAREST)
            masks.append(np.asarray(resized) > 0)
    return np.stack(masks)


def load_masks(index: DatasetIndex, frame: pd.DataFrame, image_size: int) -> np.ndarray | None:
    """Lesion masks of `frame`'s rows as bool (N, S, S) (nearest resize), or None when any is missing."""
    return _read_masks([index.mask_path(s) for s in frame["sample_id"]], image_size)


def load_lung_masks(index: DatasetIndex, frame: pd.DataFrame, image_size: int) -> np.ndarray | None:
    """Lung masks of `frame`'s rows as bool (N, S, S) (nearest resize), or None when any is missing."""
    return _read_masks([index.lung_mask_path(s) for s in frame["sample_id"]], image_size)


def examples_per_class(frame: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Up to `n` random rows of each class, classes in CLASSES order (for figures)."""
    picked = frame.sample(frac=1.0, random_state=seed).groupby("label_index").head(n)
    return picked.sort_values(["label_index", "sample_id"], kind="stable").reset_index(drop=True)


def _check_frame(frame: pd.DataFrame) -> None:
    missing = [c for c in ("path", "label_index") if c not in frame.columns]
    if missing:
        raise DatasetError(f"the frame lacks column(s) {', '.join(missing)}; pass rows of a DatasetIndex")


def linear_pixel_accuracy(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                          test_labels: np.ndarray, size: int = 32, components: int = 64, seed: int = 0) -> float:
    """Test accuracy of a linear classifier on raw pixels: logistic regression on the first
    `components` principal components of `size`×`size` grayscale images (uint8, (N, H, W) or
    (N, H, W, C)). How far a linear model gets without learned features."""
    from PIL import Image
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def features(images: np.ndarray) -> np.ndarray:
        gray = images.mean(axis=-1) if images.ndim == 4 else images
        small = [np.asarray(Image.fromarray(g.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR))
                 for g in gray]
        return np.stack(small).reshape(len(images), -1) / 255.0

    x_train = features(train_images)
    model = make_pipeline(StandardScaler(), PCA(min(components, *x_train.shape), random_state=seed),
                          LogisticRegression(max_iter=1000, random_state=seed))
    model.fit(x_train, train_labels)
    return float(model.score(features(test_images), test_labels))


def raw_pixel_baseline(index: DatasetIndex, size: int = 32, components: int = 64, seed: int = 0) -> float:
    """`linear_pixel_accuracy` of a dataset's training split (train → test)."""
    train, test = index.split("train"), index.split("test")
    return linear_pixel_accuracy(load_images(train, size), train["label_index"].to_numpy(),
                                 load_images(test, size), test["label_index"].to_numpy(),
                                 size=size, components=components, seed=seed)


# ---------------------------------------------------------------------------------------------
# Stage 1
# ---------------------------------------------------------------------------------------------

def prepare(config: RunConfig) -> DatasetIndex:
    """Stage 1: generate the synthetic dataset if `config.data_dir` is empty, check the dataset,
    record its counts in config.json and return its index. Skips the decoding check when
    config.json already records a successful check of the same files."""
    synthetic = not config.data_dir
    if synthetic:
        from .synth import generate_dataset

        root = RunPaths.of(config).data
        generate_dataset(root, counts={"train": config.synth_train, "val": config.synth_val,
                                       "test": config.synth_test},
                         size=config.synth_size, seed=config.seed, lungs=config.synth_lung_masks)
    else:
        root = Path(config.data_dir).expanduser()
    index = load_index(root, config.class_map)
    counts = {split: {label: int(n) for label, n in row.items()}
              for split, row in index.counts().iterrows()}
    record = {"root": str(index.root), "synthetic": synthetic, "counts": counts,
              "class_map": config.class_map, "lung_masks": len(index.lung_masks)}
    previous = read_resolved(config.run_dir).get("dataset", {})
    if previous.get("checked") and {k: previous.get(k) for k in record} == record:
        return index
    report = check(root, class_map=config.class_map, min_side=min(MIN_SIDE, max(1, config.image_size // 4)))
    if not report.ok:
        raise DatasetError(f"dataset {root} cannot be used:\n" + "\n".join(
            f"- {p.message}" for p in report.errors))
    write_config(config, {"dataset": {**record, "checked": True}})
    return index
