"""Ground truth for the maps: how much of each map lies on the lesion (datasets with lesion masks).

The four drift metrics are reference-free: they say how far the evidence moved between the
compared epochs, not whether it moved toward the pathology. The synthetic radiographs come with
lesion masks (`cxrdrift.synth`), and on them that can be measured. For every mapped test sample
of a lesion class (Normal has none), architecture, CAM method and CAM epoch, two scores of the
post-processed map: the share of its energy on the lesion (`metrics.energy_inside`, the
energy-based pointing game) and the share of its salient region m >= threshold on the lesion
(`metrics.region_precision`). Stage: the stored maps -> `localization.parquet`.

Real datasets rarely have lesion masks but some ship lung segmentations (the COVID-19 Radiography
Database; the generator writes them with `synth_lung_masks`): `lung_energy` scores every mapped
test sample, of every class, by the share of its map's energy inside the lung fields, a sanity
check that the evidence lies in the organ the diagnosis is about.

`localization_summary` gives the class-weighted means per epoch, `localization_vs_drift` joins
the change between the compared epochs with the drift metrics of the same samples and asks
whether the reference-free drift predicts it.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from . import data, metrics
from .artifacts import RunPaths, is_current, stamp, write_parquet
from .config import RunConfig
from .drift import PAPER_DEPTH, depths, epoch_maps, load_compared_rows, mapped_samples, weighted_means

LESION_FREE = "Normal"
SCORES = ("energy_inside", "region_precision")
CHUNK = 256  # samples post-processed at once


class LocalizationError(ValueError):
    """A run whose artifacts cannot be scored against ground truth."""


def lesion_samples(config: RunConfig) -> pd.DataFrame:
    """The mapped test samples of lesion classes: sample_id, label, kept."""
    samples = mapped_samples(config)
    return samples[samples["label"] != LESION_FREE].reset_index(drop=True)


def _chunks(config: RunConfig, arch: str, method: str, epoch: int, samples: pd.DataFrame,
            masks_of: Callable[[pd.DataFrame], np.ndarray], depth: str = PAPER_DEPTH
            ) -> Iterator[tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
    """(rows, post-processed maps, masks) of `samples` in chunks of CHUNK (bounds memory)."""
    for start in range(0, len(samples), CHUNK):
        chunk = samples.iloc[start:start + CHUNK]
        yield chunk, epoch_maps(config, arch, method, epoch, chunk["sample_id"], depth), masks_of(chunk)


def _scores(config: RunConfig, arch: str, method: str, epoch: int, samples: pd.DataFrame,
            index: data.DatasetIndex, depth: str = PAPER_DEPTH) -> pd.DataFrame:
    from .cams import layer_of

    parts = [pd.DataFrame({"energy_inside": metrics.energy_inside(maps, masks),
                           "region_precision": metrics.region_precision(maps, masks, config.threshold),
                           "lesion_share": masks.mean(axis=(1, 2))}, index=chunk.index)
             for chunk, maps, masks in _chunks(config, arch, method, epoch, samples,
                                               lambda rows: data.load_masks(index, rows, config.image_size), depth)]
    values = pd.concat(parts) if parts else pd.DataFrame(columns=[*SCORES, "lesion_share"], dtype=float)
    return pd.concat([pd.DataFrame({"arch": arch, "method": method, "epoch": epoch}, index=samples.index),
                      samples, values,
                      pd.DataFrame({"depth": depth, "layer": layer_of(arch, depth)}, index=samples.index)], axis=1)


def run_localization_stage(config: RunConfig, force: bool = False) -> pd.DataFrame | None:
    """Write `localization.parquet` (arch, method, epoch, sample_id, label, kept, energy_inside,
    region_precision, lesion_share: the share of the image the lesion covers, what a uniform map
    would score on both, then the depth and layer of the maps) for every CAM epoch and depth; None, and nothing written, when `ground_truth` is off or
    the dataset has no lesion mask for every mapped lesion-class sample."""
    if not config.ground_truth:
        return None
    paths = RunPaths.of(config)
    index = data.run_index(config)
    samples = lesion_samples(config)
    if samples.empty or any(index.mask_path(s) is None for s in samples["sample_id"]):
        return None
    inputs = [paths.true_positives] + [paths.cams(arch, epoch) for arch in config.architectures
                                       for epoch in config.cam_epoch_list()]
    missing = [path for path in inputs if not path.exists()]
    if missing:
        raise LocalizationError(f"{missing[0]} is missing: run the CAM stage first")
    expected = stamp(config, "localization", inputs)
    if not force and is_current(paths.localization, expected):
        return pd.read_parquet(paths.localization)
    frame = pd.concat([_scores(config, arch, method, epoch, samples, index, depth)
                       for depth in depths(config) for arch in config.architectures
                       for method in config.cam_methods for epoch in config.cam_epoch_list()],
                      ignore_index=True)
    write_parquet(paths.localization, frame, stamp=expected)
    return frame


def load_localization(config: RunConfig, depth: str | None = PAPER_DEPTH) -> pd.DataFrame | None:
    """localization.parquet's rows for the compared samples at `depth` (default the paper's layer;
    None: every depth), or None when the stage wrote nothing."""
    frame = load_compared_rows(config, RunPaths.of(config).localization)
    if frame is not None and depth is not None and "depth" in frame.columns:
        frame = frame[frame["depth"] == depth].reset_index(drop=True)
    return frame


def depth_localization(frame: pd.DataFrame, weights: dict[str, float], epoch: int) -> pd.DataFrame:
    """Per method, architecture and depth of an every-depth `frame` (`load_localization(config,
    None)`), the class-weighted scores at `epoch` beside the chance level: method, arch, depth,
    layer, energy_inside, region_precision, lesion_share, n. Does a finer grid put more of the
    map on the lesion?"""
    chosen = frame[frame["epoch"] == epoch]
    summary = localization_summary(chosen, weights, keys=("method", "arch", "depth"))
    layers = chosen.groupby(["method", "arch", "depth"], sort=False)["layer"].first().to_numpy()
    summary.insert(3, "layer", layers)
    return summary


def localization_summary(frame: pd.DataFrame, weights: dict[str, float],
                         keys: tuple[str, ...] = ("method", "arch", "epoch")) -> pd.DataFrame:
    """Class-weighted mean of each score and of the chance level (`lesion_share`) per method,
    architecture and epoch (or other `keys`; NaN dropped), with n."""
    return _scored_means(frame, weights, keys, SCORES, "lesion_share")


def _scored_means(frame: pd.DataFrame, weights: dict[str, float], keys: tuple[str, ...],
                  scores: tuple[str, ...], chance: str) -> pd.DataFrame:
    """Class-weighted means of `scores` and `chance` per group of `keys`, with n (rows whose
    scores are all finite)."""
    keys = list(keys)
    summary = weighted_means(frame, keys, [*scores, chance], weights)
    scored = frame.assign(n=frame[list(scores)].notna().all(axis=1)).groupby(keys, sort=False)["n"].sum()
    return summary.assign(n=scored.to_numpy().astype(int))


def localization_vs_drift(frame: pd.DataFrame, drift: pd.DataFrame, epochs: tuple[int, int]) -> pd.DataFrame:
    """Per method and architecture: the mean change of energy on the lesion between the compared
    `epochs` (later minus earlier), and its Spearman correlation with each drift metric over the
    same samples (NaN with fewer than 3 scored samples or a constant column)."""
    early, late = (frame[frame["epoch"] == epoch].set_index(["method", "arch", "sample_id"])["energy_inside"]
                   for epoch in epochs)
    change = (late - early).rename("energy_change").reset_index()
    joined = change.merge(drift, on=["method", "arch", "sample_id"], how="inner")
    rows = []
    for (method, arch), group in joined.groupby(["method", "arch"], sort=False):
        row = {"method": method, "arch": arch, "energy_change": group["energy_change"].mean()}
        for name in metrics.DRIFT_METRICS:
            pair = group[["energy_change", name]].dropna()
            varies = len(pair) >= 3 and (pair.nunique() > 1).all()
            row[f"rho_{name}"] = spearmanr(pair["energy_change"], pair[name]).statistic if varies else float("nan")
        row["n"] = int(group["energy_change"].notna().sum())
        rows.append(row)
    return pd.DataFrame(rows)


def finer_grid_sentence(summary: pd.DataFrame, epoch: int) -> str:
    """Whether the maps at a finer depth put more energy on the lesion than at the paper's layer,
    counted over the (method, architecture) cells of a `depth_localization` summary."""
    from .cams import depth_phrase

    wide = summary.pivot_table(index=["method", "arch"], columns="depth", values="energy_inside", sort=False,
                               dropna=False)
    if PAPER_DEPTH not in wide.columns or wide.shape[1] < 2:
        return "Only the paper's layer was scored: nothing to compare."
    sentences = []
    for depth in [d for d in wide.columns if d != PAPER_DEPTH]:
        pairs = wide[[PAPER_DEPTH, depth]].dropna()
        if pairs.empty:
            sentences.append(f"No cell has scored maps at both the paper's layer and {depth_phrase(depth)}.")
            continue
        better = int((pairs[depth] > pairs[PAPER_DEPTH]).sum())
        change = (pairs[depth] - pairs[PAPER_DEPTH]).mean()
        unscored = len(wide) - len(pairs)
        sentences.append(f"At epoch {epoch}, maps at {depth_phrase(depth)} put more of their energy on the lesion "
                         f"than at the paper's layer in {better} of {len(pairs)} (method, architecture) cells "
                         f"scored at both depths (mean change {change:+.3f})"
                         + (f"; {unscored} cell{'s' if unscored != 1 else ''} without a scored map at one of "
                            "them." if unscored else "."))
    return " ".join(sentences)


def lung_energy(config: RunConfig, index: data.DatasetIndex | None = None) -> pd.DataFrame | None:
    """Per architecture, CAM method, CAM epoch and mapped test sample (every class), the share of
    the map's energy inside the lung mask and the share of the image the lungs cover (a uniform
    map's score): arch, method, epoch, sample_id, label, kept, energy_in_lungs, lung_share. Only
    the samples with a lung mask are scored; None when none has one (most datasets)."""
    index = index or data.run_index(config)
    samples = mapped_samples(config)
    samples = samples[[index.lung_mask_path(s) is not None for s in samples["sample_id"]]].reset_index(drop=True)
    if samples.empty:
        return None
    frames = []
    for arch in config.architectures:
        for method in config.cam_methods:
            for epoch in config.cam_epoch_list():
                parts = [pd.DataFrame({"energy_in_lungs": metrics.energy_inside(maps, masks),
                                       "lung_share": masks.mean(axis=(1, 2))}, index=chunk.index)
                         for chunk, maps, masks in _chunks(
                             config, arch, method, epoch, samples,
                             lambda rows: data.load_lung_masks(index, rows, config.image_size))]
                frames.append(pd.concat([pd.DataFrame({"arch": arch, "method": method, "epoch": epoch},
                                                      index=samples.index), samples, pd.concat(parts)], axis=1))
    return pd.concat(frames, ignore_index=True)


def lung_summary(frame: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """Class-weighted mean energy inside the lungs and lung share per method, architecture and
    epoch, with n (samples with a finite score)."""
    return _scored_means(frame, weights, ("method", "arch", "epoch"), ("energy_in_lungs",), "lung_share")
