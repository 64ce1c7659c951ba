"""Pure measures: predictive metrics, the true-positive filter, the four drift metrics and the
class-weighted aggregation with its bootstrap interval (definitions: DESIGN.md, "Conventions").

No I/O here. Every drift metric takes two post-processed maps `a` (earlier epoch) and `b` (later
epoch), either one (H, W) pair (returns a float) or a batch (N, H, W) (returns an (N,) array),
computed without a Python loop over samples; `PreparedMaps` of them do as well and are checked
and ranked only once however many metrics they enter.

Degenerate maps give NaN, never a number: a map is degenerate when it holds a non-finite value
(`cams.postprocess` turns flat maps into NaN) or when its max - min < 1e-12 (flat, including
all-zero). A pair is scored only when both maps are non-degenerate.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import entr, softmax
from scipy.stats import rankdata
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score, roc_auc_score

FLAT_RANGE = 1e-12
MIN_BOOTSTRAP = 2  # fewer finite values than this: every resample repeats the same value, no interval
DRIFT_METRICS = ("spatial_displacement", "overlap_iou", "pattern_correlation", "concentration_change")
# Beyond the paper: Spearman's rank correlation (what radiology saliency studies report beside
# Pearson) and the overlap IoU with its chance level for the two maps' salient areas removed.
EXTRA_METRICS = ("rank_correlation", "adjusted_iou")
SUITE_METRICS = DRIFT_METRICS + EXTRA_METRICS


class MetricInputError(ValueError):
    """Maps, labels or predictions that a metric cannot be computed from."""


# -- predictive metrics ----------------------------------------------------------------------

def predictive_metrics(labels: Sequence[int], logits: np.ndarray,
                       class_names: Sequence[str] | None = None) -> dict:
    """Accuracy, macro one-vs-rest ROC AUC (on softmax probabilities), macro F1, per-class AUC,
    recall and F1, and the confusion matrix (rows: true class, columns: predicted class).

    A class absent from `labels` has NaN recall and NaN AUC and is left out of the macro AUC
    (the mean over classes that have both positives and negatives); with every class present
    the macro AUC equals scikit-learn's `roc_auc_score(..., multi_class="ovr")`. Macro F1 is
    scikit-learn's (over classes seen in labels or predictions, 0 where undefined). A class the
    model never predicts has recall and F1 0 when it is in `labels`; per-class F1 is NaN only for
    a class neither in `labels` nor predicted. No warning is raised for either.
    """
    labels = np.asarray(labels, dtype=int)
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or len(labels) != len(logits):
        raise MetricInputError(f"logits must be (N, C) with N = len(labels) = {len(labels)}; "
                               f"got shape {logits.shape}")
    n_classes = logits.shape[1]
    names = list(class_names) if class_names is not None else list(range(n_classes))
    if len(names) != n_classes:
        raise MetricInputError(f"{len(names)} class names for {n_classes} logit columns")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise MetricInputError(f"labels must lie in 0..{n_classes - 1}")
    probs = softmax(logits, axis=1)
    predicted = probs.argmax(axis=1)
    auc = np.full(n_classes, np.nan)
    for c in range(n_classes):  # one-vs-rest per class: a loop over classes, not samples
        positive = labels == c
        if 0 < positive.sum() < len(labels):
            auc[c] = roc_auc_score(positive, probs[:, c])
    recall = recall_score(labels, predicted, labels=range(n_classes), average=None,
                          zero_division=np.nan)
    f1 = f1_score(labels, predicted, labels=range(n_classes), average=None, zero_division=np.nan)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "auc": float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan"),
        "f1": float(f1_score(labels, predicted, average="macro", zero_division=0.0)),
        "auc_per_class": dict(zip(names, auc.tolist())),
        "recall_per_class": dict(zip(names, np.asarray(recall, dtype=float).tolist())),
        "f1_per_class": dict(zip(names, np.asarray(f1, dtype=float).tolist())),
        "confusion": confusion_matrix(labels, predicted, labels=range(n_classes)),
    }


# -- true-positive filter --------------------------------------------------------------------

def correct_column(arch: str, epoch: int) -> str:
    """Name of the column saying whether `arch` at `epoch` predicts the sample's label."""
    return f"correct_{arch}_ep{epoch:02d}"


