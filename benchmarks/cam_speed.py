"""Time our fused CAM pass against tf-keras-vis on the same model and the same batch.

Both produce LayerCAM and Grad-CAM++ (alpha-normalized, so the maps are the same) at each
backbone's target layer as raw maps; tf-keras-vis needs one call per method. Also prints our
time over `model.predict` on the batch (the floor is about one forward pass), and the cost of
maps at two depths (the paper's layer and `models.EARLIER_LAYERS`, one pass) over the paper's
layer alone. Warm-up excluded; each time is the best of `--repeats` runs, the one- and two-depth
passes interleaved so that a busy machine slows both alike.

    .venv/bin/python benchmarks/cam_speed.py [--batch 32] [--repeats 3] [--size N]
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus  # noqa: E402
from tf_keras_vis.layercam import Layercam  # noqa: E402
from tf_keras_vis.utils.scores import CategoricalScore  # noqa: E402

from cxrdrift import cams  # noqa: E402
from cxrdrift.config import ARCHITECTURES, profile  # noqa: E402
from cxrdrift.models import EARLIER_LAYERS, TARGET_LAYERS, build_model  # noqa: E402

METHODS = ("layercam", "gradcampp")


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def best_times(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Seconds of the fastest of `repeats` rounds of each run, the runs alternating in each round."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def benchmark(arch: str, size: int, batch: int, repeats: int) -> dict[str, float]:
    model = build_model(arch, size, None)
    layer = TARGET_LAYERS[arch]
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, size=(batch, size, size, 3)).astype(np.float32)
    classes = rng.integers(0, 5, size=batch)
    score = CategoricalScore(classes.tolist())
    options = dict(penultimate_layer=layer, seek_penultimate_conv_layer=False, expand_cam=False,
                   normalize_cam=False)
    references = (GradcamPlusPlus(model), Layercam(model))

    def ours() -> dict[str, np.ndarray]:
        return cams.compute_cams(model, images, classes, layer, methods=METHODS, alpha_norm=True,
                                 batch_size=batch)

    def tf_keras_vis() -> list[np.ndarray]:
        return [np.asarray(method(score, images, **options)) for method in references]

    def two_depths() -> dict[str, dict[str, np.ndarray]]:
        return cams.compute_layer_cams(model, images, classes, (layer, EARLIER_LAYERS[arch]), methods=METHODS,
                                       alpha_norm=True, batch_size=batch)

    depths = best_times({"ours": ours, "two_depths": two_depths}, repeats)
    return {**depths, "tf_keras_vis": best_time(tf_keras_vis, repeats),
            "predict": best_time(lambda: model.predict(images, batch_size=batch, verbose=0), repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=profile("demo").image_size,
                        help="input size (default: the demo profile's)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"input {args.size} px, batch {args.batch}, best of {args.repeats}; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at start")
    print(f"{'arch':<12} {'ours s':>8} {'tf-keras-vis s':>15} {'speed-up':>9} {'predict s':>10} {'ours/predict':>13}"
          f" {'two depths s':>13} {'two/one':>8}")
    for arch in args.arch:
        t = benchmark(arch, args.size, args.batch, args.repeats)
        print(f"{arch:<12} {t['ours']:8.3f} {t['tf_keras_vis']:15.3f} {t['tf_keras_vis'] / t['ours']:8.1f}x "
              f"{t['predict']:10.3f} {t['ours'] / t['predict']:13.2f} {t['two_depths']:13.3f} "
              f"{t['two_depths'] / t['ours']:7.2f}x", flush=True)


if __name__ == "__main__":
    main()
