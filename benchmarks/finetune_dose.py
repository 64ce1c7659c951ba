"""Phase drift against the fine-tuning dose, beside the seed noise floor — on the validation split.

    .venv/bin/python benchmarks/finetune_dose.py [--lr 5e-5,1.5e-4,4e-4] [--seeds 0,1]
        [--epochs-ft 2] [--finetune-images 0] [--precision demo] [--pretrain-epochs demo]
        [--head-init demo] [--arch DenseNet201,...]

The demo's protocol constants are chosen here, on validation images only (the test split the book
reports on is never read). For every architecture and every combination of fine-tuning learning
rate, epochs, images per epoch, precision, head initialization, pre-training epochs and seed, the
demo protocol is trained on the demo's data from its pre-trained backbones (the demo's own, or
pre-trained anew for other `--pretrain-epochs` and cached like them; the frozen features computed
once per pre-training and shared, as replicates share them), into `runs/dose/`; the validation
images are mapped at the last frozen compared epoch and the last epoch (LayerCAM, Grad-CAM++, each
image's label as the target). Printed per architecture and setting, over the seeds: validation
accuracy at both epochs (mean and the lowest seed), fine-tuning seconds per seed, the
pre-training's seconds, the phase drift 1 - overlap IoU and 1 - pattern correlation (early -> late
map of one seed, on the validation images every seed gets right at both epochs) and the seed floor
(the same between two seeds' late maps). Rows also go to `runs/dose/dose.csv`. Runs resume: a
finished setting is read back, not trained again.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from cxrdrift import cams, config as configuration, data, drift, models, pretrain, progress, provenance, train
from cxrdrift.artifacts import RunPaths, read_json

METHODS = ("layercam", "gradcampp")
# finetune_bf16: None keeps the demo's, every architecture asks for bfloat16 (where the CPU has it
# natively; the `computed_in` column says what ran), () turns it off
PRECISIONS = {"demo": None, "bf16": configuration.ARCHITECTURES, "fp32": ()}


def numbers(text: str, kind: type) -> list:
    return [kind(v) for v in text.split(",") if v.strip()]


def demo_or(text: str, demo_value, kind: type) -> list:
    """The values to try, comma-separated: 'demo' is the demo's own `demo_value`."""
    return [demo_value if v.strip() == "demo" else kind(v.strip()) for v in text.split(",") if v.strip()]


def pretrain_seconds(config: configuration.RunConfig, arch: str) -> float:
    """Seconds the (cached) pre-training of `arch` under `config` took when it ran."""
    _, description = pretrain.cache_paths(arch, pretrain.PretrainSpec.from_config(config, arch))
    return float(read_json(description)["seconds"])


def setting_config(args: argparse.Namespace, arch: str, lr: float, epochs: int, images: int, precision: str,
                   head_init: str, pretrain_epochs: int, seed: int) -> configuration.RunConfig:
    demo = configuration.profile("demo")
    tag = f"lr{lr:g}_ep{epochs}_img{images}_{precision}_{head_init}_pre{pretrain_epochs}"
    overrides = {"run_dir": str(args.out / arch / tag / f"seed_{seed}"), "data_dir": str(RunPaths.of(demo).data),
                 "architectures": (arch,), "seed": seed, "pretrain_seed": demo.seed, "lr_ft": lr,
                 "epochs_ft": epochs, "late_epoch": demo.epochs_tl + epochs, "finetune_images": images,
                 "replicate_seeds": (), "randomization_check": False,
                 "pretrain_epochs": pretrain_epochs, "head_init": head_init}
    if PRECISIONS[precision] is not None:
        overrides["finetune_bf16"] = PRECISIONS[precision]
    return demo.replace(**overrides)


def validation_maps(config: configuration.RunConfig, arch: str, val: pd.DataFrame,
                    images: np.ndarray) -> tuple[dict[int, dict[str, np.ndarray]], dict[int, np.ndarray]]:
    """Post-processed maps of the validation images per compared epoch and method, and whether
    each image is predicted right at that epoch."""
    maps, correct = {}, {}
    labels = val["label_index"].to_numpy(np.int32)
    for epoch in config.compared_epochs:
        models.restart_layer_names()
        model = models.build_model(arch, config.image_size, None)
        model.load_weights(RunPaths.of(config).weights(arch, epoch))
        inputs = models.preprocess_input(arch)(images.astype(np.float32))
        correct[epoch] = model.predict(inputs, batch_size=32, verbose=0).argmax(axis=1) == labels
        raw = cams.compute_cams(model, inputs, labels, cams.layer_of(arch, "target"), METHODS)
        maps[epoch] = {m: cams.postprocess(raw[m], (config.image_size, config.image_size)) for m in METHODS}
    return maps, correct


