"""Degenerate outcomes of weak or unlucky runs: each ends in a sentence, `cxrdrift run` exits 0 with
a summary naming what could not be measured, and the chapters after the CAM stage still execute.

The matrix uses the hand-made run directory of test_drift (two architectures, two methods, 3x3 maps)
with its predictions or maps changed: no test image kept, images of one class kept (the models
predict nothing else), every map of one architecture flat under one method. Training and the CAM
stage are replaced by no-ops (the hand-made run has no checkpoints); every later stage runs.
"""
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from test_drift import ARCHS, METHODS, make_run

from cxrdrift import book, cams, cli, drift, findings, gaps, metrics, train
from cxrdrift.artifacts import RunPaths, read_npz, write_npz, write_parquet
from cxrdrift.data import CLASSES

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def repredict(config, predict) -> None:
    """Rewrite predictions.parquet so that `predict(arch, epoch, label_index)` is each model's answer."""
    paths = RunPaths.of(config)
    frame = pd.read_parquet(paths.predictions)
    predicted = [predict(a, e, li) for a, e, li in zip(frame["arch"], frame["epoch"], frame["label_index"])]
    for c in range(len(CLASSES)):
        frame[f"logit_{c}"] = [float(p == c) for p in predicted]
    write_parquet(paths.predictions, frame)


def flatten(config, arch: str, method: str) -> None:
    """Make every raw `method` map of `arch` at the earlier compared epoch constant (degenerate)."""
    path = RunPaths.of(config).cams(arch, config.early_epoch)
    maps = read_npz(path)
    maps[method] = np.full_like(maps[method], 0.5)
    write_npz(path, maps)


def zero_kept(config) -> None:
    repredict(config, lambda arch, epoch, li: (li + 1) % 5 if (arch, epoch) == ("ResNet50V2", 3) else li)


def one_class_kept(config) -> None:
    repredict(config, lambda arch, epoch, li: 0)  # every model answers "Normal"


def flat_resnet_gradcampp(config) -> None:
    flatten(config, "ResNet50V2", "gradcampp")


def run_cli(config, monkeypatch, capsys) -> tuple[int, str]:
    """`cxrdrift run` on the hand-made run (training and CAMs are no-ops: the maps are on disk)."""
    monkeypatch.setattr(train, "run_training", lambda c, force=False: None)
    monkeypatch.setattr(cams, "run_cam_stage", lambda c, force=False: [])
    argv = ["run", "--profile", "smoke", "--data-dir", str(RunPaths.of(config).data),
            *(item for name, value in parameters(config).items() if name not in ("profile", "data_dir")
              for item in ("-p", name, ",".join(value) if isinstance(value, list) else str(value)))]
    code = cli.main(argv)
    return code, capsys.readouterr().out


def parameters(config) -> dict:
    return {"profile": "smoke", "run_dir": config.run_dir, "data_dir": str(RunPaths.of(config).data),
            "architectures": list(ARCHS), "cam_methods": list(METHODS), "cam_epochs": "compared",
            "cam_samples": "true_positives", "image_size": 8, "bootstrap_samples": 50,
            "cam_layers": list(config.cam_layers),
            "randomization_check": False}  # the hand-made run has no checkpoints


