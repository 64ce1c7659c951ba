"""Statistical inference for drift tables: common support, the paired two-level bootstrap, Holm.

A per-image table in long form (one row per seed, method, architecture and image, one column per
measure) becomes an array (seed, image, column) on the *common support*: the images that have a
finite value of every compared measure in every compared cell and seed, so that every cell of a
comparison rests on the same images.

The bootstrap keeps that pairing: one resample of images (within each class, class sizes fixed)
serves every cell, method, measure and epoch at once; with more than one training seed it first
resamples the seeds and then, for each drawn seed, the images (a two-level bootstrap), so that
training noise widens the interval as image noise does. Means and standard deviations are
class-weighted (`metrics.weighted_summary`'s definitions).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Mapping, Sequence

import numpy as np
import pandas as pd


BLOCK = 50  # resamples computed at once: bounds memory at the paper's image counts


class InferenceError(ValueError):
    """A table the inference cannot use: missing columns, unknown labels, too few resamples."""


@dataclass(frozen=True)
class Support:
    """Values (seed, image, column) on the common support, with the images' labels."""

    values: np.ndarray            # (S, N, C) float64
    columns: list[Hashable]       # C keys, e.g. (method, arch, measure)
    sample_ids: np.ndarray        # (N,)
    labels: np.ndarray            # (N,)
    seeds: list[int]
    counts: pd.DataFrame          # per cell: mapped, scored, lost (scored in this cell, not common)

    @property
    def n_images(self) -> int:
        return int(self.values.shape[1])

    def column(self, key: Hashable) -> int:
        return self.columns.index(key)


def common_support(frame: pd.DataFrame, cells: Sequence[tuple[str, str]], measures: Sequence[str],
                   required: Sequence[str] | None = None) -> Support:
    """The images of `frame` (columns seed?, method, arch, sample_id, label and `measures`) with a
    finite value of every `required` measure (default all) in every cell and seed; columns are
    (method, arch, measure) for each cell and measure. A measure outside `required` may be NaN
    on the support (it is then left out of that column's means)."""
    needed = {"method", "arch", "sample_id", "label", *measures}
    missing = needed - set(frame.columns)
    if missing:
        raise InferenceError(f"drift table lacks column(s) {', '.join(sorted(missing))}")
    frame = frame if "seed" in frame.columns else frame.assign(seed=0)
    frame = frame[frame[["method", "arch"]].apply(tuple, axis=1).isin(list(cells))]
    required = list(measures if required is None else required)
    seeds = sorted(int(s) for s in frame["seed"].unique())
    wide = frame.pivot_table(index=["sample_id", "label"], columns=["seed", "method", "arch"],
                             values=list(measures), sort=True)
    full = pd.MultiIndex.from_tuples([(measure, seed, method, arch) for measure in measures for seed in seeds
                                      for method, arch in cells])
    wide = wide.reindex(columns=full)
    finite = np.isfinite(wide[required].to_numpy(dtype=np.float64)) if len(wide) else np.zeros((0, 0), bool)
    keep = finite.all(axis=1) if len(wide) else np.zeros(0, bool)
    counts = []
    for method, arch in cells:
        cell = frame[(frame["method"] == method) & (frame["arch"] == arch)]
        finite_rows = np.isfinite(cell[required].to_numpy(dtype=np.float64)).all(axis=1)
        scored = pd.Series(finite_rows, index=cell["sample_id"].to_numpy()).groupby(level=0).all()
        scored = scored.reindex(wide.index.get_level_values("sample_id"), fill_value=False).to_numpy()
        counts.append({"method": method, "arch": arch, "mapped": int(cell["sample_id"].nunique()),
                       "scored": int(scored.sum()), "lost_to_other_cells": int((scored & ~keep).sum()),
                       "common": int(keep.sum())})
    kept = wide[keep]
    values = np.stack([kept.reindex(columns=[(measure, seed, method, arch) for method, arch in cells
                                             for measure in measures]).to_numpy(dtype=np.float64)
                       for seed in seeds]) if seeds else np.zeros((0, 0, len(cells) * len(measures)))
    return Support(values=values, columns=[(m, a, measure) for m, a in cells for measure in measures],
                   sample_ids=kept.index.get_level_values("sample_id").to_numpy(),
                   labels=kept.index.get_level_values("label").to_numpy(), seeds=seeds,
                   counts=pd.DataFrame(counts))


