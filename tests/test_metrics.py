"""Drift metrics, aggregation, bootstrap, predictive metrics and the true-positive filter,
against answers worked out by hand (or reference implementations where noted)."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import entropy as scipy_entropy
from scipy.stats import pearsonr, rankdata
from sklearn.metrics import roc_auc_score

from cxrdrift import metrics as M

pytestmark = pytest.mark.filterwarnings("error")  # a degenerate input must never warn


def delta(shape, row, col):
    m = np.zeros(shape)
    m[row, col] = 1.0
    return m


# -- drift metrics -----------------------------------------------------------------------------

def test_identical_maps_non_square():
    rng = np.random.default_rng(0)
    a = rng.random((3, 5))
    assert M.spatial_displacement(a, a) == pytest.approx(0.0, abs=1e-12)
    assert M.overlap_iou(a, a) == 1.0
    assert M.pattern_correlation(a, a) == pytest.approx(1.0)
    assert M.concentration_change(a, a) == pytest.approx(0.0, abs=1e-12)


def test_known_shift_between_two_deltas():
    a, b = delta((4, 5), 0, 0), delta((4, 5), 3, 4)  # H != W
    assert M.spatial_displacement(a, b) == pytest.approx(5 / math.sqrt(4**2 + 5**2))
    assert M.overlap_iou(a, b) == 0.0
    assert M.pattern_correlation(a, b) == pytest.approx(-1 / 19)  # two disjoint deltas in 20 pixels
    assert M.concentration_change(a, b) == pytest.approx(0.0)


def test_centre_of_mass_uses_row_col_pixel_indices():
    m = np.array([[1.0, 0, 0], [0, 0, 3.0]])  # mass 1 at (0,0), 3 at (1,2)
    np.testing.assert_allclose(M.centre_of_mass(m[None]), [[0.75, 1.5]])
    b = delta((2, 3), 0, 0)
    assert M.spatial_displacement(m, b) == pytest.approx(math.hypot(0.75, 1.5) / math.hypot(2, 3))


def test_same_centre_different_structure():
    ring = np.zeros((5, 5))
    ring[[0, 0, 4, 4], [0, 4, 0, 4]] = 1.0
    centre = delta((5, 5), 2, 2)
    assert M.spatial_displacement(ring, centre) == pytest.approx(0.0, abs=1e-12)
    assert M.overlap_iou(ring, centre) == 0.0
    # entropy: four equal pixels -> ln 4; one pixel -> 0; later minus earlier
    assert M.concentration_change(ring, centre) == pytest.approx(-math.log(4))
    assert M.concentration_change(centre, ring) == pytest.approx(math.log(4))


def test_iou_by_hand_and_threshold():
    a = np.array([[1.0, 0.6, 0.2]])
    b = np.array([[0.4, 0.7, 1.0]])
    assert M.overlap_iou(a, b, threshold=0.5) == pytest.approx(1 / 3)  # {0,1} vs {1,2}
    assert M.overlap_iou(a, b, threshold=0.65) == 0.0  # {0} vs {1,2}
    assert M.overlap_iou(a, b, threshold=0.6) == pytest.approx(1 / 3)  # >= includes 0.6


def test_iou_both_regions_empty_is_nan():
    a = np.array([[0.1, 0.2]])
    b = np.array([[0.3, 0.1]])
    assert math.isnan(M.overlap_iou(a, b, threshold=0.5))
    assert M.overlap_iou(a, b, threshold=0.25) == 0.0  # only b's region is non-empty


def test_entropy_in_nats_with_zero_terms():
    m = np.array([[1.0, 1.0], [1.0, 0.0]])
    assert M.entropy(m[None])[0] == pytest.approx(math.log(3))
    assert M.concentration_change(m, delta((2, 2), 0, 0)) == pytest.approx(-math.log(3))


@pytest.mark.parametrize("bad", [np.full((4, 6), 0.3), np.zeros((4, 6)), np.full((4, 6), np.nan)])
def test_degenerate_maps_give_nan_in_every_metric(bad):
    good = np.random.default_rng(1).random((4, 6))
    for fn in (M.spatial_displacement, M.overlap_iou, M.pattern_correlation, M.concentration_change):
        assert math.isnan(fn(bad, good))
        assert math.isnan(fn(good, bad))


def test_batch_equals_single_pairs_and_reference_implementations():
    rng = np.random.default_rng(2)
    a = rng.random((6, 7, 9)) ** 3
    b = rng.random((6, 7, 9)) ** 3
    a[2] = 0.5  # a flat map inside a batch: NaN there only
    out = M.drift_metrics(a, b, threshold=0.4)
    for name, fn in [("spatial_displacement", M.spatial_displacement),
                     ("pattern_correlation", M.pattern_correlation),
                     ("concentration_change", M.concentration_change)]:
        single = np.array([fn(x, y) for x, y in zip(a, b)])
        np.testing.assert_allclose(out[name], single, equal_nan=True)
        assert np.isnan(out[name][2]) and np.isfinite(np.delete(out[name], 2)).all()
    single_iou = np.array([M.overlap_iou(x, y, threshold=0.4) for x, y in zip(a, b)])
    np.testing.assert_allclose(out["overlap_iou"], single_iou, equal_nan=True)
    for i in (0, 1, 3, 4, 5):
        assert out["pattern_correlation"][i] == pytest.approx(pearsonr(a[i].ravel(), b[i].ravel())[0])
        expected = scipy_entropy(b[i].ravel()) - scipy_entropy(a[i].ravel())  # natural log
        assert out["concentration_change"][i] == pytest.approx(expected)
    assert isinstance(M.overlap_iou(a[0], b[0]), float)


def test_a_named_subset_of_the_suite_computes_only_those_metrics(monkeypatch):
    rng = np.random.default_rng(4)
    a, b = rng.random((5, 6, 6)) ** 3, rng.random((5, 6, 6)) ** 3
    suite = M.drift_metrics(a, b, threshold=0.4)
    assert list(suite) == list(M.SUITE_METRICS)
    ranked = []
    original = M.rank_correlation
    monkeypatch.setattr(M, "rank_correlation", lambda x, y: ranked.append(1) or original(x, y))
    paper = M.drift_metrics(a, b, threshold=0.4, names=M.DRIFT_METRICS)
    assert list(paper) == list(M.DRIFT_METRICS) and ranked == []  # no Spearman ranks computed
    for name in M.DRIFT_METRICS:
        np.testing.assert_array_equal(paper[name], suite[name])
    with pytest.raises(M.MetricInputError, match="unknown metric 'iou'"):
        M.drift_metrics(a, b, names=("iou",))


def test_prepared_maps_give_the_same_values_and_taken_rows_the_same_bits(monkeypatch):
    rng = np.random.default_rng(3)
    a, b = rng.random((8, 9, 11)) ** 3, rng.random((8, 9, 11)) ** 3
    a[1] = 0.0  # degenerate
    b[4] = np.nan
    prepared_a, prepared_b = M.PreparedMaps(a), M.PreparedMaps(b)
    from_arrays = M.drift_metrics(a, b, threshold=0.3)
    from_prepared = M.drift_metrics(prepared_a, prepared_b, threshold=0.3)
    for name in M.SUITE_METRICS:
        np.testing.assert_array_equal(from_prepared[name], from_arrays[name])
    np.testing.assert_array_equal(M.top_share_overlap(prepared_a, prepared_b, 0.2), M.top_share_overlap(a, b, 0.2))
    # rows taken after their ranks, regions and centres were computed (the chance partners)
    rows, no_partner = np.array([5, 0, 0, 7, 2, 3, 6, 1]), np.arange(8) == 6
    taken = prepared_b.take(rows, invalid=no_partner)
    expected_b = b[rows].copy()
    expected_b[no_partner] = np.nan
    again = M.drift_metrics(a, expected_b, threshold=0.3)
    for name in M.SUITE_METRICS:
        np.testing.assert_array_equal(M.drift_metrics(prepared_a, taken, threshold=0.3)[name], again[name])
    np.testing.assert_array_equal(M.top_share_overlap(prepared_a, taken, 0.2), M.top_share_overlap(a, expected_b, 0.2))
    assert np.isnan(M.pattern_correlation(prepared_a, taken)[[1, 6]]).all()
    # rows taken first: what they compute is computed on their source, once for both
    ranked = []
    monkeypatch.setattr(M, "rankdata", lambda x, axis: ranked.append(len(x)) or rankdata(x, axis=axis))
    source = M.PreparedMaps(b)
    taken_first = source.take(rows, invalid=no_partner)
    for name in M.SUITE_METRICS:
        np.testing.assert_array_equal(M.drift_metrics(prepared_a, taken_first, threshold=0.3)[name], again[name])
    np.testing.assert_array_equal(M.rank_correlation(prepared_a, source), from_arrays["rank_correlation"])
    assert ranked == [8]  # the source's maps, ranked once; prepared_a's ranks were there already


def test_bad_map_input_is_a_clear_error():
    with pytest.raises(M.MetricInputError, match="share a shape"):
        M.overlap_iou(np.ones((3, 4)), np.ones((4, 3)))
    with pytest.raises(M.MetricInputError, match="non-negative"):
        M.pattern_correlation(-np.eye(3), np.eye(3))
    with pytest.raises(M.MetricInputError, match="threshold"):
        M.overlap_iou(np.eye(3), np.eye(3), threshold=1.5)
    with pytest.raises(M.MetricInputError, match="share a shape"):
        M.rank_correlation(M.PreparedMaps(np.eye(3)), np.ones((2, 3, 3)))
    with pytest.raises(M.MetricInputError, match=r"\(H, W\) or \(N, H, W\)"):
        M.PreparedMaps(np.ones(5))


# -- aggregation --------------------------------------------------------------------------------

WEIGHTS = {"A": 0.5, "B": 0.3, "C": 0.2}
VALUES = [1.0, 2.0, 4.0, 3.0, np.nan]
LABELS = ["A", "B", "B", "C", "C"]


def test_energy_inside_and_region_precision_by_hand():
    m = np.array([[1.0, 0.5, 0.0],
                  [0.25, 0.0, 0.0]])      # H != W
    mask = np.array([[True, False, False],
                     [True, True, False]])
    assert M.energy_inside(m, mask) == pytest.approx((1.0 + 0.25) / 1.75)
    assert M.region_precision(m, mask, 0.5) == pytest.approx(1 / 2)   # region {(0,0), (0,1)}
    assert M.region_precision(m, mask, 0.2) == pytest.approx(2 / 3)   # (1,0) joins, inside
    batch = np.stack([m, m[:, ::-1], np.zeros_like(m)])
    masks = np.stack([mask, mask, mask])
    np.testing.assert_allclose(M.energy_inside(batch, masks)[:2], [1.25 / 1.75, 0.0])
    assert np.isnan(M.energy_inside(batch, masks)[2])                  # flat map: degenerate
    assert np.isnan(M.region_precision(m, np.zeros_like(mask)))        # no lesion: undefined
    assert M.energy_inside(m, np.ones_like(mask)) == 1.0


def test_localization_input_errors_are_clear():
    with pytest.raises(M.MetricInputError, match="boolean"):
        M.energy_inside(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(M.MetricInputError, match="share"):
        M.region_precision(np.ones((2, 2)), np.ones((3, 2), bool))
    with pytest.raises(M.MetricInputError, match="threshold"):
        M.region_precision(np.ones((2, 2)), np.ones((2, 2), bool), 1.5)


def test_weighted_summary_hand_worked():
    # finite: 1 (w .5), 2 (.3), 4 (.3), 3 (.2); sum w = 1.3, sum w x = 2.9
    mean, std = M.weighted_summary(VALUES, LABELS, WEIGHTS)
    assert mean == pytest.approx(2.9 / 1.3)
    # sum w x² = .5 + 1.2 + 4.8 + 1.8 = 8.3
    assert std == pytest.approx(math.sqrt(8.3 / 1.3 - (2.9 / 1.3) ** 2))


def test_summary_counts_dropped_nan_and_equal_weights_give_plain_mean():
    s = M.summarize(VALUES, LABELS, WEIGHTS)
    assert (s.n, s.n_dropped) == (4, 1)
    assert math.isnan(s.ci_low)
    mean, std = M.weighted_summary([1.0, 2.0, 6.0], ["A", "B", "C"], {"A": 1, "B": 1, "C": 1})
    assert (mean, std) == (pytest.approx(3.0), pytest.approx(np.std([1.0, 2.0, 6.0])))
    assert all(math.isnan(v) for v in M.weighted_summary([np.nan], ["A"], WEIGHTS))
    with pytest.raises(M.MetricInputError, match="no class weight"):
        M.weighted_summary([1.0], ["Z"], WEIGHTS)


def test_bootstrap_reproducible_and_contains_mean():
    rng = np.random.default_rng(3)
    labels = rng.choice(list(WEIGHTS), size=200)
    values = rng.normal(size=200) + (labels == "A")
    first = M.bootstrap_ci(values, labels, WEIGHTS, n_boot=400, seed=7)
    assert first == M.bootstrap_ci(values, labels, WEIGHTS, n_boot=400, seed=7)
    assert first != M.bootstrap_ci(values, labels, WEIGHTS, n_boot=400, seed=8)
    mean, _ = M.weighted_summary(values, labels, WEIGHTS)
    assert first[0] < mean < first[1]
    s = M.summarize(values, labels, WEIGHTS, n_boot=400, seed=7)
    assert (s.ci_low, s.ci_high) == first


def test_bootstrap_is_stratified():
    # one value per class: every resample reproduces the data, so the interval is a point
    low, high = M.bootstrap_ci([1.0, 2.0, 5.0], ["A", "B", "C"], WEIGHTS, n_boot=50, seed=0)
    expected = (0.5 * 1 + 0.3 * 2 + 0.2 * 5) / 1.0
    assert low == pytest.approx(expected) and high == pytest.approx(expected)


# -- predictive metrics -------------------------------------------------------------------------

def test_predictive_metrics_match_sklearn():
    rng = np.random.default_rng(4)
    labels = np.repeat(np.arange(3), 10)
    logits = rng.normal(size=(30, 3)) + 2 * np.eye(3)[labels]
    out = M.predictive_metrics(labels, logits, ["x", "y", "z"])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert out["auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    assert out["accuracy"] == pytest.approx((logits.argmax(1) == labels).mean())
    assert out["confusion"].sum() == 30 and np.trace(out["confusion"]) == (logits.argmax(1) == labels).sum()
    assert set(out["recall_per_class"]) == {"x", "y", "z"}


def test_predictive_metrics_absent_class_is_nan_without_warning():
    labels = np.array([0, 0, 1, 1])
    logits = np.array([[3.0, 0, 0], [0, 3.0, 0], [0, 3.0, 0], [0, 0, 3.0]])
    out = M.predictive_metrics(labels, logits)
    assert out["accuracy"] == 0.5
    assert math.isnan(out["recall_per_class"][2]) and math.isnan(out["auc_per_class"][2])
    assert out["recall_per_class"][0] == 0.5 and out["recall_per_class"][1] == 0.5
    np.testing.assert_array_equal(out["confusion"], [[1, 1, 0], [0, 1, 1], [0, 0, 0]])


# -- true-positive filter -----------------------------------------------------------------------

def predictions_frame():
    """3 samples, 2 archs, 2 epochs; s1 always right, s2 wrong for B at epoch 19, s3 wrong for A at 8."""
    rows = []
    truth = {"s1": ("Normal", 0), "s2": ("COVID-19", 1), "s3": ("Normal", 0)}
    wrong = {("B", 19, "s2"), ("A", 8, "s3")}
    for arch in "AB":
        for epoch in (8, 12, 19):
            for sid, (label, idx) in truth.items():
                hit = (arch, epoch, sid) not in wrong
                pred = idx if hit else 1 - idx
                rows.append({"arch": arch, "epoch": epoch, "sample_id": sid, "label": label,
                             "label_index": idx, "logit_0": float(pred == 0), "logit_1": float(pred == 1)})
    return pd.DataFrame(rows)


def test_true_positive_mask_by_hand():
    out = M.true_positive_mask(predictions_frame(), ["A", "B"], [8, 19])
    assert list(out["sample_id"]) == ["s1", "s2", "s3"]
    assert list(out["kept"]) == [True, False, False]
    assert list(out["correct_B_ep19"]) == [True, False, True]
    assert list(out["correct_A_ep08"]) == [True, True, False]
    assert list(out["label"]) == ["Normal", "COVID-19", "Normal"]
    # a different set of models and epochs
    only_b_early = M.true_positive_mask(predictions_frame(), ["B"], [8, 12])
    assert list(only_b_early["kept"]) == [True, True, True]
    assert list(M.true_positive_mask(predictions_frame(), ["A"], [19])["kept"]) == [True, True, True]


def test_true_positive_mask_missing_sample_is_an_error():
    frame = predictions_frame()
    frame = frame[~((frame["arch"] == "B") & (frame["epoch"] == 19) & (frame["sample_id"] == "s3"))]
    with pytest.raises(M.MetricInputError, match="B at epoch 19 lack 1 of 3"):
        M.true_positive_mask(frame, ["A", "B"], [8, 19])
    with pytest.raises(M.MetricInputError, match="epoch 7"):
        M.true_positive_mask(predictions_frame(), ["A"], [7])
