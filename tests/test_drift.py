"""The true-positive filter and drift stages on a tiny hand-made run directory, Table 3 from a
hand-made drift.parquet, the paper's table, the ranking reversal, and the explorer driven from Python."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrdrift import drift, metrics, reported
from cxrdrift.artifacts import RunPaths, write_config, write_npz, write_parquet
from cxrdrift.cams import postprocess
from cxrdrift.config import profile
from cxrdrift.data import CLASSES, load_index
from cxrdrift.models import EARLIER_LAYERS, TARGET_LAYERS

ARCHS = ("DenseNet201", "ResNet50V2")
METHODS = ("layercam", "gradcampp")


def write_dataset(root):
    """Two tiny PNGs per class in every split; returns the test sample ids (sorted)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for label in CLASSES:
            (root / split / label).mkdir(parents=True)
            for k in range(2):
                Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(
                    root / split / label / f"img_{k}.png")
    return list(load_index(root).split("test")["sample_id"])


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path)


def make_run(tmp_path, earlier: bool = False):
    """A run directory with predictions and raw 3x3 maps for both compared epochs (with `earlier`,
    also 6x6 maps at each backbone's earlier layer, stored as the CAM stage stores them).

    Sample 0 is misclassified by ResNet50V2 at the late epoch (so it is dropped); sample 1's
    early LayerCAM map is flat (degenerate); sample 2's maps are identical across epochs."""
    config = profile("smoke", run_dir=str(tmp_path / "run"), architectures=ARCHS, cam_methods=METHODS,
                     cam_epochs="compared", cam_samples="true_positives", image_size=8, bootstrap_samples=50,
                     cam_layers=("target", "earlier") if earlier else ("target",))
    paths = RunPaths.of(config)
    ids = write_dataset(paths.data)
    labels = [sid.split("/")[1] for sid in ids]
    label_index = [CLASSES.index(label) for label in labels]
    rows = []
    for arch in ARCHS:
        for epoch in (1, 2, 3):
            for i, (sid, label, li) in enumerate(zip(ids, labels, label_index)):
                predicted = (li + 1) % 5 if (arch, epoch, i) == ("ResNet50V2", 3, 0) else li
                logits = {f"logit_{c}": float(c == predicted) for c in range(5)}
                rows.append({"arch": arch, "epoch": epoch, "sample_id": sid, "label": label,
                             "label_index": li, **logits})
    write_parquet(paths.predictions, pd.DataFrame(rows))
    rng = np.random.default_rng(1)
    finer_rng = np.random.default_rng(2)   # its own stream: the paper's layer's maps do not depend on `earlier`
    raw = {}
    for arch in ARCHS:
        for epoch in config.compared_epochs:
            maps = {m: rng.random((len(ids), 3, 3)).astype(np.float32) for m in METHODS}
            raw[arch, epoch] = maps
        raw[arch, 1]["layercam"][1] = 0.25
        for m in METHODS:
            raw[arch, 3][m][2] = raw[arch, 1][m][2]
        for epoch in config.compared_epochs:  # stored in reverse order: the stage must align by id
            arrays = {"sample_id": np.array(ids[::-1]), **{m: a[::-1] for m, a in raw[arch, epoch].items()}}
            if earlier:
                layer = EARLIER_LAYERS[arch]
                raw[arch, epoch, "earlier"] = {m: finer_rng.random((len(ids), 6, 6)).astype(np.float32) for m in METHODS}
                arrays |= {f"{m}@{layer}": a[::-1] for m, a in raw[arch, epoch, "earlier"].items()}
                arrays |= {"layers": np.array([TARGET_LAYERS[arch], layer]), "depths": np.array(["target", "earlier"])}
            write_npz(paths.cams(arch, epoch), arrays)
    return config, ids, raw


def test_true_positive_filter_stage(run):
    config, ids, _ = run
    tp = drift.run_true_positive_filter(config)
    assert list(tp["sample_id"]) == ids
    assert list(tp["kept"]) == [False] + [True] * 9
    assert not tp.loc[0, "correct_ResNet50V2_ep03"] and tp.loc[0, "correct_ResNet50V2_ep01"]
    stored = pd.read_parquet(RunPaths.of(config).true_positives)
    pd.testing.assert_frame_equal(stored, tp)
    summary = drift.true_positive_summary(tp)
    assert summary.loc["All classes", "kept"] == 9 and summary.loc["All classes", "test"] == 10
    assert summary.loc[tp.loc[0, "label"], "kept_pct"] == 50.0
    assert drift.failure_patterns(tp)["samples"].tolist() == [9, 1]


