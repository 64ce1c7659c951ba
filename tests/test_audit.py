"""`cxrdrift audit`: a nested Sequential model end to end (maps checked by hand, report offline),
the gate's exit codes, bad inputs, identical models on unlabelled images, and the layouts."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from cxrdrift import audit, audit_data, audit_models, audit_report, cli, metrics
from cxrdrift.cams import postprocess

SIZE = 24
CLASSES = ("cat", "dog", "eel")


def base_model() -> keras.Model:
    """A small "pre-trained base": two convolutions, one down-sampling."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.MaxPooling2D(name="p1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="c2")(x)
    return keras.Model(inputs, x, name="base")


def nested_sequential(seed: int, head: str = "head") -> keras.Model:
    """The transfer-learning pattern: the base as one layer inside a Sequential model."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255.0, name="scale"),
                             base_model(), keras.layers.GlobalAveragePooling2D(name="pool"),
                             keras.layers.Dense(len(CLASSES), name=head)], name="classifier")


def write_images(folder: Path, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (SIZE + 6, SIZE + 6, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audit")
    data = root / "data"
    for k, name in enumerate(CLASSES):
        write_images(data / "test" / name, 4, k)
    (data / "test" / "dog" / "broken.png").write_bytes(b"not an image")
    before = nested_sequential(0)
    before.save(root / "before.keras")
    after = nested_sequential(0)
    head = after.get_layer("head")
    head.kernel.assign(head.kernel + tf.random.stateless_normal(head.kernel.shape, (1, 2)) * 0.5)
    after.save(root / "after.keras")
    other = keras.Sequential([keras.Input((SIZE, SIZE, 3)), base_model(), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(4)])
    other.save(root / "four_classes.keras")
    wider = keras.Sequential([keras.Input((SIZE + 8, SIZE + 8, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(len(CLASSES))])
    wider.save(root / "wider_input.keras")
    nested_sequential(0, head="classifier_head").save(root / "renamed.keras")  # same shapes, other names
    (root / "notes.keras").write_text("not a model")
    before.save_weights(root / "before.weights.h5")
    write_images(root / "flat", 5, 9)
    return {"root": root, "data": data, "before": root / "before.keras", "after": root / "after.keras",
            "four": root / "four_classes.keras", "junk": root / "notes.keras", "flat": root / "flat",
            "wider": root / "wider_input.keras", "renamed": root / "renamed.keras"}


@pytest.fixture(scope="module")
def audited(files) -> dict:
    out = files["root"] / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["audit", "--before", str(files["before"]), "--after", str(files["after"]),
                         "--data-dir", str(files["data"]), "--out", str(out), "-p", "n_boot", "50",
                         "-p", "methods", "layercam,gradcam", "--fail-if", "overlap_iou<-1"])
    return {"code": code, "out": out, "printed": printed.getvalue(),
            "summary": json.loads((out / "summary.json").read_text()), "images": pd.read_parquet(out / "images.parquet")}


def stream_pixels(rows: pd.DataFrame) -> np.ndarray:
    """The model inputs the audit streams for `rows` (no preprocessing)."""
    return np.concatenate([images for images, _ in audit_data.batches(rows, audit_models.preprocessing("none"),
                                                                      SIZE, 8)])


def hand_layercam(model: keras.Model, pixels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """LayerCAM at the nested base's output, computed from the model's own parts."""
    activations = model.get_layer("base")(model.get_layer("scale")(pixels))
    with tf.GradientTape() as tape:
        tape.watch(activations)
        logits = model.get_layer("head")(model.get_layer("pool")(activations))
        target = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
    gradients = tape.gradient(target, activations)
    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(gradients) * activations, axis=-1)).numpy()


def test_nested_sequential_audit_end_to_end(files, audited) -> None:
    summary, images = audited["summary"], audited["images"]
    assert audited["code"] == 0 and "undecodable: " + summary["skipped_files"][0] in audited["printed"]
    assert summary["layer"] == "base/c2"                       # reached inside the nested base
    assert summary["classes"] == list(CLASSES) and summary["class_order"] == audit_data.KERAS_ORDER
    assert summary["counts"]["images"] == 12 and summary["counts"]["skipped"] == 1
    assert summary["skipped_files"] == [str((files["data"] / "test" / "dog" / "broken.png").resolve())]
    frame = images[images["method"] == "layercam"].reset_index(drop=True)
    rows = audit_data.scan(files["data"], 3).frame
    rows = rows[rows["sample_id"].isin(frame["sample_id"])].reset_index(drop=True)
    pixels = stream_pixels(rows)
    models = {role: audit_models.load_model(files[role]) for role in ("before", "after")}
    labels = rows["label_index"].to_numpy()
    stored = np.load(audited["out"] / "maps.npz")
    maps = {}
    for role, model in models.items():
        maps[role] = hand_layercam(model, pixels, labels)
        np.testing.assert_allclose(stored[f"{role}.layercam"], maps[role], rtol=1e-4, atol=1e-6)
        predicted = np.asarray(model(pixels)).argmax(axis=1)
        np.testing.assert_array_equal(frame[f"pred_{role}"], predicted)
        assert summary["predictive"][role]["accuracy"] == pytest.approx(float((predicted == labels).mean()))
    expected = metrics.drift_metrics(postprocess(maps["before"], (SIZE, SIZE)), postprocess(maps["after"], (SIZE, SIZE)))
    for name in metrics.SUITE_METRICS:
        np.testing.assert_allclose(frame[name], expected[name], rtol=1e-4, atol=1e-6)
    changed = frame["pred_before"] != frame["pred_after"]
    assert summary["counts"]["changed_predictions"] == int(changed.sum())
    analysed = frame[frame["group"] == "correct under both"]
    weights = audit.inverse_frequency(frame["explained"])
    assert weights == pytest.approx({name: 1 / 3 for name in CLASSES})  # 4 decoded images each
    mean, _ = metrics.weighted_summary(analysed["overlap_iou"], analysed["explained"], weights)
    assert summary["statistics"]["overlap_iou"] == pytest.approx(mean)
    assert summary["statistics"]["layercam.overlap_iou"] == pytest.approx(mean)
    chance = summary["drift"]["layercam"]["overlap_iou"]["chance"]
    flagged = frame["flagged"] & (frame["group"] == "correct under both")
    np.testing.assert_array_equal(frame["flagged"], flagged & (frame["overlap_iou"] < chance))


def test_report_is_offline_and_says_what_was_audited(audited) -> None:
    from bs4 import BeautifulSoup

    page = (audited["out"] / "report.html").read_text()
    soup = BeautifulSoup(page, "html.parser")
    assert not soup.find_all("script") and not soup.find_all("link")
    sources = [tag.get("src") or tag.get("href") for tag in soup.find_all(src=True) + soup.find_all(href=True)]
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)  # figures inlined
    text = soup.get_text(" ")
    assert "base/c2" in text and "broken.png" in text and "image_dataset_from_directory" in text
    table = soup.find("h2", string="Which output is which class").find_next("table")
    cells = [[cell.get_text(strip=True) for cell in row.find_all("td")] for row in table.find_all("tr")[1:]]
    assert [row[:2] for row in cells] == [["0", "cat"], ["1", "dog"], ["2", "eel"]]
    assert (audited["out"] / "figures" / "scale.png").is_file()


def test_gate_exit_codes_and_messages(files, audited, capsys) -> None:
    statistics = audited["summary"]["statistics"]
    value = statistics["accuracy_after"]
    assert audit.failed_conditions(statistics, [f"accuracy_after<{value + 0.01}"]) == [
        f"accuracy_after = {value:.4g}, and the gate fails when accuracy_after < {value + 0.01:g}"]
    assert audit.failed_conditions(statistics, [f"accuracy_after<{value}", "images>=13"]) == []
    with pytest.raises(audit.AuditError, match="did you mean overlap_iou, adjusted_iou, "):
        audit.failed_conditions(statistics, ["iou<0.5"])
    with pytest.raises(audit.AuditError, match="not a condition"):
        audit.parse_condition("overlap_iou is small")
    (files["root"] / "gated").mkdir()
    (files["root"] / "gated" / "report.html").write_text("an earlier audit's report")
    code = cli.main(["audit", "--before", str(files["before"]), "--after", str(files["after"]), "--data-dir",
                     str(files["data"]), "--out", str(files["root"] / "gated"), "--no-report", "-p", "n_boot", "0",
                     "-p", "ceiling_images", "0", "--fail-if", "images>=12", "--fail-if", "skipped>5"])
    assert code == audit.EXIT_GATE == 3
    assert "audit gate failed: images = 12, and the gate fails when images >= 12" in capsys.readouterr().err
    assert not (files["root"] / "gated" / "report.html").exists()   # no stale report beside new numbers


@pytest.mark.parametrize("overrides, extra, message", [
    ({"--before": "{junk}"}, [], "is not a Keras model file: a .keras file is a zip archive"),
    ({"--before": "{root}/before.weights.h5"}, [], "holds weights only, not a model"),
    ({"--before": "{root}/missing.keras"}, [], "does not exist"),
    ({"--before": "{four}"}, [], "different classes: 4 outputs before, 3 after"),
    ({"--before": "{wider}"}, [], "different input sizes: (32, 32, 3) before, (24, 24, 3) after"),
    ({"--before": "{renamed}"}, [], "differ in their layers: classifier_head (Dense) before, head (Dense) after"),
    ({}, ["--layer", "pool"], "not a spatial map larger than 1x1; name one of the last spatial layers: scale, base/c1"),
    ({}, ["--layer", "base/c3"], "no layer 'base/c3'; close names: base/c2, base/c1"),
    ({}, ["--classes", "cat,dog"], "models have 3 outputs"),
    ({}, ["--classes", "cat,dog,fox"], "class(es) ['eel'] that --classes"),
    ({"--data-dir": "{flat}"}, [], "no labels (flat folder (unlabelled)): explain the later model's predictions"),
    ({}, ["--fail-if", "overlap_iou<<1"], "not a condition"),
    ({}, ["-p", "threshold", "high"], "threshold='high' is not a float"),
    ({}, ["-p", "methods", "layercam,saliency"], "unknown CAM method 'saliency'"),
])
def test_bad_input_is_one_line_and_exit_2(files, capsys, overrides, extra, message) -> None:
    options = {"--before": str(files["before"]), "--after": str(files["after"]), "--data-dir": str(files["data"]),
               "--out": str(files["root"] / "bad")}
    options.update({flag: value.format(**files) for flag, value in overrides.items()})
    argv = ["audit", *[x for pair in options.items() for x in pair], "--no-report", *extra]
    assert cli.main(argv) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cxrdrift: error: ") and message in err


def test_a_second_audit_with_another_threshold_scores_the_stored_maps(files, tmp_path, monkeypatch) -> None:
    settings = audit.AuditSettings(n_boot=20, methods=("layercam", "gradcampp"), ceiling_images=5)
    audit.run_audit(files["before"], files["after"], files["data"], tmp_path / "again", settings=settings, report=False)
    stricter = dataclasses.replace(settings, threshold=0.7)
    fresh = audit.run_audit(files["before"], files["after"], files["data"], tmp_path / "fresh", settings=stricter,
                            report=False)

    def no_pass(*args, **kwargs):
        raise AssertionError("the maps were computed again")

    monkeypatch.setattr(audit, "stream_maps", no_pass)
    reused = audit.run_audit(files["before"], files["after"], files["data"], tmp_path / "again", settings=stricter,
                             report=False)
    for name in ("images.parquet", "ceiling.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "again" / name), pd.read_parquet(tmp_path / "fresh" / name))
    assert reused.summary["statistics"] == fresh.summary["statistics"]
    # a map setting, or another model, maps again
    with pytest.raises(AssertionError, match="computed again"):
        audit.run_audit(files["before"], files["after"], files["data"], tmp_path / "again",
                        settings=dataclasses.replace(stricter, alpha_norm=True), report=False)
    with pytest.raises(AssertionError, match="computed again"):
        audit.run_audit(files["after"], files["after"], files["data"], tmp_path / "again", settings=stricter,
                        report=False)


def test_identical_models_on_unlabelled_images(files, tmp_path) -> None:
    with pytest.raises(audit.AuditError, match="--target predicted"):
        audit.run_audit(files["after"], files["after"], files["flat"], tmp_path, report=False)
    result = audit.run_audit(files["after"], files["after"], files["flat"], tmp_path, target="predicted",
                             settings=audit.AuditSettings(n_boot=0, methods=("layercam",), ceiling_images=2),
                             report=False)
    summary = result.summary
    assert summary["identical"] and not summary["labelled"] and summary["layout"] == "flat folder (unlabelled)"
    assert summary["counts"]["analysed"] == 5 and summary["counts"]["changed_predictions"] == 0
    drift = summary["drift"]["layercam"]
    assert drift["overlap_iou"]["mean"] == 1.0 and drift["spatial_displacement"]["mean"] == 0.0
    assert drift["pattern_correlation"]["mean"] == pytest.approx(1.0)
    assert summary["counts"]["flagged"] == 0
    images = pd.read_parquet(tmp_path / "images.parquet")
    model = audit_models.load_model(files["after"])
    pixels = stream_pixels(audit_data.scan(files["flat"], 3).frame)
    np.testing.assert_array_equal(images["explained"], np.asarray(summary["classes"])[np.asarray(model(pixels)).argmax(1)])
    assert "the two models are identical" in audit.describe(result)
    assert len(pd.read_parquet(tmp_path / "ceiling.parquet")) == 2


def test_layers_of_nested_functional_models_and_the_ceiling() -> None:
    inputs = keras.Input((SIZE, SIZE, 3))
    x = base_model()(keras.layers.Rescaling(1 / 255.0)(inputs), training=False)
    x = keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    assert audit_models.default_layer(model) == "base/c2"
    assert audit_models.layer_path(model, "c1") == "base/c1"       # an inner name, unique, is enough
    features = audit_models.feature_model(model, "base/c1")
    probe = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    activations, logits = features(probe)
    assert tuple(activations.shape) == (2, SIZE, SIZE, 4)
    np.testing.assert_allclose(logits, model(probe), rtol=1e-5)
    copy = audit_models.randomized_copy(model, "base/c2", seed=3)
    kept = {path: np.array_equal(layer.get_weights()[0], other.get_weights()[0])
            for (path, layer), (_, other) in zip(audit_models.walk(model), audit_models.walk(copy)) if layer.weights}
    assert kept == {"base/c1": True, "base/c2": False, "head": False}  # the last stage and the head


def test_layouts_and_class_order(tmp_path) -> None:
    write_images(tmp_path / "folders" / "b_class", 2, 0)
    write_images(tmp_path / "folders" / "A_class", 1, 1)
    found = audit_data.scan(tmp_path / "folders", 2)
    assert found.layout == "class folders" and found.classes == ("A_class", "b_class")   # Python's sort, as Keras
    assert list(found.frame["label_index"]) == [0, 1, 1]
    given = audit_data.scan(tmp_path / "folders", 3, classes=["b_class", "unused", "A_class"])
    assert given.order == audit_data.GIVEN_ORDER and list(given.frame["label_index"]) == [2, 0, 0]
    with pytest.raises(audit_data.AuditDataError, match="pass --classes"):
        audit_data.scan(tmp_path / "folders", 3)
    (tmp_path / "manifest").mkdir()
    write_images(tmp_path / "manifest" / "img", 3, 2)
    pd.DataFrame({"path": ["img/00.png", "img/01.png", "img/02.png"], "label": ["x", "y", "x"],
                  "split": ["test", "validation", "test"]}).to_csv(tmp_path / "manifest" / "manifest.csv", index=False)
    manifest = audit_data.scan(tmp_path / "manifest", 2, split="val", classes=["x", "y"])
    assert manifest.layout == "manifest" and list(manifest.frame["sample_id"]) == ["img/01.png"]
    with pytest.raises(audit_data.AuditDataError, match="has 1 class"):
        audit_data.scan(tmp_path / "manifest", 2)
    (tmp_path / "empty").mkdir()
    with pytest.raises(audit_data.AuditDataError, match="no images"):
        audit_data.scan(tmp_path / "empty", 2)


def test_render_html_keeps_outputs_and_drops_code() -> None:
    notebook = {"cells": [
        {"cell_type": "markdown", "source": ["# Title\n", "some *text*"]},
        {"cell_type": "code", "source": "secret_code()", "outputs": [
            {"output_type": "stream", "name": "stderr", "text": "progress"},
            {"output_type": "display_data", "data": {"text/markdown": "**bold**", "text/plain": "x"}},
            {"output_type": "execute_result", "data": {"text/html": "<table><tr><td>1</td></tr></table>"}},
            {"output_type": "display_data", "data": {"image/png": "iVBOR\n", "text/plain": "<Figure>"}}]}]}
    page = audit_report.render_html(notebook, "t<1>")
    assert "<h1>Title</h1>" in page and "<em>text</em>" in page and "<strong>bold</strong>" in page
    assert "<td>1</td>" in page and 'src="data:image/png;base64,iVBOR"' in page
    assert "secret_code" not in page and "progress" not in page and "<title>t&lt;1&gt;</title>" in page


def test_undecodable_files_are_found_dicom_included(tmp_path) -> None:
    write_images(tmp_path, 1, 0)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but cut short")
    (tmp_path / "scan.dcm").write_bytes(b"not a DICOM file")      # decoded by cxrdrift.dicom, as the study does
    frame = pd.DataFrame({"path": [str(tmp_path / name) for name in ("00.png", "broken.png", "scan.dcm")]})
    assert audit_data.undecodable(frame) == [1, 2]