def execute(config, chapter: str, tmp_path) -> list[dict]:
    """Execute a chapter on the run; its outputs (no error among them)."""
    output = book.execute_notebook(NOTEBOOKS / f"{chapter}.md", tmp_path / f"{chapter}.ipynb", parameters(config),
                                   progress_bar=False)
    outputs = [o for cell in nbformat.read(output, as_version=4).cells for o in cell.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, f"{chapter}: {errors[0]['ename']}: {errors[0]['evalue']}"
    warned = [o["text"] for o in outputs if o.get("name") == "stderr" and "Warning" in o.get("text", "")]
    assert not warned, f"{chapter} warns: {warned[0][:300]}"
    return outputs


def shown(outputs: list[dict]) -> str:
    """Every Markdown and printed text of a chapter's outputs."""
    return "\n".join(o.get("data", {}).get("text/markdown", "") + o.get("text", "") for o in outputs)


MATRIX = {
    # scenario: (how, summary must say, chapters, what each chapter must say)
    "zero kept": (zero_kept, ["No test image passed the true-positive filter (0 of 10)",
                              "5 of 5 of the paper's findings are not testable"],
                  {"03_true_positive_filtering": "No test image passed the true-positive filter",
                   "06_drift": "Table 3 is empty. No test image passed",
                   "07_discussion": "No finding can be tested on this run",
                   "08_beyond": "No ceiling to measure. No test image passed"}),
    "one class kept": (one_class_kept, ["come from 1 of 5 classes: Pneumonia, Tuberculosis, COVID-19 and "
                                        "Lung Opacity kept none",
                                        "DenseNet201 never predicts Pneumonia, Tuberculosis, COVID-19 and Lung Opacity"],
                       {"03_true_positive_filtering": "kept none",
                        "06_drift": "over the classes present (Normal)"}),
    "flat maps of one architecture": (flat_resnet_gradcampp, ["Every map pair of ResNet50V2 under Grad-CAM++ is "
                                                              "degenerate"],
                                      {"06_drift": "Every map pair of ResNet50V2 under Grad-CAM++ is degenerate",
                                       "07_discussion": "not testable"}),
}


@pytest.mark.parametrize("scenario", list(MATRIX))
def test_degenerate_run_finishes_with_a_summary_and_its_chapters_execute(scenario, tmp_path, monkeypatch, capsys):
    how, summary, chapters = MATRIX[scenario]
    config, _, _ = make_run(tmp_path)
    how(config)
    code, out = run_cli(config, monkeypatch, capsys)
    assert code == 0
    last = out[out.index("[smoke] finished"):]
    assert "could not be measured" in last
    for sentence in summary:
        assert sentence in last, f"{scenario}: summary lacks {sentence!r}:\n{last}"
    assert RunPaths.of(config).drift.exists()
    for chapter, sentence in chapters.items():
        assert sentence in shown(execute(config, chapter, tmp_path)), f"{chapter} does not say {sentence!r}"


def test_a_run_without_degenerate_outcomes_names_only_what_it_lacks(run, monkeypatch, capsys):
    config, _, _ = run
    code, out = run_cli(config, monkeypatch, capsys)
    # the hand-made run has two architectures: the findings, which need all three, are untestable
    assert code == 0 and "No test image" not in out and "degenerate" not in out
    assert "5 of 5 of the paper's findings are not testable" in out
    assert "this run has no LayerCAM InceptionV3, Grad-CAM++ InceptionV3" in out


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path)


# -- the pieces, one outcome at a time -----------------------------------------------------------

def test_empty_batches_give_empty_metrics():
    empty = np.zeros((0, 4, 5))
    values = metrics.drift_metrics(empty, empty)
    assert all(v.shape == (0,) for v in values.values())
    assert metrics.entropy(empty).shape == (0,)


def test_a_single_value_gets_no_bootstrap_interval():
    one = metrics.summarize([0.5, np.nan], ["Normal", "Normal"], {"Normal": 1.0}, n_boot=20)
    assert one.mean == 0.5 and one.n == 1 and np.isnan(one.ci_low) and np.isnan(one.ci_high)
    two = metrics.summarize([0.5, 0.7], ["Normal", "Normal"], {"Normal": 1.0}, n_boot=20)
    assert two.ci_low <= two.ci_high and np.isfinite(two.ci_low)


def test_a_class_never_predicted_has_defined_or_marked_per_class_scores_without_warnings():
    labels = np.array([0, 0, 1, 1, 3])
    logits = np.eye(5)[[0, 0, 0, 0, 0]]  # always class 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning fails the test
        scores = metrics.predictive_metrics(labels, logits)
    assert scores["f1_per_class"][1] == 0.0 and scores["recall_per_class"][1] == 0.0  # present, never predicted
    assert np.isnan(scores["f1_per_class"][2]) and np.isnan(scores["auc_per_class"][2])  # absent
    assert gaps.never_predicted_sentence(_predictions(labels, logits), ["A"], [1]) == (
        "At a compared epoch, A never predicts Pneumonia and COVID-19. An image of a class that a compared "
        "model never predicts cannot pass the true-positive filter; that model's recall and F1 for the class are 0.")


def _predictions(labels, logits) -> pd.DataFrame:
    return pd.DataFrame({"arch": "A", "epoch": 1, "sample_id": [f"s{i}" for i in range(len(labels))],
                         "label": [CLASSES[i] for i in labels], "label_index": labels,
                         **{f"logit_{c}": logits[:, c] for c in range(5)}})