def test_drift_stage_values_alignment_and_resume(run):
    config, ids, raw = run
    drift.run_true_positive_filter(config)
    frame = drift.run_drift_stage(config)
    assert len(frame) == len(ARCHS) * len(METHODS) * 9
    assert ids[0] not in set(frame["sample_id"])
    one = frame[(frame["arch"] == "ResNet50V2") & (frame["method"] == "gradcampp")].set_index("sample_id")
    early = postprocess(raw["ResNet50V2", 1]["gradcampp"][1:], (8, 8))
    late = postprocess(raw["ResNet50V2", 3]["gradcampp"][1:], (8, 8))
    expected = metrics.drift_metrics(early, late, config.threshold)
    for name, values in expected.items():
        np.testing.assert_allclose(one.loc[ids[1:], name], values, rtol=1e-6)
    same = one.loc[ids[2]]
    assert (same["spatial_displacement"], same["overlap_iou"], same["concentration_change"]) == (
        pytest.approx(0, abs=1e-9), 1.0, pytest.approx(0, abs=1e-9))
    flat = frame[(frame["method"] == "layercam") & (frame["sample_id"] == ids[1])]
    assert flat["degenerate_early"].all() and not flat["degenerate_late"].any()
    assert flat[list(metrics.DRIFT_METRICS)].isna().all().all()
    # same config and inputs: skipped; another threshold: recomputed
    path = RunPaths.of(config).drift
    stamp = path.stat().st_mtime_ns
    drift.run_drift_stage(config)
    assert path.stat().st_mtime_ns == stamp
    again = drift.run_drift_stage(config.replace(threshold=0.9))
    assert not np.allclose(again["overlap_iou"].fillna(-1), frame["overlap_iou"].fillna(-1))


def test_drift_stage_missing_map_is_a_clear_error(run):
    config, ids, raw = run
    drift.run_true_positive_filter(config)
    paths = RunPaths.of(config)
    write_npz(paths.cams("DenseNet201", 3), {"sample_id": np.array(ids[:5]),
                                             **{m: a[:5] for m, a in raw["DenseNet201", 3].items()}})
    with pytest.raises(drift.DriftError, match=r"epoch_03.npz has no map for 5 of 9"):
        drift.run_drift_stage(config)


def test_table3_from_hand_made_drift(tmp_path):
    config = profile("smoke", run_dir=str(tmp_path), cam_samples="true_positives", bootstrap_samples=200)
    paths = RunPaths.of(config)
    # whole test set: 1 Normal, 3 Pneumonia -> weights 0.75, 0.25
    write_parquet(paths.true_positives, pd.DataFrame({
        "sample_id": ["n1", "p1", "p2", "p3"], "label": ["Normal"] + ["Pneumonia"] * 3,
        "kept": [True, True, True, False]}))
    rows = []
    for arch, iou in (("DenseNet201", [1.0, 0.0, 0.5, 0.9]), ("InceptionV3", [0.2, 0.4, np.nan, 0.1])):
        for method, shift in (("layercam", 0.0), ("gradcampp", 0.3 if arch == "DenseNet201" else 0.0)):
            for sid, label, kept, value in zip(["n1", "p1", "p2", "p3"], ["Normal"] + ["Pneumonia"] * 3,
                                               [True, True, True, False], iou):
                rows.append({"arch": arch, "method": method, "sample_id": sid, "label": label, "kept": kept,
                             "spatial_displacement": 0.1, "overlap_iou": value - shift,
                             "pattern_correlation": 0.5, "concentration_change": -0.2})
    write_parquet(paths.drift, pd.DataFrame(rows))
    table = drift.table3(config)
    cell = table[(table["method"] == "layercam") & (table["arch"] == "DenseNet201")
                 & (table["metric"] == "overlap_iou")].iloc[0]
    assert cell["mean"] == pytest.approx((0.75 * 1.0 + 0.25 * 0.0 + 0.25 * 0.5) / 1.25)
    assert (cell["n"], cell["n_dropped"]) == (3, 0)
    assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"]
    incep = table[(table["method"] == "layercam") & (table["arch"] == "InceptionV3")
                  & (table["metric"] == "overlap_iou")].iloc[0]
    assert (incep["n"], incep["n_dropped"]) == (2, 1)
    assert incep["mean"] == pytest.approx((0.75 * 0.2 + 0.25 * 0.4) / 1.0)
    # DenseNet 0.7 vs Inception 0.25 under LayerCAM; 0.4 vs 0.25 under Grad-CAM++: same order
    assert drift.ranking(table) == {"layercam": ["DenseNet201", "InceptionV3"],
                                    "gradcampp": ["DenseNet201", "InceptionV3"]}
    assert not drift.ranking_reversal(table).reversed
    per_class = drift.per_class_table(config)
    normal = per_class[(per_class["label"] == "Normal") & (per_class["metric"] == "overlap_iou")
                       & (per_class["arch"] == "DenseNet201") & (per_class["method"] == "gradcampp")]
    assert normal["mean"].item() == pytest.approx(0.7) and normal["n"].item() == 1
    wide = drift.table3_wide(table)
    assert wide.loc[("LayerCAM", "DenseNet201"), "Overlap IoU"].startswith("0.700 ± ")
    assert wide.loc[("LayerCAM", "DenseNet201"), "n"] == "3"
    assert wide.loc[("LayerCAM", "InceptionV3"), "n"] == "2 of 3"


