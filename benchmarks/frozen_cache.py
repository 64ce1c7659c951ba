"""Frozen-phase cost: training the head on features computed once vs running the backbone every epoch.

    .venv/bin/python benchmarks/frozen_cache.py [--profile demo] [--arch ResNet50V2] [-p NAME VALUE ...]

Runs the transfer phase (`epochs_tl` epochs, random backbone weights: the cost does not depend on
them) both ways on the profile's synthetic dataset (generated into a temporary folder) and prints
wall and CPU seconds and their ratio. The machine's load average is printed too: on a shared
machine wall times are inflated, CPU times much less so.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from cxrdrift import config as cfg  # noqa: E402
from cxrdrift import data, models, train  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def frozen_phase(config: cfg.RunConfig, arch: str, index: data.DatasetIndex, cached: bool) -> tuple[float, float]:
    """Wall and CPU seconds of the whole transfer phase (tracing included), one way."""
    keras.utils.set_random_seed(config.seed)
    model = models.build_model(arch, config.image_size, None)
    train.set_phase(model, "transfer", config.bn_frozen_in_ft)
    wall, cpu = time.perf_counter(), cpu_seconds()
    source = train.EpochSource(config, arch, index, model, cached)
    train.compile_for(source.trainer, config.lr_tl, xla=False)
    for epoch in range(1, config.epochs_tl + 1):
        train.run_epoch(source, epoch)
    return time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", choices=cfg.PROFILES[1:])
    parser.add_argument("--arch", default="ResNet50V2", choices=cfg.ARCHITECTURES)
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = cfg.profile(args.profile, run_dir=tmp, **dict(args.p))
        index = data.prepare(config)
        print(f"{args.arch}, {config.image_size} px, {config.synth_train} training images, "
              f"{config.epochs_tl} frozen epochs; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        plain = frozen_phase(config, args.arch, index, cached=False)
        cached = frozen_phase(config, args.arch, index, cached=True)
    print(f"plain path (backbone every epoch): {plain[0]:7.1f} s wall, {plain[1]:7.1f} s CPU")
    print(f"cached features (backbone once):   {cached[0]:7.1f} s wall, {cached[1]:7.1f} s CPU")
    print(f"ratio plain / cached: {plain[0] / cached[0]:.2f}x wall, {plain[1] / cached[1]:.2f}x CPU")


if __name__ == "__main__":
    main()
