"""Drift across every epoch: each epoch's maps against those of the two compared epochs.

The paper compares two checkpoints. With maps of every epoch (`cam_epochs="all"`, whose
checkpoints `save_epochs="all"` keeps), the same four metrics trace the whole run: each epoch
against the early compared epoch (how far the evidence has moved since the end of transfer
learning) and against the late one (how far it still has to go). Whether drift jumps when
fine-tuning starts, grows steadily or settles shows in the shape of these curves. Stage: the maps
of every epoch -> `trajectory.parquet`, one row per (architecture, method, epoch, reference,
sample).
"""
from __future__ import annotations

import pandas as pd

from . import metrics
from .artifacts import RunPaths, is_current, stamp, write_parquet
from .config import RunConfig
from .drift import DriftError, epoch_maps, mapped_samples, weighted_means

CHUNK = 256  # samples post-processed at once


def run_trajectory_stage(config: RunConfig, force: bool = False) -> pd.DataFrame | None:
    """Write `trajectory.parquet` (arch, method, epoch, reference "early"/"late", sample_id,
    label, the four drift metrics with the reference epoch as the earlier map) for the compared
    samples; None, and nothing written, unless `cam_epochs="all"`."""
    if config.cam_epochs != "all":
        return None
    paths = RunPaths.of(config)
    inputs = [paths.true_positives] + [paths.cams(arch, epoch) for arch in config.architectures
                                       for epoch in config.cam_epoch_list()]
    missing = [path for path in inputs if not path.exists()]
    if missing:
        raise DriftError(f"{missing[0]} is missing: run the CAM stage with cam_epochs='all' first")
    expected = stamp(config, "trajectory", inputs)
    if not force and is_current(paths.trajectory, expected):
        return pd.read_parquet(paths.trajectory)
    samples = mapped_samples(config)[["sample_id", "label"]]
    references = dict(zip(("early", "late"), config.compared_epochs))
    parts = []
    for arch in config.architectures:
        for method in config.cam_methods:
            for start in range(0, len(samples), CHUNK):
                chunk = samples.iloc[start:start + CHUNK].reset_index(drop=True)
                reference_maps = {name: epoch_maps(config, arch, method, epoch, chunk["sample_id"])
                                  for name, epoch in references.items()}
                for epoch in config.cam_epoch_list():
                    maps = epoch_maps(config, arch, method, epoch, chunk["sample_id"])
                    for name, reference in reference_maps.items():
                        values = pd.DataFrame(metrics.drift_metrics(reference, maps, config.threshold))
                        parts.append(pd.concat([pd.DataFrame({"arch": arch, "method": method, "epoch": epoch,
                                                              "reference": name}, index=chunk.index),
                                                chunk, values], axis=1))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["arch", "method", "epoch", "reference", "sample_id", "label", *metrics.DRIFT_METRICS])
    write_parquet(paths.trajectory, frame, stamp=expected)
    return frame


def trajectory_summary(frame: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """Class-weighted mean of each drift metric per method, architecture, reference and epoch."""
    return weighted_means(frame, ["method", "arch", "reference", "epoch"], metrics.DRIFT_METRICS, weights)