def logit_columns(frame: pd.DataFrame) -> list[str]:
    """The `logit_0 .. logit_{C-1}` columns of a predictions frame, in class order."""
    columns = sorted((c for c in frame.columns if c.startswith("logit_")), key=lambda c: int(c[6:]))
    if not columns:
        raise MetricInputError("the predictions frame has no logit_0 .. logit_{C-1} columns")
    return columns


def true_positive_mask(predictions: pd.DataFrame, architectures: Sequence[str],
                       epochs: Sequence[int]) -> pd.DataFrame:
    """One row per test sample: sample_id, label, kept, and one correctness column per
    (architecture, epoch). A sample is kept only if every architecture predicts its label at
    every listed epoch. A sample missing for some (architecture, epoch) is an error."""
    needed = {"arch", "epoch", "sample_id", "label", "label_index"}
    missing = needed - set(predictions.columns)
    if missing:
        raise MetricInputError(f"the predictions frame lacks column(s) {sorted(missing)}")
    if not architectures or not epochs:
        raise MetricInputError("the true-positive filter needs at least one architecture and one epoch")
    logits = logit_columns(predictions)
    chosen = predictions[predictions["arch"].isin(architectures) & predictions["epoch"].isin(epochs)]
    correct = chosen[logits].to_numpy().argmax(axis=1) == chosen["label_index"].to_numpy()
    long = chosen[["arch", "epoch", "sample_id"]].assign(correct=correct)
    if long.duplicated(["arch", "epoch", "sample_id"]).any():
        raise MetricInputError("the predictions frame holds a sample twice for one (arch, epoch)")
    samples = (predictions.drop_duplicates("sample_id")[["sample_id", "label"]]
               .sort_values("sample_id", kind="stable").reset_index(drop=True))
    labels_per_sample = predictions.groupby("sample_id")["label"].nunique()
    if (labels_per_sample > 1).any():
        raise MetricInputError(f"sample {labels_per_sample.idxmax()!r} has different labels in "
                               "different rows of the predictions frame")
    out = samples
    for arch in architectures:
        for epoch in epochs:
            part = long[(long["arch"] == arch) & (long["epoch"] == epoch)].set_index("sample_id")["correct"]
            absent = ~samples["sample_id"].isin(part.index)
            if absent.any():
                raise MetricInputError(
                    f"predictions for {arch} at epoch {epoch} lack {int(absent.sum())} of "
                    f"{len(samples)} test samples (first: {samples['sample_id'][absent].iloc[0]!r}); "
                    "rerun the training stage")
            out[correct_column(arch, epoch)] = samples["sample_id"].map(part).astype(bool).to_numpy()
    columns = [correct_column(a, e) for a in architectures for e in epochs]
    out.insert(2, "kept", out[columns].all(axis=1))
    return out


# -- drift metrics -----------------------------------------------------------------------------

