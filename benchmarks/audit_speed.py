"""How fast `cxrdrift audit` maps two checkpoints: images per second of its streamed pass (both
models, every method, one fused forward/backward pass per model and batch), against two
`model.predict` passes over the same stream (target: at most 1.3x their time) and against
tf-keras-vis producing the same maps (one call per method and model; target: at least 5x faster).

On a finished demo run the two compared checkpoints of each architecture are used (the demo's
112 px); without one, randomly initialized models of the same architectures at `--size` and
random images (say which in the output). Warm-up excluded; each time is the best of `--repeats`
(tf-keras-vis, slow, maps the first `--tkv-images` and is compared per image, best of one fewer).

    .venv/bin/python benchmarks/audit_speed.py [--run-dir runs/demo] [--images 128] [--tkv-images 32]
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tf_keras_vis.gradcam import Gradcam  # noqa: E402
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus  # noqa: E402
from tf_keras_vis.layercam import Layercam  # noqa: E402
from tf_keras_vis.utils.scores import CategoricalScore  # noqa: E402

from cxrdrift import audit, audit_data, audit_models, data  # noqa: E402
from cxrdrift.artifacts import RunPaths  # noqa: E402
from cxrdrift.cams import FusedCamPass  # noqa: E402
from cxrdrift.config import ARCHITECTURES, CLASSES, RunConfig, profile  # noqa: E402
from cxrdrift.models import TARGET_LAYERS, build_model, restart_layer_names  # noqa: E402

from cam_speed import best_time  # noqa: E402  (benchmarks/ is the script's folder, so on sys.path)

TKV_METHODS = {"gradcam": Gradcam, "gradcampp": GradcamPlusPlus, "layercam": Layercam}


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return " ".join(sorted(set(re.findall(r"\b(avx512_bf16|amx_bf16|avx2)\b", text)))) or "none of avx2/avx512_bf16/amx_bf16"


def random_images(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` random 256 px PNGs spread over the five class folders of a test split."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        target = folder / "test" / CLASSES[i % len(CLASSES)]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(target / f"{i:04d}.png")
    return folder


def checkpoints(run_dir: Path, arch: str, size: int, work: Path) -> tuple[list[Path], str]:
    """The run's compared checkpoints as .keras files, or two random models; and which."""
    config_path = run_dir / "config.json"
    if config_path.is_file():
        config = RunConfig.load(config_path)
        paths = RunPaths.of(config)
        weights = [paths.weights(arch, epoch) for epoch in config.compared_epochs]
        if all(w.is_file() for w in weights):
            files = [audit_models.export_checkpoint(arch, config.image_size, w, work / f"{arch}_{w.name}.keras")
                     for w in weights]
            return files, f"{run_dir} epochs {config.compared_epochs[0]} and {config.compared_epochs[1]}"
    files = []
    for seed in (0, 1):
        restart_layer_names()
        keras.utils.set_random_seed(seed)
        files.append(work / f"{arch}_random_{seed}.keras")
        build_model(arch, size, None).save(files[-1])
    return files, "random initialization (no finished run)"


def data_root(run_dir: Path, work: Path, count: int) -> tuple[Path, str]:
    if (run_dir / "data" / "test").is_dir():
        return run_dir / "data", f"{run_dir / 'data'} test split"
    return random_images(work / "images", count), "random images"


def benchmark(arch: str, run_dir: Path, size: int, count: int, tkv_count: int, batch: int, repeats: int,
              work: Path) -> dict:
    files, source = checkpoints(run_dir, arch, size, work)
    root, images_from = data_root(run_dir, work, count)
    models = {role: audit_models.load_model(path) for role, path in zip(("before", "after"), files)}
    size = audit_models.input_size(models["after"])
    layer = TARGET_LAYERS[arch]
    settings = audit.AuditSettings(batch_size=batch, n_boot=0, ceiling_images=0)
    frame = audit_data.scan(root, len(CLASSES), classes=CLASSES).frame.head(count)
    transform = audit_models.preprocessing(audit_models.STUDY_PREPROCESSING[arch])
    passes = {role: FusedCamPass(model, layer, features=audit_models.feature_model(model, layer))
              for role, model in models.items()}

    def ours() -> object:
        return audit.stream_maps(passes, None, frame, transform, size, "label", settings)

    def predict_twice() -> object:
        return [model.predict(data.make_dataset(frame, transform, size, batch, cache=False), verbose=0)
                for model in models.values()]

    def tf_keras_vis() -> object:
        explainers = [(TKV_METHODS[m](model), m) for model in models.values() for m in settings.methods]
        maps = []
        for images, labels in audit_data.batches(frame.head(tkv_count), transform, size, batch):
            score = CategoricalScore(labels.tolist())
            for explainer, method in explainers:
                options = dict(penultimate_layer=layer, seek_penultimate_conv_layer=False, expand_cam=False,
                               normalize_cam=False)
                maps.append(np.asarray(explainer(score, images, **options)))
        return maps

    times = {"ours": best_time(ours, repeats), "predict": best_time(predict_twice, repeats),
             "tf_keras_vis": best_time(tf_keras_vis, max(1, repeats - 1))}
    return {"source": source, "images_from": images_from, "n": len(frame), "tkv_n": min(tkv_count, len(frame)),
            "size": size, **times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/demo", type=Path)
    parser.add_argument("--arch", nargs="+", default=list(ARCHITECTURES), choices=ARCHITECTURES)
    parser.add_argument("--size", type=int, default=profile("demo").image_size,
                        help="input size without a finished run (default: the demo profile's)")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--tkv-images", type=int, default=32,
                        help="images tf-keras-vis maps (it is slow; compared per image)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs ({cpu_flags()}), load average {os.getloadavg()[0]:.1f} at start; "
          f"batch {args.batch}, best of {args.repeats}; methods {', '.join(audit.AuditSettings().methods)}")
    print(f"{'arch':<12} {'images/s':>9} {'audit s':>8} {'2x predict s':>13} {'audit/predict':>14} "
          f"{'tf-keras-vis s':>15} {'per image':>9}  models")
    with tempfile.TemporaryDirectory() as work:
        for arch in args.arch:
            t = benchmark(arch, args.run_dir, args.size, args.images, args.tkv_images, args.batch, args.repeats,
                          Path(work))
            speed_up = (t["tf_keras_vis"] / t["tkv_n"]) / (t["ours"] / t["n"])
            print(f"{arch:<12} {t['n'] / t['ours']:9.1f} {t['ours']:8.2f} {t['predict']:13.2f} "
                  f"{t['ours'] / t['predict']:13.2f}x {t['tf_keras_vis']:15.2f} {t['tf_keras_vis'] / t['ours']:8.1f}x"
                  f"  {t['source']}; {t['n']} {t['images_from']} at {t['size']} px (tf-keras-vis: the first {t['tkv_n']})",
                  flush=True)


if __name__ == "__main__":
    main()
