"""A noise floor for the drift metrics: the same study trained again with another seed.

How much do two maps of one image differ when nothing but training noise separates the models —
the order of the training images and, unless `head_init` is "zeros", the head's initialization?
Each seed in `replicate_seeds` trains every architecture again on the same data from the same
pre-trained weights (and the main run's frozen-backbone features, which the seed does not change),
into `<run_dir>/replicates/seed_<seed>/`, and maps the test images the main run compares at the
compared epochs. The drift metrics between the main run's maps and a replicate's maps of the same
image at the same epoch are the floor that phase drift must clear to mean anything.
Stage: the replicates' maps -> `noise_floor.parquet`, one row per (architecture, method, epoch,
seed, sample).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .artifacts import RunPaths, is_current, stamp, write_parquet
from .config import RunConfig
from .drift import (class_weights, drift_means, drift_rows, epoch_maps, load_compared_rows, load_drift,
                    mapped_samples)
from .metrics import DRIFT_METRICS, summarize


def replicate_config(config: RunConfig, seed: int) -> RunConfig:
    """The configuration of the replicate with `seed`: the main run's data and pre-trained weights,
    maps of the main run's compared images at the compared epochs, none of the extra stages."""
    return config.replace(
        seed=seed, run_dir=str(Path(config.run_dir) / "replicates" / f"seed_{seed}"), replicate_seeds=(),
        data_dir=config.data_dir or str(RunPaths.of(config).data),
        pretrain_seed=config.pretrain_seed if config.pretrain_seed >= 0 else config.seed,
        cam_epochs="compared", ground_truth=False, randomization_check=False)


def run_replicate_training(config: RunConfig, force: bool = False) -> list[RunConfig]:
    """Train every replicate (resuming, as the main run does) on the main run's frozen features;
    returns their configurations. Run in the process that trained the main run, each replicate
    fine-tunes in the steps that run traced (`train.finetuner`)."""
    from . import train
    replicas = [replicate_config(config, seed) for seed in config.replicate_seeds]
    for replica in replicas:
        train.run_training(replica, force=force, features_of=config)
    return replicas


def run_noise_floor_stage(config: RunConfig, force: bool = False) -> pd.DataFrame | None:
    """Train (unless trained) and map each replicate, then write `noise_floor.parquet`: arch,
    method, epoch, seed, sample_id, label, kept, the four drift metrics (main run's map first) and
    the degenerate flags; None when there are no replicates."""
    from . import cams
    if not config.replicate_seeds:
        return None
    replicas = run_replicate_training(config, force=force)
    for replica in replicas:
        cams.run_cam_stage(replica, force=force, samples_of=config)
    paths = RunPaths.of(config)
    inputs = [paths.true_positives] + [RunPaths.of(c).cams(arch, epoch) for c in (config, *replicas)
                                       for arch in config.architectures for epoch in config.compared_epochs]
    expected = stamp(config, "noise_floor", inputs)
    if not force and is_current(paths.noise_floor, expected):
        return pd.read_parquet(paths.noise_floor)
    samples = mapped_samples(config)
    parts = []
    for replica in replicas:
        for arch in config.architectures:
            for method in config.cam_methods:
                for epoch in config.compared_epochs:
                    values = drift_rows(epoch_maps(config, arch, method, epoch, samples["sample_id"]),
                                        epoch_maps(replica, arch, method, epoch, samples["sample_id"]),
                                        config.threshold, DRIFT_METRICS)  # what the floor is read for
                    parts.append(pd.concat([pd.DataFrame({"arch": arch, "method": method, "epoch": epoch,
                                                          "seed": replica.seed}, index=samples.index),
                                            samples, values], axis=1))
    frame = pd.concat(parts, ignore_index=True)
    write_parquet(paths.noise_floor, frame, stamp=expected)
    return frame


def floor_table(config: RunConfig) -> pd.DataFrame | None:
    """Per method, architecture and metric: the class-weighted mean phase drift beside the noise
    floor at each compared epoch (all seeds pooled); None when there are no replicates."""
    floor = load_compared_rows(config, RunPaths.of(config).noise_floor)
    if not config.replicate_seeds or floor is None:
        return None
    table = drift_means(config, load_drift(config)).drop(columns="n").rename(columns={"mean": "phase"})
    for epoch, part in floor.groupby("epoch"):
        means = drift_means(config, part).drop(columns="n").rename(columns={"mean": f"floor_epoch_{epoch}"})
        table = table.merge(means, on=["method", "arch", "metric"], how="left")
    return table


