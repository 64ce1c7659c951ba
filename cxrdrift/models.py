"""Backbone builders, target layers, preprocessing and weight resolution of the three architectures.

Every model follows one convention (DESIGN.md): the Keras application with `include_top=False`
built on the model's own input, global average pooling, and one `Dense(num_classes)` with linear
output named `logits`. The model is flat, so each target layer is reachable by name.

Weights (`build_model(..., weights=...)`):
- `None` / `"none"`: random initialization (tests only);
- `"imagenet"`: the Keras download (cached in `~/.keras/models`);
- a path to a weights file (`{arch}` is replaced by the architecture name): a `.weights.h5` that
  cxrdrift saved (a whole model of this convention, or a backbone such as the pre-training cache
  holds), or a Keras application's no-top `.h5`.
A run's `weights="synthetic"` (the built-in pre-training) is resolved to such a file by
`cxrdrift.weights.resolve_weights`; this module only builds and loads.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import keras
import numpy as np

TARGET_LAYERS: dict[str, str] = {
    "DenseNet201": "conv5_block32_concat",
    "ResNet50V2": "conv5_block3_out",
    "InceptionV3": "mixed10",
}

# The last layer before each backbone's last down-sampling: a grid twice as fine as the target
# layer's (at 112 px DenseNet201 7x7, ResNet50V2 7x7 — its last stride sits inside conv4_block6,
# whose output is already 4x4 — and InceptionV3 5x5, against 3x3, 4x4 and 2x2).
EARLIER_LAYERS: dict[str, str] = {
    "DenseNet201": "conv4_block48_concat",
    "ResNet50V2": "conv4_block5_out",
    "InceptionV3": "mixed7",
}

_APPLICATIONS: dict[str, tuple[Callable[..., keras.Model], Callable[[np.ndarray], np.ndarray]]] = {
    "DenseNet201": (keras.applications.DenseNet201, keras.applications.densenet.preprocess_input),
    "ResNet50V2": (keras.applications.ResNet50V2, keras.applications.resnet_v2.preprocess_input),
    "InceptionV3": (keras.applications.InceptionV3, keras.applications.inception_v3.preprocess_input),
}

# Smallest square input each application accepts (Keras checks `min_size`).
MIN_IMAGE_SIZE: dict[str, int] = {"DenseNet201": 32, "ResNet50V2": 32, "InceptionV3": 75}

HEAD_LAYERS = ("avg_pool", "logits")
KERAS_CACHE = "~/.keras/models"


class WeightsError(ValueError):
    """Weights that cannot be obtained or do not fit the architecture."""


def check_architecture(arch: str) -> None:
    if arch not in _APPLICATIONS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(_APPLICATIONS)}")


def preprocess_input(arch: str) -> Callable[[np.ndarray], np.ndarray]:
    """The backbone's own `preprocess_input` (pixels in 0..255, RGB, channels last)."""
    check_architecture(arch)
    return _APPLICATIONS[arch][1]


def build_backbone(arch: str, image_size: int, weights: str | None = None) -> keras.Model:
    """The Keras application without top on its own input named `image` (flat functional model)."""
    check_architecture(arch)
    if image_size < MIN_IMAGE_SIZE[arch]:
        raise ValueError(f"{arch} needs an input of at least {MIN_IMAGE_SIZE[arch]} px, got {image_size}")
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    return _APPLICATIONS[arch][0](include_top=False, weights=weights, input_tensor=inputs)


def build_model(arch: str, image_size: int, weights: str | Path | None = None, num_classes: int = 5,
                head_init: str = "glorot_uniform") -> keras.Model:
    """The flat model of the convention with `weights` loaded (see the module docstring); a head
    the weights do not hold starts from the Keras initializer `head_init`."""
    kind = weights_kind(weights)
    if kind == "synthetic":
        raise WeightsError('weights="synthetic" names the built-in pre-training, not a file: '
                           "cxrdrift.weights.resolve_weights(config, arch) gives the cached backbone file")
    if kind == "imagenet":
        try:
            backbone = build_backbone(arch, image_size, "imagenet")
        except ValueError:
            raise
        except Exception as error:  # keras raises a bare Exception on "URL fetch failure"
            raise _imagenet_error(arch, error) from error
    else:
        backbone = build_backbone(arch, image_size)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32", kernel_initializer=head_init)(pooled)
    model = keras.Model(backbone.input, logits, name=arch)
    if kind == "file":
        load_weights_file(model, arch, weights_path_for(str(weights), arch))
    return model


