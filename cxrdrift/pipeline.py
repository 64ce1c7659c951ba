"""Every stage of the study in order, without the book (what `cxrdrift run` does)."""
from __future__ import annotations

import time
from typing import Callable

from . import gaps, provenance
from .artifacts import write_config
from .config import RunConfig


def _stages(force: bool) -> list[tuple[str, Callable[[RunConfig], object]]]:
    from . import cams, data, drift, evidence, localization, randomization, replicates, train, trajectory, verdicts

    return [
        ("data", data.prepare),
        ("training", lambda config: train.run_training(config, force=force)),
        ("true-positive filter", drift.run_true_positive_filter),
        ("CAMs", lambda config: cams.run_cam_stage(config, force=force)),
        ("drift", lambda config: drift.run_drift_stage(config, force=force)),
        ("ground truth", lambda config: localization.run_localization_stage(config, force=force)),
        ("randomization ceiling", lambda config: randomization.run_randomization_stage(config, force=force)),
        ("drift across epochs", lambda config: trajectory.run_trajectory_stage(config, force=force)),
        ("noise floor", lambda config: replicates.run_noise_floor_stage(config, force=force)),
        ("evidence", lambda config: evidence.run_evidence_stage(config, force=force)),
        ("verdicts", lambda config: verdicts.write_verdicts(config, force=force)),
    ]


def run_all(config: RunConfig, force: bool = False) -> None:
    """Run data → training → true-positive filter → CAMs → drift → ground truth (when the dataset
    has lesion masks) → randomization ceiling → drift across every epoch (with `cam_epochs="all"`)
    → noise floor (with `replicate_seeds`) → the evidence and the verdicts on it into `config.run_dir`.

    Each stage skips what is already finished for the same configuration, so an interrupted
    run resumes where it stopped; `force` redoes the training, CAM and drift stages. The last line
    printed says what could not be measured and why (`gaps.summary_line`).
    """
    write_config(config, {"environment": provenance.environment()})
    for name, stage in _stages(force):
        start = time.perf_counter()
        stage(config)
        print(f"[{config.profile}] {name:<22} {time.perf_counter() - start:7.1f} s", flush=True)
    print(gaps.summary_line(config), flush=True)
