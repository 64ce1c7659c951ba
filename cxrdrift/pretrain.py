"""Built-in offline pre-training ("synthetic" weights), cached per user.

ImageNet weights cannot be downloaded everywhere, and a frozen *random* backbone gives a head at
chance (FINDINGS.md). So each backbone is trained from scratch on a *source* task drawn from the
synthetic generator (`cxrdrift.synth.source_task`: which radiological finding an image shows, and
in which cells of two feature grids, from the lesion masks) — the findings the classes are made
of, never the diagnosis — and its weights are cached in `$CXRDRIFT_CACHE` or
`~/.cache/cxrdrift/pretrained/`, keyed by everything that determines them.

From-scratch weights move faster than BatchNorm's moving statistics follow (momentum 0.99), so the
backbone trains with a lower momentum and then re-estimates the statistics: forward passes in
training mode, no weight update. Convolution weights do not depend on the input size, so the
backbone may train at a smaller `size` and re-estimate its statistics at the study's `image_size`.
The training steps may compute in bfloat16 (`precision`, float32 weights); the statistics are then
re-estimated, and the source task scored, in float32 as the study computes.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from . import progress, provenance, synth
from .artifacts import atomic_path, read_json, write_json
from .models import EARLIER_LAYERS, MIN_IMAGE_SIZE, backbone_model, build_model, preprocess_input, \
    restart_layer_names

if TYPE_CHECKING:
    from .config import RunConfig

CACHE_ENV = "CXRDRIFT_CACHE"


@dataclass(frozen=True)
class PretrainSpec:
    """Everything that determines the pre-trained weights (besides the code versions in `key`)."""

    image_size: int
    size: int = 0                 # pre-training input size; 0 means image_size
    images: int = 1600
    epochs: int = 6
    lr: float = 1e-3
    bn_momentum: float = 0.9
    bn_epochs: int = 2
    bn_images: int = 0            # source images those passes run over; 0 means all
    batch_size: int = 32
    seed: int = 0
    dense: bool = True            # per-cell finding maps at two depths besides the image labels
    precision: str = "float32"    # Keras dtype policy of the training steps: float32 or mixed_bfloat16

    @classmethod
    def from_config(cls, config: "RunConfig", arch: str) -> "PretrainSpec":
        """The spec of `arch`'s pre-training under `config`: bf16 steps when `config.pretrain_bf16`
        names `arch` and this CPU computes bf16 natively."""
        precision = "mixed_bfloat16" if arch in config.pretrain_bf16 and native_bf16() else "float32"
        return cls(image_size=config.image_size, size=config.pretrain_size, images=config.pretrain_images,
                   epochs=config.pretrain_epochs, lr=config.pretrain_lr,
                   bn_momentum=config.pretrain_bn_momentum, bn_epochs=config.pretrain_bn_epochs,
                   bn_images=config.pretrain_bn_images,
                   batch_size=config.batch_size, dense=config.pretrain_dense, precision=precision,
                   seed=config.pretrain_seed if config.pretrain_seed >= 0 else config.seed)

    def train_size(self, arch: str) -> int:
        """Pre-training input size of `arch`: `size` (or `image_size`), at least the smallest input
        the application accepts."""
        return max(self.size or self.image_size, MIN_IMAGE_SIZE[arch])

    @property
    def held_out(self) -> int:
        """Source-task images held out to measure what pre-training learned."""
        return max(self.images // 4, 16)

    def key(self, arch: str) -> str:
        """A hash of the settings, the architecture, the generator (its version and a fingerprint
        of its output) and the library versions."""
        parts = {"arch": arch, **asdict(self), "size": self.train_size(arch),
                 "generator": [synth.GENERATOR_VERSION, generator_fingerprint()],
                 "keras": keras.__version__, "tensorflow": tf.__version__}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PretrainResult:
    path: Path                    # backbone `.weights.h5`
    description: dict[str, Any]   # settings, cache key, source-task scores, time


def native_bf16(cpuinfo: Path = provenance.CPUINFO) -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or amx_bf16 among its flags); where
    that cannot be read, False: emulated bf16 is slower than float32."""
    return bool(provenance.cpu_flags(cpuinfo) & provenance.NATIVE_BF16)