def restart_layer_names() -> None:
    """Restart Keras's automatic layer names, so that the next model gets `conv2d`, `conv2d_1`, …
    however many models this process built before it. Call it right before building a model to train.

    Same seed, same bits: Grappler's arithmetic optimizer sorts the terms of a gradient sum (AddN)
    by op name, op names carry the layer names, and a float sum of three or more terms depends on
    their order. InceptionV3's mixed blocks feed one tensor to four branches; built after another
    InceptionV3 (pre-training, a replicate, a notebook) its auto-named convolutions (`conv2d_99`,
    `conv2d_100`, …) sort in another order, the sum rounds differently and fine-tuning drifts apart
    (tests/test_determinism.py)."""
    try:
        from keras.src.utils.naming import reset_uids
    except ImportError:  # a Keras without it: clear the whole session, keeping the dtype policy
        policy = keras.mixed_precision.global_policy()
        keras.backend.clear_session(free_memory=False)
        keras.mixed_precision.set_global_policy(policy)
    else:
        reset_uids()


def weights_kind(weights: str | Path | None) -> str:
    """"none", "imagenet", "synthetic" or "file": what a `weights` value names."""
    if weights is None or (isinstance(weights, str) and weights.lower() in {"", "none"}):
        return "none"
    if isinstance(weights, str) and weights in {"imagenet", "synthetic"}:
        return weights
    return "file"


def _imagenet_error(arch: str, error: Exception) -> WeightsError:
    return WeightsError(
        f"ImageNet weights for {arch} could not be downloaded ({error}). Keras keeps them in "
        f"{KERAS_CACHE}: copy the no-top file there, or pass weights=<path to a weights file> "
        "('{arch}' in the path is replaced by the architecture name), or weights=synthetic for "
        "the built-in offline pre-training.")


def backbone_model(model: keras.Model) -> keras.Model:
    """A functional view of `model`'s backbone (shares its layers and weights)."""
    return keras.Model(model.input, model.get_layer("avg_pool").input, name=f"{model.name}_backbone")


def load_weights_file(model: keras.Model, arch: str, path: Path) -> str:
    """Load a local weights file into `model`; returns what it held ("model", "backbone", "keras_h5")."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if not path.name.endswith(".weights.h5"):
        return _load_application_h5(model, arch, path)
    errors = []
    for held, target in (("model", model), ("backbone", backbone_model(model))):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                target.load_weights(path)
            return held
        except ValueError as error:
            errors.append(str(error).splitlines()[0])
    raise WeightsError(f"weights file {path} does not fit {arch} with {model.output_shape[-1]} classes "
                       f"(neither a whole model nor a backbone of it): {errors[-1]}")


def _load_application_h5(model: keras.Model, arch: str, path: Path) -> str:
    """A Keras application's no-top `.h5` (legacy format, matched layer by layer)."""
    reference = build_backbone(arch, model.input_shape[1])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference.load_weights(path)
    except Exception as error:
        raise WeightsError(f"weights file {path} is not a no-top {arch} weights file: "
                           f"{str(error).splitlines()[0]}") from error
    backbone_model(model).set_weights(reference.get_weights())
    return "keras_h5"


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of the backbone (everything except the input and the head)."""
    return [layer for layer in model.layers
            if layer.name not in HEAD_LAYERS and not isinstance(layer, keras.layers.InputLayer)]


def weights_path_for(template: str, arch: str) -> Path:
    """A weights-file path with '{arch}' replaced by the architecture name."""
    return Path(template.replace("{arch}", arch)).expanduser()