def change(metric: str, values: pd.Series) -> pd.Series:
    """How much two maps differ by `metric`, larger meaning more: the displacement itself, one minus
    an overlap or correlation, the size of an entropy change."""
    if metric == "spatial_displacement":
        return values
    if metric == "concentration_change":
        return values.abs()
    return 1.0 - values


def floor_excess(config: RunConfig, level: float = 0.95) -> pd.DataFrame | None:
    """Per method, architecture and paper metric: how much more each compared image's maps change
    over fine-tuning (the main run's early -> late, `change`) than between seeds at the late epoch
    (the main run against each replicate, averaged over replicates), as a class-weighted mean of
    the per-image differences with its bootstrap interval: method, arch, metric, phase, floor,
    excess, ci_low, ci_high, n. `ci_low > 0` means fine-tuning moved the evidence beyond training
    noise. None when there are no replicates."""
    floor = load_compared_rows(config, RunPaths.of(config).noise_floor)
    if not config.replicate_seeds or floor is None:
        return None
    late = floor[floor["epoch"] == config.late_epoch]
    phase = load_drift(config)
    weights = class_weights(config)
    rows = []
    for (method, arch), cell in phase.groupby(["method", "arch"], sort=False):
        seeds = late[(late["method"] == method) & (late["arch"] == arch)]
        for metric in DRIFT_METRICS:
            per_image = seeds.assign(change=change(metric, seeds[metric])).groupby("sample_id")["change"].mean()
            paired = cell.assign(phase=change(metric, cell[metric]).to_numpy(),
                                 floor=per_image.reindex(cell["sample_id"]).to_numpy())
            difference = paired["phase"] - paired["floor"]
            summary = summarize(difference.to_numpy(), paired["label"].to_numpy(), weights,
                                config.bootstrap_samples, config.seed, level)
            means = {name: summarize(paired[name].to_numpy(), paired["label"].to_numpy(), weights).mean
                     for name in ("phase", "floor")}
            rows.append({"method": method, "arch": arch, "metric": metric, **means, "excess": summary.mean,
                         "ci_low": summary.ci_low, "ci_high": summary.ci_high, "n": summary.n})
    return pd.DataFrame(rows, columns=["method", "arch", "metric", "phase", "floor", "excess", "ci_low", "ci_high",
                                       "n"]).astype({"n": np.int64})


def fine_tuning_dose(config: RunConfig) -> str:
    """`config`'s fine-tuning dose (epochs, images per epoch, learning rate) beside the paper's."""
    paper = RunConfig()
    per_epoch = (f"{config.finetune_images:,} training images" if config.finetune_images else
                 f"its {config.synth_train:,} training images" if config.synthetic_data else "every training image")
    return (f"{config.epochs_ft} fine-tuning epochs of {per_epoch} at learning rate {config.lr_ft:g} (the paper: "
            f"{paper.epochs_ft} epochs of its {paper.synth_train:,} training images; its rate is lost from the text "
            f"we have, and the paper profile assumes {paper.lr_ft:g})")


def cells_beyond_floor(excess: pd.DataFrame) -> pd.Series:
    """Per architecture, the cells (method x metric) of `excess` (`floor_excess`) whose interval
    lies above zero."""
    return (excess["ci_low"] > 0).groupby(excess["arch"], sort=False).sum()


def floor_limit(config: RunConfig, excess: pd.DataFrame) -> str:
    """The run's fine-tuning dose and, for the architectures whose phase drift clears the seed
    floor in no cell of `excess` (`floor_excess`), that at this dose their drift cannot be told
    from training noise."""
    silent = [arch for arch, count in cells_beyond_floor(excess).items() if count == 0]
    dose = f"This run's fine-tuning dose: {fine_tuning_dose(config)}."
    if not silent:
        return f"{dose} Every architecture's phase drift clears the floor in at least one cell."
    names = " and ".join(silent)
    return (f"{dose} At this dose the phase drift of {names} clears the floor in no cell: for "
            f"{'it' if len(silent) == 1 else 'them'} this run cannot tell what fine-tuning did to the evidence "
            "from training noise. That is a limit of the dose, not a finding about the architecture.")
