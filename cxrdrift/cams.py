"""Grad-CAM, Grad-CAM++ and LayerCAM from one fused pass; post-processing; the CAM stage.

One compiled pass per batch gives the target layer's activations `A` (N, h, w, K) and the
gradient `g` of each sample's target-class logit with respect to them. Every method is a small
function of that same pair (formulas in DESIGN.md, "Conventions"):

- Grad-CAM:   relu(sum_k mean_ij(g_k) A_k)
- Grad-CAM++: alpha = g² / (2g² + sum_ij(A_k) g³), w_k = sum_ij alpha relu(g), relu(sum_k w_k A_k)
              (`alpha_norm=True` also divides alpha by its spatial sum per channel)
- LayerCAM:   relu(sum_k relu(g_k) A_k)

Samples in a batch are independent (BatchNorm runs in inference mode), so the gradient of the
batch's summed target logits is each sample's own gradient.
"""
from __future__ import annotations

import difflib
import functools
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from . import data, metrics, progress
from .artifacts import RunPaths, fingerprint, is_current, read_npz, stamp, write_npz
from .config import CAM_METHODS, RunConfig
from .models import EARLIER_LAYERS, TARGET_LAYERS, build_model, check_architecture, preprocess_input

DEGENERATE_SPAN = 1e-6  # relative: float32 maps agree to about 1e-7 of their magnitude
PAPER_DEPTH = "target"
DEPTHS = {PAPER_DEPTH: TARGET_LAYERS, "earlier": EARLIER_LAYERS}  # named depths -> layer per architecture
DEPTH_LABELS = {PAPER_DEPTH: "paper's layer", "earlier": "earlier layer"}


class CamError(ValueError):
    """Inputs the CAM engine cannot explain: unknown layer or method, mismatched shapes."""


# -- the methods: each derives its map from (A, g) -----------------------------------------

def _weighted_sum(weights: tf.Tensor, activations: tf.Tensor) -> tf.Tensor:
    """relu(sum_k weights_k * A_k); `weights` broadcasts against A (N, h, w, K)."""
    return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))


