"""Built-in offline pre-training ("synthetic" weights), cached per user.

ImageNet weights cannot be downloaded everywhere, and a frozen *random* backbone gives a head at
chance (FINDINGS.md). So each backbone is trained from scratch on a *source* task drawn from the
synthetic generator (`cxrdrift.synth.source_task`: which findings, in which lung zones, multi-label) —
related to the five-class target but not the same question — and its weights are cached in
`$CXRDRIFT_CACHE` or `~/.cache/cxrdrift/pretrained/`, keyed by everything that determines them.

From-scratch weights move faster than BatchNorm's moving statistics follow (momentum 0.99), so the
backbone trains with a lower momentum and then re-estimates the statistics: forward passes in
training mode, no weight update. Convolution weights do not depend on the input size, so the
backbone may train at a smaller `size` and re-estimate its statistics at the study's `image_size`.
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

from . import synth
from .artifacts import atomic_path, read_json, write_json
from .models import MIN_IMAGE_SIZE, backbone_model, build_model, preprocess_input

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
    batch_size: int = 32
    seed: int = 0

    @classmethod
    def from_config(cls, config: "RunConfig") -> "PretrainSpec":
        return cls(image_size=config.image_size, size=config.pretrain_size, images=config.pretrain_images,
                   epochs=config.pretrain_epochs, lr=config.pretrain_lr,
                   bn_momentum=config.pretrain_bn_momentum, bn_epochs=config.pretrain_bn_epochs,
                   batch_size=config.batch_size,
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


def generator_fingerprint() -> str:
    """A hash of a few small source-task samples: changes whenever the generator's output does."""
    images, targets = synth.source_task(4, 32, 0)
    return hashlib.sha256(images.tobytes() + targets.tobytes()).hexdigest()[:16]


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


def source_inputs(arch: str, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The source task's images as the backbone's preprocessed RGB float32, and its targets."""
    images, targets = synth.source_task(n, size, seed)
    rgb = np.repeat(images[..., None], 3, axis=-1).astype("float32")
    return preprocess_input(arch)(rgb), targets.astype("float32")


def pretrain_backbone(arch: str, spec: PretrainSpec, *, verbose: int = 2) -> tuple[keras.Model, dict[str, Any]]:
    """Train `arch` from scratch on the source task, re-estimate BatchNorm statistics at
    `spec.image_size` and score the held-out source set; returns the model (at `image_size`, with
    the source head) and a description."""
    start, cpu_start = time.perf_counter(), time.process_time()
    size = spec.train_size(arch)
    keras.utils.set_random_seed(spec.seed)
    x, y = source_inputs(arch, spec.images, size, spec.seed)
    model = build_model(arch, size, None, num_classes=y.shape[1])
    batchnorms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in batchnorms:
        layer.momentum = spec.bn_momentum
    model.compile(keras.optimizers.Adam(spec.lr), keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")])
    batches = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=spec.seed)
               .batch(spec.batch_size).prefetch(2))
    history = model.fit(batches, epochs=spec.epochs, verbose=verbose, shuffle=False)
    if size != spec.image_size:
        resized = build_model(arch, spec.image_size, None, num_classes=y.shape[1])
        resized.set_weights(model.get_weights())
        model = resized
        batchnorms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
        for layer in batchnorms:
            layer.momentum = spec.bn_momentum
        x, _ = source_inputs(arch, spec.images, spec.image_size, spec.seed)
    reestimate_batchnorm(model, x, spec.batch_size, spec.bn_epochs)
    train_seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    held_x, held_y = source_inputs(arch, spec.held_out, spec.image_size, spec.seed + 1)
    scores = source_scores(held_y, model.predict(held_x, batch_size=spec.batch_size, verbose=0))
    description = {
        "source_task": getattr(synth.source_task, "__doc__", "") or "synthetic source task",
        "source_outputs": int(y.shape[1]),
        "settings": asdict(spec) | {"size": size},
        "train_accuracy_last_epoch": float(history.history["accuracy"][-1]),
        "held_out_images": spec.held_out,
        **scores,
        "seconds": round(train_seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
    }
    return model, description


def reestimate_batchnorm(model: keras.Model, x: np.ndarray, batch_size: int, passes: int) -> None:
    """Let BatchNorm moving statistics catch up with the weights: forward passes in training mode
    over `x` (no weight update; running averages at the layers' momentum)."""
    @tf.function(autograph=False)
    def forward(batch: tf.Tensor) -> tf.Tensor:
        return model(batch, training=True)

    for _ in range(passes):
        for start in range(0, len(x) - batch_size + 1, batch_size):
            forward(tf.constant(x[start:start + batch_size]))


def source_scores(targets: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Per-output accuracy, exact-match accuracy and macro ROC AUC of the multi-label source task."""
    predicted = logits > 0
    truth = targets > 0.5
    scorable = [k for k in range(truth.shape[1]) if 0 < truth[:, k].sum() < len(truth)]
    auc = roc_auc_score(truth[:, scorable], logits[:, scorable], average="macro") if scorable else float("nan")
    return {"label_accuracy": float((predicted == truth).mean()),
            "exact_match": float((predicted == truth).all(axis=1).mean()),
            "auc_macro": float(auc)}