def test_kept_sentence_names_nothing_kept_or_absent_classes():
    tp = pd.DataFrame({"label": ["Normal", "Normal", "COVID-19"], "kept": [True, True, False]})
    assert gaps.kept_sentence(tp.assign(kept=True)) is None
    assert gaps.kept_sentence(tp.assign(kept=False)).startswith("No test image passed the true-positive filter (0 of 3)")
    assert "2 kept test images (of 3) come from 1 of 2 classes: COVID-19 kept none" in gaps.kept_sentence(tp)
    assert drift.absent_classes(tp) == ["COVID-19"]


def test_cells_with_one_scored_image_are_named_as_too_few_for_an_interval():
    table = pd.DataFrame({"method": ["layercam", "gradcampp", "gradcampp"], "arch": ["A", "A", "B"],
                          "metric": "overlap_iou", "n": [5, 1, 0]})
    assert gaps.few_sentence(table) == ("Too few scored images for a bootstrap interval in A under Grad-CAM++ (1): "
                                        "a resample of one image repeats that image, so no interval is given.")
    assert gaps.few_sentence(table.assign(n=[5, 2, 0])) is None


def test_ranking_without_enough_scored_images_is_not_testable():
    weights = {"Normal": 1.0}
    rows = pd.DataFrame({"method": ["layercam", "layercam"], "arch": ["A", "B"], "sample_id": ["s0", "s0"],
                         "label": ["Normal", "Normal"], "overlap_iou": [0.5, 0.4]})
    two = drift.ranking_uncertainty(pd.concat([rows, rows.assign(sample_id="s1")]), weights, n_boot=10, seed=0)
    assert two.n_samples == 2 and two.describe() == ("10 paired bootstrap resamples of 2 images: some pair of "
                                                     "architectures ordered differently by two methods in 0%.")
    one = drift.ranking_uncertainty(rows, weights, n_boot=10, seed=0)
    assert one.n_samples == 1 and np.isnan(one.reversal_probability) and one.orders.empty
    assert one.describe() == "Not testable: 1 compared image with a scored map, fewer than the 2 a bootstrap needs."
    none = drift.ranking_uncertainty(rows.iloc[:0], weights, n_boot=10, seed=0)
    assert none.n_samples == 0 and none.describe().startswith("Not testable: 0 compared images")
    assert drift.ranking_reversal(drift.summary_table(rows.iloc[:0].assign(
        **{m: [] for m in metrics.DRIFT_METRICS}), weights, 0, 0)).describe().startswith("Not testable")


def test_an_untestable_finding_gives_the_count_it_found():
    rows = [{"method": m, "arch": a, "sample_id": f"s{i}", "label": "Normal", "overlap_iou": 0.5,
             "spatial_displacement": 0.1, "chance_spatial_displacement": 0.3}
            for m, a in findings.CELLS for i in range(7)]
    table = pd.DataFrame(rows)
    assert gaps.findings_sentence(table) == ("5 of 5 of the paper's findings are not testable: 7 images are scored "
                                             "in every cell of the paper's two methods, fewer than 20.")
    assert gaps.findings_sentence(table.iloc[:0]).endswith("not testable: no compared image has maps.")
    partial = table[table["arch"] != "InceptionV3"]
    assert gaps.findings_sentence(partial).endswith("this run has no LayerCAM InceptionV3, Grad-CAM++ InceptionV3.")
    many = pd.concat([table.assign(sample_id=table["sample_id"] + f"_{k}") for k in range(3)])
    assert gaps.findings_sentence(many) is None


def test_per_class_table_lists_absent_classes_with_no_images(run):
    config, _, _ = run
    one_class_kept(config)
    drift.run_true_positive_filter(config)
    drift.run_drift_stage(config)
    table = drift.per_class_table(config)
    absent = table[table["label"] != "Normal"]
    assert set(absent["label"]) == set(CLASSES) - {"Normal"}
    assert (absent["n"] == 0).all() and absent["mean"].isna().all()
    assert (table.loc[table["label"] == "Normal", "n"] > 0).all()


def test_flat_cells_are_found_and_left_out_of_the_ranking(run):
    config, _, _ = run
    flat_resnet_gradcampp(config)
    drift.run_true_positive_filter(config)
    frame = drift.run_drift_stage(config)
    assert gaps.flat_cells(frame) == [("gradcampp", "ResNet50V2")]
    table = drift.table3(config)
    assert drift.ranking(table)["gradcampp"] == ["DenseNet201"]
    wide = drift.table3_wide(table)
    assert wide.loc[("Grad-CAM++", "ResNet50V2"), "Overlap IoU"] == "n/a"
    assert wide.loc[("Grad-CAM++", "ResNet50V2"), "n"] == "0 of 9"