def gradcam_map(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """Grad-CAM: channel weights are the spatially averaged gradients."""
    return _weighted_sum(tf.reduce_mean(gradients, axis=(1, 2), keepdims=True), activations)


def layercam_map(activations: tf.Tensor, gradients: tf.Tensor) -> tf.Tensor:
    """LayerCAM: every position weighted by its own positive gradient."""
    return _weighted_sum(tf.nn.relu(gradients), activations)


def _finite_or_zero(values: tf.Tensor) -> tf.Tensor:
    return tf.where(tf.math.is_finite(values), values, tf.zeros_like(values))


def gradcampp_alpha(activations: tf.Tensor, gradients: tf.Tensor, alpha_norm: bool = False) -> tf.Tensor:
    """Grad-CAM++'s closed-form alpha (exponential score), 0 where g = 0.

    At layers before the last BatchNorm + ReLU (DenseNet201, ResNet50V2) activations can be
    negative, so `2g² + sum_ij(A) g³` can vanish or change sign. Where it is exactly zero, or
    where the ratio is not finite, alpha is set to 0; near-zero denominators keep the large
    finite alphas the formula gives.
    """
    g2 = tf.square(gradients)
    activation_sums = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
    alpha = _finite_or_zero(tf.math.divide_no_nan(g2, 2.0 * g2 + activation_sums * g2 * gradients))
    if alpha_norm:
        totals = tf.reduce_sum(alpha, axis=(1, 2), keepdims=True)
        alpha = _finite_or_zero(alpha / tf.where(totals == 0.0, tf.ones_like(totals), totals))
    return alpha


def gradcampp_map(activations: tf.Tensor, gradients: tf.Tensor, alpha_norm: bool = False) -> tf.Tensor:
    """Grad-CAM++: channel weights sum alpha-weighted positive gradients over space."""
    alpha = gradcampp_alpha(activations, gradients, alpha_norm)
    weights = tf.reduce_sum(alpha * tf.nn.relu(gradients), axis=(1, 2), keepdims=True)
    return _weighted_sum(weights, activations)


# Grad-CAM++ under the other alpha convention than the run's, from the same pass: the CAM stage
# stores it beside the run's maps so that the verdicts can be checked under both conventions.
OTHER_ALPHA = "gradcampp_other_alpha"
ENGINE_METHODS = (*CAM_METHODS, OTHER_ALPHA)


def _method(name: str, alpha_norm: bool) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    if name in ("gradcampp", OTHER_ALPHA):
        return functools.partial(gradcampp_map, alpha_norm=alpha_norm == (name == "gradcampp"))
    return {"gradcam": gradcam_map, "layercam": layercam_map}[name]


# -- the fused pass --------------------------------------------------------------------------

def _layer_error(model: keras.Model, layer_name: str) -> CamError:
    names = [layer.name for layer in model.layers]
    close = difflib.get_close_matches(layer_name, names, n=5, cutoff=0.4)
    hint = f"; close names: {', '.join(close)}" if close else ""
    return CamError(f"model {model.name!r} has no layer named {layer_name!r}{hint}")


class FusedCamPass:
    """Activations and target-logit gradients at one or more layers from one forward and one
    backward pass, compiled once per (model, layers); the maps of any method set are derived from
    those pairs by a second, small compiled function.

    Gradients at several layers come from a single `tape.gradient` call, so the backward pass
    runs once, down to the earliest of them; a layer closer to the input only lengthens it."""

    def __init__(self, model: keras.Model, layer_names: str | Sequence[str],
                 features: keras.Model | None = None) -> None:
        """`features`, when given, maps the model's input to [activations at each of `layer_names`
        ..., logits]: the hook for a layer `model.get_layer` cannot reach (inside a nested base
        model, `cxrdrift.audit_models.feature_model`); by default it is built from `model`."""
        if len(model.inputs) != 1:
            raise CamError(f"model {model.name!r} has {len(model.inputs)} inputs; the CAM engine takes one image input")
        if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
            shapes = [tuple(output.shape) for output in model.outputs]
            raise CamError(f"model {model.name!r} must have one 2-D logits output (batch, classes), "
                           f"got outputs of shape {shapes}")
        names = (layer_names,) if isinstance(layer_names, str) else tuple(layer_names)
        if not names or len(set(names)) < len(names):
            raise CamError(f"give one or more distinct layer names, got {list(names)}")
        if features is None:
            features = keras.Model(model.inputs[0], [*(_feature_layer(model, name).output for name in names),
                                                     model.outputs[0]])
        maps = features.outputs[:-1]
        if len(maps) != len(names):
            raise CamError(f"the feature model gives {len(maps)} maps for {len(names)} layer names")
        self.layer_names = names
        self.num_classes = int(model.outputs[0].shape[-1])
        self.input_shape = tuple(model.inputs[0].shape[1:])
        self.map_shapes = {name: tuple(int(d) for d in output.shape[1:3]) for name, output in zip(names, maps)}

        @tf.function(input_signature=(tf.TensorSpec((None, *self.input_shape), tf.float32),
                                      tf.TensorSpec((None,), tf.int32)))
        def activations_and_gradients(images: tf.Tensor, class_indices: tf.Tensor) -> tuple:
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(images)
                *activations, logits = features(images, training=False)
                # a negative index explains the sample's own predicted class (an unlabelled audit)
                class_indices = tf.where(class_indices < 0, tf.argmax(logits, axis=1, output_type=tf.int32),
                                         class_indices)
                target = tf.reduce_sum(tf.gather(logits, class_indices, axis=1, batch_dims=1))
            gradients = tape.gradient(target, activations)  # one backward pass for every layer
            pairs = tuple((tf.cast(a, tf.float32), tf.cast(g, tf.float32)) for a, g in zip(activations, gradients))
            return pairs, tf.cast(logits, tf.float32)

        self._pass = activations_and_gradients
        self._pair_specs = tuple((spec, spec) for spec in (
            tf.TensorSpec((None, *self.map_shapes[name], int(output.shape[-1])), tf.float32)
            for name, output in zip(names, maps)))
        self._derivers: dict[tuple[tuple[str, ...], bool], Callable] = {}

    @property
    def layer_name(self) -> str:
        """The first layer (the only one of a single-layer pass)."""
        return self.layer_names[0]

    @property
    def map_shape(self) -> tuple[int, int]:
        return self.map_shapes[self.layer_name]

    def _deriver(self, methods: tuple[str, ...], alpha_norm: bool) -> Callable:
        """The compiled map formulas of `methods` on every layer's (A, g); small, so cheap to trace."""
        key = (methods, alpha_norm)
        if key not in self._derivers:
            formulas = {name: _method(name, alpha_norm) for name in methods}
            self._derivers[key] = tf.function(
                lambda pairs: tuple({name: formula(a, g) for name, formula in formulas.items()} for a, g in pairs),
                input_signature=(self._pair_specs,))
        return self._derivers[key]

    def run_layers(self, batches: Iterable[tuple[np.ndarray, np.ndarray]], methods: Sequence[str],
                   alpha_norm: bool = False) -> dict[str, dict[str, np.ndarray]]:
        """Raw maps (N, h, w) float32 per layer and method over (images, class_indices) batches."""
        methods = check_methods(methods)
        chunks = {layer: {name: [] for name in methods} for layer in self.layer_names}
        for images, class_indices in batches:
            maps, _ = self.run_batch(images, class_indices, methods, alpha_norm)
            for layer, per_method in maps.items():
                for name in methods:
                    chunks[layer][name].append(per_method[name])
        return {layer: {name: np.concatenate(parts) if parts else np.zeros((0, *self.map_shapes[layer]), np.float32)
                        for name, parts in per_method.items()}
                for layer, per_method in chunks.items()}

    def run_batch(self, images: np.ndarray, class_indices: np.ndarray, methods: Sequence[str],
                  alpha_norm: bool = False) -> tuple[dict[str, dict[str, np.ndarray]], np.ndarray]:
        """One batch's raw maps (N, h, w) per layer and method, and its logits (N, classes), from
        the same forward pass; a negative class index explains that sample's predicted class."""
        pairs, logits = self._pass(tf.convert_to_tensor(images, tf.float32),
                                   tf.convert_to_tensor(class_indices, tf.int32))
        out = self._deriver(check_methods(methods), bool(alpha_norm))(pairs)
        return ({layer: {name: array.numpy() for name, array in maps.items()}
                 for layer, maps in zip(self.layer_names, out)}, logits.numpy())

    def run(self, batches: Iterable[tuple[np.ndarray, np.ndarray]], methods: Sequence[str],
            alpha_norm: bool = False) -> dict[str, np.ndarray]:
        """Raw maps (N, h, w) float32 per method at the first layer."""
        return self.run_layers(batches, methods, alpha_norm)[self.layer_name]


def _feature_layer(model: keras.Model, layer_name: str) -> keras.layers.Layer:
    try:
        layer = model.get_layer(layer_name)
    except ValueError:
        raise _layer_error(model, layer_name) from None
    if len(layer.output.shape) != 4:
        raise CamError(f"layer {layer_name!r} outputs shape {tuple(layer.output.shape)}; CAMs need a "
                       "4-D (batch, height, width, channels) feature map")
    return layer


_PASSES: "weakref.WeakKeyDictionary[keras.Model, dict[tuple[str, ...], FusedCamPass]]" = weakref.WeakKeyDictionary()


def fused_pass(model: keras.Model, layer_names: str | Sequence[str]) -> FusedCamPass:
    """The cached fused pass of `model` at `layer_names` (one name or several; built and compiled once)."""
    key = (layer_names,) if isinstance(layer_names, str) else tuple(layer_names)
    per_model = _PASSES.setdefault(model, {})
    if key not in per_model:
        per_model[key] = FusedCamPass(model, key)
    return per_model[key]


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    unknown = [m for m in methods if m not in ENGINE_METHODS]
    if unknown or not methods:
        raise CamError(f"unknown CAM method {unknown[0] if unknown else '(none given)'!r}; "
                       f"choose from {', '.join(CAM_METHODS)}")
    return tuple(dict.fromkeys(methods))


def _array_batches(images: np.ndarray, class_indices: np.ndarray,
                   batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(images), batch_size):
        yield images[start:start + batch_size], class_indices[start:start + batch_size]


def compute_cams(model: keras.Model, images: np.ndarray, class_indices: Sequence[int], layer_name: str,
                 methods: Sequence[str] = CAM_METHODS, alpha_norm: bool = False,
                 batch_size: int = 32) -> dict[str, np.ndarray]:
    """Raw maps (N, h, w) float32 at `layer_name` for each method, from one fused pass per batch.

    `images` are preprocessed model inputs (N, H, W, C); `class_indices` the target class of each.
    """
    return compute_layer_cams(model, images, class_indices, (layer_name,), methods, alpha_norm,
                              batch_size)[layer_name]


def compute_layer_cams(model: keras.Model, images: np.ndarray, class_indices: Sequence[int],
                       layer_names: Sequence[str], methods: Sequence[str] = CAM_METHODS,
                       alpha_norm: bool = False, batch_size: int = 32) -> dict[str, dict[str, np.ndarray]]:
    """Raw maps (N, h, w) float32 per layer and method, every layer from the same forward and
    backward pass of each batch (see `compute_cams`)."""
    passer = fused_pass(model, layer_names)
    methods = check_methods(methods)
    images = np.asarray(images, np.float32)
    class_indices = np.asarray(class_indices)
    if images.ndim != 4 or any(d is not None and d != s for d, s in zip(passer.input_shape, images.shape[1:])):
        raise CamError(f"images of shape {images.shape} do not fit the model input (N, "
                       f"{', '.join(str(d) for d in passer.input_shape)})")
    if class_indices.ndim != 1 or len(class_indices) != len(images):
        raise CamError(f"got {len(images)} images but class_indices of shape {class_indices.shape}; "
                       "give one target class per image")
    if not np.issubdtype(class_indices.dtype, np.integer) and len(class_indices):
        raise CamError(f"class_indices must be integers, got dtype {class_indices.dtype}")
    bad = class_indices[(class_indices < 0) | (class_indices >= passer.num_classes)]
    if len(bad):
        raise CamError(f"class index {int(bad[0])} is out of range for a model with "
                       f"{passer.num_classes} classes")
    if batch_size < 1:
        raise CamError(f"batch_size must be positive, got {batch_size}")
    return passer.run_layers(_array_batches(images, class_indices.astype(np.int32), batch_size), methods,
                             alpha_norm)


# -- post-processing ---------------------------------------------------------------------------

def degenerate_mask(raw: np.ndarray) -> np.ndarray:
    """True for each map (N, h, w) -> (N,) that is not finite or flat on its own scale: max − min
    at most DEGENERATE_SPAN times its largest magnitude (all-zero maps included), so a map of tiny
    but structured values counts and one of large values differing by rounding does not."""
    maps = np.asarray(raw, np.float64)
    maps = maps[None] if maps.ndim == 2 else maps
    span = maps.max(axis=(1, 2)) - maps.min(axis=(1, 2))
    scale = np.abs(maps).max(axis=(1, 2))
    return ~np.isfinite(span) | (span <= DEGENERATE_SPAN * scale)


def postprocess(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (no antialias) to `size`, then per-map min–max to [0, 1].

    Degenerate maps come back all NaN, so every metric on them is NaN and they can be counted.
    Accepts (N, h, w) or one (h, w) map and returns the same rank.
    """
    raw = np.asarray(raw, np.float32)
    single = raw.ndim == 2
    maps = raw[None] if single else raw
    if maps.ndim != 3:
        raise CamError(f"expected maps of shape (N, h, w) or (h, w), got {raw.shape}")
    resized = tf.image.resize(maps[..., None], tuple(size), method="bilinear",
                              antialias=False)[..., 0].numpy().astype(np.float64)
    low = resized.min(axis=(1, 2), keepdims=True)
    span = resized.max(axis=(1, 2), keepdims=True) - low
    degenerate = degenerate_mask(maps) | degenerate_mask(resized)
    out = ((resized - low) / np.where(degenerate[:, None, None], 1.0, span)).astype(np.float32)
    out[degenerate] = np.nan
    return out[0] if single else out


# -- the stage ---------------------------------------------------------------------------------

def cam_samples(config: RunConfig, test: pd.DataFrame) -> pd.DataFrame:
    """The test samples that get maps: the kept true positives, or all when `cam_samples="all"`."""
    if config.cam_samples == "all":
        return test
    path = RunPaths.of(config).true_positives
    if not path.exists():
        raise CamError(f"{path} is missing: run the true-positive filter before the CAM stage")
    kept = pd.read_parquet(path, columns=["sample_id", "kept"])
    ids = set(kept.loc[kept["kept"].astype(bool), "sample_id"].astype(str))
    return test[test["sample_id"].astype(str).isin(ids)]


def _target_layer(arch: str) -> str:
    check_architecture(arch)
    return TARGET_LAYERS[arch]


def layer_of(arch: str, depth: str) -> str:
    """The layer of `arch` at `depth`: a named depth ('target', 'earlier') or a layer name itself."""
    check_architecture(arch)
    return DEPTHS[depth][arch] if depth in DEPTHS else depth


def cam_layers(config: RunConfig, arch: str) -> dict[str, str]:
    """Depth -> layer name of `arch` for every depth in `config.cam_layers`, the paper's first."""
    depths = [PAPER_DEPTH, *(d for d in config.cam_layers if d != PAPER_DEPTH)]
    layers = {depth: layer_of(arch, depth) for depth in depths}
    if len(set(layers.values())) < len(layers):
        raise CamError(f"cam_layers={list(config.cam_layers)} name the same layer of {arch} twice: {layers}")
    return layers


def depth_label(depth: str) -> str:
    """How the book names a depth in a heading: "paper's layer", "earlier layer", or the layer's name."""
    return DEPTH_LABELS.get(depth, depth)


def depth_phrase(depth: str) -> str:
    """How a sentence names a depth: "the paper's layer", "the earlier layer", "layer mixed8"."""
    return f"the {DEPTH_LABELS[depth]}" if depth in DEPTH_LABELS else f"layer {depth}"


def map_key(method: str, layer: str, arch: str) -> str:
    """The key of `method`'s maps at `layer` in a CAM file: the method's name alone at the paper's
    layer (files keep the shape they had before more depths), `method@layer` elsewhere."""
    return method if layer == TARGET_LAYERS[arch] else f"{method}@{layer}"


def check_layers(model: keras.Model, layers: Iterable[str], image_size: int) -> None:
    """CamError (with close names) for a layer `model` lacks; a warning for a 1x1 grid."""
    for layer in layers:
        shape = tuple(_feature_layer(model, layer).output.shape[1:3])
        if shape == (1, 1):
            warnings.warn(f"{model.name}'s {layer} is 1x1 at {image_size} px: every map is constant, so all "
                          "are degenerate (NaN); use a larger image_size", stacklevel=3)


# The model each backbone was last mapped with in this process: a later map of that backbone
# (another epoch, a replicate, the randomized copy) loads its weights into it, so the fused pass
# traced for it serves again; its maps are those of a model built anew (tests/test_cams.py).
_MAPPING_MODELS: dict[str, tuple[tuple, keras.Model]] = {}


def mapping_model(arch: str, image_size: int, weights: Path) -> keras.Model:
    """`arch`'s model at `image_size` holding the checkpoint `weights`: the one this process
    mapped `arch` with before (under the same dtype policy), or one built now."""
    key = (image_size, keras.mixed_precision.global_policy().name)
    if arch not in _MAPPING_MODELS or _MAPPING_MODELS[arch][0] != key:
        _MAPPING_MODELS[arch] = key, build_model(arch, image_size, None)
    model = _MAPPING_MODELS[arch][1]
    model.load_weights(weights)
    return model


def run_cam_stage(config: RunConfig, force: bool = False, samples_of: RunConfig | None = None) -> list[Path]:
    """Write `cams/<arch>/epoch_NN.npz` for every architecture and CAM epoch; skip a file whose
    stamp is current (the "cams" fields, its layers, the checkpoint's and the images' contents).
    A replicate maps the samples of the run `samples_of` (the main run's compared images).
    Returns the files' paths."""
    paths = RunPaths.of(config)
    samples = cam_samples(samples_of or config, data.prepare(config).split("test"))
    sample_ids = samples["sample_id"].to_numpy(dtype=str)
    images = fingerprint(dict(zip(sample_ids, samples["path"].astype(str))))
    written = []
    for arch in config.architectures:
        layers = cam_layers(config, arch)
        model = None
        for epoch in config.cam_epoch_list():
            target, weights = paths.cams(arch, epoch), paths.weights(arch, epoch)
            written.append(target)
            if not weights.exists():
                raise CamError(f"checkpoint {weights} is missing: train {arch} before the CAM stage")
            expected = stamp(config, "cams", [weights], arch=arch, epoch=epoch, layers=list(layers.values()),
                             images=images, methods=list(stored_methods(config)))
            if not force and is_current(target, expected):
                continue
            unchecked = model is None
            model = mapping_model(arch, config.image_size, weights)
            if unchecked:  # once per backbone, so its 1x1 warning comes once
                check_layers(model, layers.values(), config.image_size)
            dataset = data.make_dataset(samples, preprocess_input(arch), config.image_size, config.cam_batch_size,
                                        with_labels=True)
            batches = progress.bar(-(-len(samples) // config.cam_batch_size), f"CAMs {arch} epoch {epoch}",
                                   unit="batch", iterable=dataset.as_numpy_iterator())
            maps = fused_pass(model, tuple(layers.values())).run_layers(batches, stored_methods(config),
                                                                        config.alpha_norm)
            write_npz(target, {"sample_id": sample_ids,
                               "layers": np.array(list(layers.values())), "depths": np.array(list(layers)),
                               **{map_key(method, layer, arch): array for layer, per_method in maps.items()
                                  for method, array in per_method.items()}}, stamp=expected)
    return written


def stored_methods(config: RunConfig) -> tuple[str, ...]:
    """The methods a CAM file holds: the run's, and Grad-CAM++ under the other alpha convention
    when the run has Grad-CAM++."""
    return (*config.cam_methods, *((OTHER_ALPHA,) if "gradcampp" in config.cam_methods else ()))


def load_cams(config: RunConfig, arch: str, epoch: int, depth: str = PAPER_DEPTH) -> dict[str, np.ndarray]:
    """`sample_id` and the raw maps per method at `depth` (default the paper's layer) of one CAM
    file, loaded without pickle; the file's `layers` names every layer it holds."""
    path = RunPaths.of(config).cams(arch, epoch)
    if not path.exists():
        raise CamError(f"{path} is missing: run the CAM stage first")
    arrays = read_npz(path)
    layer = layer_of(arch, depth)
    held = [str(name) for name in arrays.get("layers", [TARGET_LAYERS[arch]])]
    if layer not in held:
        raise CamError(f"{path} holds maps at {', '.join(held)}, not at {layer} ({depth!r}): add "
                       f"{depth!r} to cam_layers and rerun the CAM stage")
    maps = {method: arrays[map_key(method, layer, arch)] for method in ENGINE_METHODS
            if map_key(method, layer, arch) in arrays}
    return {"sample_id": arrays["sample_id"], **maps}


# -- what the chapters show -----------------------------------------------------------------------

@dataclass(frozen=True)
class CamExamples:
    """Examples of one architecture and method: raw images and [0, 1] maps at both compared epochs."""

    arch: str
    method: str
    epochs: tuple[int, int]
    sample_ids: np.ndarray
    labels: list[str]
    images: np.ndarray  # uint8 (N, S, S, 3)
    early: np.ndarray   # float32 (N, S, S), NaN when degenerate
    late: np.ndarray


def _method_maps(cams_file: dict[str, np.ndarray], method: str, where: str) -> np.ndarray:
    if method not in cams_file:
        raise CamError(f"{where} holds no {method!r} maps; add it to cam_methods and rerun the CAM stage")
    return cams_file[method]


def compared_examples(config: RunConfig, arch: str, method: str, per_class: int = 1,
                      seed: int = 0, depth: str = PAPER_DEPTH) -> CamExamples:
    """`per_class` mapped test samples of each class with their maps at the two compared epochs,
    at `depth` (the same samples at every depth for the same `seed`)."""
    early, late = (load_cams(config, arch, epoch, depth) for epoch in config.compared_epochs)
    test = data.prepare(config).split("test")
    common = np.intersect1d(early["sample_id"], late["sample_id"])
    rows = data.examples_per_class(test[test["sample_id"].isin(common)], per_class, seed)
    ids = rows["sample_id"].to_numpy(dtype=str)
    size = (config.image_size, config.image_size)
    maps = []
    for epoch, cams_file in zip(config.compared_epochs, (early, late)):
        positions = pd.Index(cams_file["sample_id"]).get_indexer(ids)
        maps.append(postprocess(_method_maps(cams_file, method, f"cams/{arch}/epoch_{epoch:02d}.npz")[positions],
                                size))
    return CamExamples(arch, method, config.compared_epochs, ids, rows["label"].tolist(),
                       data.load_images(rows, config.image_size), maps[0], maps[1])


def layer_table(config: RunConfig, epoch: int | None = None) -> pd.DataFrame:
    """Per architecture and depth of `cam_layers`: the layer, whether it is the paper's, and the
    grid its stored maps have at `epoch` (default the later compared one)."""
    epoch = config.late_epoch if epoch is None else epoch
    rows = []
    for arch in config.architectures:
        for depth, layer in cam_layers(config, arch).items():
            maps = load_cams(config, arch, epoch, depth)
            shape = next((maps[m].shape[1:] for m in config.cam_methods if m in maps), None)
            rows.append({"arch": arch, "depth": depth, "layer": layer, "paper_layer": depth == PAPER_DEPTH,
                         "grid": f"{shape[0]}×{shape[1]}" if shape else "n/a"})
    return pd.DataFrame(rows, columns=["arch", "depth", "layer", "paper_layer", "grid"])


def degenerate_table(config: RunConfig) -> pd.DataFrame:
    """Per architecture, CAM epoch and method: the raw map size, maps stored, degenerate (constant)
    maps and their share."""
    rows = []
    for arch in config.architectures:
        for epoch in config.cam_epoch_list():
            cams_file = load_cams(config, arch, epoch)
            for method in config.cam_methods:
                flags = degenerate_mask(_method_maps(cams_file, method, f"cams/{arch}/epoch_{epoch:02d}.npz"))
                shape = cams_file[method].shape[1:]
                rows.append({"arch": arch, "epoch": epoch, "method": method, "map_size": f"{shape[0]}×{shape[1]}",
                             "maps": len(flags),
                             "degenerate": int(flags.sum()), "share": float(flags.mean()) if len(flags) else np.nan})
    return pd.DataFrame(rows)


def method_agreement(config: RunConfig, first: str = "layercam", second: str = "gradcampp") -> pd.DataFrame:
    """Per architecture, compared epoch and sample: the drift metrics between two methods' maps of
    the same image (`first` in the role of the earlier map), plus each map's entropy."""
    frames = []
    size = (config.image_size, config.image_size)
    for arch in config.architectures:
        for epoch in config.compared_epochs:
            cams_file = load_cams(config, arch, epoch)
            where = f"cams/{arch}/epoch_{epoch:02d}.npz"
            a = postprocess(_method_maps(cams_file, first, where), size)
            b = postprocess(_method_maps(cams_file, second, where), size)
            frames.append(pd.DataFrame({
                "arch": arch, "epoch": epoch, "sample_id": cams_file["sample_id"],
                **metrics.drift_metrics(a, b, config.threshold),
                f"entropy_{first}": metrics.entropy(a), f"entropy_{second}": metrics.entropy(b)}))
    return pd.concat(frames, ignore_index=True)


def alpha_norm_table(config: RunConfig, epoch: int | None = None, samples: int = 32) -> pd.DataFrame:
    """How far Grad-CAM++ with and without alpha normalization lies from LayerCAM, per
    architecture, on the first `samples` mapped test images at `epoch` (default: the later
    compared one): the largest absolute difference of post-processed maps, and the share of maps
    that differ by more than 1e-4 anywhere; no rows when no test image is mapped. Read from the
    CAM files, which hold Grad-CAM++ under both conventions (`stored_methods`)."""
    epoch = config.late_epoch if epoch is None else epoch
    size = (config.image_size, config.image_size)
    records = []
    for arch in config.architectures:
        cams_file, where = load_cams(config, arch, epoch), f"cams/{arch}/epoch_{epoch:02d}.npz"
        if not len(cams_file["sample_id"]):  # no mapped image: nothing to compare
            continue
        layercam = postprocess(_method_maps(cams_file, "layercam", where)[:samples], size)
        forms = {config.alpha_norm: _method_maps(cams_file, "gradcampp", where),
                 not config.alpha_norm: _method_maps(cams_file, OTHER_ALPHA, where)}
        for normalized in (False, True):
            difference = np.abs(postprocess(forms[normalized][:samples], size) - layercam).max(axis=(1, 2))
            scored = difference[np.isfinite(difference)]  # degenerate maps are NaN
            records.append({"arch": arch, "epoch": epoch, "Grad-CAM++ form": f"alpha_norm={normalized}",
                            "maps scored": len(scored),
                            "max |Grad-CAM++ − LayerCAM|": scored.max() if len(scored) else np.nan,
                            "share differing > 1e-4": (scored > 1e-4).mean() if len(scored) else np.nan})
    return pd.DataFrame(records, columns=["arch", "epoch", "Grad-CAM++ form", "maps scored",
                                          "max |Grad-CAM++ − LayerCAM|", "share differing > 1e-4"])
