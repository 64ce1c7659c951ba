"""Verdicts that hold up: the four outcomes, the paired two-level bootstrap, common support,
Holm's levels, the chance baseline and the extra metrics, against hand-built tables and closed forms."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cxrdrift import baselines, drift, evidence, findings, inference, metrics, verdicts
from cxrdrift.cams import degenerate_mask, postprocess

from test_drift import make_run

ARCHS = findings.ARCHS
WEIGHTS = {"Normal": 1.0, "COVID-19": 2.0}


def drift_table(iou: dict[tuple[str, str], float], n: int = 300, spread: float = 0.15, seed: int = 0,
                seeds: int = 1, seed_spread: float = 0.0) -> pd.DataFrame:
    """Per-image drift of the paper's six cells: IoU around `iou[(method, arch)]`, a displacement
    well below its chance level; with `seeds`, each seed shifts every cell by its own noise."""
    rng = np.random.default_rng(seed)
    labels = np.where(np.arange(n) % 3 == 0, "COVID-19", "Normal")
    image_effect = rng.normal(0, spread, n)  # shared by every cell: the pairing the bootstrap keeps
    frames = []
    for s in range(seeds):
        for (method, arch), mean in iou.items():
            shift = rng.normal(0, seed_spread)
            frames.append(pd.DataFrame({
                "seed": s, "method": method, "arch": arch, "sample_id": [f"img{i}" for i in range(n)],
                "label": labels, "overlap_iou": mean + shift + image_effect + rng.normal(0, 0.02, n),
                "spatial_displacement": np.abs(rng.normal(0.08, 0.02, n)),
                "chance_spatial_displacement": np.abs(rng.normal(0.30, 0.05, n))}))
    return pd.concat(frames, ignore_index=True)


def cells(layercam: tuple[float, float, float], gradcampp: tuple[float, float, float]) -> dict:
    return {**{("layercam", a): v for a, v in zip(ARCHS, layercam)},
            **{("gradcampp", a): v for a, v in zip(ARCHS, gradcampp)}}


# order: DenseNet201, ResNet50V2, InceptionV3
PAPER_LIKE = cells((0.70, 0.52, 0.78), (0.69, 0.38, 0.64))


def verdict(frame: pd.DataFrame, number: int, n_boot: int = 400) -> str:
    return findings.evaluate(frame, WEIGHTS, n_boot, 0)["verdict"][number - 1]


def test_a_clear_reversal_is_reproduced_and_the_opposite_order_is_contradicted():
    assert verdict(drift_table(PAPER_LIKE), 3) == findings.REPRODUCED
    # both methods put DenseNet201 clearly above InceptionV3: no reversal, confidently
    agree = cells((0.78, 0.52, 0.70), (0.69, 0.38, 0.64))
    assert verdict(drift_table(agree), 3) == findings.CONTRADICTED


def test_architectures_within_noise_give_inconclusive_not_reproduced():
    # the point orders reverse (InceptionV3 ahead under LayerCAM by 0.002, behind under Grad-CAM++
    # by 0.002) but the images vary far more than that
    near = cells((0.700, 0.60, 0.702), (0.700, 0.55, 0.698))
    frame = drift_table(near, n=60, spread=0.02)
    frame["overlap_iou"] += np.random.default_rng(5).normal(0, 0.15, len(frame))
    result = findings.evaluate(frame, WEIGHTS, 400, 0)
    assert result["verdict"][2] == findings.INCONCLUSIVE
    assert result["ci_low"][2] < 0 < result["ci_high"][2] or result["ci_high"][2] < 0


def test_all_five_findings_on_a_paper_like_run_and_holm_levels():
    result = findings.evaluate(drift_table(PAPER_LIKE), WEIGHTS, 400, 0)
    assert list(result.columns) == findings.COLUMNS
    assert list(result["verdict"][:4]) == [findings.REPRODUCED] * 4
    # Holm: the five one-sided levels are 5 %/5 ... 5 %/1 in the order of the p-values
    levels = np.sort((1 - result["level"]) / 2)
    assert levels[:4] == pytest.approx([0.01, 0.0125, 1 / 60, 0.025])
    assert (result["n_images"] == 300).all() and (result["n_seeds"] == 1).all()
    # finding 1: displacement / chance = 0.08 / 0.30
    assert result["estimate"][0] == pytest.approx(0.27, abs=0.03)
    moved = drift_table(PAPER_LIKE).assign(spatial_displacement=lambda t: t["chance_spatial_displacement"] * 0.9)
    assert verdict(moved, 1) == findings.CONTRADICTED


def test_holm_step_down_levels_and_stop():
    levels, rejected = inference.holm([0.01, 0.04, np.nan, 0.03], 0.05)
    assert levels[[0, 3, 1]] == pytest.approx([0.05 / 3, 0.05 / 2, 0.05])
    assert np.isnan(levels[2])
    assert list(rejected) == [True, False, False, False]  # 0.03 > 0.025 stops the procedure


def test_training_seeds_widen_the_interval():
    one = findings.evaluate(drift_table(PAPER_LIKE, seeds=1), WEIGHTS, 400, 0)
    noisy = findings.evaluate(drift_table(PAPER_LIKE, seeds=3, seed_spread=0.05), WEIGHTS, 400, 0)
    width = lambda r: (r["ci_high"] - r["ci_low"])[2]  # noqa: E731
    assert noisy["n_seeds"][2] == 3
    assert width(noisy) > 2 * width(one)


def test_paired_bootstrap_keeps_the_shared_image_effect_out_of_differences():
    frame = drift_table(PAPER_LIKE, spread=0.3)
    support = inference.common_support(frame, findings.CELLS, ["overlap_iou"])
    boots = inference.bootstrap_moments(support, WEIGHTS, 300, 1)
    difference = findings.pair_difference(boots, "layercam")
    single = boots.mean("layercam", findings.INCEPTION, "overlap_iou")
    assert difference.std() < single.std() / 5
    point = inference.point_moments(support, WEIGHTS)
    labels = support.labels
    w = np.where(labels == "COVID-19", 2.0, 1.0)
    column = support.values[0, :, support.column(("layercam", findings.INCEPTION, "overlap_iou"))]
    assert point.mean("layercam", findings.INCEPTION, "overlap_iou") == pytest.approx((w * column).sum() / w.sum())


def test_common_support_drops_an_image_from_every_cell_when_one_cell_is_degenerate():
    frame = drift_table(PAPER_LIKE, n=30)
    frame.loc[(frame["method"] == "gradcampp") & (frame["arch"] == findings.RESNET)
              & (frame["sample_id"] == "img4"), "overlap_iou"] = np.nan
    support = inference.common_support(frame, findings.CELLS, ["overlap_iou"])
    assert support.n_images == 29 and "img4" not in set(support.sample_ids)
    counts = support.counts.set_index(["method", "arch"])
    assert counts.loc[("gradcampp", findings.RESNET), "scored"] == 29
    assert counts.loc[("layercam", findings.DENSENET), "lost_to_other_cells"] == 1
    assert (counts["common"] == 29).all()


def test_not_testable_when_a_cell_is_missing_or_too_few_images():
    frame = drift_table(PAPER_LIKE, n=10)
    assert set(findings.evaluate(frame, WEIGHTS, 50, 0)["verdict"]) == {findings.NOT_TESTABLE}
    assert "fewer than 20" in findings.untestable_reason(frame)
    partial = drift_table(PAPER_LIKE)
    partial = partial[partial["arch"] != findings.INCEPTION]
    assert findings.untestable_reason(partial) == "this run has no LayerCAM InceptionV3, Grad-CAM++ InceptionV3"


def test_order_probabilities_report_the_papers_orders():
    table = findings.order_probabilities(drift_table(PAPER_LIKE), WEIGHTS, 200, 0)
    assert list(table["paper_order"]) == ["InceptionV3 > DenseNet201 > ResNet50V2",
                                          "DenseNet201 > InceptionV3 > ResNet50V2"]
    assert (table["probability"] > 0.95).all()


# -- the chance baseline and the extra metrics ------------------------------------------------------

def test_shuffled_partners_stay_in_class_and_never_pair_an_image_with_itself():
    labels = np.array(list("aaabbc"))
    partners = baselines.shuffled_partners(labels, seed=3)
    assert partners[5] == -1
    paired = partners >= 0
    assert (partners[paired] != np.flatnonzero(paired)).all()
    assert (labels[partners[paired]] == labels[paired]).all()
    assert sorted(partners[:3]) == [0, 1, 2]  # each image of a class is some other image's partner once


def test_chance_baseline_of_identical_maps_and_of_independent_random_regions():
    rng = np.random.default_rng(0)
    same = np.repeat(rng.random((1, 16, 16)), 20, axis=0)
    chance = baselines.chance_metrics(same, same, ["Normal"] * 20, 0.5, seed=0)
    assert chance["overlap_iou"] == pytest.approx(np.ones(20))
    assert chance["spatial_displacement"] == pytest.approx(np.zeros(20), abs=1e-12)
    # unrelated regions covering p = 0.2 and q = 0.4 of the image: IoU pq / (p + q - pq) on average
    early = (rng.random((400, 30, 30)) < 0.2).astype(float)
    late = (rng.random((400, 30, 30)) < 0.4).astype(float)
    chance = baselines.chance_metrics(early, late, ["Normal"] * 400, 0.5, seed=1)
    assert np.nanmean(chance["overlap_iou"]) == pytest.approx(0.08 / 0.52, abs=0.004)
    assert metrics.expected_iou(0.2, 0.4) == pytest.approx(0.08 / 0.52)
    assert np.nanmean(chance["adjusted_iou"]) == pytest.approx(0.0, abs=0.01)


def test_rank_correlation_matches_scipy_and_adjusted_iou_its_closed_form():
    rng = np.random.default_rng(2)
    a = rng.random((5, 7, 6))
    b = a ** 2 + 0.3 * rng.random((5, 7, 6))
    expected = [stats.spearmanr(x.ravel(), y.ravel())[0] for x, y in zip(a, b)]
    assert metrics.rank_correlation(a, b) == pytest.approx(expected)
    assert np.isnan(metrics.rank_correlation(np.full((4, 4), 0.5), a[0, :4, :4]))
    # regions of 4 and 8 of 16 pixels sharing 4: IoU 0.5; unrelated regions of shares 1/4 and 1/2
    # overlap by (1/8) / (3/4 - 1/8) = 0.2 on average, so the adjusted IoU is (0.5 - 0.2) / (1 - 0.2)
    x = np.zeros((4, 4)); x[0] = 1; x[1, 0] = 0.2
    y = np.zeros((4, 4)); y[:2] = 1
    assert metrics.overlap_iou(x, y) == pytest.approx(0.5)
    assert metrics.salient_area(x) == pytest.approx(0.25)
    assert metrics.adjusted_iou(x, y) == pytest.approx(0.375)
    assert metrics.adjusted_iou(x, x) == pytest.approx(1.0)


def test_top_share_overlap_uses_each_maps_own_top_pixels():
    a = np.arange(100, dtype=float).reshape(10, 10) / 99
    shifted = np.roll(a, 5)   # the top 10 % of a (its last row) keeps half its pixels in the top 10 % of b
    assert metrics.top_share_overlap(a, a, 0.1) == pytest.approx(1.0)
    assert metrics.top_share_overlap(a, a ** 3, 0.1) == pytest.approx(1.0)  # any monotone change: no drift
    assert 0.0 < metrics.top_share_overlap(a, shifted, 0.1) < 1.0
    with pytest.raises(metrics.MetricInputError, match="share"):
        metrics.top_share_overlap(a, a, 0.0)


def test_degeneracy_is_relative_to_the_maps_own_scale():
    tiny = np.array([[[0.0, 1e-14], [2e-14, 3e-14]]], np.float32)   # structured, just small
    large = np.full((1, 2, 2), 5e3, np.float32); large[0, 0, 0] += 1e-4  # flat up to rounding
    assert list(degenerate_mask(np.concatenate([tiny, large, np.zeros((1, 2, 2), np.float32)]))) == [False, True, True]
    assert np.isfinite(postprocess(tiny, (4, 4))).all()


# -- the evidence stage and the tables on a hand-made run -------------------------------------------

def test_evidence_stage_pairs_chance_with_the_same_partner_in_every_cell_and_resumes(tmp_path):
    config, ids, _ = make_run(tmp_path, earlier=True)
    drift.run_true_positive_filter(config)
    frame = evidence.run_evidence_stage(config)
    settings = set(frame["setting"])
    assert {"main", "τ = 0.3", "τ = 0.7", "top 10% overlap", "earlier layer"} <= settings
    main = frame[frame["setting"] == "main"]
    assert len(main) == 2 * 2 * 9  # two architectures, two methods, nine kept images
    samples = drift.mapped_samples(config)
    partners = baselines.shuffled_partners(samples["label"].to_numpy(), config.seed)
    arch, method = "DenseNet201", "gradcampp"
    early, late = drift.compared_maps(config, arch, method, samples["sample_id"])
    cell = main[(main["arch"] == arch) & (main["method"] == method)].set_index("sample_id").loc[samples["sample_id"]]
    i = int(np.flatnonzero(partners >= 0)[0])
    assert cell["chance_overlap_iou"].iloc[i] == pytest.approx(metrics.overlap_iou(early[i], late[partners[i]], 0.5))
    assert cell["overlap_iou"].to_numpy() == pytest.approx(metrics.overlap_iou(early, late, 0.5), nan_ok=True)
    tau = frame[(frame["setting"] == "τ = 0.3") & (frame["arch"] == arch) & (frame["method"] == method)]
    assert tau.set_index("sample_id").loc[samples["sample_id"], "overlap_iou"].to_numpy() == pytest.approx(
        metrics.overlap_iou(early, late, 0.3), nan_ok=True)
    stamp_before = (tmp_path / "run" / "evidence.parquet").stat().st_mtime_ns
    evidence.run_evidence_stage(config)
    assert (tmp_path / "run" / "evidence.parquet").stat().st_mtime_ns == stamp_before
    # another threshold keeps the columns no threshold decides and matches a recomputation
    free = tmp_path / "run" / "evidence_threshold_free.parquet"
    free_before = free.stat().st_mtime_ns
    stricter = evidence.run_evidence_stage(config.replace(threshold=0.4))
    assert free.stat().st_mtime_ns == free_before
    pd.testing.assert_frame_equal(stricter, evidence.run_evidence_stage(config.replace(threshold=0.4), force=True))
    strict_cell = stricter[(stricter["setting"] == "main") & (stricter["arch"] == arch) & (stricter["method"] == method)]
    assert strict_cell.set_index("sample_id").loc[samples["sample_id"], "overlap_iou"].to_numpy() == pytest.approx(
        metrics.overlap_iou(early, late, 0.4), nan_ok=True)
    unchanged = ["spatial_displacement", "pattern_correlation", "rank_correlation", "chance_pattern_correlation"]
    pd.testing.assert_frame_equal(stricter.loc[stricter["setting"] == "main", unchanged].reset_index(drop=True),
                                  main[unchanged].reset_index(drop=True))
    evidence.run_evidence_stage(config)  # back to the run's threshold for the tables below
    # two architectures: the findings are untestable, and every table says so instead of failing
    assert set(verdicts.verdict_table(config)["verdict"]) == {findings.NOT_TESTABLE}
    support = verdicts.support_table(config)
    assert set(support["grid"]) == {"3x3"} and set(support["coarser than 3x3"]) == {"no"}
    # sample 1's early LayerCAM map is flat: LayerCAM scores 8 of the 9 kept images, and Grad-CAM++
    # loses that image too so that every cell rests on the same 8
    assert list(support["scored"]) == [8, 8, 9, 9] and list(support["lost to other cells"]) == [0, 0, 1, 1]
    assert set(support["common to all"]) == {8}
    table = verdicts.baseline_table(config)
    assert set(table["metric"]) == set(verdicts.BASELINE_METRICS)
    assert table["chance"].notna().all() and table["ceiling"].isna().all()
    sensitivity = verdicts.sensitivity_table(config)
    others = verdicts.sensitivity_settings(config)
    assert "τ = 0.5" not in others  # the run's own threshold is "this run"
    assert set(sensitivity["setting"]) == {"this run", *others}
    assert verdicts.holds_in(sensitivity)["holds in"].iloc[0] == f"{len(others)} of {len(others)} settings"
    assert list(verdicts.outcome_table(verdicts.verdict_table(config))["value [interval]"]) == ["—"] * 5


def test_ranking_uncertainty_reports_the_papers_order_not_any_swap():
    frame = drift_table(PAPER_LIKE, n=60)
    uncertainty = drift.ranking_uncertainty(frame, WEIGHTS, n_boot=100, seed=0)
    assert uncertainty.paper_order_probability("layercam") == 1.0
    assert uncertainty.paper_order_probability("gradcampp") == 1.0
    assert "the paper's LayerCAM order in 100%, the paper's Grad-CAM++ order in 100%" in uncertainty.describe()
    swapped = frame.assign(overlap_iou=np.where((frame["method"] == "layercam") & (frame["arch"] == "ResNet50V2"),
                                                0.95, frame["overlap_iou"]))
    assert drift.ranking_uncertainty(swapped, WEIGHTS, n_boot=100, seed=0).paper_order_probability("layercam") == 0.0


def test_other_alpha_convention_is_a_setting_when_the_cam_files_hold_it(tmp_path):
    from cxrdrift.artifacts import RunPaths, read_npz, write_npz
    from cxrdrift.cams import OTHER_ALPHA

    config, ids, raw = make_run(tmp_path)
    drift.run_true_positive_filter(config)
    assert evidence.alpha_setting(config) not in set(evidence.run_evidence_stage(config)["setting"])
    for arch in ("DenseNet201", "ResNet50V2"):
        for epoch in config.compared_epochs:
            path = RunPaths.of(config).cams(arch, epoch)
            arrays = read_npz(path)
            write_npz(path, {**arrays, OTHER_ALPHA: arrays["layercam"]})  # stand-in maps: LayerCAM's
    frame = evidence.run_evidence_stage(config)
    other = frame[frame["setting"] == "alpha normalized"].set_index(["arch", "method", "sample_id"])["overlap_iou"]
    main = frame[frame["setting"] == "main"].set_index(["arch", "method", "sample_id"])["overlap_iou"]
    for arch in ("DenseNet201", "ResNet50V2"):
        # Grad-CAM++'s cells now hold the other convention's maps, LayerCAM's stay as they were
        pd.testing.assert_series_equal(other.loc[(arch, "gradcampp")], main.loc[(arch, "layercam")])
        pd.testing.assert_series_equal(other.loc[(arch, "layercam")], main.loc[(arch, "layercam")])
    assert "alpha normalized" in verdicts.sensitivity_settings(config)


def test_the_other_alpha_convention_comes_from_the_same_formula_with_the_flag_flipped():
    import tensorflow as tf
    from cxrdrift import cams

    rng = np.random.default_rng(4)
    activations = tf.constant(rng.random((2, 3, 3, 4)), tf.float32)
    gradients = tf.constant(rng.normal(size=(2, 3, 3, 4)), tf.float32)
    for alpha_norm in (False, True):
        other = cams._method(cams.OTHER_ALPHA, alpha_norm)(activations, gradients).numpy()
        expected = cams.gradcampp_map(activations, gradients, alpha_norm=not alpha_norm).numpy()
        np.testing.assert_allclose(other, expected)
        assert not np.allclose(other, cams.gradcampp_map(activations, gradients, alpha_norm=alpha_norm).numpy())


def test_seed_rankings_count_the_seeds_that_give_each_order(monkeypatch):
    from cxrdrift import config as cfg

    config = cfg.profile("smoke")
    orders = {0: (0.8, 0.6, 0.9), 1: (0.81, 0.6, 0.9), 2: (0.9, 0.6, 0.8)}  # IoU of ARCHS per seed, LayerCAM
    rows = [pd.DataFrame({"seed": seed, "depth": "target", "method": method, "arch": arch,
                          "sample_id": ["a", "b"], "label": ["Normal", "COVID-19"],
                          "overlap_iou": [iou, iou], "pattern_correlation": 0.5, "concentration_change": 0.0,
                          "spatial_displacement": [1 - iou, 1 - iou]})
            for seed, ious in orders.items() for method in ("layercam", "gradcampp")
            for arch, iou in zip(ARCHS, ious if method == "layercam" else (0.5, 0.7, 0.6))]
    monkeypatch.setattr(verdicts, "load_evidence", lambda c: pd.concat(rows, ignore_index=True))
    monkeypatch.setattr(verdicts, "class_weights", lambda c: WEIGHTS)
    table = verdicts.seed_table(config)
    assert table.query("seed == 2 and method == 'layercam' and arch == 'DenseNet201'")["overlap_iou"].item() == \
        pytest.approx(0.9)
    ranked = verdicts.seed_rankings(config)
    layercam = ranked[ranked["method"] == "layercam"]
    assert layercam["order"].tolist() == ["InceptionV3 > DenseNet201 > ResNet50V2",
                                          "DenseNet201 > InceptionV3 > ResNet50V2"]
    assert layercam["seeds"].tolist() == [[0, 1], [2]] and layercam["share"].tolist() == pytest.approx([2 / 3, 1 / 3])
    gradcampp = ranked[ranked["method"] == "gradcampp"]
    assert gradcampp["order"].tolist() == ["ResNet50V2 > InceptionV3 > DenseNet201"] and gradcampp["count"].item() == 3
    # displacement: less is more stable, so the order is the IoU order here
    assert verdicts.seed_rankings(config, "spatial_displacement")["order"].tolist() == ranked["order"].tolist()
