"""Same seed, same bits: fine-tuning and pre-training of the real backbones on tiny inputs.

Two fits from the same weights and data must agree bit for bit, also when the model is built
again after other models (process history). Keras numbers automatic layer names per process
(`conv2d_99` after 94 others) and Grappler orders the terms of a gradient sum by op name, so
InceptionV3, whose mixed blocks sum four branch gradients, rounded differently when built after
another InceptionV3 until `models.restart_layer_names`; its test rebuilds the model between the
fits. DenseNet201 and ResNet50V2 name their layers and sum at most two gradients (an order-free
float sum): their second fit reuses the traced step, which saves a graph trace (DenseNet201's
costs about 20 s).
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from cxrdrift import models, train
from cxrdrift.pretrain import native_bf16
from cxrdrift.models import MIN_IMAGE_SIZE, build_model


@pytest.fixture(autouse=True)
def _deterministic_ops():
    """Op determinism on, as `train.run_training` sets it, and back off afterwards."""
    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    yield
    if not was_on:
        tf_config.disable_op_determinism()


def _inputs(arch: str) -> tuple[np.ndarray, np.ndarray]:
    size = MIN_IMAGE_SIZE[arch]
    rng = np.random.default_rng(0)
    return rng.uniform(-1.0, 1.0, (16, size, size, 3)).astype(np.float32), rng.integers(0, 5, 16).astype(np.int32)


def _finetuning_model(arch: str) -> keras.Model:
    """Built as `train.train_architecture` builds it, set up for fine-tuning with BatchNorm frozen."""
    models.restart_layer_names()
    keras.utils.set_random_seed(0)
    model = build_model(arch, MIN_IMAGE_SIZE[arch], None)
    train.set_phase(model, "finetune", bn_frozen=True)
    train.compile_for(model, 1e-4, xla=False)
    return model


def _fit(model: keras.Model, x: np.ndarray, y: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """One epoch as `train.run_epoch` fits it (two batches); the weights and logits afterwards."""
    model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=1, verbose=0, shuffle=False)
    return model.get_weights(), np.asarray(model(x, training=False))


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    differing = [i for i, (u, v) in enumerate(zip(a, b)) if not np.array_equal(u, v)]
    assert not differing, f"{len(differing)} of {len(a)} weight arrays differ, the first at index {differing[0]}"


@pytest.mark.parametrize("arch", ["DenseNet201", "ResNet50V2"])
def test_a_second_finetuning_fit_from_the_same_weights_is_bit_identical(arch):
    x, y = _inputs(arch)
    model = _finetuning_model(arch)
    model.optimizer.build(model.trainable_variables)
    start, optimizer_start = model.get_weights(), [np.asarray(v) for v in model.optimizer.variables]
    weights, logits = _fit(model, x, y)
    model.set_weights(start)
    for variable, value in zip(model.optimizer.variables, optimizer_start):  # step count, Adam's moments
        variable.assign(value)
    again, logits_again = _fit(model, x, y)  # the same traced training step
    assert np.array_equal(logits, logits_again)
    _assert_same(weights, again)


def test_inceptionv3_finetuning_built_after_other_models_is_bit_identical():
    x, y = _inputs("InceptionV3")
    keras.backend.clear_session()  # automatic layer names from the start: conv2d, conv2d_1, ...
    weights, logits = _fit(_finetuning_model("InceptionV3"), x, y)
    keras.backend.clear_session()
    build_model("InceptionV3", MIN_IMAGE_SIZE["InceptionV3"], None)  # the next one would get conv2d_94, ...
    again, logits_again = _fit(_finetuning_model("InceptionV3"), x, y)
    assert np.array_equal(logits, logits_again)
    _assert_same(weights, again)


# InceptionV3 takes the float32 path, ResNet50V2 the bfloat16 one (rebuilt in float32 afterwards),
# which runs only where the CPU computes bf16 natively (elsewhere it is emulated and slow, and the
# study pre-trains in float32). Not DenseNet201: it names its layers and sums at most two
# gradients, as ResNet50V2 does, and its repeat cost more than three minutes of the suite's time.
@pytest.mark.parametrize("arch, precision", [
    ("InceptionV3", "float32"),
    pytest.param("ResNet50V2", "mixed_bfloat16", marks=pytest.mark.skipif(
        not native_bf16(), reason="no native bf16 on this CPU (avx512_bf16 or amx_bf16): the study pre-trains in float32"))])
def test_pretraining_again_after_other_models_is_bit_identical(tmp_path, monkeypatch, arch, precision):
    from cxrdrift.pretrain import PretrainSpec, pretrain_backbone

    monkeypatch.setenv("CXRDRIFT_CACHE", str(tmp_path / "cache"))
    spec = PretrainSpec(image_size=MIN_IMAGE_SIZE[arch], images=16, epochs=1, bn_epochs=1, batch_size=8,
                        precision=precision)
    keras.backend.clear_session()  # automatic layer names from the start: conv2d, conv2d_1, ...
    first, description = pretrain_backbone(arch, spec, verbose=0)
    # whatever the training steps computed in, the backbone comes back as the study builds it
    assert first.dtype_policy.name == keras.mixed_precision.global_policy().name == "float32"
    weights = first.get_weights()
    assert {w.dtype for w in weights} == {np.dtype("float32")}
    second, again = pretrain_backbone(arch, spec, verbose=0)  # built after `first`
    _assert_same(weights, second.get_weights())
    np.testing.assert_equal(description["auc_macro"], again["auc_macro"])
