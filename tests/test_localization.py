"""Ground-truth localization on the hand-made run of test_drift: masks written next to its images."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_drift import ARCHS, METHODS, make_run

from cxrdrift import drift, localization, metrics
from cxrdrift.artifacts import RunPaths
from cxrdrift.cams import postprocess
from cxrdrift.data import load_index
from cxrdrift.models import EARLIER_LAYERS


def write_masks(root, ids, left_half: bool = True) -> None:
    """A lesion mask per test image (12x12): its left half, or everything."""
    for sid in ids:
        mask = np.zeros((12, 12), np.uint8)
        mask[:, :6 if left_half else 12] = 255
        path = (root / "masks" / sid).with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(path)


@pytest.fixture
def run_with_masks(tmp_path):
    config, ids, raw = make_run(tmp_path)
    write_masks(RunPaths.of(config).data, ids)
    drift.run_true_positive_filter(config)
    return config, ids, raw


def test_stage_scores_every_lesion_sample_arch_method_and_epoch(run_with_masks):
    config, ids, raw = run_with_masks
    frame = localization.run_localization_stage(config)
    kept = drift.load_true_positives(config).set_index("sample_id")["kept"]
    lesion_ids = [sid for sid in ids if sid.split("/")[1] != "Normal" and kept[sid]]
    assert len(frame) == len(ARCHS) * len(METHODS) * 2 * len(lesion_ids)
    assert set(frame["label"]) == {"Pneumonia", "Tuberculosis", "COVID-19", "Lung Opacity"}
    # one value recomputed from the raw maps (stored in reverse order: the stage aligns by id)
    sid = lesion_ids[0]
    row = frame.query("arch == 'ResNet50V2' and method == 'gradcampp' and epoch == 3 and sample_id == @sid")
    m = postprocess(raw["ResNet50V2", 3]["gradcampp"][[ids.index(sid)]], (8, 8))[0]
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True
    assert row["energy_inside"].item() == pytest.approx(m[mask].sum() / m.sum())
    assert row["region_precision"].item() == pytest.approx(metrics.region_precision(m, mask, config.threshold))
    assert np.allclose(frame["lesion_share"], 0.5)
    stored = pd.read_parquet(RunPaths.of(config).localization)
    pd.testing.assert_frame_equal(stored, frame)
    stamp = RunPaths.of(config).localization.stat().st_mtime_ns
    localization.run_localization_stage(config)   # unchanged inputs: not recomputed
    assert RunPaths.of(config).localization.stat().st_mtime_ns == stamp


def test_summary_and_relation_to_drift(run_with_masks):
    config, ids, _ = run_with_masks
    write_masks(RunPaths.of(config).data, ids, left_half=False)   # the lesion covers everything
    localization.run_localization_stage(config)
    frame = localization.load_localization(config)
    summary = localization.localization_summary(frame, drift.class_weights(config))
    scored = summary.dropna(subset=["energy_inside"])
    assert np.allclose(scored["energy_inside"], 1.0) and np.allclose(scored["region_precision"], 1.0)
    assert np.allclose(summary["lesion_share"], 1.0)
    drift.run_drift_stage(config)
    relation = localization.localization_vs_drift(frame, drift.load_drift(config), config.compared_epochs)
    assert set(zip(relation["method"], relation["arch"])) == {(m, a) for m in METHODS for a in ARCHS}
    assert np.allclose(relation["energy_change"].dropna(), 0.0)
    assert relation["rho_overlap_iou"].isna().all()   # a constant change predicts nothing


def test_no_masks_or_switched_off_writes_nothing(tmp_path):
    config, _, _ = make_run(tmp_path)
    drift.run_true_positive_filter(config)
    assert localization.run_localization_stage(config) is None
    assert localization.run_localization_stage(config.replace(ground_truth=False)) is None
    assert not RunPaths.of(config).localization.exists()
    assert localization.load_localization(config) is None
    assert load_index(RunPaths.of(config).data).mask_path(drift.load_true_positives(config)["sample_id"][1]) is None


def test_scores_at_two_depths(tmp_path):
    """Maps at the paper's layer and an earlier one are both scored, each marked with its layer;
    the paper's layer's rows are what a run at that layer alone gives."""
    config, ids, raw = make_run(tmp_path / "both", earlier=True)
    write_masks(RunPaths.of(config).data, ids)
    drift.run_true_positive_filter(config)
    frame = localization.run_localization_stage(config)
    assert list(frame.columns[-2:]) == ["depth", "layer"] and set(frame["depth"]) == {"target", "earlier"}
    assert set(frame.loc[frame["depth"] == "earlier", "layer"]) == {EARLIER_LAYERS[a] for a in ARCHS}
    sid = next(s for s in ids[1:] if s.split("/")[1] != "Normal")
    row = frame.query("arch == 'ResNet50V2' and method == 'layercam' and epoch == 1 and depth == 'earlier' "
                      "and sample_id == @sid")
    m = postprocess(raw["ResNet50V2", 1, "earlier"]["layercam"][[ids.index(sid)]], (8, 8))[0]
    assert row["energy_inside"].item() == pytest.approx(m[:, :4].sum() / m.sum())

    alone, _, _ = make_run(tmp_path / "alone")
    write_masks(RunPaths.of(alone).data, ids)
    drift.run_true_positive_filter(alone)
    localization.run_localization_stage(alone)
    pd.testing.assert_frame_equal(localization.load_localization(config).drop(columns=["depth", "layer"]),
                                  localization.load_localization(alone).drop(columns=["depth", "layer"]))
    every = localization.load_localization(config, depth=None)
    assert len(every) == len(frame[frame["kept"]])
    summary = localization.depth_localization(every, drift.class_weights(config), config.late_epoch)
    assert list(summary.columns) == ["method", "arch", "depth", "layer", *localization.SCORES, "lesion_share", "n"]
    assert len(summary) == 2 * len(ARCHS) * len(METHODS) and (summary["n"] > 0).all()
    sentence = localization.finer_grid_sentence(summary, config.late_epoch)
    assert f"in {''} " not in sentence and f"of {len(ARCHS) * len(METHODS)} (method, architecture) cells" in sentence
    assert localization.finer_grid_sentence(summary[summary["depth"] == "target"], 3).startswith("Only the paper's")


def test_chapter_08_executes_on_the_hand_made_run(tmp_path):
    """The chapter end to end on a run with masks and maps at two depths: its tables, including
    the per-depth ones, land in the run directory, with a figure per depth question."""
    import nbformat

    from cxrdrift import book

    config, ids, _ = make_run(tmp_path, earlier=True)
    write_masks(RunPaths.of(config).data, ids)
    drift.run_true_positive_filter(config)
    drift.run_drift_stage(config)
    source = Path(__file__).resolve().parents[1] / "notebooks" / "08_beyond.md"
    parameters = {"profile": "smoke", "run_dir": config.run_dir, "data_dir": str(RunPaths.of(config).data),
                  "architectures": list(ARCHS), "cam_methods": list(METHODS), "cam_epochs": "compared",
                  "cam_samples": "true_positives", "image_size": 8, "bootstrap_samples": 50,
                  "cam_layers": ["target", "earlier"],
                  "randomization_check": False}   # the hand-made run has no checkpoints
    output = book.execute_notebook(source, tmp_path / "08.ipynb", parameters, progress_bar=False)
    tables = RunPaths.of(config).tables
    assert {"08_localization.csv", "08_localization_vs_drift.csv", "08_ranking_certainty.csv",
            "08_drift_by_depth.csv", "08_ranking_by_depth.csv", "08_localization_by_depth.csv"} <= \
        {p.name for p in tables.iterdir()}
    certainty = pd.read_csv(tables / "08_ranking_certainty.csv")
    assert len(certainty) == len(metrics.DRIFT_METRICS) and certainty["P(any pair swaps)"].between(0, 1).all()
    by_depth = pd.read_csv(tables / "08_drift_by_depth.csv")
    assert set(by_depth["depth"]) == {"target", "earlier"} and by_depth["paper_layer"].sum() == len(by_depth) / 2
    outputs = [o for cell in nbformat.read(output, as_version=4).cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # energy on the lesion, energy change vs IoU, the ranking at each depth, one depth figure per architecture
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2 + 1 + len(ARCHS)
    markdown = [o.get("data", {}).get("text/markdown", "") for o in outputs]
    assert any("randomization_check` is off" in text for text in markdown)
    assert any("did not compute Grad-CAM" in text for text in markdown)
    printed = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert "At the paper's layer:" in printed and "At the earlier layer:" in printed
    assert "(method, architecture) cells" in printed
