"""The noise floor on the hand-made run of test_drift, with a hand-made replicate's maps."""

import numpy as np
import pandas as pd
import pytest
from test_drift import ARCHS, METHODS, make_run

from cxrdrift import cams, config as cfg, drift, metrics, replicates, train
from cxrdrift.artifacts import RunPaths, write_npz
from cxrdrift.cams import postprocess


def test_replicate_config_keeps_data_and_pretraining_and_maps_every_image():
    main = cfg.profile("demo", seed=3, replicate_seeds="5,6")
    replica = replicates.replicate_config(main, 5)
    assert replica.seed == 5 and replica.pretrain_seed == 3 and replica.replicate_seeds == ()
    assert replica.run_dir == "runs/demo/replicates/seed_5" and replica.data_dir == "runs/demo/data"
    assert replica.cam_samples == "all" and replica.cam_epoch_list() == main.compared_epochs
    assert not replica.ground_truth and not replica.randomization_check
    assert replica.image_size == main.image_size and replica.lr_ft == main.lr_ft
    with pytest.raises(cfg.ConfigError, match="differ from seed"):
        cfg.profile("demo", seed=1, replicate_seeds="1")


def test_floor_compares_the_main_run_with_each_replicate(tmp_path, monkeypatch):
    config, ids, raw = make_run(tmp_path)
    config = config.replace(replicate_seeds=(1,))
    drift.run_true_positive_filter(config)
    drift.run_drift_stage(config)
    replica = replicates.replicate_config(config, 1)
    rng = np.random.default_rng(3)
    replica_raw = {}
    for arch in ARCHS:
        for epoch in config.compared_epochs:
            replica_raw[arch, epoch] = {m: rng.random((len(ids), 3, 3)).astype(np.float32) for m in METHODS}
            write_npz(RunPaths.of(replica).cams(arch, epoch), {"sample_id": np.array(ids), **replica_raw[arch, epoch]})
    trained = []
    monkeypatch.setattr(train, "run_training", lambda c, force=False: trained.append(c))
    monkeypatch.setattr(cams, "run_cam_stage", lambda c, force=False: trained.append(c))
    frame = replicates.run_noise_floor_stage(config)
    assert [c.run_dir for c in trained] == [replica.run_dir] * 2
    kept = drift.mapped_samples(config)["sample_id"].tolist()
    assert len(frame) == len(ARCHS) * len(METHODS) * 2 * len(kept) and set(frame["seed"]) == {1}
    sid = kept[2]
    row = frame.query("arch == 'ResNet50V2' and method == 'layercam' and epoch == 3 and sample_id == @sid")
    a = postprocess(raw["ResNet50V2", 3]["layercam"][[ids.index(sid)]], (8, 8))
    b = postprocess(replica_raw["ResNet50V2", 3]["layercam"][[ids.index(sid)]], (8, 8))
    assert row["overlap_iou"].item() == pytest.approx(metrics.overlap_iou(a, b, config.threshold)[0])
    table = replicates.floor_table(config)
    assert {"phase", "floor_epoch_1", "floor_epoch_3"} <= set(table.columns)
    assert len(table) == len(ARCHS) * len(METHODS) * len(metrics.DRIFT_METRICS)
    pd.testing.assert_frame_equal(pd.read_parquet(RunPaths.of(config).noise_floor), frame)


def test_no_replicates_no_floor(tmp_path):
    config, _, _ = make_run(tmp_path)
    assert replicates.run_noise_floor_stage(config) is None and replicates.floor_table(config) is None
