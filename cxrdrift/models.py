"""Backbone builders, target layers and preprocessing of the three architectures.

Every model follows one convention (DESIGN.md): the Keras application with `include_top=False`
built on the model's own input, global average pooling, and one `Dense(num_classes)` with linear
output named `logits`. The model is flat, so each target layer is reachable by name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras
import numpy as np

TARGET_LAYERS: dict[str, str] = {
    "DenseNet201": "conv5_block32_concat",
    "ResNet50V2": "conv5_block3_out",
    "InceptionV3": "mixed10",
}

_APPLICATIONS: dict[str, tuple[Callable[..., keras.Model], Callable[[np.ndarray], np.ndarray]]] = {
    "DenseNet201": (keras.applications.DenseNet201, keras.applications.densenet.preprocess_input),
    "ResNet50V2": (keras.applications.ResNet50V2, keras.applications.resnet_v2.preprocess_input),
    "InceptionV3": (keras.applications.InceptionV3, keras.applications.inception_v3.preprocess_input),
}

# Smallest square input each application accepts (Keras checks `min_size`).
MIN_IMAGE_SIZE: dict[str, int] = {"DenseNet201": 32, "ResNet50V2": 32, "InceptionV3": 75}

HEAD_LAYERS = ("avg_pool", "logits")


def check_architecture(arch: str) -> None:
    if arch not in _APPLICATIONS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(_APPLICATIONS)}")


def preprocess_input(arch: str) -> Callable[[np.ndarray], np.ndarray]:
    """The backbone's own `preprocess_input` (pixels in 0..255, RGB, channels last)."""
    check_architecture(arch)
    return _APPLICATIONS[arch][1]


def build_model(arch: str, image_size: int, weights: str | None = None,
                         num_classes: int = 5) -> keras.Model:
    """The flat model of the convention; `weights` is None, "imagenet" or a backbone weights file
    as Keras applications accept it."""
    check_architecture(arch)
    if image_size < MIN_IMAGE_SIZE[arch]:
        raise ValueError(f"{arch} needs an input of at least {MIN_IMAGE_SIZE[arch]} px, got {image_size}")
    application = _APPLICATIONS[arch][0]
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    backbone = application(include_top=False, weights=weights, input_tensor=inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(pooled)
    return keras.Model(inputs, logits, name=arch)


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of the backbone (everything except the input and the head)."""
    return [layer for layer in model.layers
            if layer.name not in HEAD_LAYERS and not isinstance(layer, keras.layers.InputLayer)]


def weights_path_for(template: str, arch: str) -> Path:
    """A weights-file path with '{arch}' replaced by the architecture name."""
    return Path(template.replace("{arch}", arch)).expanduser()
