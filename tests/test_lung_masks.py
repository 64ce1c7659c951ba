"""Lung masks as a real-data sanity check: map energy inside the lung fields (chapter 08)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_drift import ARCHS, METHODS, make_run

from cxrdrift import drift, localization
from cxrdrift.artifacts import RunPaths
from cxrdrift.cams import postprocess


def write_lungs(root, ids) -> None:
    """A lung mask per test image (12x12): the top three quarters, as `<root>/lung_masks/<id>.png`."""
    for sid in ids:
        mask = np.zeros((12, 12), np.uint8)
        mask[:9] = 255
        path = (root / "lung_masks" / sid).with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(path)


def test_energy_in_lungs_per_arch_method_epoch_and_summary(tmp_path):
    config, ids, raw = make_run(tmp_path)
    drift.run_true_positive_filter(config)
    assert localization.lung_energy(config) is None  # no lung masks yet: nothing scored
    write_lungs(RunPaths.of(config).data, ids)
    frame = localization.lung_energy(config)
    mapped = drift.mapped_samples(config)
    assert len(frame) == len(ARCHS) * len(METHODS) * 2 * len(mapped)
    assert "Normal" in set(frame["label"])  # every class has lungs
    sid = mapped["sample_id"].iloc[-1]
    row = frame.query("arch == 'ResNet50V2' and method == @METHODS[0] and epoch == 1 and sample_id == @sid")
    m = postprocess(raw["ResNet50V2", 1][METHODS[0]][[ids.index(sid)]], (8, 8))[0]
    assert row["energy_in_lungs"].item() == pytest.approx(m[:6].sum() / m.sum())  # 9 of 12 rows -> 6 of 8
    assert np.allclose(frame["lung_share"], 0.75)
    weights = drift.class_weights(config)
    summary = localization.lung_summary(frame, weights)
    cell = frame.query("arch == 'ResNet50V2' and method == @METHODS[0] and epoch == 1")
    cell = cell.dropna(subset=["energy_in_lungs"])
    w = cell["label"].map(weights)
    got = summary.query("arch == 'ResNet50V2' and method == @METHODS[0] and epoch == 1")
    assert got["energy_in_lungs"].item() == pytest.approx((w * cell["energy_in_lungs"]).sum() / w.sum())
    assert got["n"].item() == len(cell)
    assert len(summary) == len(ARCHS) * len(METHODS) * 2
    (RunPaths.of(config).data / "lung_masks" / sid).with_suffix(".png").unlink()
    partial = localization.lung_energy(config)  # only the samples with a mask are scored
    assert len(partial) == len(frame) - len(ARCHS) * len(METHODS) * 2 and sid not in set(partial["sample_id"])
