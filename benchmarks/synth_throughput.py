"""Synthetic-radiograph throughput on one core: `generate_dataset` (with PNG writing) and `render_batch`.

Run: `.venv/bin/python benchmarks/synth_throughput.py [--size 224] [--images 1000]`.
Prints images/s by wall clock and by this process's CPU time (the CPU figure is what one free core
would give when other jobs share the machine).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: set before numpy loads its BLAS

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Callable  # noqa: E402

from cxrdrift import synth  # noqa: E402


def _measure(task: Callable[[], object], n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    task()
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image size in pixels")
    parser.add_argument("--images", type=int, default=1000, help="images to generate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    synth.render_batch(list(synth.CLASSES), args.size, args.seed)  # warm-up
    labels = [synth.CLASSES[i % len(synth.CLASSES)] for i in range(args.images)]

    def render() -> None:
        for start in range(0, len(labels), 64):
            synth.render_batch(labels[start:start + 64], args.size, args.seed)

    with tempfile.TemporaryDirectory() as out:
        rates = {
            "generate_dataset (render + PNG images and masks)":
                _measure(lambda: synth.generate_dataset(out, {"train": args.images}, args.size, args.seed),
                         args.images),
            "render_batch (in memory, batches of 64)": _measure(render, args.images),
        }
    print(f"{args.images} images at {args.size}x{args.size}, one thread")
    for name, (wall, cpu) in rates.items():
        print(f"{name:52s} {wall:7.1f} images/s wall   {cpu:7.1f} images/s CPU")


if __name__ == "__main__":
    main()
