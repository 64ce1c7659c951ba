"""The models of an audit as users build them: loading, the explained layer, preprocessing, the ceiling.

A user's classifier is a flat functional model, or a Sequential/functional model that wraps a
pre-trained base as one layer (the transfer-learning pattern of the Keras guides). The explained
layer is named by a path, `base/layer` for a layer inside a nested model; the CAM engine gets a
feature model from the input to [that layer's activations, logits] (`feature_model`), so the
fused pass reaches layers that `model.get_layer` cannot.
"""
from __future__ import annotations

import difflib
import hashlib
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np

from .artifacts import atomic_path
from .models import TARGET_LAYERS, build_model, restart_layer_names
from .randomization import PREVIOUS_BLOCK, randomize_top

PREPROCESSING: dict[str, Callable] = {
    "none": lambda images: images,  # raw 0..255 pixels: the model holds its own preprocessing
    "unit": lambda images: images / 255.0,
    "densenet": keras.applications.densenet.preprocess_input,
    "resnet_v2": keras.applications.resnet_v2.preprocess_input,
    "inception_v3": keras.applications.inception_v3.preprocess_input,
}
# The preprocessing each study backbone was trained with (models.preprocess_input), by name.
STUDY_PREPROCESSING = {"DenseNet201": "densenet", "ResNet50V2": "resnet_v2", "InceptionV3": "inception_v3"}
SEPARATOR = "/"
CHAIN_TOLERANCE = 1e-4  # relative agreement a rebuilt feature model must reach with the model itself


class AuditModelError(ValueError):
    """A model file, layer or model pair the audit cannot use; the message says why."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def load_model(path: str | Path) -> keras.Model:
    """A Keras model file (`.keras`, or a legacy `.h5` full model) loaded in safe mode, uncompiled."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AuditModelError(f"model file {path} does not exist")
    if path.name.endswith(".weights.h5"):
        raise AuditModelError(f"{path} holds weights only, not a model: load them into the model and save "
                              "it whole with model.save('model.keras')")
    if path.suffix not in (".keras", ".h5"):
        raise AuditModelError(f"{path} is not a Keras model file: expected a .keras file or a legacy .h5 model")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise AuditModelError(f"{path} is not a Keras model file: a .keras file is a zip archive (model.save), "
                              "this one is not")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, zipfile and h5py errors alike
        raise AuditModelError(f"{path} cannot be loaded as a Keras model: {_first_line(error)}") from None
    if not isinstance(model, keras.Model) or not model.built:
        raise AuditModelError(f"{path} holds a {type(model).__name__} that was never built on an input")
    if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise AuditModelError(f"{path}: the audit needs one image input and one (batch, classes) output; the "
                              f"model has {len(model.inputs)} input(s) and outputs "
                              f"{[tuple(o.shape) for o in model.outputs]}")
    if len(model.inputs[0].shape) != 4:
        raise AuditModelError(f"{path}: the input has shape {tuple(model.inputs[0].shape)}, not (batch, height, "
                              "width, channels)")
    return model


def preprocessing(name: str) -> Callable:
    """The named preprocessing (`PREPROCESSING`) applied to 0..255 float RGB batches."""
    if name not in PREPROCESSING:
        raise AuditModelError(f"unknown preprocessing {name!r}; choose one of {', '.join(PREPROCESSING)}")
    return PREPROCESSING[name]


def input_size(model: keras.Model) -> int:
    """The square input size the model was built for; an error for a free or non-square input."""
    height, width, channels = model.inputs[0].shape[1:]
    if height is None or width is None or height != width or channels != 3:
        raise AuditModelError(f"model {model.name!r} takes inputs of shape {(height, width, channels)}; the audit "
                              "needs a fixed square RGB input (build the model on keras.Input((S, S, 3)))")
    return int(height)


# -- layers, nested models included -----------------------------------------------------------------

def _is_model(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.Model)