@dataclass(frozen=True)
class Moments:
    """Class-weighted means and standard deviations of every support column: (C,) for the point
    estimate, (B, C) for the resamples."""

    means: np.ndarray
    stds: np.ndarray
    columns: list[Hashable]

    def mean(self, *key: Hashable) -> np.ndarray:
        return self.means[..., self.columns.index(key)]

    def std(self, *key: Hashable) -> np.ndarray:
        return self.stds[..., self.columns.index(key)]


def _moments(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and std over axis -2 of x (..., N, C) with weights w (..., N), NaN ignored."""
    finite = np.isfinite(x)
    weight = w[..., None] * finite
    values = np.where(finite, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = weight.sum(-2)
        mean = (values * weight).sum(-2) / total
        var = (weight * (values - mean[..., None, :]) ** 2 * finite).sum(-2) / total
    return mean, np.sqrt(var)


def class_weight_vector(labels: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    unknown = sorted(set(labels.tolist()) - set(weights))
    if unknown:
        raise InferenceError(f"no class weight for label {unknown[0]!r}; weights cover {sorted(weights)}")
    return np.array([weights[label] for label in labels.tolist()], dtype=np.float64)


def point_moments(support: Support, weights: Mapping[str, float]) -> Moments:
    """Means and stds of each seed's images, averaged over the seeds."""
    w = class_weight_vector(support.labels, weights)
    mean, std = _moments(support.values, np.broadcast_to(w, support.values.shape[:2]))
    return Moments(mean.mean(0), std.mean(0), support.columns)


def bootstrap_moments(support: Support, weights: Mapping[str, float], n_boot: int, seed: int) -> Moments:
    """`n_boot` resamples: the seeds drawn with replacement (when there are several), then for each
    drawn seed the images within each class; every column shares the draw, so differences
    between cells, methods and measures stay paired."""
    if n_boot < 1:
        raise InferenceError(f"n_boot={n_boot} must be at least 1")
    n_seeds, n_images, _ = support.values.shape
    w = class_weight_vector(support.labels, weights)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(support.labels == label) for label in pd.unique(support.labels)]
    means, stds = [], []
    for start in range(0, n_boot, BLOCK):
        size = min(BLOCK, n_boot - start)
        seeds = rng.integers(0, n_seeds, size=(size, n_seeds)) if n_seeds > 1 else np.zeros((size, 1), int)
        images = np.concatenate([members[rng.integers(0, len(members), size=(size, n_seeds, len(members)))]
                                 for members in strata], axis=2) if n_images else np.zeros((size, n_seeds, 0), int)
        x = support.values[seeds[..., None], images]          # (size, S, N, C)
        mean, std = _moments(x, w[images])
        means.append(mean.mean(1))
        stds.append(std.mean(1))
    return Moments(np.concatenate(means), np.concatenate(stds), support.columns)


def holm(p_values: Sequence[float], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down procedure: each hypothesis's level alpha / (m - rank) (rank 0 for the
    smallest p) and whether it is rejected (it and every smaller p below their levels); NaN p
    values (untested) take no part and get a NaN level."""
    p = np.asarray(p_values, dtype=np.float64)
    tested = np.flatnonzero(np.isfinite(p))
    levels = np.full(len(p), np.nan)
    rejected = np.zeros(len(p), dtype=bool)
    still = True
    for rank, i in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        levels[i] = alpha / (len(tested) - rank)
        still = still and p[i] <= levels[i]
        rejected[i] = still
    return levels, rejected


def one_sided_p(resampled: np.ndarray, bound: float, above: bool) -> float:
    """Bootstrap p-value of "the statistic lies above (or below) `bound`": the share of resamples
    on the other side or on the bound, with the +1 correction so that it is never 0."""
    resampled = np.asarray(resampled, dtype=np.float64)
    resampled = resampled[np.isfinite(resampled)]
    if not resampled.size:
        return float("nan")
    against = (resampled <= bound) if above else (resampled >= bound)
    return float((against.sum() + 1) / (resampled.size + 1))


def percentile_interval(resampled: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the finite resamples."""
    resampled = np.asarray(resampled, dtype=np.float64)
    resampled = resampled[np.isfinite(resampled)]
    if not resampled.size or not 0.0 < level < 1.0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return float(low), float(high)


__all__ = ["InferenceError", "Support", "Moments", "common_support", "point_moments", "bootstrap_moments",
           "class_weight_vector", "holm", "one_sided_p", "percentile_interval"]
