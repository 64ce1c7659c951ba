"""Stage 2: the two-phase protocol — transfer learning with a frozen backbone, then fine-tuning.

For each architecture: phase "transfer" (epochs 1..epochs_tl) trains only the `logits` head with
Adam(lr_tl); phase "finetune" (epochs_tl+1..total) trains the whole network with a fresh
Adam(lr_ft), BatchNorm layers kept in inference mode when `bn_frozen_in_ft` (Keras runs a
BatchNorm layer with `trainable=False` in inference mode). After every epoch: the checkpoint
(`config.saved_epochs()`), every test sample's logits (`predictions.parquet`) and the epoch's
losses, accuracies and throughput (`history.csv`).

Without augmentation and with `cache_frozen_features`, the frozen phase computes the backbone's
pooled features once and trains the same `logits` layer on them (a model sharing that layer), in
the same batch order as the plain path would use: the head it gives is the plain path's. Within
one process, a later run of a backbone (a replicate) fine-tunes in the model an earlier run
compiled for the same settings, given its own weights and a fresh optimizer state (`finetuner`):
the traced steps are reused, and their numbers are those of steps traced again.

Resume: after an epoch's artifacts, `models/<arch>/last.weights.h5`, the optimizer's variables
(`last.optimizer.npz`) and then `state.json` (the epoch and the training stamp,
`artifacts.stamp`) are written; a restarted run whose stamp is still current continues after the
epoch `state.json` names, with weights and optimizer restored, and discards any rows of later
epochs (written by an interrupted epoch). Batch order is a function of (seed, epoch), so a resumed
run reproduces an uninterrupted one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from . import data, progress
from .artifacts import RunPaths, atomic_path, is_current, read_json, read_npz, read_resolved, stamp, write_config, \
    write_csv, write_json, write_npz, write_parquet
from .config import RunConfig
from .models import backbone_layers, build_model, preprocess_input, restart_layer_names
from .weights import resolve_weights

PHASES = ("transfer", "finetune")
HISTORY_COLUMNS = ("arch", "epoch", "phase", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
                   "images_per_s", "wall_s", "cpu_s")
LOSS = "sparse_categorical_crossentropy_from_logits"
log = logging.getLogger("cxrdrift.train")


# -- device: mixed precision, XLA, several GPUs ---------------------------------------------------

@dataclass(frozen=True)
class Device:
    strategy: tf.distribute.Strategy
    mixed_precision: bool
    xla: bool
    gpus: int


def uses_mixed_precision(config: RunConfig) -> bool:
    """Whether training computes under "mixed_float16": `mixed_precision` on, or auto with a GPU."""
    return config.mixed_precision == "on" or (config.mixed_precision == "auto"
                                              and bool(tf.config.list_physical_devices("GPU")))


def configure_device(config: RunConfig) -> Device:
    """Set the Keras dtype policy ("mixed_float16" when mixed precision is on, else "float32") and
    choose the distribution strategy (MirroredStrategy over several GPUs) and XLA."""
    gpus = len(tf.config.list_physical_devices("GPU"))
    mixed = uses_mixed_precision(config)
    xla = config.xla == "on" or (config.xla == "auto" and gpus > 0)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    strategy = tf.distribute.MirroredStrategy() if gpus > 1 else tf.distribute.get_strategy()
    return Device(strategy, mixed, xla, gpus)


# -- run-directory bookkeeping ---------------------------------------------------------------------

def training_stamp(config: RunConfig, arch: str, index: data.DatasetIndex | None = None) -> str:
    """What `arch`'s checkpoints, predictions and history are computed from: the "training" fields,
    the dataset's contents (`index`, the run's dataset when None) and the precision fine-tuning
    computes in on this CPU."""
    index = data.run_index(config) if index is None else index
    return stamp(config, "training", arch=arch, dataset=index.identity,
                 finetune_precision=finetune_precision(config, arch))


def finetune_precision(config: RunConfig, arch: str) -> str:
    """The Keras dtype policy of `arch`'s fine-tuning steps without a GPU: "mixed_bfloat16" when
    `config.finetune_bf16` names it and this CPU computes bfloat16 natively, else "float32"
    (with mixed precision on, the global "mixed_float16" policy applies instead)."""
    from .pretrain import native_bf16
    return "mixed_bfloat16" if arch in config.finetune_bf16 and native_bf16() else "float32"


def phase_policy(config: RunConfig, arch: str, phase: str, mixed: bool) -> str:
    """The Keras dtype policy `arch`'s steps in `phase` compute under: "mixed_float16" under mixed
    precision (`configure_device` sets it globally), else "float32" for the frozen phase's head and
    `finetune_precision` for fine-tuning."""
    if mixed:
        return "mixed_float16"
    return finetune_precision(config, arch) if phase == PHASES[1] else "float32"


def finished_epoch(config: RunConfig, arch: str, index: data.DatasetIndex | None = None) -> int:
    """The last epoch of `arch` whose artifacts are all written for this config and the dataset
    of `index` (the run's when None); 0 if none."""
    paths = RunPaths.of(config)
    state = paths.training_state(arch)
    if not paths.last_weights(arch).is_file() or not is_current(state, training_stamp(config, arch, index)):
        return 0
    return int(read_json(state)["epoch"])


def _read_table(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def _replace_rows(path: Path, arch: str, rows: pd.DataFrame | None, keep_through: int) -> None:
    """Rewrite a per-epoch table: keep `arch`'s rows up to epoch `keep_through`, other archs' rows,
    and append `rows`."""
    table = _read_table(path)
    parts = []
    if table is not None:
        parts.append(table[(table["arch"] != arch) | (table["epoch"] <= keep_through)])
    if rows is not None:
        parts.append(rows)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if frame.empty and table is None:
        return
    frame = frame.sort_values(["arch", "epoch"], kind="stable").reset_index(drop=True)
    (write_parquet if path.suffix == ".parquet" else write_csv)(path, frame)


def predictions_frame(arch: str, epoch: int, test: pd.DataFrame, logits: np.ndarray) -> pd.DataFrame:
    """One row per test sample: arch, epoch, sample_id, label, label_index, predicted_index, logit_k."""
    frame = pd.DataFrame({"arch": arch, "epoch": epoch, "sample_id": test["sample_id"].to_numpy(),
                          "label": test["label"].to_numpy(), "label_index": test["label_index"].to_numpy(),
                          "predicted_index": logits.argmax(axis=1)})
    for k in range(logits.shape[1]):
        frame[f"logit_{k}"] = logits[:, k].astype(np.float32)
    return frame


# -- optimizer state (exact resume) ----------------------------------------------------------------

def save_optimizer(optimizer: keras.optimizers.Optimizer, path: Path) -> None:
    write_npz(path, {f"v{i:04d}": np.asarray(v) for i, v in enumerate(optimizer.variables)})


def restore_optimizer(optimizer: keras.optimizers.Optimizer, variables: list, path: Path) -> None:
    """Build `optimizer` for `variables` (unless built: a loss-scale optimizer would add its
    variables twice) and assign the saved values (same order as saved)."""
    if not optimizer.built:
        optimizer.build(variables)
    saved = read_npz(path)
    if len(saved) != len(optimizer.variables):
        raise ValueError(f"optimizer state {path} holds {len(saved)} variables, expected "
                         f"{len(optimizer.variables)}; delete it to restart the phase")
    for i, variable in enumerate(optimizer.variables):
        variable.assign(saved[f"v{i:04d}"])


# -- the protocol -------------------------------------------------------------------------------------

def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training samples' order in `epoch`: a permutation fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def set_phase(model: keras.Model, phase: str, bn_frozen: bool) -> None:
    """Freeze the backbone ("transfer") or unfreeze it ("finetune", BatchNorm frozen if asked)."""
    for layer in backbone_layers(model):
        layer.trainable = phase == "finetune" and not (
            bn_frozen and isinstance(layer, keras.layers.BatchNormalization))


def compile_for(trainer: keras.Model, lr: float, xla: bool) -> None:
    trainer.compile(optimizer=keras.optimizers.Adam(lr),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                    jit_compile=xla)


def head_model(model: keras.Model) -> keras.Model:
    """A model from pooled features to logits that shares `model`'s `logits` layer."""
    features = keras.Input(shape=(model.get_layer("logits").input.shape[-1],), name="features")
    return keras.Model(features, model.get_layer("logits")(features), name=f"{model.name}_head")


class EpochSource:
    """What one epoch trains and evaluates on: images through the whole model, or cached features
    through the head."""

    def __init__(self, config: RunConfig, arch: str, index: data.DatasetIndex, model: keras.Model,
                 cached: bool, features: dict[str, np.ndarray] | None = None):
        self.config, self.arch, self.cached = config, arch, cached
        self.train, self.val, self.test = (index.split(s) for s in ("train", "val", "test"))
        self.features: dict[str, np.ndarray] = dict(features or {})
        self.trainer = head_model(model) if cached else model
        self.extractor = keras.Model(model.input, model.get_layer("avg_pool").output) if cached else None

    def images(self, frame: pd.DataFrame, *, augment: bool = False, seed: int = 0) -> tf.data.Dataset:
        c = self.config
        return data.make_dataset(frame, preprocess_input(self.arch), c.image_size, c.batch_size, augment=augment, seed=seed,
                                 cache=False)

    def _features(self, split: str) -> np.ndarray:
        if split not in self.features:
            frame = {"train": self.train, "val": self.val, "test": self.test}[split]
            with progress.bar(len(frame), f"{self.arch} frozen features, {split}") as shown:
                pooled = self.extractor.predict(  # inference mode
                    self.images(frame), verbose=0,
                    callbacks=[progress.keras_progress(shown, len(frame), self.config.batch_size)])
            self.features[split] = pooled.astype(np.float32)
        return self.features[split]

    def save_features(self, path: Path, training: str) -> None:
        """Keep the pooled features of every split, with their labels and sample ids, for the linear
        probe (`linear_probe`) and for replicates (`shared_features`), stamped like the training
        that computed them."""
        write_npz(path, {name: array for split in data.SPLITS for name, array in (
            (split, self._features(split)),
            (f"{split}_labels", getattr(self, split)["label_index"].to_numpy(np.int32)),
            (f"{split}_ids", getattr(self, split)["sample_id"].to_numpy(str)))}, stamp=training)

    def _from_features(self, split: str, order: np.ndarray | None = None) -> tf.data.Dataset:
        frame = {"train": self.train, "val": self.val, "test": self.test}[split]
        x, y = self._features(split), frame["label_index"].to_numpy(np.int32)
        if order is not None:
            x, y = x[order], y[order]
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(self.config.batch_size)

    def training_order(self, epoch: int) -> np.ndarray:
        """The training samples of `epoch` in their order: all of them, or in a fine-tuning epoch
        the first `finetune_images`."""
        order = epoch_order(len(self.train), self.config.seed, epoch)
        count = self.config.finetune_images
        if phase_of(self.config, epoch) == "finetune" and count:
            if count > len(order):
                raise data.DatasetError(f"finetune_images={count} exceeds the {len(order):,} training images; "
                                        "use 0 for all of them")
            order = order[:count]
        return order

    def training(self, epoch: int) -> tf.data.Dataset:
        order = self.training_order(epoch)
        if self.cached:
            return self._from_features("train", order)
        return self.images(self.train.iloc[order], augment=self.config.augment,
                           seed=self.config.seed * 1000 + epoch)

    def evaluation(self, split: str) -> tf.data.Dataset:
        frame = {"val": self.val, "test": self.test}[split]
        return self._from_features(split) if self.cached else self.images(frame)


def loss_and_accuracy(labels: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and top-1 accuracy of `logits` against integer `labels`: what
    `evaluate` reports for the compiled loss and metric."""
    loss = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return float(np.mean(np.asarray(loss, np.float64))), float(np.mean(np.argmax(logits, axis=1) == labels))


def run_epoch(source: EpochSource, epoch: int) -> tuple[dict[str, float], np.ndarray]:
    """Train one epoch; returns the history row's numbers and the test logits."""
    start, cpu_start = time.perf_counter(), time.process_time()
    # every split's input first: cached features are computed here, under their own bars, and
    # the epoch's bar then counts the images trained, validated and predicted on
    training, val, test = source.training(epoch), source.evaluation("val"), source.evaluation("test")
    c = source.config
    sizes = {"train": len(source.training_order(epoch)), "val": len(source.val), "test": len(source.test)}
    phase = phase_of(c, epoch)
    with progress.bar(sum(sizes.values()), f"{source.arch} epoch {epoch}/{c.total_epochs} ({phase})") as shown:
        fit_start = time.perf_counter()
        fitted = source.trainer.fit(training, epochs=1, verbose=0, shuffle=False,
                                    callbacks=[progress.keras_progress(shown, sizes["train"], c.batch_size)]).history
        fit_seconds = time.perf_counter() - fit_start
        # validation scored from a prediction pass: the traced prediction step serves both splits,
        # where `evaluate` would trace a step of its own
        val_logits = source.trainer.predict(
            val, verbose=0, callbacks=[progress.keras_progress(shown, sizes["val"], c.batch_size)])
        val_loss, val_accuracy = loss_and_accuracy(source.val["label_index"].to_numpy(np.int32), val_logits)
        logits = source.trainer.predict(
            test, verbose=0, callbacks=[progress.keras_progress(shown, sizes["test"], c.batch_size)]).astype(np.float32)
        shown.set_postfix(val_accuracy=f"{val_accuracy:.3f}")
    row = {"train_loss": float(fitted["loss"][-1]), "train_accuracy": float(fitted["accuracy"][-1]),
           "val_loss": float(val_loss), "val_accuracy": float(val_accuracy),
           "images_per_s": sizes["train"] / fit_seconds, "wall_s": time.perf_counter() - start,
           "cpu_s": time.process_time() - cpu_start}
    return row, logits


def finish_epoch(config: RunConfig, arch: str, epoch: int, phase: str, model: keras.Model,
                 optimizer: keras.optimizers.Optimizer, row: dict[str, float], test: pd.DataFrame,
                 logits: np.ndarray, trained: str) -> None:
    """Write the epoch's artifacts; `state.json` last, stamped `trained` (`training_stamp`), so an
    epoch counts as done only when all are."""
    paths = RunPaths.of(config)
    if epoch in config.saved_epochs():
        with atomic_path(paths.weights(arch, epoch)) as tmp:
            model.save_weights(tmp)
    _replace_rows(paths.predictions, arch, predictions_frame(arch, epoch, test, logits), epoch - 1)
    history = pd.DataFrame([{"arch": arch, "epoch": epoch, "phase": phase, **row}], columns=HISTORY_COLUMNS)
    _replace_rows(paths.history, arch, history, epoch - 1)
    with atomic_path(paths.last_weights(arch)) as tmp:
        model.save_weights(tmp)
    if epoch == config.total_epochs:
        paths.last_optimizer(arch).unlink(missing_ok=True)
    else:
        save_optimizer(optimizer, paths.last_optimizer(arch))
    write_json(paths.training_state(arch), {"epoch": epoch, "phase": phase}, stamp=trained)


def phase_of(config: RunConfig, epoch: int) -> str:
    return PHASES[0] if epoch <= config.epochs_tl else PHASES[1]


def shared_features(config: RunConfig, arch: str, index: data.DatasetIndex,
                    weights: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The pooled frozen-backbone features `config`'s training saved for `arch`, when they are
    current, computed from the same starting weights (`weights`, a `resolve_weights` description;
    randomly initialized backbones differ by seed and are never shared) and of the same images as
    `index`: a replicate's features, since the seed changes neither; None otherwise."""
    path = RunPaths.of(config).frozen_features(arch)
    described = RunPaths.of(config).weights_description(arch)
    same_start = [weights.get(k) for k in ("kind", "path", "cache_key")]
    if (weights.get("kind") == "none" or not described.is_file()
            or [read_json(described).get(k) for k in ("kind", "path", "cache_key")] != same_start
            or not is_current(path, training_stamp(config, arch, index))):
        return None
    saved = read_npz(path)
    if any(f"{split}_ids" not in saved or not np.array_equal(saved[f"{split}_ids"],
                                                             index.split(split)["sample_id"].to_numpy(str))
           for split in data.SPLITS):
        return None
    return {split: saved[split] for split in data.SPLITS}


def finetuning_model(model: keras.Model, arch: str, image_size: int, policy: str) -> keras.Model:
    """`model` itself, or under another dtype `policy` a copy built under it with `model`'s weights
    (a layer's compute dtype is fixed when it is built)."""
    if policy == keras.mixed_precision.global_policy().name:
        return model
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        restart_layer_names()
        copy = build_model(arch, image_size, None)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


# The last compiled fine-tuning model of each backbone in this process, with what it was compiled
# for and its optimizer's starting state, so that a later run (a replicate in chapter 07) fine-tunes
# in the traced steps of an earlier one instead of tracing them again.
_FINETUNERS: dict[str, tuple[tuple, keras.Model, list[np.ndarray]]] = {}


def clear_finetuning_cache() -> None:
    """Forget the compiled fine-tuning models (the next run of each backbone traces its own)."""
    _FINETUNERS.clear()


def finetuner(config: RunConfig, arch: str, device: Device, model: keras.Model) -> keras.Model:
    """A compiled model for `arch`'s fine-tuning phase holding `model`'s weights and a fresh Adam
    state: the one an earlier run in this process compiled for the same weight shapes, input
    size, precision, BatchNorm setting, learning rate and device, or one compiled now (`model`
    itself where the precision is the global policy). Steps traced before and given the same
    weights and optimizer state compute the same bits as steps traced again
    (tests/test_determinism.py)."""
    policy = phase_policy(config, arch, PHASES[1], device.mixed_precision)
    key = (tuple(tuple(w.shape) for w in model.weights), config.image_size, policy, config.bn_frozen_in_ft,
           config.lr_ft, device.xla, device.strategy)
    if arch in _FINETUNERS and _FINETUNERS[arch][0] == key:
        _, trainer, optimizer_start = _FINETUNERS[arch]
        trainer.set_weights(model.get_weights())
        for variable, value in zip(trainer.optimizer.variables, optimizer_start):  # step count, moments
            variable.assign(value)
        log.info("%s: fine-tuning in the model an earlier run of this process compiled", arch)
        return trainer
    _FINETUNERS.pop(arch, None)
    with device.strategy.scope():
        trainer = finetuning_model(model, arch, config.image_size, policy)
        set_phase(trainer, "finetune", config.bn_frozen_in_ft)
        compile_for(trainer, config.lr_ft, device.xla)
        trainer.optimizer.build(trainer.trainable_variables)
    _FINETUNERS[arch] = key, trainer, [np.asarray(v) for v in trainer.optimizer.variables]
    return trainer


def train_architecture(config: RunConfig, arch: str, index: data.DatasetIndex, device: Device,
                       force: bool = False, features_of: RunConfig | None = None) -> None:
    """Train `arch` through both phases, resuming after its last finished epoch; a replicate
    passes the main run as `features_of` to reuse its frozen-backbone features."""
    paths = RunPaths.of(config)
    trained = training_stamp(config, arch, index)
    done = 0 if force else finished_epoch(config, arch, index)
    if done == config.total_epochs:
        if paths.weights_description(arch).is_file():  # config.json may have been rewritten since
            _record_weights(config, arch, read_json(paths.weights_description(arch)))
        log.info("%s: all %d epochs already done, skipped", arch, done)
        return
    for table in (paths.predictions, paths.history):  # drop rows of epochs not finished
        _replace_rows(table, arch, None, done)
    weights, description = resolve_weights(config, arch)
    log.info("%s: weights %s", arch, ", ".join(f"{k}={v}" for k, v in description.items()
                                               if k in ("kind", "cached", "seconds", "auc_macro", "path")))
    write_json(paths.weights_description(arch), description)
    _record_weights(config, arch, description)
    restart_layer_names()
    keras.utils.set_random_seed(config.seed)
    with device.strategy.scope():
        model = build_model(arch, config.image_size, weights, head_init=config.head_init)
        if done:
            model.load_weights(paths.last_weights(arch))
            log.info("%s: resuming after epoch %d", arch, done)
    cached = config.cache_frozen_features and not config.augment
    for phase in PHASES:
        epochs = [e for e in range(done + 1, config.total_epochs + 1) if phase_of(config, e) == phase]
        if not epochs:
            continue
        if phase == "finetune":
            model = finetuner(config, arch, device, model)
            log.info("%s: fine-tuning computes in %s", arch, model.dtype_policy.name)
        else:
            set_phase(model, phase, config.bn_frozen_in_ft)
        reused = (shared_features(features_of, arch, index, description)
                  if features_of and phase == "transfer" else None)
        if reused:
            log.info("%s: frozen features of %s reused", arch, features_of.run_dir)
        with device.strategy.scope():
            source = EpochSource(config, arch, index, model, cached and phase == "transfer", reused)
            if phase == "transfer":
                compile_for(source.trainer, config.lr_tl, device.xla)
            if done and phase_of(config, done) == phase:
                restore_optimizer(source.trainer.optimizer, source.trainer.trainable_variables,
                                  paths.last_optimizer(arch))
        for epoch in epochs:
            row, logits = run_epoch(source, epoch)
            finish_epoch(config, arch, epoch, phase, model, source.trainer.optimizer, row, source.test, logits,
                         trained)
            log.info("%s epoch %d (%s): %s", arch, epoch, phase,
                     ", ".join(f"{k}={v:.4g}" for k, v in row.items()))
        if source.cached:
            source.save_features(paths.frozen_features(arch), trained)


def _record_weights(config: RunConfig, arch: str, description: dict[str, Any]) -> None:
    write_config(config, {"weights": {**read_resolved(config.run_dir).get("weights", {}), arch: description}})


def _log_to(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def run_training(config: RunConfig, force: bool = False, features_of: RunConfig | None = None) -> pd.DataFrame:
    """Stage 2: train every architecture of `config` through both phases (resuming, skipping
    finished ones unless `force`; a replicate reuses the frozen features of the run `features_of`);
    returns `history.csv` as a frame."""
    paths = RunPaths.of(config)
    index = data.prepare(config)
    handler = _log_to(paths.training_log)
    previous_policy = keras.mixed_precision.global_policy()
    try:
        device = configure_device(config)
        log.info("device: %d GPU(s), mixed precision %s, XLA %s", device.gpus, device.mixed_precision, device.xla)
        tf.config.experimental.enable_op_determinism()
        for arch in config.architectures:
            train_architecture(config, arch, index, device, force, features_of)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
        log.removeHandler(handler)
        handler.close()
    return pd.read_csv(paths.history)


# -- reading the results ---------------------------------------------------------------------------

def load_predictions(config: RunConfig) -> pd.DataFrame:
    return pd.read_parquet(RunPaths.of(config).predictions)


def load_history(config: RunConfig) -> pd.DataFrame:
    return pd.read_csv(RunPaths.of(config).history)


def epoch_scores(predictions: pd.DataFrame, epoch: int) -> dict[str, dict[str, Any]]:
    """`metrics.predictive_metrics` of every architecture's test logits at `epoch`."""
    from .metrics import logit_columns, predictive_metrics

    return {arch: predictive_metrics(frame["label_index"].to_numpy(), frame[logit_columns(frame)].to_numpy(),
                                     class_names=data.CLASSES)
            for arch, frame in predictions[predictions["epoch"] == epoch].groupby("arch", sort=False)}


def linear_probe(config: RunConfig) -> pd.DataFrame:
    """What pre-training taught, measured on the target: test accuracy of a logistic regression on
    each backbone's frozen pooled features (standardized; fitted on the training split), from the
    features the frozen phase saved. Architectures without features saved by this config's training
    are left out."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows, index = {}, data.run_index(config)
    for arch in config.architectures:
        path = RunPaths.of(config).frozen_features(arch)
        if not is_current(path, training_stamp(config, arch, index)):
            continue
        saved = read_npz(path)
        # tol 1e-3, not scikit-learn's 1e-4: on the demo's features (1,920-2,048 per image, 1,000 images)
        # L-BFGS then stops after 73-116 iterations instead of 286-446, 4x sooner, with the same
        # test accuracy within one image
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, tol=1e-3, random_state=config.seed))
        probe.fit(saved["train"], saved["train_labels"])
        rows[arch] = {"linear_probe_accuracy": float(probe.score(saved["test"], saved["test_labels"]))}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("arch")


def predictive_table(scores: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Accuracy, macro one-vs-rest AUC and macro F1 per architecture (a run's Table 2)."""
    return pd.DataFrame({arch: {k: s[k] for k in ("auc", "accuracy", "f1")} for arch, s in scores.items()}).T \
        .rename_axis("arch")


def per_class_recall(scores: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Recall of every class (columns) per architecture (rows)."""
    return pd.DataFrame({arch: s["recall_per_class"] for arch, s in scores.items()}).T.rename_axis("arch")


def throughput_table(config: RunConfig, history: pd.DataFrame) -> pd.DataFrame:
    """Median training images/s and mean epoch wall time per architecture and phase, with the
    arithmetic each phase's steps compute in on this machine (`phase_policy`; the training stamp
    holds the fine-tuning precision, so it is what made these checkpoints)."""
    table = (history.groupby(["arch", "phase"], sort=False)
             .agg(images_per_s=("images_per_s", "median"), epoch_wall_s=("wall_s", "mean"))
             .reset_index())
    mixed = uses_mixed_precision(config)
    table["arithmetic"] = [phase_policy(config, arch, phase, mixed).removeprefix("mixed_")
                           for arch, phase in zip(table["arch"], table["phase"])]
    return table


def iter_weights_descriptions(config: RunConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """(arch, description) of the weights each architecture started from, from config.json."""
    yield from read_resolved(config.run_dir).get("weights", {}).items()
