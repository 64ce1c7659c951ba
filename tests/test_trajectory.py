"""Drift across every epoch on the hand-made run of test_drift, with a map file for epoch 2 too."""

import numpy as np
import pandas as pd
import pytest
from test_drift import ARCHS, METHODS, make_run

from cxrdrift import drift, metrics, trajectory
from cxrdrift.artifacts import RunPaths, write_npz
from cxrdrift.cams import postprocess
from cxrdrift.plots import beyond


@pytest.fixture
def every_epoch(tmp_path):
    config, ids, raw = make_run(tmp_path)
    rng = np.random.default_rng(7)
    for arch in ARCHS:
        raw[arch, 2] = {m: rng.random((len(ids), 3, 3)).astype(np.float32) for m in METHODS}
        write_npz(RunPaths.of(config).cams(arch, 2), {"sample_id": np.array(ids), **raw[arch, 2]})
    config = config.replace(cam_epochs="all")
    drift.run_true_positive_filter(config)
    return config, ids, raw


def test_every_epoch_against_both_compared_epochs(every_epoch):
    config, ids, raw = every_epoch
    frame = trajectory.run_trajectory_stage(config)
    kept = drift.mapped_samples(config)["sample_id"].tolist()
    assert len(frame) == len(ARCHS) * len(METHODS) * 3 * 2 * len(kept)
    # an epoch against itself: no drift (where the map is not degenerate)
    itself = frame[((frame["reference"] == "early") & (frame["epoch"] == 1))
                   | ((frame["reference"] == "late") & (frame["epoch"] == 3))]
    assert np.allclose(itself["overlap_iou"].dropna(), 1.0) and itself["overlap_iou"].notna().any()
    # epoch 2 against the early epoch, recomputed from the raw maps
    sid = kept[3]
    row = frame.query("arch == 'DenseNet201' and method == 'gradcampp' and epoch == 2 and reference == 'early' "
                      "and sample_id == @sid")
    a, b = (postprocess(raw["DenseNet201", e]["gradcampp"][[ids.index(sid)]], (8, 8)) for e in (1, 2))
    expected = metrics.drift_metrics(a, b, config.threshold)
    for name in metrics.DRIFT_METRICS:
        assert row[name].item() == pytest.approx(expected[name][0], nan_ok=True)
    summary = trajectory.trajectory_summary(frame, drift.class_weights(config))
    assert len(summary) == len(ARCHS) * len(METHODS) * 2 * 3
    pd.testing.assert_frame_equal(pd.read_parquet(RunPaths.of(config).trajectory), frame)
    figure = beyond.plot_trajectory(summary, "overlap_iou", config.epochs_tl, config.compared_epochs)
    assert len(figure.axes) == len(ARCHS) * len(METHODS)


def test_off_unless_every_epoch_has_maps(tmp_path):
    config, _, _ = make_run(tmp_path)
    assert config.cam_epochs == "compared"
    assert trajectory.run_trajectory_stage(config) is None
    assert not RunPaths.of(config).trajectory.exists()
    drift.run_true_positive_filter(config)   # every epoch asked for, epoch 2 never mapped: named
    with pytest.raises(drift.DriftError, match="epoch_02.npz is missing"):
        trajectory.run_trajectory_stage(config.replace(cam_epochs="all"))