def walk(model: keras.Model, prefix: str = "") -> Iterator[tuple[str, keras.layers.Layer]]:
    """(path, layer) of every layer in order, descending into nested models (their layers only)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = prefix + layer.name
        if _is_model(layer):
            yield from walk(layer, path + SEPARATOR)
        else:
            yield path, layer


def _output_shape(layer: keras.layers.Layer) -> tuple:
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):  # a layer called more than once, or never
        return ()


def spatial_layers(model: keras.Model) -> list[str]:
    """Paths of the layers whose output is a (batch, h, w, channels) map larger than 1x1."""
    return [path for path, layer in walk(model) if len(shape := _output_shape(layer)) == 4
            and (shape[1] or 0) * (shape[2] or 0) > 1]


def default_layer(model: keras.Model) -> str:
    """The last spatial feature map before the first layer that flattens space (global pooling,
    Flatten), reached inside nested models."""
    last = None
    for path, layer in walk(model):
        shape = _output_shape(layer)
        if len(shape) == 4 and (shape[1] or 0) * (shape[2] or 0) > 1:
            last = path
        elif len(shape) == 2 and last is not None:
            return last
    if last is None:
        raise AuditModelError(f"model {model.name!r} has no layer with a spatial (batch, h, w, channels) output "
                              "larger than 1x1, so there is no map to explain")
    return last


def _resolve(model: keras.Model, path: str) -> keras.layers.Layer:
    layers = dict(walk(model))
    if path in layers:
        layer = layers[path]
    elif SEPARATOR not in path and (inner := [p for p in layers if p.rsplit(SEPARATOR, 1)[-1] == path]):
        if len(inner) > 1:
            raise AuditModelError(f"layer {path!r} is ambiguous in model {model.name!r}: {', '.join(inner)}")
        layer = layers[inner[0]]
    else:
        candidates = spatial_layers(model)
        close = difflib.get_close_matches(path, candidates, n=5, cutoff=0.4)
        raise AuditModelError(f"model {model.name!r} has no layer {path!r}; "
                              + (f"close names: {', '.join(close)}; " if close else "")
                              + f"the last spatial layers are: {', '.join(candidates[-8:])}")
    shape = _output_shape(layer)
    if len(shape) != 4 or (shape[1] or 0) * (shape[2] or 0) <= 1:
        raise AuditModelError(f"layer {path!r} outputs shape {shape}, not a spatial map larger than 1x1; name one "
                              f"of the last spatial layers: {', '.join(spatial_layers(model)[-8:])}")
    return layer


def layer_path(model: keras.Model, name: str | None) -> str:
    """The full path of the explained layer: `name` (a path, or an inner layer's own name when it
    is unique) or, when None, `default_layer`."""
    if name is None:
        return default_layer(model)
    layer = _resolve(model, name)
    return next(path for path, candidate in walk(model) if candidate is layer)


def _exposing(model: keras.Model, path: str) -> keras.Model:
    """model.inputs -> [the activations at `path`, model.outputs]."""
    head, _, rest = path.partition(SEPARATOR)
    if not rest:
        try:
            return keras.Model(model.inputs[0], [model.get_layer(head).output, model.outputs[0]])
        except (ValueError, AttributeError):
            pass  # a Sequential's layer outputs are not always wired to its inputs: rebuild the chain
    # A chain of layers, the nested model replaced by one that also returns its inner activations.
    inputs = keras.Input(model.inputs[0].shape[1:], name="image")
    x, activations = inputs, None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.name == head and rest:
            activations, x = _exposing(layer, rest)(x)
        else:
            x = layer(x)
            if layer.name == head:
                activations = x
    return keras.Model(inputs, [activations, x])


def feature_model(model: keras.Model, path: str) -> keras.Model:
    """input -> [activations at layer `path`, logits], checked to give the model's own logits."""
    _resolve(model, path)
    try:
        features = _exposing(model, path)
    except Exception as error:  # a layer that takes several inputs cannot be re-called as a chain
        raise AuditModelError(f"cannot reach layer {path!r} of model {model.name!r}: its graph is not a chain of "
                              f"single-input layers around the nested model ({_first_line(error)})") from None
    probe = np.random.default_rng(0).uniform(0.0, 255.0, (2, *model.inputs[0].shape[1:])).astype(np.float32)
    with warnings.catch_warnings():  # Keras warns when a model built on a named input gets a bare tensor
        warnings.simplefilter("ignore", UserWarning)
        expected = np.asarray(model(probe, training=False))
        got = np.asarray(features(probe, training=False)[1])
    if not np.allclose(got, expected, rtol=CHAIN_TOLERANCE, atol=CHAIN_TOLERANCE * np.abs(expected).max()):
        raise AuditModelError(f"cannot reach layer {path!r} of model {model.name!r}: rebuilt as a chain of its "
                              "layers it computes other logits (a branching graph); name a layer of the outer model")
    return features


# -- a pair of models ---------------------------------------------------------------------------------

def _signature(model: keras.Model) -> list[tuple[str, str, tuple]]:
    return [(path, type(layer).__name__, tuple(tuple(w.shape) for w in layer.weights)) for path, layer in walk(model)]


