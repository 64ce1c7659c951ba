"""The noise floor on the hand-made run of test_drift, with a hand-made replicate's maps."""

import numpy as np
import pandas as pd
import pytest
from test_drift import ARCHS, METHODS, make_run

from cxrdrift import cams, config as cfg, drift, metrics, replicates, train
from cxrdrift.artifacts import RunPaths, write_npz
from cxrdrift.cams import postprocess


def test_replicate_config_keeps_data_pretraining_and_samples():
    main = cfg.profile("demo", seed=3, replicate_seeds="5,6")
    replica = replicates.replicate_config(main, 5)
    assert replica.seed == 5 and replica.pretrain_seed == 3 and replica.replicate_seeds == ()
    assert replica.run_dir == "runs/demo/replicates/seed_5" and replica.data_dir == "runs/demo/data"
    assert replica.cam_samples == main.cam_samples and replica.cam_epoch_list() == main.compared_epochs
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
    monkeypatch.setattr(train, "run_training",
                        lambda c, force=False, features_of=None: trained.append((c.run_dir, features_of.run_dir)))
    monkeypatch.setattr(cams, "run_cam_stage",
                        lambda c, force=False, samples_of=None: trained.append((c.run_dir, samples_of.run_dir)))
    frame = replicates.run_noise_floor_stage(config)
    assert trained == [(replica.run_dir, config.run_dir)] * 2  # the main run's features and compared images
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


def test_floor_excess_pairs_each_images_phase_change_with_its_seed_floor(monkeypatch):
    config = cfg.profile("smoke", replicate_seeds=(1, 2), early_epoch=1, late_epoch=3)
    labels = np.array(["Normal", "COVID-19"] * 20)
    ids = [f"img{i}" for i in range(40)]
    phase = pd.DataFrame({"method": "layercam", "arch": "DenseNet201", "sample_id": ids, "label": labels,
                          "overlap_iou": 0.6, "pattern_correlation": 0.9, "spatial_displacement": 0.05,
                          "concentration_change": np.where(labels == "Normal", -0.2, 0.2)})
    floor = pd.concat([phase.assign(seed=seed, epoch=epoch, overlap_iou=iou, pattern_correlation=0.9,
                                    spatial_displacement=0.02, concentration_change=0.1)
                       for seed, iou in ((1, 0.9), (2, 0.8)) for epoch in (1, 3)], ignore_index=True)
    floor.loc[floor["epoch"] == 1, "overlap_iou"] = 0.0  # the early epoch's floor must not count
    monkeypatch.setattr(replicates, "load_compared_rows", lambda c, path: floor)
    monkeypatch.setattr(replicates, "load_drift", lambda c: phase)
    monkeypatch.setattr(replicates, "class_weights", lambda c: {"Normal": 1.0, "COVID-19": 3.0})
    table = replicates.floor_excess(config).set_index("metric")
    # 1 - IoU: phase 0.4, floor mean(0.1, 0.2) = 0.15 -> 0.25 for every image, so the interval is a point
    assert table.loc["overlap_iou", ["phase", "floor", "excess", "ci_low", "ci_high"]].tolist() == \
        pytest.approx([0.4, 0.15, 0.25, 0.25, 0.25])
    assert table.loc["spatial_displacement", "excess"] == pytest.approx(0.03)
    assert table.loc["concentration_change", "excess"] == pytest.approx(0.1)  # sizes: |±0.2| - 0.1
    assert table.loc["pattern_correlation", "excess"] == pytest.approx(0.0)
    assert not table.loc["pattern_correlation", "ci_low"] > 0  # no excess is no finding
    assert (table["n"] == 40).all()
    assert replicates.floor_excess(config.replace(replicate_seeds=())) is None


def test_floor_limit_names_the_dose_and_the_architectures_within_training_noise():
    config = cfg.profile("demo")
    excess = pd.DataFrame({"arch": ["DenseNet201", "DenseNet201", "InceptionV3", "InceptionV3"],
                           "ci_low": [0.01, -0.02, -0.01, 0.0]})
    assert replicates.cells_beyond_floor(excess).to_dict() == {"DenseNet201": 1, "InceptionV3": 0}
    sentence = replicates.floor_limit(config, excess)
    assert sentence.startswith("This run's fine-tuning dose: 2 fine-tuning epochs of 600 training images at "
                               "learning rate 5e-05 (the paper: 10 epochs of its 11,733 training images; its rate "
                               "is lost from the text we have, and the paper profile assumes 1e-05).")
    assert "the phase drift of InceptionV3 clears the floor in no cell: for it this run" in sentence
    assert "DenseNet201" not in sentence
    assert replicates.floor_limit(config, excess.assign(ci_low=0.01)).endswith(
        "Every architecture's phase drift clears the floor in at least one cell.")
    assert "epochs of its 1,000 training images" in replicates.fine_tuning_dose(config.replace(finetune_images=0))
