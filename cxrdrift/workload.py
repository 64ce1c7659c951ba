"""What a run asks of each backbone, in image passes, counted from its configuration.

An image through the network forward counts one pass and the gradients back through it one more,
so a training step or a CAM costs two passes per image and a prediction one. Passes, unlike
seconds, are the same on every CPU, which makes them the budget of a change that must fit on
machines this project never ran on (a 2-core AVX2 laptop runs the same passes 3-4x slower than
an AVX-512 machine with bfloat16). Counted, per architecture: the built-in pre-training (when it
runs), each seed's frozen features, fine-tuning epochs and maps, the randomization ceiling and
chapter 09's audit, in the order `cxrdrift book` runs them. The head-only epochs of the frozen
phase, on cached features, pass no image through the backbone.
"""
from __future__ import annotations

import pandas as pd

from .audit import AuditSettings
from .config import RunConfig
from .models import weights_kind
from .pretrain import PretrainSpec

COLUMNS = ("arch", "seed", "step", "forward", "backward")


def _row(arch: str, seed: str, step: str, forward: int, backward: int = 0) -> dict:
    return {"arch": arch, "seed": seed, "step": step, "forward": int(forward), "backward": int(backward)}


def image_passes(config: RunConfig, *, pretraining: bool = True, mapped: int | None = None,
                 splits: dict[str, int] | None = None, audited: str | None = "ResNet50V2") -> pd.DataFrame:
    """One row per architecture, seed ("main" or the replicate's seed) and step with its forward and
    backward image passes. `pretraining`: count the built-in pre-training (a first build); `mapped`:
    test images the main run maps (its kept true positives; default all); `splits`: images per
    split (default the synthetic sizes); `audited`: the architecture chapter 09 audits, if any."""
    sizes = splits or {"train": config.synth_train, "val": config.synth_val, "test": config.synth_test}
    main_mapped = sizes["test"] if mapped is None or config.cam_samples == "all" else mapped
    cached = config.cache_frozen_features and not config.augment
    tuned = config.finetune_images or sizes["train"]
    evaluated = sizes["val"] + sizes["test"]
    cam_epochs = len(config.cam_epoch_list())
    rows = []
    for arch in config.architectures:
        if pretraining and weights_kind(config.weights) == "synthetic":
            spec = PretrainSpec.from_config(config, arch)
            trained = spec.images * spec.epochs
            rows.append(_row(arch, "main", "pre-training",
                             trained + (spec.bn_images or spec.images) * spec.bn_epochs + spec.held_out, trained))
        shared = cached and weights_kind(config.weights) != "none"  # replicates reuse the main run's features
        for seed in ("main", *map(str, config.replicate_seeds)):
            if cached and (seed == "main" or not shared):
                rows.append(_row(arch, seed, "frozen features", sizes["train"] + evaluated))
            elif not cached:
                rows.append(_row(arch, seed, "frozen epochs", config.epochs_tl * (sizes["train"] + evaluated)))
            rows.append(_row(arch, seed, "fine-tuning", config.epochs_ft * (tuned + evaluated),
                             config.epochs_ft * tuned))
            epochs = cam_epochs if seed == "main" else 2  # replicates map the main run's compared images
            rows.append(_row(arch, seed, "maps", epochs * main_mapped, epochs * main_mapped))
        if config.randomization_check:
            rows.append(_row(arch, "main", "randomization ceiling", main_mapped, main_mapped))
        if arch == audited:  # both checkpoints on every test image, the randomized copy on a sample
            images = 2 * sizes["test"] + min(AuditSettings().ceiling_images, sizes["test"])
            rows.append(_row(arch, "main", "audit (chapter 09)", images, images))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.assign(total=frame["forward"] + frame["backward"])


def totals(passes: pd.DataFrame) -> pd.Series:
    """Total passes per architecture."""
    return passes.groupby("arch", sort=False)["total"].sum()
