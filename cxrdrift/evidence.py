"""The evidence the verdicts rest on: per-image drift with its chance level, under every setting
the verdicts are checked against, for every training seed the run has.

Stage: the compared epochs' maps -> `evidence.parquet`, one row per (setting, seed, method, arch,
sample) with the metric suite (`metrics.SUITE_METRICS`), both maps' salient areas, and the chance
level of each metric (`chance_<metric>`: the same metric between the image's earlier map and the
later map of another image of its class, `baselines.shuffled_partners`, one draw for every cell
and seed so that the baseline stays paired too). The columns no threshold decides are kept in
`evidence_threshold_free.parquet` too, so that another threshold recomputes only the others.

Settings: "main" (the run's threshold at the paper's layer), the IoU threshold at each of
THRESHOLDS, a threshold-free overlap (the top k % of each map's pixels, TOP_SHARES), Grad-CAM++
under the other alpha convention (`alpha_setting`; the CAM stage stores both), and the earlier
layer when the run has one. Seeds: the main run and each replicate of `replicate_seeds`
(`cxrdrift.replicates`) whose maps are there; every seed's own phase drift (its epoch-early map
against its epoch-late map) of the main run's compared images.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import baselines, metrics
from .artifacts import RunPaths, is_current, stamp, write_parquet
from .config import RunConfig
from .cams import OTHER_ALPHA
from .drift import (CHUNK, PAPER_DEPTH, DriftError, class_weights, depths, epoch_maps, load_true_positives,
                    mapped_samples)

MAIN = "main"
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
TOP_SHARES = (0.05, 0.10, 0.20)
CHANCE_METRICS = ("spatial_displacement", "overlap_iou", "pattern_correlation", "rank_correlation",
                  "adjusted_iou")
KEYS = ["setting", "seed", "depth", "method", "arch", "sample_id", "label"]
COLUMNS = [*KEYS, *metrics.SUITE_METRICS, *(f"chance_{name}" for name in CHANCE_METRICS), "area_early", "area_late"]
# The suite's metrics that no threshold decides (overlap and adjusted overlap are the others).
FREE_METRICS = {"spatial_displacement": metrics.spatial_displacement,
                "pattern_correlation": metrics.pattern_correlation,
                "concentration_change": metrics.concentration_change,
                "rank_correlation": metrics.rank_correlation}


def threshold_setting(threshold: float) -> str:
    return f"τ = {threshold:g}"


def top_setting(share: float) -> str:
    return f"top {share:.0%} overlap"


def depth_setting(depth: str) -> str:
    from .cams import depth_label

    return depth_label(depth)


def seed_configs(config: RunConfig) -> list[RunConfig]:
    """The main run and every replicate whose compared maps exist."""
    from .replicates import replicate_config

    replicas = [replicate_config(config, seed) for seed in config.replicate_seeds]
    present = [r for r in replicas if all(RunPaths.of(r).cams(arch, epoch).exists()
                                          for arch in config.architectures for epoch in config.compared_epochs)]
    return [config, *present]


def _inputs(config: RunConfig) -> list[Path]:
    paths = [RunPaths.of(config).true_positives]
    return paths + [RunPaths.of(c).cams(arch, epoch) for c in seed_configs(config)
                    for arch in config.architectures for epoch in config.compared_epochs]


def alpha_setting(config: RunConfig) -> str:
    """The setting with Grad-CAM++ under the other alpha convention than the run's."""
    return "alpha not normalized" if config.alpha_norm else "alpha normalized"


def _free_columns(early: metrics.PreparedMaps, late: metrics.PreparedMaps, partner_late: metrics.PreparedMaps
                  ) -> dict[str, np.ndarray]:
    """The suite's metrics that need no threshold and their chance levels, for one chunk of aligned
    maps (partner_late: the partners' later maps, degenerate where an image has no partner)."""
    pairs = {"": late, "chance_": partner_late}
    return {f"{prefix}{name}": function(early, other) for prefix, other in pairs.items()
            for name, function in FREE_METRICS.items() if prefix == "" or name in CHANCE_METRICS}


