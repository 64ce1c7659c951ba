"""The data layer: aliases, layouts, manifest, every check finding, weights, pipeline, prepare."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrdrift import data
from cxrdrift.config import profile
from cxrdrift.data import CLASSES, DatasetError
from cxrdrift.models import preprocess_input

RESNET_INPUT = preprocess_input("ResNet50V2")

FOLDERS = {"Normal": "NORMAL", "Pneumonia": "PNEUMONIA", "Tuberculosis": "TB",
           "COVID-19": "covid19", "Lung Opacity": "Lung_Opacity"}


def write_image(path: Path, seed: int, shape=(12, 14), suffix_format: str | None = None) -> np.ndarray:
    """A random image of `shape` (gray, RGB or RGBA by the last axis) written to `path`."""
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=suffix_format)
    return pixels


def make_tree(root: Path, per_class: int = 2, splits=("train", "val", "test")) -> Path:
    """Folder dataset with distinct random gray images, class folders under alias names (images
    of data.MIN_SIDE px on the short side, the smallest the check accepts without a warning)."""
    seed = 0
    for split in splits:
        for label in CLASSES:
            for i in range(per_class):
                seed += 1
                write_image(root / split / FOLDERS[label] / f"img_{i}.png", seed, (data.MIN_SIDE, data.MIN_SIDE + 2))
    return root


def problems(report: data.CheckReport, severity: str) -> list[str]:
    return [p.message for p in report.problems if p.severity == severity]


# -- aliases ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("NORMAL", "Normal"), ("normal", "Normal"), ("PNEUMONIA", "Pneumonia"),
    ("TB", "Tuberculosis"), ("tuberculosis", "Tuberculosis"), ("Tuberculosis", "Tuberculosis"),
    ("COVID", "COVID-19"), ("covid19", "COVID-19"), ("COVID-19", "COVID-19"), ("Covid_19", "COVID-19"),
    ("Lung_Opacity", "Lung Opacity"), ("lung opacity", "Lung Opacity"), ("Lung-Opacity", "Lung Opacity"),
    ("LUNG OPACITY", "Lung Opacity"),
])
def test_class_aliases(name, expected):
    assert data.canonical_class(name) == expected


@pytest.mark.parametrize("name", ["Viral Pneumonia", "cat", "", "covid-20"])
def test_unknown_class_is_a_dataset_error(name):
    with pytest.raises(DatasetError, match="unknown class name"):
        data.canonical_class(name)


@pytest.mark.parametrize("name,expected", [("train", "train"), ("VAL", "val"), ("validation", "val"),
                                           ("valid", "val"), ("Test", "test")])
def test_split_aliases(name, expected):
    assert data.canonical_split(name) == expected
    with pytest.raises(DatasetError, match="unknown split name 'dev'"):
        data.canonical_split("dev")


# -- layouts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("val_name", ["val", "validation", "valid"])
def test_folder_layout(tmp_path, val_name):
    root = make_tree(tmp_path / "ds")
    if val_name != "val":
        (root / "val").rename(root / val_name)
    # masks/ of the synthetic generator is not a split
    write_image(root / "masks" / "test" / "NORMAL" / "img_0.png", 99)
    index = data.load_index(root)
    assert list(index.frame.columns) == ["sample_id", "path", "label", "label_index", "split"]
    assert index.counts().to_numpy().tolist() == [[2] * 5] * 3
    assert list(index.counts().columns) == list(CLASSES)
    test = index.split("test")
    assert test["sample_id"].tolist() == sorted(test["sample_id"])
    assert test["sample_id"].iloc[0] == "test/Lung_Opacity/img_0.png"
    assert set(index.split("val")["sample_id"].str.split("/").str[0]) == {val_name}
    row = test[test["sample_id"] == "test/TB/img_1.png"].iloc[0]
    assert (row["label"], row["label_index"]) == ("Tuberculosis", 2)
    assert Path(row["path"]).is_absolute() and Path(row["path"]).is_file()
    assert index.mask_path("test/NORMAL/img_0.png") == root.resolve() / "masks/test/NORMAL/img_0.png"
    assert index.mask_path("test/NORMAL/img_1.png") is None


def test_manifest(tmp_path):
    root = make_tree(tmp_path / "ds")
    (root / "val").rename(root / "other")
    frame = data.load_index(make_tree(tmp_path / "ref")).frame
    rows = [(Path(p).relative_to((tmp_path / "ref").resolve()).as_posix(), label, split)
            for p, label, split in frame[["path", "label", "split"]].itertuples(index=False)]
    manifest = pd.DataFrame(rows, columns=["path", "label", "split"])
    manifest["path"] = manifest["path"].str.replace("val/", "other/", regex=False)
    manifest.loc[manifest["label"] == "COVID-19", "label"] = "covid"
    manifest.loc[manifest["split"] == "val", "split"] = "validation"
    manifest.to_csv(root / "manifest.csv", index=False)
    for source in (root, root / "manifest.csv"):
        index = data.load_index(source)
        assert index.root == root.resolve()
        assert index.counts().to_numpy().tolist() == [[2] * 5] * 3
        assert index.split("val")["sample_id"].iloc[0] == "other/Lung_Opacity/img_0.png"
        assert set(index.frame["label"]) == set(CLASSES)


def test_manifest_problems(tmp_path):
    root = make_tree(tmp_path / "ds", per_class=1)
    good = [("train/NORMAL/img_0.png", "Normal", "train")]
    pd.DataFrame(good + [("train/TB/img_0.png", "Cat", "train"),
                         ("nothere.png", "Normal", "test"),
                         ("val/TB/img_0.png", "TB", "dev")],
                 columns=["path", "label", "split"]).to_csv(root / "manifest.csv", index=False)
    messages = problems(data.check(root), "error")
    assert "manifest manifest.csv: unknown label 'Cat' on line(s) 3; expected one of " \
           "Normal, Pneumonia, Tuberculosis, COVID-19, Lung Opacity" in messages
    assert "manifest manifest.csv: unknown split 'dev' on line(s) 5; expected train, val or test" in messages
    assert "manifest manifest.csv: 1 listed file(s) do not exist" in messages
    missing = [p for p in data.check(root).problems if "do not exist" in p.message][0]
    assert missing.paths == (str(root / "nothere.png"),)
    with pytest.raises(DatasetError, match="unknown label 'Cat'"):
        data.load_index(root)
    pd.DataFrame({"file": ["a.png"], "label": ["Normal"]}).to_csv(root / "manifest.csv", index=False)
    report = data.check(root)
    assert not report.ok
    assert problems(report, "error") == [
        f"manifest {root / 'manifest.csv'} lacks column(s) path, split; it needs the header "
        "path,label,split (it has file,label)"]


# -- check -----------------------------------------------------------------------------------

def test_check_clean_dataset(tmp_path):
    root = make_tree(tmp_path / "ds")
    report = data.check(root)
    assert report.ok and report.problems == []
    assert report.counts.loc["test", "COVID-19"] == 2
    text = data.format_report(report)
    assert "OK: the dataset is usable (0 warning(s))." in text
    assert "total" in text and "30" in text


def test_check_corrupt_image(tmp_path):
    root = make_tree(tmp_path / "ds")
    bad = root / "train" / "TB" / "img_0.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG
    (root / "test" / "NORMAL" / "text.jpg").write_text("not an image")
    report = data.check(root)
    assert not report.ok
    errors = problems(report, "error")
    assert "unreadable image train/TB/img_0.png: is corrupt (a damaged or truncated PNG file)" in errors
    assert "unreadable image test/NORMAL/text.jpg: is not a PNG or JPEG image (unrecognised content)" \
        in errors
    corrupt = [p for p in report.errors if "train/TB/img_0.png" in p.message][0]
    assert corrupt.paths == (str(bad.resolve()),)
    assert "NOT USABLE: 2 error(s), 0 warning(s)." in data.format_report(report)


def test_check_unknown_class_missing_split_empty_class(tmp_path):
    root = make_tree(tmp_path / "ds", splits=("train", "test"))
    write_image(root / "train" / "Viral Pneumonia" / "v.png", 500)
    for f in (root / "test" / "TB").iterdir():
        f.unlink()
    report = data.check(root)
    assert not report.ok
    errors = problems(report, "error")
    assert f"split 'val' is missing: expected a folder {root / 'val'} (for val also validation/ or valid/)" \
        in errors
    assert ("unknown class folder train/Viral Pneumonia/; expected one of Normal, Pneumonia, Tuberculosis, "
            "COVID-19, Lung Opacity (or an alias such as COVID, TB, Lung_Opacity)") in errors
    assert "empty class: split 'test' has no 'Tuberculosis' images (its folder is empty)" in errors
    assert len(errors) == 3
    text = data.format_report(report)
    assert "NOT USABLE: 3 error(s)" in text
    with pytest.raises(DatasetError, match="split 'val' is missing"):
        data.load_index(root)


def test_empty_class_in_val_is_a_warning(tmp_path):
    root = make_tree(tmp_path / "ds")
    for f in (root / "val" / "TB").iterdir():
        f.unlink()
    report = data.check(root)
    assert report.ok
    assert problems(report, "warning") == ["empty class: split 'val' has no 'Tuberculosis' images "
                                           "(its folder is empty)"]


def test_check_non_image_file_is_a_warning(tmp_path):
    root = make_tree(tmp_path / "ds")
    (root / "train" / "NORMAL" / "notes.txt").write_text("hello")
    report = data.check(root)
    assert report.ok
    assert problems(report, "warning") == ["not an image file (ignored): train/NORMAL/notes.txt"]
    assert report.warnings[0].paths == (str(root / "train" / "NORMAL" / "notes.txt"),)
    assert "notes.txt" not in "".join(data.load_index(root).frame["path"])


def test_check_duplicate_across_splits(tmp_path):
    root = make_tree(tmp_path / "ds")
    source = root / "train" / "covid19" / "img_1.png"
    (root / "test" / "covid19" / "copy.png").write_bytes(source.read_bytes())
    report = data.check(root)
    assert not report.ok
    assert problems(report, "error") == [
        "the same image is in splits train and test: train/covid19/img_1.png, test/covid19/copy.png"]
    assert set(report.errors[0].paths) == {str(source.resolve()),
                                           str((root / "test" / "covid19" / "copy.png").resolve())}


def test_check_nonexistent_root(tmp_path):
    report = data.check(tmp_path / "nowhere")
    assert not report.ok
    assert problems(report, "error") == [f"dataset root {tmp_path / 'nowhere'} does not exist"]
    assert report.counts.to_numpy().sum() == 0
    assert "NOT USABLE: 1 error(s)" in data.format_report(report)
    with pytest.raises(DatasetError, match="does not exist"):
        data.load_index(tmp_path / "nowhere")


# -- weights ---------------------------------------------------------------------------------

def test_inverse_frequency_weights_reproduce_table1():
    weights = data.inverse_frequency_weights(data.PAPER_TEST_COUNTS)
    assert list(weights) == list(CLASSES)
    assert [round(w, 3) for w in weights.values()] == [0.235, 0.087, 0.528, 0.089, 0.062]
    assert sum(weights.values()) == pytest.approx(1.0)
    table = data.class_table(data.PAPER_TEST_COUNTS)
    assert table["%"].round(1).tolist() == [9.5, 25.5, 4.2, 25.0, 35.8]


def test_inverse_frequency_weights_hand_computed_and_errors():
    assert data.inverse_frequency_weights({"Normal": 1, "COVID-19": 3}) == pytest.approx(
        {"Normal": 0.75, "COVID-19": 0.25})
    with pytest.raises(DatasetError, match="class 'Normal' has count 0"):
        data.inverse_frequency_weights({"Normal": 0, "Pneumonia": 3})
    with pytest.raises(DatasetError, match="has count -2"):
        data.inverse_frequency_weights({"Normal": -2})
    with pytest.raises(DatasetError, match="unknown class 'Cat'"):
        data.inverse_frequency_weights({"Normal": 2, "Cat": 3})


# -- pipeline --------------------------------------------------------------------------------

def test_decoding_gray_rgba_jpeg_uppercase(tmp_path):
    gray = write_image(tmp_path / "g.png", 1, (8, 8))
    rgba = write_image(tmp_path / "a.PNG", 2, (8, 8, 4), "PNG")
    write_image(tmp_path / "c.JPG", 3, (8, 8, 3), "JPEG")
    write_image(tmp_path / "d.jpeg", 4, (8, 8), "JPEG")
    frame = pd.DataFrame({"path": [str(tmp_path / n) for n in ("g.png", "a.PNG", "c.JPG", "d.jpeg")],
                          "label_index": [0, 1, 2, 3]})
    images = data.load_images(frame, 8)
    assert images.shape == (4, 8, 8, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images[0], np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_array_equal(images[1], rgba[..., :3])
    # JPEG: agree with PIL's decoder (IDCT implementations may differ by a grey level or two)
    for row, name in ((2, "c.JPG"), (3, "d.jpeg")):
        reference = np.asarray(Image.open(tmp_path / name).convert("RGB"), dtype=int)
        assert np.abs(images[row].astype(int) - reference).max() <= 3
    assert (images[3][..., 0] == images[3][..., 2]).all()  # gray JPEG -> 3 equal channels


def test_resize_is_bilinear(tmp_path):
    write_image(tmp_path / "g.png", 1, (8, 8))
    frame = pd.DataFrame({"path": [str(tmp_path / "g.png")], "label_index": [0]})
    import tensorflow as tf
    pixels = np.asarray(Image.open(tmp_path / "g.png"), np.float32)[None, ..., None]
    expected = np.round(tf.image.resize(pixels, (5, 5), method="bilinear").numpy())[0, ..., 0]
    np.testing.assert_array_equal(data.load_images(frame, 5)[0, ..., 1], expected.astype(np.uint8))


@pytest.mark.parametrize("arch", ["DenseNet201", "ResNet50V2", "InceptionV3"])
def test_make_dataset_applies_backbone_preprocessing(tmp_path, arch):
    index = data.load_index(make_tree(tmp_path / "ds", per_class=1))
    test = index.split("test")
    batches = list(data.make_dataset(test, preprocess_input(arch), 16, 3).as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [3, 2]
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert images.dtype == np.float32 and labels.dtype == np.int32 and images.shape == (5, 16, 16, 3)
    expected = preprocess_input(arch)(data.load_images(test, 16).astype(np.float32))
    np.testing.assert_allclose(images, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(labels, test["label_index"].to_numpy())


def test_test_order_and_ids_are_stable(tmp_path):
    root = make_tree(tmp_path / "ds", per_class=3)
    first, second = data.load_index(root).split("test"), data.load_index(root).split("test")
    pd.testing.assert_frame_equal(first, second)
    runs = [np.concatenate(list(data.make_dataset(first, RESNET_INPUT, 8, 4, with_labels=False)
                                .as_numpy_iterator())) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert runs[0].shape == (15, 8, 8, 3)


def test_shuffle_and_augment(tmp_path):
    index = data.load_index(make_tree(tmp_path / "ds", per_class=4))
    train = index.split("train")
    plain = data.make_dataset(train, RESNET_INPUT, 16, 20)
    shuffled = data.make_dataset(train, RESNET_INPUT, 16, 20, shuffle=True, seed=1)
    augmented = data.make_dataset(train, RESNET_INPUT, 16, 20, augment=True, seed=1)
    (x_plain, y_plain), = plain.as_numpy_iterator()
    (x_shuf, y_shuf), = shuffled.as_numpy_iterator()
    (x_aug, y_aug), = augmented.as_numpy_iterator()
    assert sorted(y_shuf) == sorted(y_plain) and list(y_shuf) != list(y_plain)
    np.testing.assert_array_equal(y_aug, y_plain)
    assert x_aug.shape == x_plain.shape and not np.allclose(x_aug, x_plain)
    assert x_aug.min() >= -1.0 and x_aug.max() <= 1.0  # still within ResNet50V2's input range


# -- prepare and helpers ---------------------------------------------------------------------

def test_prepare_real_dataset_records_counts(tmp_path):
    root = make_tree(tmp_path / "ds")
    config = profile("demo", data_dir=str(root), run_dir=str(tmp_path / "run"))
    index = data.prepare(config)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["dataset"]
    assert recorded["root"] == str(root.resolve()) and recorded["synthetic"] is False
    assert recorded["counts"]["test"] == {c: 2 for c in CLASSES}
    assert recorded["checked"] is True
    assert len(index.frame) == 30
    (root / "train" / "TB" / "img_0.png").write_bytes(b"broken")
    assert len(data.prepare(config).frame) == 30  # same files as recorded: the check is not repeated
    write_image(root / "test" / "TB" / "new.png", 1234)
    (root / "test" / "TB" / "new.png").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="unreadable image test/TB/new.png"):
        data.prepare(config)


def test_examples_masks_and_baseline(tmp_path):
    root = make_tree(tmp_path / "ds", per_class=3)
    index = data.load_index(root)
    picked = data.examples_per_class(index.split("train"), 2)
    assert picked["label"].tolist() == [c for c in CLASSES for _ in range(2)]
    assert data.load_masks(index, picked, 8) is None
    for sample_id in picked["sample_id"]:
        mask = np.zeros((12, 14), np.uint8)
        mask[2:5, 3:6] = 255
        target = (root / "masks" / sample_id).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(target)
    masks = data.load_masks(index, picked, 12)
    assert masks.shape == (10, 12, 12) and masks.dtype == bool
    assert 0 < masks[0].sum() < 144


def test_raw_pixel_baseline_separates_brightness_classes(tmp_path):
    """Classes that differ only in mean brightness are linearly separable: accuracy 1.0; labels
    scrambled on test: accuracy 0."""
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for k, label in enumerate(CLASSES):
            for i in range(4):
                pixels = np.clip(30 + 45 * k + rng.normal(0, 3, (12, 12)), 0, 255).astype(np.uint8)
                path = root / split / FOLDERS[label] / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels).save(path)
    index = data.load_index(root)
    assert data.raw_pixel_baseline(index, size=8) == 1.0
    scrambled = index.frame.copy()
    test_rows = scrambled["split"] == "test"
    scrambled.loc[test_rows, "label_index"] = (scrambled.loc[test_rows, "label_index"] + 1) % 5
    assert data.raw_pixel_baseline(data.DatasetIndex(index.root, scrambled), size=8) == 0.0


def test_prepare_generates_synthetic_dataset(tmp_path):
    config = profile("smoke", run_dir=str(tmp_path / "run"), synth_train=20, synth_val=10,
                     synth_test=10, synth_size=32)
    index = data.prepare(config)
    assert index.root == (tmp_path / "run" / "data").resolve()
    assert index.counts().sum(axis=1).tolist() == [20, 10, 10]
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["resolved"]["dataset"]
    assert recorded["synthetic"] is True and recorded["counts"]["train"] == index.counts().loc["train"].to_dict()
    sample = index.split("test")["sample_id"].iloc[0]
    assert index.mask_path(sample) == index.root / "masks" / sample
    masks = data.load_masks(index, index.split("test"), 32)
    assert masks.shape == (10, 32, 32)
    normal = (index.split("test")["label"] == "Normal").to_numpy()
    assert not masks[normal].any() and masks[~normal].any(axis=(1, 2)).all()


def test_dataset_identity_follows_the_images_not_where_they_lie(tmp_path):
    config = profile("smoke", run_dir=str(tmp_path / "run"), synth_train=20, synth_val=10,
                     synth_test=10, synth_size=32)
    generated = data.prepare(config).identity
    shutil.copytree(tmp_path / "run", tmp_path / "moved" / "run")
    root = tmp_path / "moved" / "run" / "data"

    def identity(**where) -> str:
        return data.run_index(config.replace(**where)).identity

    assert identity(run_dir=str(root.parent)) == generated  # a copied run
    # a replicate reads its main run's data through data_dir
    assert identity(run_dir=str(tmp_path / "run" / "replicates" / "seed_1"), data_dir=str(root)) == generated
    params = json.loads((root / "generator.json").read_text())
    (root / "generator.json").write_text(json.dumps({**params, "lung_masks": True}))
    assert identity(data_dir=str(root)) == generated  # lung masks add files, change no image
    (root / "generator.json").write_text(json.dumps({**params, "version": params["version"] + 1}))
    assert identity(data_dir=str(root)) != generated  # regenerated pixels
    (root / "generator.json").write_text(json.dumps(params))
    image = next((root / "train" / "Normal").glob("*.png"))
    image.rename(root / "train" / "COVID-19" / "relabelled.png")
    assert identity(data_dir=str(root)) != generated  # an image with another label
    first = identity(data_dir=str(make_tree(tmp_path / "real")))
    shutil.move(tmp_path / "real", tmp_path / "elsewhere")
    assert identity(data_dir=str(tmp_path / "elsewhere")) == first  # a moved dataset
    write_image(tmp_path / "elsewhere" / "train" / FOLDERS["Normal"] / "added.png", seed=9, shape=(64, 66))
    assert identity(data_dir=str(tmp_path / "elsewhere")) != first  # an image more


@pytest.mark.slow
def test_notebook_01_executes(tmp_path):
    from cxrdrift import book
    source = Path(__file__).resolve().parents[1] / "notebooks" / "01_data.md"
    output = book.execute_notebook(source, tmp_path / "01_data.ipynb",
                                   {"profile": "smoke", "run_dir": str(tmp_path / "run")},
                                   progress_bar=False)
    assert output.is_file()
    for name in ("figures/class_distribution.png", "figures/examples_per_class.png",
                 "tables/dataset_counts.csv", "tables/table1_class_weights.csv",
                 "tables/raw_pixel_baseline.csv"):
        assert (tmp_path / "run" / name).is_file(), name
    table1 = pd.read_csv(tmp_path / "run" / "tables" / "table1_class_weights.csv")
    assert table1["paper (Table 1): weight"].round(3).tolist() == [0.235, 0.087, 0.528, 0.089, 0.062]


def test_plots(tmp_path):
    from cxrdrift.plots import save_figure
    from cxrdrift.plots.data import class_distribution, image_grid
    index = data.load_index(make_tree(tmp_path / "ds"))
    config = profile("smoke", run_dir=str(tmp_path / "run"))
    fig = class_distribution(index.counts())
    assert len(fig.axes[0].patches) >= 15
    path = save_figure(fig, config, "class_distribution")
    assert path == tmp_path / "run" / "figures" / "class_distribution.png"
    assert Image.open(path).getpixel((1, 1))[:3] == (255, 255, 255)
    picked = data.examples_per_class(index.split("train"), 2)
    masks = np.zeros((10, 8, 8), bool)
    masks[:, 2:5, 2:5] = True
    grid = image_grid(data.load_images(picked, 8), picked["label"], masks)
    assert len(grid.axes) == 10
    assert sum(len(ax.collections) for ax in grid.axes) >= 10  # one contour per image