def generator_fingerprint() -> str:
    """A hash of a few small source-task samples: changes whenever the generator's output does."""
    images, targets, lesions = synth.source_task(4, 32, 0)
    return hashlib.sha256(images.tobytes() + targets.tobytes() + lesions.tobytes()).hexdigest()[:16]


def cache_dir() -> Path:
    """Where pre-trained backbones are kept: `$CXRDRIFT_CACHE` or `~/.cache/cxrdrift/pretrained`."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "cxrdrift" / "pretrained"


def cache_paths(arch: str, spec: PretrainSpec, key: str | None = None) -> tuple[Path, Path]:
    """The cached weights file and its description (written last: it marks the entry complete)."""
    stem = f"{arch}-{key or spec.key(arch)}"
    return cache_dir() / f"{stem}.backbone.weights.h5", cache_dir() / f"{stem}.json"


def synthetic_backbone_weights(arch: str, spec: PretrainSpec, *, verbose: int = 2) -> PretrainResult:
    """The pre-trained backbone weights of `arch` for `spec`, from the cache or trained now."""
    key = spec.key(arch)
    weights, meta = cache_paths(arch, spec, key)
    if weights.is_file() and meta.is_file():
        return PretrainResult(weights, {**read_json(meta), "cached": True})
    model, description = pretrain_backbone(arch, spec, verbose=verbose)
    with atomic_path(weights) as tmp:
        backbone_model(model).save_weights(tmp)
    description = {**description, "cache_key": key, "path": str(weights)}
    write_json(meta, description)
    return PretrainResult(weights, {**description, "cached": False})


def source_inputs(arch: str, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The source task's images as the backbone's preprocessed RGB float32, its finding labels,
    and per-finding lesion maps float32 (N, S, S, len(FINDINGS))."""
    images, targets, lesions = synth.source_task(n, size, seed)
    rgb = np.repeat(images[..., None], 3, axis=-1).astype("float32")
    maps = lesions[..., None].astype("float32") * targets[:, None, None, :]
    return preprocess_input(arch)(rgb), targets, maps


