"""A ceiling for the drift metrics: the model-randomization sanity check (Adebayo et al. 2018).

Fine-tuning drift means little unless a metric can tell it apart from evidence that was destroyed.
So the late checkpoint is copied, its head and the last stage of its backbone (every layer after
`PREVIOUS_BLOCK` up to the target layer) are re-initialized at random, and the maps of that model
are compared with the late checkpoint's own maps by the four drift metrics. A metric whose
fine-tuning drift comes close to this ceiling cannot distinguish fine-tuning from randomization.
Stage: the late checkpoints and their maps -> the randomized copies' raw maps
(`randomization/<arch>.npz`, which a changed threshold leaves current) -> `randomization.parquet`,
shaped like drift.parquet.
"""
from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from . import data, progress
from .artifacts import RunPaths, fingerprint, is_current, read_npz, stamp, write_npz, write_parquet
from .cams import cam_layers, cam_samples, fused_pass, mapping_model, postprocess
from .config import RunConfig
from .drift import drift_means, drift_rows, epoch_maps, load_compared_rows, load_drift
from .models import TARGET_LAYERS, build_model, preprocess_input

# Where the last stage begins (the output of the last down-sampling): everything after it, up to
# the target layer, is re-initialized. A stage, not one unit: DenseNet201's target layer is a
# concatenation that carries every earlier unit of its dense block, so re-initializing only the
# last unit would leave 1,888 of its 1,920 channels as trained.
PREVIOUS_BLOCK = {"DenseNet201": "pool4_pool", "ResNet50V2": "conv4_block6_out", "InceptionV3": "mixed8"}


class RandomizationError(ValueError):
    """A run whose late checkpoint or maps are missing."""


def randomized_positions(model: keras.Model, arch: str) -> list[int]:
    """Positions in `model.layers` of the last backbone stage (after `PREVIOUS_BLOCK[arch]`, up to
    and including the target layer) and of the `logits` head."""
    names = [layer.name for layer in model.layers]
    first, last = names.index(PREVIOUS_BLOCK[arch]) + 1, names.index(TARGET_LAYERS[arch])
    return [*range(first, last + 1), names.index("logits")]


def randomize_top(model: keras.Model, arch: str, seed: int) -> list[str]:
    """Re-initialize `model`'s last stage and head in place with the weights of a freshly built
    random model of the same architecture (seeded); returns the names of the layers changed.
    Layers are matched by position: the applications build them in a fixed order, while some
    (InceptionV3's) take session-dependent automatic names."""
    keras.utils.set_random_seed(seed)
    fresh = build_model(arch, model.input_shape[1], None, num_classes=model.output_shape[-1])
    changed = []
    for position in randomized_positions(model, arch):
        layer, reference = model.layers[position], fresh.layers[position]
        if layer.weights:
            layer.set_weights(reference.get_weights())
            changed.append(layer.name)
    return changed


def randomized_maps(config: RunConfig, arch: str, samples: pd.DataFrame, images: str,
                    force: bool = False) -> dict[str, np.ndarray]:
    """Raw maps per method of `samples` (rows of the test split; `images`, their fingerprint) from
    the late checkpoint of `arch` with its top randomized: read from `randomization/<arch>.npz`
    when its stamp (the checkpoint, the images, the fields that change a map; never the
    threshold) is current, else computed and written there."""
    paths = RunPaths.of(config)
    target, weights = paths.randomized_maps(arch), paths.weights(arch, config.late_epoch)
    sample_ids = samples["sample_id"].to_numpy(dtype=str)
    expected = stamp(config, "randomized_maps", [weights], arch=arch, images=images)
    if not force and is_current(target, expected):
        return {method: array for method, array in read_npz(target).items() if method != "sample_id"}
    model = mapping_model(arch, config.image_size, weights)
    randomize_top(model, arch, config.seed + 1)  # not the seed training initialized the head with
    batches = data.make_dataset(samples, preprocess_input(arch), config.image_size, config.cam_batch_size,
                                with_labels=True)
    shown = progress.bar(-(-len(samples) // config.cam_batch_size), f"CAMs {arch} randomized top",
                         unit="batch", iterable=batches.as_numpy_iterator())
    # the CAM stage's pass (all its layers, already traced for this model), read at the target
    # layer: the same bits as a pass to that layer alone
    maps = fused_pass(model, tuple(cam_layers(config, arch).values())).run_layers(
        shown, config.cam_methods, config.alpha_norm)[TARGET_LAYERS[arch]]
    write_npz(target, {"sample_id": sample_ids, **maps}, stamp=expected)
    return maps


def run_randomization_stage(config: RunConfig, force: bool = False) -> pd.DataFrame | None:
    """Write `randomization.parquet`: arch, method, sample_id, label, kept, the four drift metrics
    between the late checkpoint's maps and those of its randomized copy (`randomized_maps`), and
    the degenerate flags; None, and nothing written, when `randomization_check` is off."""
    if not config.randomization_check:
        return None
    paths = RunPaths.of(config)
    late = config.late_epoch
    inputs = [paths.true_positives] + [paths.cams(arch, late) for arch in config.architectures]
    missing = [path for path in inputs + [paths.weights(arch, late) for arch in config.architectures]
               if not path.exists()]
    if missing:
        raise RandomizationError(f"{missing[0]} is missing: run training and the CAM stage first")
    samples = cam_samples(config, data.run_index(config).split("test")).reset_index(drop=True)
    images = fingerprint(dict(zip(samples["sample_id"].astype(str), samples["path"].astype(str))))
    maps = {arch: randomized_maps(config, arch, samples, images, force) for arch in config.architectures}
    expected = stamp(config, "randomization", inputs + [paths.randomized_maps(arch) for arch in config.architectures])
    if not force and is_current(paths.randomization, expected):
        return pd.read_parquet(paths.randomization)
    size = (config.image_size, config.image_size)
    parts = []
    for arch in config.architectures:
        for method in config.cam_methods:
            trained = epoch_maps(config, arch, method, late, samples["sample_id"])
            values = drift_rows(trained, postprocess(maps[arch][method], size), config.threshold)
            parts.append(pd.concat([pd.DataFrame({"arch": arch, "method": method}, index=values.index),
                                    samples[["sample_id", "label"]], values], axis=1))
    kept = pd.read_parquet(paths.true_positives).set_index("sample_id")["kept"]
    frame = pd.concat(parts, ignore_index=True)
    frame.insert(4, "kept", frame["sample_id"].map(kept).astype(bool))
    write_parquet(paths.randomization, frame, stamp=expected)
    return frame


def load_randomization(config: RunConfig) -> pd.DataFrame | None:
    """randomization.parquet's rows for the compared samples, or None when the stage wrote nothing."""
    return load_compared_rows(config, RunPaths.of(config).randomization)


def ceiling_table(config: RunConfig) -> pd.DataFrame | None:
    """Per method, architecture and metric: the class-weighted mean drift between the compared
    epochs (`phase`) beside the one between the late checkpoint and its randomized copy
    (`randomized`); None when the stage wrote nothing."""
    randomized = load_randomization(config)
    if randomized is None:
        return None
    phase = drift_means(config, load_drift(config)).drop(columns="n").rename(columns={"mean": "phase"})
    return phase.merge(drift_means(config, randomized).rename(columns={"mean": "randomized"}),
                       on=["method", "arch", "metric"], how="outer")