def test_paper_table3_and_its_ranking_reversal():
    paper = reported.paper_table3()
    assert len(paper) == 6 * 4
    conc = paper[paper["metric"] == "concentration_change"].set_index(["method", "arch"])
    assert conc.loc[("gradcampp", "ResNet50V2"), "mean"] == -0.516
    assert conc["sign_known"].sum() == 1
    assert paper.loc[paper["metric"] != "concentration_change", "sign_known"].all()
    result = drift.ranking_reversal(paper)
    assert result.reversed and result.swapped == [("DenseNet201", "InceptionV3")]
    assert result.orders["layercam"] == ["InceptionV3", "DenseNet201", "ResNet50V2"]
    assert "|0.050|" in drift.table3_wide(paper).loc[("LayerCAM", "DenseNet201"), "Conc. change"]
    assert "n" not in drift.table3_wide(paper).columns  # the paper's table has no counts


def test_an_architecture_without_scored_maps_is_not_ranked_and_makes_no_reversal():
    """Every DenseNet201 Grad-CAM++ map degenerate (NaN mean) must not rank it last."""
    rows = [("layercam", "DenseNet201", 0.80), ("layercam", "ResNet50V2", 0.50), ("layercam", "InceptionV3", 0.75),
            ("gradcampp", "DenseNet201", np.nan), ("gradcampp", "ResNet50V2", 0.60),
            ("gradcampp", "InceptionV3", 0.70)]
    table = pd.DataFrame([{"method": m, "arch": a, "metric": "overlap_iou", "mean": v} for m, a, v in rows])
    assert drift.ranking(table)["gradcampp"] == ["InceptionV3", "ResNet50V2"]
    result = drift.ranking_reversal(table)
    assert not result.reversed and result.swapped == []


def _drift_rows(values: dict[tuple[str, str], list[float]], labels: list[str]) -> pd.DataFrame:
    """drift.parquet-like rows: one per (method, arch, sample) with the given IoU values."""
    return pd.DataFrame([{"method": method, "arch": arch, "sample_id": f"s{i}", "label": label, "overlap_iou": v}
                         for (method, arch), column in values.items()
                         for i, (label, v) in enumerate(zip(labels, column))])