def check_pair(before: keras.Model, after: keras.Model) -> None:
    """An error unless both models have one architecture: output width, input shape, layers."""
    width_a, width_b = before.outputs[0].shape[-1], after.outputs[0].shape[-1]
    if width_a != width_b:
        raise AuditModelError(f"the models have different classes: {width_a} outputs before, {width_b} after")
    shape_a, shape_b = tuple(before.inputs[0].shape[1:]), tuple(after.inputs[0].shape[1:])
    if shape_a != shape_b:
        raise AuditModelError(f"the models take different input sizes: {shape_a} before, {shape_b} after")
    sig_a, sig_b = _signature(before), _signature(after)
    for (path_a, kind_a, shapes_a), (path_b, kind_b, shapes_b) in zip(sig_a, sig_b):
        if (path_a, kind_a, shapes_a) != (path_b, kind_b, shapes_b):
            raise AuditModelError(f"the models differ in their layers: {path_a} ({kind_a}) before, {path_b} "
                                  f"({kind_b}) after; audit two checkpoints of one architecture")
    if len(sig_a) != len(sig_b):
        raise AuditModelError(f"the models differ in their layers: {len(sig_a)} before, {len(sig_b)} after")


def digest(model: keras.Model) -> str:
    """A hash of `model`'s architecture (its JSON) and weights: the same for the same model saved
    again, whatever the file's bytes (a `.keras` file records when it was saved)."""
    hashed = hashlib.sha256(model.to_json().encode())
    for weight in model.get_weights():
        hashed.update(f"{weight.dtype}{weight.shape}".encode())
        hashed.update(np.ascontiguousarray(weight).tobytes())
    return hashed.hexdigest()


def identical(before: keras.Model, after: keras.Model) -> bool:
    """True when every weight of the two models is equal."""
    return all(np.array_equal(a, b) for a, b in zip(before.get_weights(), after.get_weights()))


# -- the ceiling: the later model with its top re-initialized ----------------------------------------

def _study_arch(model: keras.Model) -> str | None:
    """The architecture of a model built by `cxrdrift.models.build_model`, else None."""
    names = {layer.name for layer in model.layers}
    arch = model.name
    if arch in PREVIOUS_BLOCK and {PREVIOUS_BLOCK[arch], TARGET_LAYERS[arch], "logits"} <= names:
        return arch
    return None


def randomized_copy(model: keras.Model, path: str, seed: int) -> keras.Model:
    """A copy of `model` with its last stage (the layers after the last map larger than the
    explained layer's, up to it) and everything after the explained layer re-initialized; a
    study model gets the study's own re-initialization (`randomization.randomize_top`)."""
    keras.utils.set_random_seed(seed)
    fresh = keras.models.clone_model(model)
    arch = _study_arch(model)
    if arch is not None:
        fresh.set_weights(model.get_weights())
        randomize_top(fresh, arch, seed)
        return fresh
    leaves, fresh_leaves = list(walk(model)), [layer for _, layer in walk(fresh)]
    position = [p for p, _ in leaves].index(path)
    grid = _output_shape(leaves[position][1])[1:3]
    start = 0
    for index, (_, layer) in enumerate(leaves[:position]):
        shape = _output_shape(layer)
        if len(shape) == 4 and (shape[1] or 0) * (shape[2] or 0) > grid[0] * grid[1]:
            start = index + 1
    for index, ((_, layer), copy) in enumerate(zip(leaves, fresh_leaves)):
        if index < start and layer.weights:
            copy.set_weights(layer.get_weights())
    return fresh


def export_checkpoint(arch: str, image_size: int, weights: Path, target: Path, num_classes: int = 5) -> Path:
    """A study checkpoint (a `.weights.h5` of `models.build_model`'s model) saved whole as the
    `.keras` file an audit loads; layer names restarted, so two exports name layers alike."""
    if not Path(weights).is_file():
        raise AuditModelError(f"checkpoint {weights} is missing: train {arch} first")
    restart_layer_names()
    model = build_model(arch, image_size, None, num_classes)
    model.load_weights(weights)
    with atomic_path(target) as tmp:
        model.save(tmp)
    return Path(target)


__all__ = ["PREPROCESSING", "STUDY_PREPROCESSING", "export_checkpoint", "AuditModelError", "load_model",
           "preprocessing", "input_size", "walk", "spatial_layers", "default_layer", "layer_path", "feature_model", "check_pair", "digest", "identical",
           "randomized_copy"]
