"""The randomization ceiling: which layers are re-initialized, and the stage on a tiny run."""

import keras
import numpy as np
import pandas as pd
import pytest

from cxrdrift import cams, data, drift, metrics, randomization
from cxrdrift.artifacts import RunPaths, write_parquet
from cxrdrift.config import profile
from cxrdrift.models import TARGET_LAYERS, build_model
from cxrdrift.plots import beyond


@pytest.mark.parametrize("arch, size", [("ResNet50V2", 32), ("InceptionV3", 75), ("DenseNet201", 32)])
def test_only_the_last_block_and_the_head_are_reinitialized(arch, size):
    keras.utils.set_random_seed(1)
    model = build_model(arch, size, None)
    before = [[np.array(w) for w in layer.get_weights()] for layer in model.layers]
    changed = randomization.randomize_top(model, arch, seed=2)
    positions = randomization.randomized_positions(model, arch)
    names = [layer.name for layer in model.layers]
    assert names[positions[-2]] == TARGET_LAYERS[arch] and names[positions[-1]] == "logits"
    assert names[positions[0] - 1] == randomization.PREVIOUS_BLOCK[arch]
    assert "logits" in changed and len(changed) >= 3
    for position, layer in enumerate(model.layers):
        after = layer.get_weights()
        same = all(np.array_equal(a, b) for a, b in zip(before[position], after))
        if layer.name not in changed:
            assert same, layer.name
        elif hasattr(layer, "kernel"):   # BatchNorm starts from constants, equal in both models
            assert not same, layer.name
    # the new weights are those of a fresh model with that seed, matched by position even when
    # automatic layer names differ between models of one session (InceptionV3)
    keras.utils.set_random_seed(2)
    fresh = build_model(arch, size, None)
    for position in positions:
        for a, b in zip(model.layers[position].get_weights(), fresh.layers[position].get_weights()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_stage_compares_late_maps_with_the_randomized_copy(tmp_path):
    config = profile("smoke", run_dir=str(tmp_path / "run"), architectures=["ResNet50V2"], image_size=64,
                     synth_size=64, synth_train=5, synth_val=5, synth_test=12, cam_batch_size=5,
                     cam_samples="true_positives", cam_epochs="compared")
    paths = RunPaths.of(config)
    test = data.prepare(config).split("test")
    write_parquet(paths.true_positives, test[["sample_id", "label"]].assign(kept=True))
    keras.utils.set_random_seed(0)
    model = build_model("ResNet50V2", 64, None)
    paths.model_dir("ResNet50V2").mkdir(parents=True)
    for epoch in config.compared_epochs:
        model.save_weights(paths.weights("ResNet50V2", epoch))
    cams.run_cam_stage(config)

    frame = randomization.run_randomization_stage(config)
    assert len(frame) == len(config.cam_methods) * len(test)
    assert list(frame.columns[:5]) == ["arch", "method", "sample_id", "label", "kept"]
    assert set(frame["sample_id"]) == set(test["sample_id"])
    scored = frame["overlap_iou"].dropna()
    assert len(scored) and scored.between(0, 1).all()
    assert (frame["pattern_correlation"].dropna() < 0.999).any()   # the maps did change
    pd.testing.assert_frame_equal(pd.read_parquet(paths.randomization), frame)
    stamp = paths.randomization.stat().st_mtime_ns
    randomization.run_randomization_stage(config)
    assert paths.randomization.stat().st_mtime_ns == stamp          # unchanged inputs: skipped
    assert randomization.run_randomization_stage(config.replace(randomization_check=False)) is None

    drift.run_drift_stage(config)   # both compared checkpoints are equal: phase drift is none
    ceiling = randomization.ceiling_table(config)
    iou = ceiling[ceiling["metric"] == "overlap_iou"].set_index("method")
    assert (iou["phase"].dropna() == 1.0).all() and (iou["n"] > 0).all()
    assert set(ceiling["metric"]) == set(metrics.DRIFT_METRICS)
    figure = beyond.plot_ceiling(ceiling)
    assert len(figure.axes) == len(config.cam_methods) * len(metrics.DRIFT_METRICS)

    # another threshold scores the stored randomized maps again without mapping them again
    maps_written = paths.randomized_maps("ResNet50V2").stat().st_mtime_ns
    rescored = randomization.run_randomization_stage(config.replace(threshold=0.3))
    assert paths.randomized_maps("ResNet50V2").stat().st_mtime_ns == maps_written
    assert paths.randomization.stat().st_mtime_ns != stamp
    assert not rescored["overlap_iou"].equals(frame["overlap_iou"])
    pd.testing.assert_frame_equal(rescored, randomization.run_randomization_stage(config.replace(threshold=0.3),
                                                                                  force=True))
    assert paths.randomized_maps("ResNet50V2").stat().st_mtime_ns != maps_written  # force maps again


def test_stage_names_what_is_missing(tmp_path):
    config = profile("smoke", run_dir=str(tmp_path / "run"), architectures=["ResNet50V2"])
    with pytest.raises(randomization.RandomizationError, match="true_positives.parquet is missing"):
        randomization.run_randomization_stage(config)