def test_ranking_uncertainty_counts_orders_and_reversals_over_paired_resamples():
    labels = ["Normal", "Pneumonia"] * 4
    weights = {"Normal": 0.75, "Pneumonia": 0.25}
    clear = _drift_rows({("layercam", "A"): [0.9] * 8, ("layercam", "B"): [0.1] * 8,
                         ("gradcampp", "A"): [0.2] * 8, ("gradcampp", "B"): [0.8] * 8}, labels)
    sure = drift.ranking_uncertainty(clear, weights, n_boot=50, seed=0)
    assert sure.reversal_probability == 1.0 and sure.n_boot == 50
    assert sure.orders.set_index(["method", "order"])["probability"].to_dict() == {
        ("gradcampp", "B > A"): 1.0, ("layercam", "A > B"): 1.0}
    # A beats B on three samples by a lot and loses on five by a little: the order depends on the
    # resample; pairing keeps B's NaN sample out of B's mean only
    mixed = _drift_rows({("layercam", "A"): [0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1],
                         ("layercam", "B"): [0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3, np.nan],
                         ("gradcampp", "A"): [0.5] * 8, ("gradcampp", "B"): [0.4] * 8}, labels)
    unsure = drift.ranking_uncertainty(mixed, weights, n_boot=400, seed=1)
    layercam = unsure.orders[unsure.orders["method"] == "layercam"].set_index("order")["probability"]
    assert set(layercam.index) == {"A > B", "B > A"} and layercam.sum() == pytest.approx(1.0)
    assert 0.05 < layercam["B > A"] < 0.95
    assert unsure.reversal_probability == pytest.approx(layercam["B > A"])
    again = drift.ranking_uncertainty(mixed, weights, n_boot=400, seed=1)
    pd.testing.assert_frame_equal(unsure.orders, again.orders)
    # an architecture whose maps are all degenerate under a method is left out of its orders
    degenerate = _drift_rows({("layercam", "A"): [0.9] * 8, ("layercam", "B"): [0.1] * 8,
                              ("gradcampp", "A"): [np.nan] * 8, ("gradcampp", "B"): [0.8] * 8}, labels)
    result = drift.ranking_uncertainty(degenerate, weights, n_boot=20, seed=0)
    assert result.orders.set_index("method").loc["gradcampp", "order"] == "B"
    assert result.reversal_probability == 0.0
    with pytest.raises(drift.DriftError, match="n_boot"):
        drift.ranking_uncertainty(clear, weights, n_boot=0, seed=0)


def test_toy_maps_show_what_each_metric_notices():
    values = drift.toy_metric_table(drift.toy_map_pairs((40, 56)))
    split, shifted, blurred = (values.loc[k] for k in ("same centre, split in two", "shifted", "blurred"))
    assert split["Spatial disp."] < 1e-9 and split["Overlap IoU"] < 0.1
    assert shifted["Spatial disp."] > 0.1 and abs(shifted["Conc. change"]) < 0.01
    assert blurred["Spatial disp."] < 1e-9 and blurred["Pattern corr."] > 0.9 and blurred["Conc. change"] > 0.3
    assert values.loc["identical"].tolist() == pytest.approx([0.0, 1.0, 1.0, 0.0])


def test_explorer_driven_from_python(run):
    from cxrdrift.explorer import DriftExplorer

    config, ids, _ = run
    drift.run_true_positive_filter(config)
    drift.run_drift_stage(config)
    write_config(config)
    explorer = DriftExplorer.from_run(config.run_dir)
    assert explorer.sample.value != ids[0]  # dropped by the filter: not offered
    explorer.sample.value = ids[4]
    stored = drift.load_drift(config).set_index(["arch", "method", "sample_id"])
    first = dict(explorer.values)
    key = (explorer.arch.value, explorer.method.value, explorer.sample.value)
    assert first["overlap_iou"] == pytest.approx(stored.loc[key, "overlap_iou"])
    assert ids[4] in explorer.figure.get_suptitle()
    explorer.threshold.value = 0.95
    assert explorer.values["overlap_iou"] != first["overlap_iou"]
    assert explorer.values["pattern_correlation"] == pytest.approx(first["pattern_correlation"])
    explorer.method.value = "gradcampp"
    explorer.arch.value = "ResNet50V2"
    explorer.threshold.value = config.threshold
    explorer.sample.value = ids[3]
    assert explorer.values["spatial_displacement"] == pytest.approx(
        stored.loc[("ResNet50V2", "gradcampp", ids[3]), "spatial_displacement"])
    assert "Overlap IoU" in explorer.table.value and ids[3] in explorer.figure.get_suptitle()
    assert "ResNet50V2, Grad-CAM++" in explorer.figure.get_suptitle()
    assert explorer._images[ids[3]].shape == (8, 8, 3)