def measure(args: argparse.Namespace, arch: str, setting: tuple, val: pd.DataFrame, images: np.ndarray,
            features_of: configuration.RunConfig | None) -> tuple[list[dict], configuration.RunConfig]:
    lr, epochs, count, precision, head_init, pretrain_epochs = setting
    configs = [setting_config(args, arch, lr, epochs, count, precision, head_init, pretrain_epochs, seed)
               for seed in args.seeds]
    runs = []
    for config in configs:
        train.run_training(config, features_of=features_of)
        features_of = features_of or config
        history = train.load_history(config)
        maps, correct = validation_maps(config, arch, val, images)
        runs.append((config, history, maps, correct))
    early, late = configs[0].compared_epochs
    both = np.logical_and.reduce([c[early] & c[late] for _, _, _, c in runs])
    pretrained_s = pretrain_seconds(configs[0], arch)
    rows = []
    for method in METHODS:
        phase = [drift.drift_rows(m[early][method][both], m[late][method][both], configs[0].threshold)
                 for _, _, m, _ in runs]
        floor = [drift.drift_rows(a[2][late][method][both], b[2][late][method][both], configs[0].threshold)
                 for a, b in itertools.combinations(runs, 2)]
        accuracy = {e: [h.loc[h["epoch"] == e, "val_accuracy"].item() for _, h, _, _ in runs] for e in (early, late)}
        seconds = [h.loc[h["phase"] == "finetune", "wall_s"].sum() for _, h, _, _ in runs]
        rows.append({
            "arch": arch, "lr_ft": lr, "epochs_ft": epochs, "finetune_images": count, "precision": precision,
            "head_init": head_init, "pretrain_epochs": pretrain_epochs, "pretrain_s": pretrained_s,
            "computed_in": train.phase_policy(configs[0], arch, "finetune", train.uses_mixed_precision(configs[0])),
            "method": method, "seeds": len(runs), "images": int(both.sum()),
            "val_acc_early": np.mean(accuracy[early]), "val_acc_late": np.mean(accuracy[late]),
            "val_acc_lowest": min(accuracy[early] + accuracy[late]), "finetune_s": np.mean(seconds),
            "phase_1_minus_iou": np.mean([1 - p["overlap_iou"].mean() for p in phase]),
            "floor_1_minus_iou": np.mean([1 - f["overlap_iou"].mean() for f in floor]) if floor else np.nan,
            "phase_1_minus_corr": np.mean([1 - p["pattern_correlation"].mean() for p in phase]),
            "floor_1_minus_corr": np.mean([1 - f["pattern_correlation"].mean() for f in floor]) if floor else np.nan,
        })
    return rows, features_of


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=",".join(configuration.ARCHITECTURES))
    parser.add_argument("--lr", default="5e-5,1.5e-4,4e-4")
    parser.add_argument("--epochs-ft", default="2")
    parser.add_argument("--finetune-images", default="0")
    parser.add_argument("--precision", default="demo",
                        help="demo (its finetune_bf16), bf16, fp32, or several, comma-separated")
    parser.add_argument("--head-init", default="demo",
                        help="demo (its head_init), glorot_uniform, zeros, or several, comma-separated")
    parser.add_argument("--pretrain-epochs", default="demo",
                        help="epochs of pre-training: demo (its pretrain_epochs) or numbers, comma-separated")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--out", default=Path("runs/dose"), type=Path)
    args = parser.parse_args()
    args.seeds = numbers(args.seeds, int)
    demo = configuration.profile("demo")
    index = data.prepare(demo)
    val = index.split("val")
    images = data.load_images(val, demo.image_size)
    grid = list(itertools.product(numbers(args.lr, float), numbers(args.epochs_ft, int),
                                  numbers(args.finetune_images, int), args.precision.split(","),
                                  demo_or(args.head_init, demo.head_init, str)))
    print(f"CPU flags: {' '.join(sorted(provenance.cpu_flags() & {'avx2', 'avx512_bf16', 'amx_bf16'}))}; "
          f"{len(val)} validation images; {len(grid)} settings x {len(args.seeds)} seeds")
    rows = []
    for arch in numbers(args.arch, str):
        for pretrain_epochs in demo_or(args.pretrain_epochs, demo.pretrain_epochs, int):
            features_of = None  # features of one pre-training
            for setting in grid:
                found, features_of = measure(args, arch, (*setting, pretrain_epochs), val, images, features_of)
                rows += found
                keras.backend.clear_session()
                progress.message(pd.DataFrame(found).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "dose.csv"
    previous = pd.read_csv(path) if path.is_file() else None
    keys = ["arch", "lr_ft", "epochs_ft", "finetune_images", "precision", "head_init", "pretrain_epochs", "method"]
    merged = table if previous is None else pd.concat([previous, table]).drop_duplicates(keys, keep="last")
    merged.to_csv(path, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