def _bound_columns(early: metrics.PreparedMaps, late: metrics.PreparedMaps, partner_late: metrics.PreparedMaps,
                   threshold: float) -> dict[str, np.ndarray]:
    """The columns a threshold decides: both overlaps with their chance levels and both maps'
    salient areas."""
    return {"overlap_iou": metrics.overlap_iou(early, late, threshold),
            "adjusted_iou": metrics.adjusted_iou(early, late, threshold),
            "chance_overlap_iou": metrics.overlap_iou(early, partner_late, threshold),
            "chance_adjusted_iou": metrics.adjusted_iou(early, partner_late, threshold),
            "area_early": metrics.salient_area(early, threshold), "area_late": metrics.salient_area(late, threshold)}


def _free_settings(early: metrics.PreparedMaps, late: metrics.PreparedMaps, partner_late: metrics.PreparedMaps,
                   base: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Setting name -> threshold-free columns at the paper's layer: the same in every setting."""
    return {name: base for name in (MAIN, *map(threshold_setting, THRESHOLDS), *map(top_setting, TOP_SHARES))}


def _bound_settings(early: metrics.PreparedMaps, late: metrics.PreparedMaps, partner_late: metrics.PreparedMaps,
                    base: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Setting name -> the overlap columns at the paper's layer: the overlap at each fixed
    threshold and of each top share in place of the run's own."""
    settings = {MAIN: base}
    for tau in THRESHOLDS:
        settings[threshold_setting(tau)] = {**base, "overlap_iou": metrics.overlap_iou(early, late, tau),
                                            "chance_overlap_iou": metrics.overlap_iou(early, partner_late, tau)}
    for share in TOP_SHARES:
        settings[top_setting(share)] = {**base, "overlap_iou": metrics.top_share_overlap(early, late, share),
                                        "chance_overlap_iou": metrics.top_share_overlap(early, partner_late, share)}
    return settings


def _chunk_maps(config: RunConfig, run: RunConfig, arch: str, method: str, depth: str, chunk: pd.DataFrame,
                partners: np.ndarray, partner_ids: np.ndarray
                ) -> tuple[metrics.PreparedMaps, metrics.PreparedMaps, metrics.PreparedMaps]:
    """The chunk's earlier and later maps and its partners' later maps (taken from the chunk's own
    when every partner lies in it, as all do when the compared images fit in one chunk)."""
    early, late = (metrics.PreparedMaps(epoch_maps(run, arch, method, epoch, chunk["sample_id"], depth))
                   for epoch in config.compared_epochs)
    no_partner = partners < 0
    inside = pd.Index(chunk["sample_id"].astype(str)).get_indexer(partner_ids.astype(str))
    if (inside[~no_partner] >= 0).all():
        return early, late, late.take(np.maximum(inside, 0), invalid=no_partner)
    partner_late = epoch_maps(run, arch, method, config.late_epoch, partner_ids, depth)
    partner_late[no_partner] = np.nan
    return early, late, metrics.PreparedMaps(partner_late)


def _columns(config: RunConfig, samples: pd.DataFrame, partners: np.ndarray,
             base_of: Callable[..., dict[str, np.ndarray]], settings_of: Callable[..., dict[str, dict[str, np.ndarray]]]
             ) -> pd.DataFrame:
    """One row per (setting, seed, depth, method, arch, sample) with the columns `base_of` (the
    run's setting) and `settings_of` (the paper's layer's other settings) compute from the maps."""
    partner_ids = samples["sample_id"].to_numpy()[np.maximum(partners, 0)]
    other_alpha = _has_other_alpha(config)
    parts = []
    for run in seed_configs(config):
        for depth in depths(config):
            for arch in config.architectures:
                for method in config.cam_methods:
                    for start in range(0, len(samples), CHUNK):
                        chunk = samples.iloc[start:start + CHUNK]
                        chunk_partners = partners[start:start + CHUNK], partner_ids[start:start + CHUNK]
                        maps = _chunk_maps(config, run, arch, method, depth, chunk, *chunk_partners)
                        base = base_of(*maps)
                        if depth != PAPER_DEPTH:
                            settings = {depth_setting(depth): base}
                        else:
                            settings = settings_of(*maps, base)
                            if other_alpha:
                                settings[alpha_setting(config)] = (
                                    base_of(*_chunk_maps(config, run, arch, OTHER_ALPHA, depth, chunk, *chunk_partners))
                                    if method == "gradcampp" else base)
                        for setting, columns in settings.items():
                            parts.append(pd.DataFrame({"setting": setting, "seed": run.seed, "depth": depth,
                                                       "method": method, "arch": arch,
                                                       "sample_id": chunk["sample_id"].to_numpy(),
                                                       "label": chunk["label"].to_numpy(), **columns}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=KEYS)


def run_evidence_stage(config: RunConfig, force: bool = False) -> pd.DataFrame:
    """Write `evidence.parquet` (see the module docstring) and return it. The columns no threshold
    decides are kept apart in `evidence_threshold_free.parquet`, whose stamp leaves the threshold
    out: a changed threshold recomputes only the overlaps and areas (of every setting: they are
    cheap once the maps are loaded)."""
    paths = RunPaths.of(config)
    inputs = _inputs(config)
    expected = stamp(config, "evidence", inputs)
    if not force and is_current(paths.evidence, expected):
        return pd.read_parquet(paths.evidence)
    samples = mapped_samples(config)
    partners = baselines.shuffled_partners(samples["label"].to_numpy(), config.seed)
    free_stamp = stamp(config, "evidence_threshold_free", inputs)
    if not force and is_current(paths.evidence_threshold_free, free_stamp):
        free = pd.read_parquet(paths.evidence_threshold_free)
    else:
        free = _columns(config, samples, partners, _free_columns, _free_settings)
        write_parquet(paths.evidence_threshold_free, free, stamp=free_stamp)
    bound = _columns(config, samples, partners, partial(_bound_columns, threshold=config.threshold), _bound_settings)
    if free.empty and bound.empty:  # no compared image
        frame = pd.DataFrame(columns=COLUMNS)
    else:
        frame = free.merge(bound, on=KEYS, how="inner", validate="one_to_one", sort=False)
        if len(frame) != len(free) or len(frame) != len(bound):
            raise DriftError(f"{paths.evidence_threshold_free} does not match the maps; redo the stage "
                             "(cxrdrift run --force)")
        frame = frame[COLUMNS].reset_index(drop=True)
    write_parquet(paths.evidence, frame, stamp=expected)
    return frame


def _has_other_alpha(config: RunConfig) -> bool:
    """Whether every CAM file of every seed holds Grad-CAM++ under the other alpha convention."""
    from .cams import load_cams

    return "gradcampp" in config.cam_methods and all(
        OTHER_ALPHA in load_cams(run, arch, epoch) for run in seed_configs(config)
        for arch in config.architectures for epoch in config.compared_epochs)


def load_evidence(config: RunConfig, setting: str = MAIN) -> pd.DataFrame:
    """evidence.parquet's rows of `setting` (None: every setting)."""
    path = RunPaths.of(config).evidence
    if not path.exists():
        raise DriftError(f"{path} is missing: run the evidence stage (cxrdrift run) first")
    frame = pd.read_parquet(path)
    return frame if setting is None else frame[frame["setting"] == setting].reset_index(drop=True)


def kept_count_weights(config: RunConfig) -> dict[str, float]:
    """Inverse-frequency weights from the kept images' class counts (each class the same total
    say among the compared images), the sensitivity row beside the whole-test-set weights."""
    from .data import inverse_frequency_weights

    tested = load_true_positives(config)
    kept = tested.loc[tested["kept"], "label"].value_counts() if config.cam_samples == "true_positives" \
        else tested["label"].value_counts()
    if kept.empty:
        return class_weights(config)
    weights = inverse_frequency_weights({label: int(n) for label, n in kept.items()})
    return {**{label: 0.0 for label in class_weights(config)}, **weights}


__all__ = ["MAIN", "THRESHOLDS", "TOP_SHARES", "CHANCE_METRICS", "seed_configs", "run_evidence_stage",
           "load_evidence", "kept_count_weights", "threshold_setting", "top_setting", "depth_setting",
           "alpha_setting"]