def test_drift_at_two_depths(tmp_path):
    """Maps at the paper's layer and an earlier one: drift.parquet holds both, marked; what chapters
    4-7 read (the paper's layer) is exactly what a run at that layer alone gives."""
    config, ids, raw = make_run(tmp_path / "both", earlier=True)
    drift.run_true_positive_filter(config)
    frame = drift.run_drift_stage(config)
    assert list(frame.columns[-2:]) == ["depth", "layer"]
    assert len(frame) == 2 * len(ARCHS) * len(METHODS) * 9
    assert set(zip(frame["arch"], frame["depth"], frame["layer"])) == {
        (arch, "target", TARGET_LAYERS[arch]) for arch in ARCHS} | {(arch, "earlier", EARLIER_LAYERS[arch]) for arch in ARCHS}
    # one earlier-layer value recomputed from the raw 6x6 maps
    sid = ids[3]
    row = frame.query("arch == 'DenseNet201' and method == 'layercam' and depth == 'earlier' and sample_id == @sid")
    early, late = (postprocess(raw["DenseNet201", e, "earlier"]["layercam"][[3]], (8, 8)) for e in (1, 3))
    assert row["overlap_iou"].item() == pytest.approx(metrics.overlap_iou(early, late, config.threshold)[0])

    alone, _, _ = make_run(tmp_path / "alone")
    drift.run_true_positive_filter(alone)
    drift.run_drift_stage(alone)
    paper = drift.load_drift(config)
    pd.testing.assert_frame_equal(paper, drift.load_drift(alone))       # the paper's layer is unchanged
    assert len(drift.load_drift(config, depth=None)) == 2 * len(paper)
    pd.testing.assert_frame_equal(drift.table3(config), drift.table3(alone))
    with pytest.raises(drift.DriftError, match="no rows at depth 'mixed7'"):
        drift.load_drift(config, depth="mixed7")

    table = drift.depth_table(config)
    assert list(table.columns[:3]) == ["depth", "layer", "paper_layer"]
    on_paper = table[table["paper_layer"]].drop(columns=["depth", "layer", "paper_layer"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(on_paper, drift.table3(config), check_dtype=False)
    assert (table.loc[~table["paper_layer"], "depth"] == "earlier").all()
    wide = drift.depth_table_wide(table)
    assert wide.index.names == ["Method", "Architecture", "Depth"] and len(wide) == 2 * len(ARCHS) * len(METHODS)
    assert wide.index[0][2] == "paper's layer" and wide.iloc[0]["Layer"].endswith("(paper)")
    assert not wide.iloc[1]["Layer"].endswith("(paper)")

    ranked = drift.depth_ranking(config)
    assert set(ranked.reversals) == {"target", "earlier"}
    shown = ranked.table()
    assert set(shown["depth"]) == {"target", "earlier"} and shown.loc[shown["depth"] == "target", "paper_layer"].all()
    assert shown["P(any pair swaps)"].between(0, 1).all()
    verdict = ranked.describe()
    assert verdict.startswith("At the paper's layer:") and "At the earlier layer:" in verdict
    assert ("reverse the ranking" in verdict or "alike at every depth" in verdict)
    assert drift.depth_ranking(alone).describe().startswith("This run took maps at the paper's layer only")


def test_depth_verdict_names_where_the_reversal_holds():
    def reversal(orders):
        return drift.RankingReversal(bool(drift._swapped_pairs(orders)), orders, drift._swapped_pairs(orders))

    sure = drift.RankingUncertainty(pd.DataFrame(), 0.5, 10, 30)
    flips = drift.DepthRanking({"target": reversal({"layercam": ["A", "B"], "gradcampp": ["B", "A"]}),
                                "earlier": reversal({"layercam": ["A", "B"], "gradcampp": ["A", "B"]})},
                               {"target": sure, "earlier": sure}, "overlap_iou")
    text = flips.describe()
    assert "reverse the ranking at the paper's layer, not at the earlier layer" in text
    assert "changes with the layer under Grad-CAM++" in text and flips.changed_orders() == ["gradcampp"]
    same = drift.DepthRanking({d: reversal({"layercam": ["A", "B"], "gradcampp": ["A", "B"]}) for d in ("target", "earlier")},
                              {"target": sure, "earlier": sure}, "overlap_iou")
    assert "alike at every depth" in same.describe() and "same way at every depth" in same.describe()