def cell_targets(maps: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Which finding lies in which cell of a `grid` laid over the image: 1 where any pixel of the
    cell shows it. (N, S, S, K) -> (N, h, w, K)."""
    return (tf.image.resize(maps, grid, method="area").numpy() > 0).astype("float32")


def source_model(arch: str, size: int, outputs: int, dense: bool) -> tuple[keras.Model, keras.Model]:
    """The flat model of the convention with `outputs` image-level logits and, for training, a
    model that also predicts per-cell finding logits at the backbone's output and at
    `EARLIER_LAYERS[arch]` (a grid twice as fine): dense supervision gives many labels per image,
    and the earlier head brings the gradient to the middle of the network directly."""
    model = build_model(arch, size, None, num_classes=outputs)
    if not dense:
        return model, model
    heads = [keras.layers.Conv2D(len(synth.FINDINGS), 1, name=f"cells_{depth}", dtype="float32")(tensor)
             for depth, tensor in (("top", model.get_layer("avg_pool").input),
                                   ("middle", model.get_layer(EARLIER_LAYERS[arch]).output))]
    return model, keras.Model(model.input, [model.output, *heads], name=f"{arch}_source")


def pretrain_backbone(arch: str, spec: PretrainSpec, *, verbose: int = 2) -> tuple[keras.Model, dict[str, Any]]:
    """Train `arch` from scratch on the source task, re-estimate BatchNorm statistics at
    `spec.image_size` and score the held-out source set; returns the model (at `image_size`, with
    the source head) and a description."""
    start, cpu_start = time.perf_counter(), time.process_time()
    size = spec.train_size(arch)
    restart_layer_names()
    keras.utils.set_random_seed(spec.seed)
    progress.message(f"{arch}: pre-training from scratch ({spec.precision}); drawing {spec.images:,} "
                     f"source images at {size} px")
    x, y, maps = source_inputs(arch, spec.images, size, spec.seed)
    model, trainer, targets = compiled_source_model(arch, spec, size, y, maps, spec.precision)
    batches = (tf.data.Dataset.from_tensor_slices((x, targets)).shuffle(len(x), seed=spec.seed)
               .batch(spec.batch_size).prefetch(2))
    with progress.bar(len(x) * spec.epochs, f"{arch} pre-training") as shown:
        history = trainer.fit(batches, epochs=spec.epochs, verbose=verbose, shuffle=False,
                              callbacks=[progress.keras_progress(shown, len(x), spec.batch_size)])
    del maps, targets
    if size != spec.image_size or spec.precision != "float32":  # statistics as the study computes
        study = build_model(arch, spec.image_size, None, num_classes=y.shape[1])
        study.set_weights(model.get_weights())
        model = study
        set_batchnorm_momentum(model, spec.bn_momentum)
        if size != spec.image_size:
            progress.message(f"{arch}: drawing the source images again at {spec.image_size} px")
            x, _, _ = source_inputs(arch, spec.images, spec.image_size, spec.seed)
    reestimate_batchnorm(model, x[:spec.bn_images or None], spec.batch_size, spec.bn_epochs)
    train_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    progress.message(f"{arch}: drawing {spec.held_out:,} held-out source images")
    held_x, held_y, _ = source_inputs(arch, spec.held_out, spec.image_size, spec.seed + 1)
    with progress.bar(len(held_x), f"{arch} held-out source score") as shown:
        logits = model.predict(held_x, batch_size=spec.batch_size, verbose=0,
                               callbacks=[progress.keras_progress(shown, len(held_x), spec.batch_size)])
    scores = source_scores(held_y, logits)
    description = {
        "source_task": getattr(synth.source_task, "__doc__", "") or "synthetic source task",
        "source_outputs": int(y.shape[1]),
        "settings": asdict(spec) | {"size": size},
        "train_loss_last_epoch": float(history.history["loss"][-1]),
        "held_out_images": spec.held_out,
        **scores,
        "seconds": round(train_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
    }
    return model, description


def compiled_source_model(arch: str, spec: PretrainSpec, size: int, labels: np.ndarray, maps: np.ndarray,
                          precision: str) -> tuple[keras.Model, keras.Model, Any]:
    """The source model built under the Keras dtype policy `precision` (the backbone model and its
    trainer with the source heads), compiled with binary cross-entropy on every head, and its
    targets: the finding labels and, with dense heads, each head's cell targets from `maps`."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        model, trainer = source_model(arch, size, labels.shape[1], spec.dense)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    set_batchnorm_momentum(model, spec.bn_momentum)
    targets = ((labels, *(cell_targets(maps, tuple(out.shape[1:3])) for out in trainer.outputs[1:]))
               if spec.dense else labels)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    trainer.compile(keras.optimizers.Adam(spec.lr), [bce] * len(trainer.outputs) if spec.dense else bce)
    return model, trainer, targets


def set_batchnorm_momentum(model: keras.Model, momentum: float) -> None:
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def reestimate_batchnorm(model: keras.Model, x: np.ndarray, batch_size: int, passes: int) -> None:
    """Let BatchNorm moving statistics catch up with the weights: forward passes in training mode
    over `x` (no weight update; running averages at the layers' momentum)."""
    @tf.function(autograph=False)
    def forward(batch: tf.Tensor) -> tf.Tensor:
        return model(batch, training=True)

    starts = range(0, len(x) - batch_size + 1, batch_size)
    with progress.bar(passes * len(starts) * batch_size, f"{model.name} BatchNorm statistics") as shown:
        for _ in range(passes):
            for start in starts:
                forward(tf.constant(x[start:start + batch_size]))
                shown.update(batch_size)


def source_scores(targets: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Per-output accuracy, exact-match accuracy and macro ROC AUC of the multi-label source task."""
    predicted = logits > 0
    truth = targets > 0.5
    scorable = [k for k in range(truth.shape[1]) if 0 < truth[:, k].sum() < len(truth)]
    auc = roc_auc_score(truth[:, scorable], logits[:, scorable], average="macro") if scorable else float("nan")
    return {"label_accuracy": float((predicted == truth).mean()),
            "exact_match": float((predicted == truth).all(axis=1).mean()),
            "auc_macro": float(auc)}