class PreparedMaps:
    """(N, H, W) maps checked once (shape, sign, degeneracy), with each per-map quantity the pair
    metrics need (centres of mass, entropies, centred pixels and ranks, salient regions) computed
    on first use and kept.

    Every metric accepts these in place of arrays. A set compared several times (the earlier
    maps against the later ones and against their chance partners, under several thresholds) is
    so validated, ranked and thresholded once; `take` gives a subset or reordering of the rows
    (the chance partners) that shares those computations.
    """

    def __init__(self, maps: np.ndarray):
        given = np.asarray(maps)
        # float32 maps (what cams.postprocess gives) are ranked in float32: the same order and ties
        self._rank_dtype = np.float32 if given.dtype == np.float32 else np.float64
        maps = given.astype(np.float64)
        if maps.ndim not in (2, 3) or maps.shape[-1] == 0 or maps.shape[-2] == 0:
            raise MetricInputError(f"maps must be (H, W) or (N, H, W) with H, W >= 1; got {maps.shape}")
        self.shape = maps.shape
        self.single = maps.ndim == 2
        maps = maps[None] if self.single else maps
        with np.errstate(invalid="ignore"):
            if (maps < 0).any():
                raise MetricInputError("maps must be non-negative (post-process them to [0, 1] first)")
        self.valid = _non_degenerate(maps)
        self.maps = np.where(self.valid[:, None, None], maps, 0.0)  # degenerate maps zeroed: no NaN warnings
        self._cache: dict[tuple, Any] = {}
        self._source: tuple[PreparedMaps, np.ndarray] | None = None  # set by `take`

    def take(self, rows: np.ndarray, invalid: np.ndarray | None = None) -> PreparedMaps:
        """The maps at positions `rows` (an (M,) index), those where `invalid` is True marked
        degenerate. What either set computes later is computed once, on the source's maps, and indexed."""
        rows = np.asarray(rows, dtype=np.intp)
        taken = object.__new__(PreparedMaps)
        taken.single, taken.shape = False, (len(rows), *self.maps.shape[1:])
        taken.valid = self.valid[rows] & (True if invalid is None else ~np.asarray(invalid, dtype=bool))
        taken.maps, taken._rank_dtype = self.maps[rows], self._rank_dtype
        taken._cache, taken._source = {}, (self, rows)
        return taken

    def _cached(self, key: tuple, compute: Callable[[np.ndarray], Any]) -> Any:
        """compute(maps), once; for taken rows, the rows of what their source computes."""
        if key not in self._cache:
            if self._source is None:
                self._cache[key] = compute(self.maps)
            else:
                source, rows = self._source
                value = source._cached(key, compute)
                self._cache[key] = tuple(part[rows] for part in value) if isinstance(value, tuple) else value[rows]
        return self._cache[key]

    def centre_of_mass(self) -> np.ndarray:
        return self._cached(("centre",), centre_of_mass)

    def entropy(self) -> np.ndarray:
        return self._cached(("entropy",), entropy)

    def centred(self) -> tuple[np.ndarray, np.ndarray]:
        """Each flattened map minus its mean, and the norm of that."""
        return self._cached(("centred",), lambda maps: _centre(_flat(maps)))

    def centred_ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """Each map's pixel ranks (ties averaged) minus their mean, and the norm of that."""
        def compute(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            flat = _flat(maps)
            return _centre(rankdata(flat.astype(self._rank_dtype), axis=1) if len(flat) else flat)
        return self._cached(("ranks",), compute)

    def region(self, threshold: float) -> np.ndarray:
        """The salient regions m >= threshold."""
        return self._cached(("region", threshold), lambda maps: maps >= threshold)

    def top_region(self, share: float) -> np.ndarray:
        """Each map's top `share` of pixels: m >= its own (1 - share) quantile."""
        def compute(maps: np.ndarray) -> np.ndarray:
            if not len(maps):
                return np.zeros(maps.shape, dtype=bool)
            return maps >= np.quantile(_flat(maps), 1.0 - share, axis=1)[:, None, None]
        return self._cached(("top", share), compute)


def prepare(maps: np.ndarray | PreparedMaps) -> PreparedMaps:
    """`maps` as PreparedMaps (checked once); prepared maps come back as they are."""
    return maps if isinstance(maps, PreparedMaps) else PreparedMaps(maps)


Maps = np.ndarray | PreparedMaps


def _pair(a: Maps, b: Maps) -> tuple[PreparedMaps, PreparedMaps, np.ndarray, bool]:
    """Both sets prepared, the valid-pair mask, and whether a single (H, W) pair was given."""
    shape_a, shape_b = (x.shape if isinstance(x, PreparedMaps) else np.shape(x) for x in (a, b))
    if shape_a != shape_b:
        raise MetricInputError(f"maps to compare must share a shape; got {shape_a} and {shape_b}")
    a, b = prepare(a), prepare(b)
    return a, b, a.valid & b.valid, a.single


def _non_degenerate(maps: np.ndarray) -> np.ndarray:
    finite = np.isfinite(maps).all(axis=(1, 2))
    safe = np.where(finite[:, None, None], maps, 0.0)
    spread = safe.max(axis=(1, 2)) - safe.min(axis=(1, 2))
    return finite & (spread >= FLAT_RANGE)


def _flat(maps: np.ndarray) -> np.ndarray:
    """(N, H·W) view of (N, H, W) maps, also for N = 0 (where reshape cannot infer -1)."""
    return maps.reshape(maps.shape[0], maps.shape[1] * maps.shape[2])


def _centre(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    centred = rows - rows.mean(axis=1, keepdims=True)
    return centred, np.sqrt((centred * centred).sum(axis=1))


def _result(values: np.ndarray, valid: np.ndarray, single: bool) -> np.ndarray | float:
    values = np.where(valid, values, np.nan)
    return float(values[0]) if single else values


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0, without a warning."""
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def centre_of_mass(maps: np.ndarray) -> np.ndarray:
    """(N, 2) centres of mass in pixel coordinates (row, col), pixel centres at integer indices;
    NaN for a zero-mass map."""
    maps = np.asarray(maps, dtype=np.float64)
    mass = maps.sum(axis=(1, 2))
    rows = maps.sum(axis=2) @ np.arange(maps.shape[1])
    cols = maps.sum(axis=1) @ np.arange(maps.shape[2])
    return np.stack([_safe_divide(rows, mass), _safe_divide(cols, mass)], axis=1)


def spatial_displacement(a: Maps, b: Maps) -> np.ndarray | float:
    """Distance between the maps' centres of mass divided by the image diagonal sqrt(H² + W²)."""
    a, b, valid, single = _pair(a, b)
    height, width = a.maps.shape[1:]
    shift = np.linalg.norm(a.centre_of_mass() - b.centre_of_mass(), axis=1)
    return _result(shift / np.hypot(height, width), valid, single)


def _check_threshold(threshold: float) -> None:
    if not 0.0 <= threshold <= 1.0:
        raise MetricInputError(f"threshold={threshold} must lie in [0, 1]")


def _region_iou(region_a: np.ndarray, region_b: np.ndarray) -> np.ndarray:
    inter = (region_a & region_b).sum(axis=(1, 2))
    union = (region_a | region_b).sum(axis=(1, 2))
    return _safe_divide(inter.astype(float), union.astype(float))


def overlap_iou(a: Maps, b: Maps, threshold: float = 0.5) -> np.ndarray | float:
    """|A ∩ B| / |A ∪ B| of the regions m >= threshold.

    Both regions empty gives NaN: the overlap of two empty sets is undefined, and scoring it 1
    (or 0) would invent agreement (or disagreement) that the maps do not show. It cannot happen
    for min-max-normalized maps with threshold <= 1 (their maximum is 1), only for raw input.
    """
    _check_threshold(threshold)
    a, b, valid, single = _pair(a, b)
    return _result(_region_iou(a.region(threshold), b.region(threshold)), valid, single)


def _pearson(x: tuple[np.ndarray, np.ndarray], y: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Pearson r of each row pair from centred rows and their norms, NaN where a row is constant."""
    (dx, norm_x), (dy, norm_y) = x, y
    return np.clip(_safe_divide((dx * dy).sum(axis=1), norm_x * norm_y), -1.0, 1.0)


def pattern_correlation(a: Maps, b: Maps) -> np.ndarray | float:
    """Pearson r of the flattened maps (NaN when either map is constant)."""
    a, b, valid, single = _pair(a, b)
    return _result(_pearson(a.centred(), b.centred()), valid, single)


def rank_correlation(a: Maps, b: Maps) -> np.ndarray | float:
    """Spearman's rho of the flattened maps: Pearson r of their pixel ranks (ties averaged)."""
    a, b, valid, single = _pair(a, b)
    return _result(_pearson(a.centred_ranks(), b.centred_ranks()), valid, single)


def salient_area(maps: Maps, threshold: float = 0.5) -> np.ndarray | float:
    """Share of pixels with m >= threshold, the region overlap IoU compares; NaN for a degenerate map."""
    _check_threshold(threshold)
    maps = prepare(maps)
    return _result(maps.region(threshold).mean(axis=(1, 2)), maps.valid, maps.single)


def top_share_overlap(a: Maps, b: Maps, share: float) -> np.ndarray | float:
    """IoU of each map's top `share` of pixels (its own (1 − share) quantile as the threshold): an
    overlap with no fixed threshold, whose regions have the same area in both maps."""
    if not 0.0 < share <= 1.0:
        raise MetricInputError(f"share={share} must lie in (0, 1]")
    a, b, valid, single = _pair(a, b)
    return _result(_region_iou(a.top_region(share), b.top_region(share)), valid, single)


def expected_iou(p: np.ndarray | float, q: np.ndarray | float) -> np.ndarray | float:
    """IoU expected between two unrelated regions covering shares p and q of the image,
    pq / (p + q − pq) (each pixel in a region independently); NaN where both are empty."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    out = _safe_divide(p * q, p + q - p * q)
    return float(out) if out.ndim == 0 else out


def adjusted_iou(a: Maps, b: Maps, threshold: float = 0.5) -> np.ndarray | float:
    """(IoU − E[IoU | areas]) / (1 − E[IoU | areas]): 0 for the overlap two unrelated regions of
    these areas give, 1 for identical regions, negative for less overlap than chance; NaN when
    both regions cover the whole image (no room for chance to differ from agreement)."""
    _check_threshold(threshold)
    a, b, _, single = _pair(a, b)
    iou = np.atleast_1d(overlap_iou(a, b, threshold))
    chance = np.atleast_1d(expected_iou(salient_area(a, threshold), salient_area(b, threshold)))
    adjusted = _safe_divide(iou - chance, 1.0 - chance)
    return float(adjusted[0]) if single else adjusted


def entropy(maps: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of each (H, W) map seen as a distribution p = m / sum m, with
    0 ln 0 = 0; NaN for a zero-mass map."""
    flat = _flat(np.asarray(maps, dtype=np.float64))
    mass = flat.sum(axis=1, keepdims=True)
    return np.where(mass[:, 0] > 0, entr(_safe_divide(flat, mass)).sum(axis=1), np.nan)


def concentration_change(a: Maps, b: Maps) -> np.ndarray | float:
    """H(b) - H(a) in nats: positive when the later map is more diffuse, negative when more
    concentrated."""
    a, b, valid, single = _pair(a, b)
    return _result(b.entropy() - a.entropy(), valid, single)


def drift_metrics(a: Maps, b: Maps, threshold: float = 0.5,
                  names: Sequence[str] = SUITE_METRICS) -> dict[str, np.ndarray]:
    """The metrics `names` (default the suite, SUITE_METRICS: the paper's four, then the extras)
    of (N, H, W) pairs, by name, in that order."""
    unknown = [name for name in names if name not in SUITE_METRICS]
    if unknown:
        raise MetricInputError(f"unknown metric {unknown[0]!r}; the suite is {', '.join(SUITE_METRICS)}")
    a, b, _, _ = _pair(a, b)
    formulas = {
        "spatial_displacement": lambda: spatial_displacement(a, b),
        "overlap_iou": lambda: overlap_iou(a, b, threshold),
        "pattern_correlation": lambda: pattern_correlation(a, b),
        "concentration_change": lambda: concentration_change(a, b),
        "rank_correlation": lambda: rank_correlation(a, b),
        "adjusted_iou": lambda: adjusted_iou(a, b, threshold),
    }
    return {name: formulas[name]() for name in names}


# -- localization against a ground-truth mask -------------------------------------------------------

def _maps_and_masks(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(N, H, W) float64 maps (degenerate ones zeroed), bool masks, which rows are scorable (map
    not degenerate, mask not empty) and whether a single (H, W) pair was given."""
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks)
    if maps.shape != masks.shape or maps.ndim not in (2, 3):
        raise MetricInputError(f"maps and masks must share an (H, W) or (N, H, W) shape; got {maps.shape} "
                               f"and {masks.shape}")
    if masks.dtype != bool:
        raise MetricInputError(f"masks must be boolean, got {masks.dtype}")
    prepared = PreparedMaps(maps)
    masks = masks[None] if prepared.single else masks
    return prepared.maps, masks, prepared.valid & masks.any(axis=(1, 2)), prepared.single


def energy_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray | float:
    """Share of each map's energy on the mask, sum_{p in mask} m(p) / sum_p m(p) (the
    energy-based pointing game); NaN for a degenerate map or an empty mask."""
    maps, masks, valid, single = _maps_and_masks(maps, masks)
    inside = (maps * masks).sum(axis=(1, 2))
    return _result(_safe_divide(inside, maps.sum(axis=(1, 2))), valid, single)


def region_precision(maps: np.ndarray, masks: np.ndarray, threshold: float = 0.5) -> np.ndarray | float:
    """Share of the salient region m >= threshold that lies on the mask; NaN for a degenerate map
    or an empty mask."""
    _check_threshold(threshold)
    maps, masks, valid, single = _maps_and_masks(maps, masks)
    region = maps >= threshold
    inside = (region & masks).sum(axis=(1, 2)).astype(float)
    return _result(_safe_divide(inside, region.sum(axis=(1, 2)).astype(float)), valid, single)


# -- class-weighted aggregation ------------------------------------------------------------------

@dataclass(frozen=True)
class WeightedSummary:
    """Class-weighted mean and std over finite values, how many were used and dropped (NaN),
    and a stratified bootstrap interval for the mean (NaN when not computed)."""

    mean: float
    std: float
    n: int
    n_dropped: int
    ci_low: float = float("nan")
    ci_high: float = float("nan")

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _sample_weights(values: Sequence[float], labels: Sequence[str],
                    weights: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finite values, their labels and their class weights (NaN dropped)."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.asarray(labels)
    if values.shape != labels.shape or values.ndim != 1:
        raise MetricInputError(f"values and labels must be 1-D of one length; got {values.shape} "
                               f"and {labels.shape}")
    unknown = sorted(set(labels.tolist()) - set(weights))
    if unknown:
        raise MetricInputError(f"no class weight for label {unknown[0]!r}; weights cover "
                               f"{sorted(weights)}")
    finite = np.isfinite(values)
    kept_labels = labels[finite]
    w = np.array([weights[c] for c in kept_labels.tolist()], dtype=np.float64)
    return values[finite], kept_labels, w


def _weighted_mean_std(x: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    if w.sum() <= 0:
        return float("nan"), float("nan")
    mean = float((w * x).sum() / w.sum())
    return mean, float(np.sqrt((w * (x - mean) ** 2).sum() / w.sum()))


def weighted_summary(values: Sequence[float], labels: Sequence[str],
                     weights: Mapping[str, float]) -> tuple[float, float]:
    """Class-weighted (mean, std) over the finite values: mean = sum w x / sum w,
    std = sqrt(sum w (x - mean)² / sum w), w = the sample's class weight. NaN values are
    ignored; (nan, nan) when none is left."""
    x, _, w = _sample_weights(values, labels, weights)
    return _weighted_mean_std(x, w)


def bootstrap_ci(values: Sequence[float], labels: Sequence[str], weights: Mapping[str, float],
                 n_boot: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the class-weighted mean, resampling the finite values
    within each class (stratified, class sizes fixed); reproducible by `seed`."""
    if not 0.0 < level < 1.0:
        raise MetricInputError(f"level={level} must lie in (0, 1)")
    if n_boot < 1:
        raise MetricInputError(f"n_boot={n_boot} must be at least 1")
    x, lab, w = _sample_weights(values, labels, weights)
    if w.sum() <= 0:
        return float("nan"), float("nan")
    order = np.argsort(lab, kind="stable")
    x, lab, w = x[order], lab[order], w[order]
    rng = np.random.default_rng(seed)
    _, starts, sizes = np.unique(lab, return_index=True, return_counts=True)
    index = np.concatenate([start + rng.integers(0, size, size=(n_boot, size))
                            for start, size in zip(starts, sizes)], axis=1)
    means = (x[index] * w).sum(axis=1) / w.sum()  # class sizes are fixed, so sum w is too
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def summarize(values: Sequence[float], labels: Sequence[str], weights: Mapping[str, float],
              n_boot: int = 0, seed: int = 0, level: float = 0.95) -> WeightedSummary:
    """`weighted_summary` plus counts and (when n_boot > 0 and at least MIN_BOOTSTRAP values are
    finite) the bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    mean, std = weighted_summary(values, labels, weights)
    n = int(np.isfinite(values).sum())
    low, high = (bootstrap_ci(values, labels, weights, n_boot, seed, level) if n_boot > 0 and n >= MIN_BOOTSTRAP
                 else (float("nan"), float("nan")))
    return WeightedSummary(mean, std, n, int(values.size - n), low, high)


__all__ = ["DRIFT_METRICS", "EXTRA_METRICS", "SUITE_METRICS", "MIN_BOOTSTRAP", "MetricInputError", "predictive_metrics", "true_positive_mask",
           "correct_column", "logit_columns", "centre_of_mass", "entropy", "spatial_displacement",
           "overlap_iou", "pattern_correlation", "concentration_change", "rank_correlation", "salient_area",
           "expected_iou", "adjusted_iou", "top_share_overlap", "drift_metrics", "PreparedMaps", "prepare",
           "energy_inside", "region_precision",
           "WeightedSummary", "weighted_summary", "bootstrap_ci", "summarize"]
