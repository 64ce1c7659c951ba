"""The two-phase protocol: artifacts, frozen/fine-tune semantics, resume, feature caching, device set-up.

Unit tests swap the Keras applications for a tiny convolutional network of the same convention
(BatchNorm, `avg_pool`, `logits`) so that each run takes seconds; the smoke test runs the real
backbones end to end.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from cxrdrift import config as cfg
from cxrdrift import models, train
from cxrdrift.artifacts import RunPaths, read_npz, read_resolved, write_config


def tiny_model(arch: str, image_size: int, weights=None, num_classes: int = 5,
               head_init: str = "glorot_uniform") -> keras.Model:
    """A small model of the project's convention (flat, BatchNorm in the backbone); a weights file
    holds the backbone, as the built-in pre-training's does (`save_backbone`)."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = inputs
    for i, filters in enumerate((4, 8)):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits", dtype="float32", kernel_initializer=head_init)(pooled)
    model = keras.Model(inputs, logits, name=arch)
    if weights is not None and str(weights).endswith(".weights.h5"):  # "pre-trained": the same start for every seed
        models.backbone_model(model).load_weights(weights)
    return model


def save_backbone(path) -> None:
    """A "pre-trained" tiny backbone: one start every seed shares."""
    models.backbone_model(tiny_model("ResNet50V2", 16)).save_weights(path)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A config factory for tiny runs: two 'architectures' built by `tiny_model`, 16 px images."""
    monkeypatch.setattr(train, "build_model", tiny_model)
    train.clear_finetuning_cache()  # each test compiles its own fine-tuning models first
    data_dir = tmp_path / "shared_data"

    def make(name: str, **overrides) -> cfg.RunConfig:
        values = dict(run_dir=str(tmp_path / name), architectures=("ResNet50V2", "DenseNet201"),
                      weights="none", image_size=16, synth_size=32, synth_train=48, synth_val=16,
                      synth_test=20, batch_size=8, epochs_tl=2, epochs_ft=2, early_epoch=1, late_epoch=3,
                      save_epochs="all", cam_epochs="compared", lr_ft=1e-2)
        values.update(overrides)
        config = cfg.profile("smoke", **values)
        if not data_dir.exists():  # generate the synthetic dataset once, reuse it via data_dir
            from cxrdrift import data
            data.prepare(config)
            (tmp_path / name / "data").rename(data_dir)
        return config.replace(data_dir=str(data_dir))

    return make


def backbone_arrays(model: keras.Model) -> dict[str, np.ndarray]:
    return {v.path: np.asarray(v) for v in model.weights if not v.path.startswith("logits")}


def checkpoint(config: cfg.RunConfig, arch: str, epoch: int) -> keras.Model:
    model = tiny_model(arch, config.image_size)
    model.load_weights(RunPaths.of(config).weights(arch, epoch))
    return model


def test_artifacts_for_every_arch_epoch_and_test_sample(tiny):
    config = tiny("run", save_epochs="compared")
    history = train.run_training(config)
    paths = RunPaths.of(config)
    for arch in config.architectures:
        saved = sorted(p.name for p in paths.model_dir(arch).glob("epoch_*.weights.h5"))
        assert saved == ["epoch_01.weights.h5", "epoch_03.weights.h5"]
        assert (paths.model_dir(arch) / "last.weights.h5").is_file()
        assert not (paths.model_dir(arch) / "last.optimizer.npz").exists()
    predictions = pd.read_parquet(paths.predictions)
    test_ids = sorted(pd.read_parquet(paths.predictions).query("epoch == 1 and arch == 'ResNet50V2'")["sample_id"])
    assert len(test_ids) == config.synth_test
    counts = predictions.groupby(["arch", "epoch"])["sample_id"].apply(lambda s: sorted(s) == test_ids)
    assert counts.all() and len(counts) == 2 * 4
    assert [f"logit_{k}" for k in range(5)] == [c for c in predictions.columns if c.startswith("logit_")]
    assert (predictions["predicted_index"] == predictions[[f"logit_{k}" for k in range(5)]].to_numpy().argmax(1)).all()
    assert list(history.columns) == list(train.HISTORY_COLUMNS)
    assert history.groupby("arch")["phase"].apply(list).tolist() == [["transfer"] * 2 + ["finetune"] * 2] * 2
    assert np.isfinite(history[["train_loss", "val_loss", "images_per_s"]].to_numpy()).all()
    assert read_resolved(config.run_dir)["weights"] == {"ResNet50V2": {"kind": "none"}, "DenseNet201": {"kind": "none"}}
    assert "ResNet50V2 epoch 4 (finetune)" in (paths.logs / "training.log").read_text()


@pytest.mark.parametrize("bn_frozen", [True, False])
def test_frozen_phase_keeps_backbone_and_finetuning_changes_it(tiny, bn_frozen):
    config = tiny("run", architectures=("ResNet50V2",), bn_frozen_in_ft=bn_frozen)
    train.run_training(config)
    epochs = [backbone_arrays(checkpoint(config, "ResNet50V2", e)) for e in range(1, 5)]
    heads = [checkpoint(config, "ResNet50V2", e).get_layer("logits").get_weights()[0] for e in (1, 2)]
    for name, value in epochs[0].items():  # transfer phase: every backbone variable untouched
        np.testing.assert_array_equal(value, epochs[1][name], err_msg=name)
    assert not np.allclose(heads[0], heads[1])
    changed = {name for name in epochs[1] if not np.array_equal(epochs[1][name], epochs[3][name])}
    assert {"conv0/kernel", "conv1/kernel"} <= changed
    bn_vars = {name for name in epochs[1] if name.startswith("bn")}
    assert (bn_vars & changed == set()) == bn_frozen  # BatchNorm frozen: statistics and affine kept


@pytest.mark.parametrize("interrupt_after", [1, 3])
def test_resume_after_interruption_matches_uninterrupted_run(tiny, monkeypatch, interrupt_after):
    reference = tiny("reference", architectures=("ResNet50V2",))
    train.run_training(reference)
    resumed = tiny("resumed", architectures=("ResNet50V2",))
    finish = train.finish_epoch

    def interrupted(config, arch, epoch, phase, model, optimizer, row, test, logits, trained):
        if epoch == interrupt_after + 1:  # half of the next epoch written, then the crash
            train._replace_rows(RunPaths.of(config).predictions, arch,
                                train.predictions_frame(arch, epoch, test, logits), epoch - 1)
            raise KeyboardInterrupt
        finish(config, arch, epoch, phase, model, optimizer, row, test, logits, trained)

    monkeypatch.setattr(train, "finish_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.run_training(resumed)
    assert train.finished_epoch(resumed, "ResNet50V2") == interrupt_after
    monkeypatch.setattr(train, "finish_epoch", finish)
    train.run_training(resumed)
    a, b = (pd.read_parquet(RunPaths.of(c).predictions) for c in (reference, resumed))
    pd.testing.assert_frame_equal(a, b, atol=1e-5)
    ha, hb = (pd.read_csv(RunPaths.of(c).history) for c in (reference, resumed))
    pd.testing.assert_frame_equal(ha[["epoch", "train_loss", "val_loss"]], hb[["epoch", "train_loss", "val_loss"]],
                                  atol=1e-5)
    for name, value in backbone_arrays(checkpoint(reference, "ResNet50V2", 4)).items():
        np.testing.assert_allclose(value, backbone_arrays(checkpoint(resumed, "ResNet50V2", 4))[name], atol=1e-5)


def test_cached_features_train_the_same_head_as_the_plain_path(tiny):
    plain = tiny("plain", architectures=("ResNet50V2",), cache_frozen_features=False, epochs_ft=1)
    cached = tiny("cached", architectures=("ResNet50V2",), cache_frozen_features=True, epochs_ft=1)
    for config in (plain, cached):
        train.run_training(config)
    a, b = (pd.read_parquet(RunPaths.of(c).predictions) for c in (plain, cached))
    pd.testing.assert_frame_equal(a, b, atol=1e-4)
    for epoch in (1, 2):
        heads = [checkpoint(c, "ResNet50V2", epoch).get_layer("logits").get_weights() for c in (plain, cached)]
        for x, y in zip(*heads):
            np.testing.assert_allclose(x, y, atol=1e-5)
    # the cached path keeps its features for the linear probe; the plain one has none to keep
    assert not RunPaths.of(plain).frozen_features("ResNet50V2").exists()
    saved = read_npz(RunPaths.of(cached).frozen_features("ResNet50V2"))
    assert saved["train"].shape == (cached.synth_train, 8) and saved["test"].shape == (cached.synth_test, 8)
    test = pd.read_parquet(RunPaths.of(cached).predictions).query("epoch == 1")
    np.testing.assert_array_equal(saved["test_labels"], test["label_index"])
    probe = train.linear_probe(cached)
    assert list(probe.index) == ["ResNet50V2"] and 0.0 <= probe.loc["ResNet50V2", "linear_probe_accuracy"] <= 1.0
    assert train.linear_probe(plain).empty


def test_finished_architectures_are_skipped_unless_forced_and_stale_state_restarts(tiny):
    config = tiny("run", architectures=("ResNet50V2",), epochs_ft=1)
    train.run_training(config)
    paths = RunPaths.of(config)
    stamp = paths.predictions.stat().st_mtime_ns
    train.run_training(config)
    assert paths.predictions.stat().st_mtime_ns == stamp
    # a setting outside training rewrites config.json; the skipped architecture's weights stay recorded
    other_threshold = config.replace(threshold=0.4)
    write_config(other_threshold)
    assert "weights" not in read_resolved(config.run_dir)
    train.run_training(other_threshold)
    assert paths.predictions.stat().st_mtime_ns == stamp
    assert read_resolved(config.run_dir)["weights"] == {"ResNet50V2": {"kind": "none"}}
    changed = config.replace(lr_tl=5e-3)  # another protocol: the old state does not count
    assert train.finished_epoch(changed, "ResNet50V2") == 0
    train.run_training(config, force=True)
    assert paths.predictions.stat().st_mtime_ns != stamp
    assert len(pd.read_parquet(paths.predictions)) == 3 * config.synth_test
    assert json.loads((paths.model_dir("ResNet50V2") / "state.json").read_text())["epoch"] == 3


def test_epoch_order_is_a_seeded_permutation():
    order = train.epoch_order(10, 0, 1)
    assert sorted(order) == list(range(10))
    np.testing.assert_array_equal(order, train.epoch_order(10, 0, 1))
    assert not np.array_equal(order, train.epoch_order(10, 0, 2))


@pytest.mark.parametrize("head_init", ["glorot_uniform", "zeros"])
def test_a_zero_head_leaves_a_seeds_frozen_phase_to_the_data_order_alone(tiny, tmp_path, head_init):
    start = tmp_path / "start.weights.h5"
    save_backbone(start)
    # one batch an epoch: the data order cannot change a frozen-phase step, only the head's start can
    runs = [tiny(f"seed_{seed}", architectures=("ResNet50V2",), weights=str(start), seed=seed, head_init=head_init,
                 batch_size=48, epochs_ft=1) for seed in (0, 1)]
    for config in runs:
        train.run_training(config)
    heads = [checkpoint(c, "ResNet50V2", 2).get_layer("logits").get_weights()[0] for c in runs]
    assert np.abs(heads[0]).max() > 1e-3  # trained away from its start
    assert np.allclose(heads[0], heads[1], atol=1e-6) == (head_init == "zeros")


@pytest.mark.parametrize("setting, expected", [("on", "mixed_float16"), ("off", "float32"), ("auto", "float32")])
def test_device_policy_and_float32_logits(setting, expected):
    previous = keras.mixed_precision.global_policy()
    try:
        device = train.configure_device(cfg.profile("smoke", mixed_precision=setting, xla="off"))
        assert keras.mixed_precision.global_policy().name == expected  # no GPU here: auto is off
        assert device.mixed_precision == (expected == "mixed_float16") and device.xla is False
        model = tiny_model("ResNet50V2", 16)
        assert model.get_layer("conv0").compute_dtype == ("float16" if setting == "on" else "float32")
        assert model(np.zeros((1, 16, 16, 3), np.float32)).dtype.name == "float32"
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_replicate_reuses_the_main_runs_frozen_features_and_gets_what_it_would_compute(tiny, monkeypatch, tmp_path):
    start = tmp_path / "start.weights.h5"
    save_backbone(start)
    main = tiny("main", architectures=("ResNet50V2",), epochs_ft=1, weights=str(start))
    train.run_training(main)
    saved = read_npz(RunPaths.of(main).frozen_features("ResNet50V2"))
    assert saved["val"].shape == (main.synth_val, 8)
    index = train.data.run_index(main)
    np.testing.assert_array_equal(saved["val_ids"], index.split("val")["sample_id"].to_numpy(str))
    alone = tiny("alone", architectures=("ResNet50V2",), epochs_ft=1, seed=7, weights=str(start))
    train.run_training(alone)
    extracted = []  # splits whose features had to be computed from images
    original = train.EpochSource._features
    monkeypatch.setattr(train.EpochSource, "_features",
                        lambda self, split: (split in self.features or extracted.append(split)) and None
                        or original(self, split))
    shared = tiny("shared", architectures=("ResNet50V2",), epochs_ft=1, seed=7, weights=str(start))
    train.run_training(shared, features_of=main)
    assert extracted == []
    a, b = (pd.read_parquet(RunPaths.of(c).predictions) for c in (alone, shared))
    pd.testing.assert_frame_equal(a, b)
    for x, y in zip(*(checkpoint(c, "ResNet50V2", 3).get_weights() for c in (alone, shared))):
        np.testing.assert_array_equal(x, y)
    start_of = json.loads((RunPaths.of(main).model_dir("ResNet50V2") / "weights.json").read_text())
    assert train.shared_features(main, "ResNet50V2", index, start_of) is not None
    one_less = dataclasses.replace(index, frame=index.frame.drop(index.frame.index[-1]))  # other images
    assert train.shared_features(main, "ResNet50V2", one_less, start_of) is None
    assert train.shared_features(main.replace(lr_tl=5e-3), "ResNet50V2", index, start_of) is None  # not current
    assert train.shared_features(main, "ResNet50V2", index, {"kind": "file", "path": "other.weights.h5"}) is None
    # randomly initialized backbones depend on the seed: nothing is shared
    random_main = tiny("random_main", architectures=("ResNet50V2",), epochs_ft=1)
    train.run_training(random_main)
    assert train.shared_features(random_main, "ResNet50V2", index, {"kind": "none"}) is None


def test_a_copied_run_and_its_replicate_stay_trained_until_their_images_change(tiny, tmp_path):
    from cxrdrift import replicates
    main = tiny("main", architectures=("ResNet50V2",), epochs_ft=1, replicate_seeds=(1,))
    shutil.copytree(main.data_dir, RunPaths.of(main).data)  # the run's own generated data
    main = main.replace(data_dir="")
    train.run_training(main)
    replicates.run_replicate_training(main)
    shutil.copytree(main.run_dir, tmp_path / "copy")
    copy = main.replace(run_dir=str(tmp_path / "copy"))
    replica = replicates.replicate_config(copy, 1)
    assert replica.data_dir == str(tmp_path / "copy" / "data")
    assert [train.finished_epoch(c, "ResNet50V2") for c in (copy, replica)] == [3, 3]
    image = next((tmp_path / "copy" / "data" / "train" / "Normal").glob("*.png"))
    image.rename(image.parent.parent / "Pneumonia" / "relabelled.png")  # one training image relabelled
    assert [train.finished_epoch(c, "ResNet50V2") for c in (copy, replica)] == [0, 0]
    assert [train.finished_epoch(c, "ResNet50V2") for c in (main, replicates.replicate_config(main, 1))] == [3, 3]


def test_finetune_images_take_the_first_of_each_epochs_order(tiny):
    config = tiny("run", architectures=("ResNet50V2",), epochs_ft=2, finetune_images=20)
    index = train.data.prepare(config)
    source = train.EpochSource(config, "ResNet50V2", index, tiny_model("ResNet50V2", 16), cached=False)
    np.testing.assert_array_equal(source.training_order(1), train.epoch_order(48, config.seed, 1))
    for epoch in (3, 4):
        np.testing.assert_array_equal(source.training_order(epoch), train.epoch_order(48, config.seed, epoch)[:20])
    with pytest.raises(train.data.DatasetError, match="finetune_images=60 exceeds the 48 training images"):
        train.EpochSource(config.replace(finetune_images=60), "ResNet50V2", index,
                          tiny_model("ResNet50V2", 16), cached=False).training_order(3)
    with pytest.raises(cfg.ConfigError, match="finetune_images=-1"):
        config.replace(finetune_images=-1)


@pytest.mark.parametrize("native", [True, False])
def test_finetune_bf16_computes_fine_tuning_in_bfloat16_only_where_native(tiny, monkeypatch, native):
    from cxrdrift import pretrain
    monkeypatch.setattr(pretrain, "native_bf16", lambda: native)
    config = tiny("run", architectures=("ResNet50V2", "DenseNet201"), epochs_ft=1, finetune_bf16=("ResNet50V2",))
    policies = {}
    build = train.finetuning_model

    def spy(model, arch, image_size, policy):
        copy = build(model, arch, image_size, policy)
        policies[arch] = (copy.dtype_policy.name, copy.get_layer("logits").dtype_policy.name)
        return copy

    monkeypatch.setattr(train, "finetuning_model", spy)
    train.run_training(config)
    assert policies == {"ResNet50V2": ("mixed_bfloat16" if native else "float32", "float32"),
                        "DenseNet201": ("float32", "float32")}
    assert keras.mixed_precision.global_policy().name == "float32"
    assert json.loads(train.training_stamp(config, "ResNet50V2"))["finetune_precision"] == policies["ResNet50V2"][0]
    late = checkpoint(config, "ResNet50V2", 3)
    assert all(w.dtype == np.float32 for w in late.get_weights())
    assert (train.finetune_precision(config, "ResNet50V2") == "mixed_bfloat16") == native
    arithmetic = train.throughput_table(config, train.load_history(config)).set_index(["arch", "phase"])["arithmetic"]
    assert arithmetic.to_dict() == {("ResNet50V2", "transfer"): "float32",
                                    ("ResNet50V2", "finetune"): "bfloat16" if native else "float32",
                                    ("DenseNet201", "transfer"): "float32", ("DenseNet201", "finetune"): "float32"}
    mixed = train.throughput_table(config.replace(mixed_precision="on"), train.load_history(config))
    assert set(mixed["arithmetic"]) == {"float16"}


def test_a_later_run_fine_tunes_in_the_model_an_earlier_one_compiled_and_gets_the_same_bits(tiny, caplog):
    reused_line = "fine-tuning in the model an earlier run of this process compiled"
    train.run_training(tiny("first", architectures=("ResNet50V2",)))
    later = tiny("later", architectures=("ResNet50V2",), seed=7)
    with caplog.at_level("INFO", logger="cxrdrift.train"):
        train.run_training(later)
    assert reused_line in caplog.text
    train.clear_finetuning_cache()
    caplog.clear()
    alone = tiny("alone", architectures=("ResNet50V2",), seed=7)
    with caplog.at_level("INFO", logger="cxrdrift.train"):
        train.run_training(alone)
    assert reused_line not in caplog.text
    a, b = (pd.read_parquet(RunPaths.of(c).predictions) for c in (alone, later))
    pd.testing.assert_frame_equal(a, b)
    for epoch in (3, 4):
        for x, y in zip(*(checkpoint(c, "ResNet50V2", epoch).get_weights() for c in (alone, later))):
            np.testing.assert_array_equal(x, y)
    history = [pd.read_csv(RunPaths.of(c).history)[["train_loss", "val_loss", "val_accuracy"]] for c in (alone, later)]
    pd.testing.assert_frame_equal(*history)
    # another learning rate is another optimizer: it compiles its own
    caplog.clear()
    with caplog.at_level("INFO", logger="cxrdrift.train"):
        train.run_training(tiny("other_rate", architectures=("ResNet50V2",), seed=7, lr_ft=5e-3))
    assert reused_line not in caplog.text


def test_validation_scores_from_the_prediction_pass_are_what_evaluate_reports():
    model = tiny_model("ResNet50V2", 16)
    train.compile_for(model, 1e-3, xla=False)
    rng = np.random.default_rng(0)
    x, labels = rng.uniform(-1, 1, (20, 16, 16, 3)).astype(np.float32), rng.integers(0, 5, 20).astype(np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(8)
    loss, accuracy = train.loss_and_accuracy(labels, model.predict(dataset, verbose=0))
    expected_loss, expected_accuracy = model.evaluate(dataset, verbose=0)
    assert accuracy == pytest.approx(expected_accuracy, abs=1e-7)
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    logits = np.array([[2.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 0.0]], np.float32)
    hand = (np.log(4 + np.e ** 2) - 2 + np.log(4 + np.e) - 0) / 2  # second sample's label 0, logit 0
    assert train.loss_and_accuracy(np.array([0, 0]), logits) == (pytest.approx(hand, rel=1e-6), 0.5)
