"""Model convention, weight options and their errors, and the synthetic pre-training cache."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from cxrdrift import config as cfg
from cxrdrift import models, pretrain, synth
from cxrdrift.weights import resolve_weights


@pytest.fixture(scope="module")
def resnet() -> keras.Model:
    return models.build_model("ResNet50V2", 32, None)


def test_flat_model_with_reachable_target_layer_and_logits(resnet):
    assert resnet.get_layer(models.TARGET_LAYERS["ResNet50V2"]).output.shape[1:3] == (1, 1)
    assert resnet.output_shape == (None, 5)
    assert resnet.get_layer("logits").activation is keras.activations.linear
    assert not any(isinstance(layer, keras.Model) for layer in resnet.layers)  # flat
    assert {layer.name for layer in models.backbone_layers(resnet)}.isdisjoint(models.HEAD_LAYERS)


def test_whole_model_weights_file_round_trip(resnet, tmp_path):
    path = tmp_path / "ResNet50V2.weights.h5"
    resnet.save_weights(path)
    loaded = models.build_model("ResNet50V2", 32, str(tmp_path / "{arch}.weights.h5"))
    for a, b in zip(resnet.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_backbone_weights_file_loads_into_a_model_of_another_size(resnet, tmp_path):
    path = tmp_path / "backbone.weights.h5"
    models.backbone_model(resnet).save_weights(path)
    bigger = models.build_model("ResNet50V2", 48, path)
    for a, b in zip(models.backbone_model(resnet).get_weights(), models.backbone_model(bigger).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_head_init_starts_a_head_the_weights_do_not_hold(resnet, tmp_path):
    models.backbone_model(resnet).save_weights(tmp_path / "backbone.weights.h5")
    resnet.save_weights(tmp_path / "whole.weights.h5")
    from_backbone = models.build_model("ResNet50V2", 32, tmp_path / "backbone.weights.h5", head_init="zeros")
    assert not np.any(from_backbone.get_layer("logits").get_weights()[0])
    assert np.any(models.build_model("ResNet50V2", 32, None).get_layer("logits").get_weights()[0])  # glorot draw
    whole = models.build_model("ResNet50V2", 32, str(tmp_path / "whole.weights.h5"), head_init="zeros")
    np.testing.assert_array_equal(whole.get_layer("logits").get_weights()[0], resnet.get_layer("logits").get_weights()[0])


def test_missing_or_mismatched_weights_files_are_named(resnet, tmp_path):
    with pytest.raises(models.WeightsError, match="nowhere.weights.h5 does not exist"):
        models.build_model("ResNet50V2", 32, str(tmp_path / "nowhere.weights.h5"))
    path = tmp_path / "resnet.weights.h5"
    resnet.save_weights(path)
    with pytest.raises(models.WeightsError, match=r"resnet\.weights\.h5 does not fit DenseNet201"):
        models.build_model("DenseNet201", 32, path)
    legacy = tmp_path / "not_inception.h5"
    legacy.write_bytes(b"not an hdf5 file")
    with pytest.raises(models.WeightsError, match="not_inception.h5 is not a no-top InceptionV3"):
        models.build_model("InceptionV3", 75, legacy)
    config = cfg.profile("smoke", weights=str(tmp_path / "{arch}_missing.weights.h5"))
    with pytest.raises(models.WeightsError, match="DenseNet201_missing.weights.h5"):
        resolve_weights(config, "DenseNet201")
    with pytest.raises(models.WeightsError, match=r"built-in pre-training.*resolve_weights"):
        models.build_model("ResNet50V2", 32, "synthetic")


def test_imagenet_offline_error_names_cache_and_alternatives(monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...")

    monkeypatch.setitem(models._APPLICATIONS, "ResNet50V2", (offline, models._APPLICATIONS["ResNet50V2"][1]))
    with pytest.raises(models.WeightsError, match=r"~/.keras/models.*weights=synthetic"):
        models.build_model("ResNet50V2", 32, "imagenet")


def test_none_means_random_and_is_recorded():
    assert resolve_weights(cfg.profile("smoke", weights="none"), "ResNet50V2") == (None, {"kind": "none"})


def test_source_scores_by_hand():
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    logits = np.array([[2.0, -1.0], [-1.0, 0.5], [0.3, -0.2], [-3.0, 0.1]])
    scores = pretrain.source_scores(targets, logits)
    assert scores["label_accuracy"] == pytest.approx(6 / 8)
    assert scores["exact_match"] == pytest.approx(2 / 4)
    # output 0: positives {2.0, 0.3} above negatives {-1, -3}: AUC 1; output 1: positives {0.5, -0.2}
    # vs negatives {-1.0, 0.1}: 3 of 4 pairs ordered -> 0.75
    assert scores["auc_macro"] == pytest.approx((1.0 + 0.75) / 2)


def test_batchnorm_reestimation_catches_up_with_the_data():
    inputs = keras.Input((4,))
    norm = keras.layers.BatchNormalization(momentum=0.5)
    model = keras.Model(inputs, norm(inputs))
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 4)).astype(np.float32)
    pretrain.reestimate_batchnorm(model, x, batch_size=64, passes=12)
    np.testing.assert_allclose(norm.moving_mean.numpy(), x.mean(0), rtol=1e-3)
    np.testing.assert_allclose(norm.moving_variance.numpy(), x.var(0), rtol=1e-2)


def test_spec_from_config_and_key_sensitivity(monkeypatch):
    config = cfg.profile("demo", seed=3)
    spec = pretrain.PretrainSpec.from_config(config, "DenseNet201")
    assert (spec.image_size, spec.train_size("ResNet50V2"), spec.images, spec.epochs, spec.seed) == \
        (config.image_size, config.pretrain_size or config.image_size, config.pretrain_images,
         config.pretrain_epochs, 3)
    assert pretrain.PretrainSpec(image_size=128, size=48).train_size("InceptionV3") == 75  # its minimum
    assert pretrain.PretrainSpec(image_size=128).train_size("DenseNet201") == 128
    key = spec.key("DenseNet201")
    assert key == spec.key("DenseNet201") != spec.key("ResNet50V2")
    assert key != pretrain.PretrainSpec.from_config(config.replace(pretrain_lr=1e-4), "DenseNet201").key("DenseNet201")
    float32, bf16 = (pretrain.PretrainSpec(image_size=112, precision=p).key("DenseNet201")
                     for p in ("float32", "mixed_bfloat16"))
    assert float32 != bf16
    monkeypatch.setattr(synth, "GENERATOR_VERSION", synth.GENERATOR_VERSION + 1)
    assert key != spec.key("DenseNet201")


def test_bf16_only_for_the_named_architectures_where_the_cpu_computes_it(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n")
    assert pretrain.native_bf16(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert not pretrain.native_bf16(cpuinfo)
    assert not pretrain.native_bf16(tmp_path / "missing")
    config = cfg.profile("demo")
    assert config.pretrain_bf16 == ("DenseNet201", "ResNet50V2")
    for native in (True, False):
        monkeypatch.setattr(pretrain, "native_bf16", lambda native=native: native)
        assert [pretrain.PretrainSpec.from_config(config, arch).precision for arch in config.architectures] == \
            ["mixed_bfloat16" if native else "float32"] * 2 + ["float32"]
    assert pretrain.PretrainSpec.from_config(cfg.profile("smoke"), "DenseNet201").precision == "float32"


def test_pretrained_weights_come_back_from_the_cache_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv(pretrain.CACHE_ENV, str(tmp_path))
    trained = {}
    original = pretrain.pretrain_backbone

    def keep(arch, spec, **kwargs):
        trained["model"], description = original(arch, spec, **kwargs)
        return trained["model"], description

    monkeypatch.setattr(pretrain, "pretrain_backbone", keep)
    spec = pretrain.PretrainSpec(image_size=40, size=32, images=32, epochs=1, bn_epochs=1, batch_size=16)
    first = pretrain.synthetic_backbone_weights("ResNet50V2", spec, verbose=0)
    assert first.path.parent == tmp_path and first.description["cached"] is False
    assert 0.0 <= first.description["label_accuracy"] <= 1.0
    assert first.description["source_outputs"] == len(synth.FINDINGS)
    monkeypatch.setattr(pretrain, "pretrain_backbone", None)  # a cache hit must not train
    second = pretrain.synthetic_backbone_weights("ResNet50V2", spec)
    assert second.path == first.path and second.description["cached"] is True
    model = models.build_model("ResNet50V2", 40, second.path)
    expected = models.backbone_model(trained["model"]).get_weights()
    for a, b in zip(expected, models.backbone_model(model).get_weights()):
        np.testing.assert_array_equal(a, b)
    other = pretrain.PretrainSpec(image_size=40, size=32, images=32, epochs=1, bn_epochs=1, batch_size=16, seed=1)
    assert not pretrain.cache_paths("ResNet50V2", other)[0].exists()
