"""How long the evidence stage (chapter 07's per-image drift under every setting, for every seed)
takes on a run shaped like the demo, against the one-setting rebuild's 3 minutes (the stage runs
again whenever the threshold changes).

The run is synthetic: random raw maps on the grids of the demo's layers (both depths, read from
the models at the demo's 112 px) for `--images` compared images, the main seed and the demo's
replicates, both Grad-CAM++ conventions, in a temporary run directory. Printed: the stage's time
from the maps (`evidence.run_evidence_stage`, forced) and again at threshold 0.4, what the
one-setting rebuild runs, with its share of the rebuild's budget. The same script
on an older checkout (`PYTHONPATH=<checkout> .venv/bin/python benchmarks/evidence_speed.py`)
gives the time before a change.

    .venv/bin/python benchmarks/evidence_speed.py [--images 227]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cxrdrift import evidence, replicates  # noqa: E402
from cxrdrift.artifacts import RunPaths, write_npz, write_parquet  # noqa: E402
from cxrdrift.cams import OTHER_ALPHA, cam_layers, map_key  # noqa: E402
from cxrdrift.config import CLASSES, RunConfig, profile  # noqa: E402
from cxrdrift.models import build_model  # noqa: E402

from audit_speed import cpu_flags  # noqa: E402  (benchmarks/ is the script's folder, so on sys.path)

REBUILD_S = 180
THRESHOLD_RERUN = 0.4  # the rebuild the demo's target names (-p threshold 0.4)


def grids(config: RunConfig, arch: str) -> dict[str, int]:
    """Layer name -> the side of its feature grid at the run's image size, for every mapped depth."""
    model = build_model(arch, config.image_size, None)
    return {layer: int(model.get_layer(layer).output.shape[1]) for layer in cam_layers(config, arch).values()}


def raw_maps(rng: np.random.Generator, n: int, grid: int) -> np.ndarray:
    """ReLU-like raw maps: about a third of the cells zero, as LayerCAM's often are."""
    return np.maximum(rng.normal(0.3, 1.0, (n, grid, grid)), 0.0).astype(np.float32)


def synthetic_run(root: Path, images: int) -> RunConfig:
    """A demo-profile run directory holding only what the evidence stage reads."""
    config = profile("demo", run_dir=str(root / "run"))
    rng = np.random.default_rng(0)
    sample_ids = np.array([f"test/{i:05d}.png" for i in range(images)])
    labels = np.array(CLASSES)[rng.integers(0, len(CLASSES), images)]
    write_parquet(RunPaths.of(config).true_positives,
                  pd.DataFrame({"sample_id": sample_ids, "label": labels, "kept": True}))
    for arch in config.architectures:
        layers = grids(config, arch)
        for run in [config, *(replicates.replicate_config(config, seed) for seed in config.replicate_seeds)]:
            for epoch in config.compared_epochs:
                write_npz(RunPaths.of(run).cams(arch, epoch),
                          {"sample_id": sample_ids, "layers": np.array(list(layers)),
                           "depths": np.array(list(cam_layers(config, arch))),
                           **{map_key(method, layer, arch): raw_maps(rng, images, side)
                              for layer, side in layers.items() for method in (*config.cam_methods, OTHER_ALPHA)}})
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=227, help="compared images (the demo compared 227)")
    args = parser.parse_args()
    print(f"CPU: {os.cpu_count()} cores, {cpu_flags()}")
    with tempfile.TemporaryDirectory() as tmp:
        config = synthetic_run(Path(tmp), args.images)
        cells = ((1 + len(config.replicate_seeds)) * len(config.cam_layers) * len(config.architectures)
                 * len(config.cam_methods))
        start = time.perf_counter()
        frame = evidence.run_evidence_stage(config, force=True)
        first = time.perf_counter() - start
        start = time.perf_counter()
        evidence.run_evidence_stage(config.replace(threshold=THRESHOLD_RERUN))
        rerun = time.perf_counter() - start
    print(f"evidence stage, {cells} cells (seeds x depths x architectures x methods) of {args.images} images, "
          f"{len(frame):,} rows, {len(set(frame['setting']))} settings: {first:.1f} s from the maps; {rerun:.1f} s "
          f"again at threshold {THRESHOLD_RERUN}, {rerun / REBUILD_S:.0%} of the one-setting rebuild's {REBUILD_S} s")


if __name__ == "__main__":
    main()
