"""The audit of a study run's own checkpoints gives the study's drift rows for the same images."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from cxrdrift import audit, cams, data, drift
from cxrdrift.artifacts import RunPaths, write_parquet
from cxrdrift.config import profile
from cxrdrift.metrics import SUITE_METRICS
from cxrdrift.models import build_model

ARCH = "ResNet50V2"


@pytest.mark.slow
def test_study_checkpoints_reproduce_the_drift_rows(tmp_path) -> None:
    config = profile("smoke", run_dir=str(tmp_path / "run"), architectures=[ARCH], image_size=64, synth_size=64,
                     synth_train=5, synth_val=5, synth_test=10, cam_batch_size=1, cam_samples="true_positives",
                     cam_epochs="compared", cam_layers="target")
    paths = RunPaths.of(config)
    test = data.prepare(config).split("test")
    kept = test["sample_id"].to_numpy()[1::2]              # the study compares a subset (its true positives)
    write_parquet(paths.true_positives, test[["sample_id", "label"]].assign(kept=test["sample_id"].isin(kept)))
    keras.utils.set_random_seed(0)
    model = build_model(ARCH, 64, None)
    early, late = config.compared_epochs
    paths.model_dir(ARCH).mkdir(parents=True)
    model.save_weights(paths.weights(ARCH, early))
    head = model.get_layer("logits")
    head.kernel.assign(head.kernel * -2.0 + 0.01)
    model.save_weights(paths.weights(ARCH, late))
    cams.run_cam_stage(config)
    study = drift.run_drift_stage(config)

    # batches of one image each in both, so that oneDNN sees the same batches: the same bits
    result = audit.study_audit(config, ARCH, report=False, n_boot=0, ceiling_images=0)
    assert result.summary["classes"] == list(data.CLASSES) and result.summary["layer"] == "conv5_block3_out"
    assert result.summary["counts"]["images"] == len(test)  # every test image, the study's subset among them
    agreement = audit.study_agreement(config, ARCH, result)
    assert sorted(agreement["method"].unique()) == sorted(config.cam_methods)
    assert set(agreement["metric"]) == set(SUITE_METRICS) and (agreement["images"] == len(kept)).all()
    assert (agreement["NaN in one only"] == 0).all()
    assert (agreement["max |audit − study|"] == 0.0).all(), agreement
    assert np.isfinite(study["overlap_iou"]).any()                # a comparison of numbers, not of NaNs
