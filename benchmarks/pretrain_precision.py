"""Pre-training speed in float32 and in mixed_bfloat16 (bf16 matmuls and convolutions, float32 weights).

    .venv/bin/python benchmarks/pretrain_precision.py [--archs ResNet50V2 ...] [--images 320] [--repeats 2]

Trains the pre-training model (`pretrain.compiled_source_model`: the demo's heads, input size and
batch) on `--images` source images per timed pass, after one untimed pass that traces the graph,
the two precisions interleaved `--repeats` times; prints images per second and their ratio. A CPU
with avx512_bf16 or AMX runs bf16 natively; others emulate it and are slower.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cxrdrift import config as cfg  # noqa: E402
from cxrdrift import models, pretrain  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16")


def trainer_for(arch: str, policy: str, spec: pretrain.PretrainSpec, x: np.ndarray, y: np.ndarray,
                maps: np.ndarray) -> tuple[keras.Model, tf.data.Dataset]:
    """The compiled source model under `policy`, traced by one pass, and its batches."""
    models.restart_layer_names()
    keras.utils.set_random_seed(spec.seed)
    _, trainer, targets = pretrain.compiled_source_model(arch, spec, x.shape[1], y, maps, policy)
    batches = tf.data.Dataset.from_tensor_slices((x, targets)).batch(spec.batch_size).prefetch(2)
    trainer.fit(batches, epochs=1, verbose=0)  # traces the step
    return trainer, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(cfg.ARCHITECTURES), choices=cfg.ARCHITECTURES)
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    config = cfg.profile("demo")
    print(f"{args.images} source images per pass, batches of {config.batch_size}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; native bf16: {pretrain.native_bf16()}")
    for arch in args.archs:
        spec = pretrain.PretrainSpec.from_config(config, arch)
        x, y, maps = pretrain.source_inputs(arch, args.images, spec.train_size(arch), spec.seed)
        trainers = {policy: trainer_for(arch, policy, spec, x, y, maps) for policy in POLICIES}
        seconds: dict[str, list[float]] = {policy: [] for policy in POLICIES}
        for _ in range(args.repeats):
            for policy, (trainer, batches) in trainers.items():
                start = time.perf_counter()
                trainer.fit(batches, epochs=1, verbose=0)
                seconds[policy].append(time.perf_counter() - start)
        speed = {policy: args.images / min(times) for policy, times in seconds.items()}
        print(f"{arch:<12} " + ", ".join(f"{policy} {speed[policy]:5.1f} images/s" for policy in POLICIES)
              + f" -> bf16 / float32 {speed['mixed_bfloat16'] / speed['float32']:.2f}x")


if __name__ == "__main__":
    main()
