"""Public datasets' layouts as downloaded: Radiography Database (images/ + masks/), Kermany
train/test/val, class maps, broken links, thumbnails and stray subfolders."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrdrift import data, layouts
from cxrdrift.config import RunConfig
from cxrdrift.data import DatasetError
from test_data import make_tree, problems, write_image

SIDE = (data.MIN_SIDE, data.MIN_SIDE)
RADIOGRAPHY = {"COVID": 3, "Lung_Opacity": 3, "Normal": 4, "Viral Pneumonia": 3}  # images per class
TB_MAP = "Viral Pneumonia=Pneumonia,Tuberculosis=Tuberculosis"


def radiography_tree(root: Path, splits=("train", "val", "test"), masks: bool = True) -> Path:
    """The COVID-19 Radiography Database's layout, `<class>/images/` beside `<class>/masks/`,
    under each split, plus a TB class so that the five classes are complete."""
    seed = 1000
    for split in splits:
        for name, n in {**RADIOGRAPHY, "TB": 2}.items():
            for i in range(n):
                seed += 1
                write_image(root / split / name / "images" / f"{name}-{i + 1}.png", seed, SIDE)
                (root / split / name / "masks").mkdir(exist_ok=True)
                if masks:  # the lung fields: two boxes
                    mask = np.zeros(SIDE, np.uint8)
                    mask[8:56, 6:28] = mask[8:56, 36:58] = 255
                    Image.fromarray(mask).save(root / split / name / "masks" / f"{name}-{i + 1}.png")
    return root


def test_radiography_database_masks_are_lung_masks_never_images(tmp_path):
    root = radiography_tree(tmp_path / "rd")
    report = data.check(root, class_map="Viral Pneumonia=Pneumonia")
    assert report.ok and [p.message for p in report.problems if p.severity != "info"] == []
    assert report.counts.loc["train"].to_dict() == {"Normal": 4, "Pneumonia": 3, "Tuberculosis": 2,
                                                   "COVID-19": 3, "Lung Opacity": 3}
    assert report.counts.to_numpy().sum() == 3 * 15  # 0 of the 45 masks counted as images
    assert problems(report, "info") == ["lung masks: 45 of 45 images have one (kept for scoring, never "
                                        "counted as images)"]
    index = data.load_index(root, "Viral Pneumonia=Pneumonia")
    assert not index.frame["sample_id"].str.contains("/masks/").any()
    sample = "test/Viral Pneumonia/images/Viral Pneumonia-2.png"
    assert index.frame.set_index("sample_id").loc[sample, "label"] == "Pneumonia"
    assert index.lung_mask_path(sample) == (root / "test/Viral Pneumonia/masks/Viral Pneumonia-2.png").resolve()
    masks = data.load_lung_masks(index, index.split("test").head(2), 32)
    assert masks.shape == (2, 32, 32) and masks.dtype == bool
    assert masks[0].sum() == 2 * 24 * 11  # each 48 x 22 box at half size


def test_radiography_without_class_map_names_the_unknown_folder(tmp_path):
    root = radiography_tree(tmp_path / "rd", masks=False)
    report = data.check(root)
    assert sorted(problems(report, "error")) == sorted([
        f"unknown class folder {split}/Viral Pneumonia/; expected one of Normal, Pneumonia, Tuberculosis, "
        "COVID-19, Lung Opacity (or an alias such as COVID, TB, Lung_Opacity)" for split in ("train", "val", "test")
    ] + [f"empty class: split '{split}' has no 'Pneumonia' images" for split in ("train", "test")])
    assert problems(report, "info") == [layouts.CLASS_MAP_HINT]
    assert "INFO: folder or label names" in data.format_report(report)


def test_masks_without_images_and_stray_subfolders_are_named(tmp_path):
    root = make_tree(tmp_path / "ds")
    write_image(root / "train" / "NORMAL" / "masks" / "img_0.png", 7, SIDE)
    write_image(root / "test" / "TB" / "extra" / "x.png", 8, SIDE)
    write_image(root / "test" / "TB" / "extra" / "y.png", 9, SIDE)
    report = data.check(root)
    assert sorted(problems(report, "warning")) == [
        "class folder test/TB/ has a subfolder extra/ whose 2 image(s) are counted as 'Tuberculosis'; move them "
        "up or out if they are not radiographs of that class",
        "class folder train/NORMAL/ has masks/ but no images/ beside it: its 1 mask(s) are not counted as "
        "images and pair with none"]
    assert report.counts.loc["train", "Normal"] == 2 and report.counts.loc["test", "Tuberculosis"] == 4


def test_unpaired_images_and_masks(tmp_path):
    root = radiography_tree(tmp_path / "rd")
    (root / "train" / "COVID" / "masks" / "COVID-1.png").unlink()
    (root / "train" / "COVID" / "images" / "COVID-2.png").rename(root / "train" / "COVID" / "images" / "COVID-2.jpg")
    write_image(root / "train" / "COVID" / "masks" / "COVID-9.png", 3, SIDE)
    report = data.check(root, class_map="Viral Pneumonia=Pneumonia")
    assert data.load_index(root, "Viral Pneumonia=Pneumonia").lung_mask_path("train/COVID/images/COVID-2.jpg") == \
        (root / "train/COVID/masks/COVID-2.png").resolve()  # paired by name without suffix
    warnings = problems(report, "warning")
    assert warnings == ["1 image(s) in train/COVID/images/ have no lung mask of the same name in masks/",
                        "1 lung mask(s) in train/COVID/masks/ have no image of the same name in images/ (ignored)"]


def test_kermany_two_classes_only(tmp_path):
    root = tmp_path / "chest_xray"
    seed = 0
    for split, n in {"train": 3, "test": 2, "val": 1}.items():
        for name in ("NORMAL", "PNEUMONIA"):
            for i in range(n):
                seed += 1
                write_image(root / split / name / f"person{i}_virus_{i}.jpeg", seed, SIDE, "JPEG")
    (root / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    report = data.check(root)
    assert report.counts.loc[["train", "val", "test"], ["Normal", "Pneumonia"]].to_numpy().tolist() == \
        [[3, 3], [1, 1], [2, 2]]
    errors = problems(report, "error")
    assert errors == [f"empty class: split '{split}' has no '{label}' images"
                      for split in ("train", "test") for label in ("Tuberculosis", "COVID-19", "Lung Opacity")]
    assert problems(report, "warning") == [f"empty class: split 'val' has no '{label}' images"
                                           for label in ("Tuberculosis", "COVID-19", "Lung Opacity")]


def test_unsplit_root_points_to_data_split(tmp_path):
    root = tmp_path / "TB_Chest_Radiography_Database"
    for name in ("Normal", "Tuberculosis"):
        write_image(root / name / f"{name}-1.png", len(name), SIDE)
    (root / "Normal.metadata.xlsx").write_bytes(b"PK")
    report = data.check(root)
    assert problems(report, "error") == [
        f"{root} is not split into train/val/test: its folders Normal/, Tuberculosis/ are classes; write a split "
        f"with `cxrdrift data split {root} --out {root / 'manifest.csv'}` (add --group-by to keep each patient "
        "in one split)"]


def test_broken_link_and_unreadable_file_are_named(tmp_path):
    root = make_tree(tmp_path / "ds")
    link = root / "train" / "NORMAL" / "linked.png"
    os.symlink(tmp_path / "gone.png", link)
    good = root / "val" / "TB" / "img_0.png"
    os.symlink(good, root / "val" / "TB" / "alias.png")  # a working link is an image like any other
    report = data.check(root)
    assert problems(report, "error") == [
        f"broken symbolic link train/NORMAL/linked.png (its target {tmp_path / 'gone.png'} does not exist); "
        "restore the target or remove the link"]
    assert report.errors[0].paths == (str(link),)
    assert report.counts.loc["train", "Normal"] == 2 and report.counts.loc["val", "Tuberculosis"] == 3
    (root / "test" / "TB" / "empty.png").write_bytes(b"")
    assert "unreadable image test/TB/empty.png: is empty (0 bytes)" in problems(data.check(root), "error")
    if os.geteuid() != 0:  # root reads everything
        (root / "test" / "TB" / "img_0.png").chmod(0)
        assert "unreadable image test/TB/img_0.png: cannot be read (Permission denied)" in \
            problems(data.check(root), "error")


def test_tiny_image_is_named_with_its_size(tmp_path):
    root = make_tree(tmp_path / "ds")
    write_image(root / "test" / "covid19" / "thumb.png", 77, (5, 6))
    report = data.check(root)
    assert report.ok
    assert problems(report, "warning") == [
        "1 image(s) smaller than 64 px on the short side, which the pipeline would upsample to the model's "
        "input: test/covid19/thumb.png (6 x 5 px)"]
    assert problems(data.check(root, min_side=4), "warning") == []


def test_class_map_parsing():
    assert layouts.parse_class_map("Viral Pneumonia=Pneumonia, Bacterial_Pneumonia = pneumonia,COVID=covid19") == {
        "viralpneumonia": "Pneumonia", "bacterialpneumonia": "Pneumonia", "covid": "COVID-19"}
    assert layouts.canonical_class("viral-pneumonia", layouts.parse_class_map("Viral Pneumonia=Pneumonia")) == \
        "Pneumonia"
    assert layouts.parse_class_map("") == {}
    with pytest.raises(DatasetError, match="'Viral Pneumonia' is not NAME=CLASS"):
        layouts.parse_class_map("Viral Pneumonia")
    with pytest.raises(DatasetError, match="'Cat' is none of Normal"):
        layouts.parse_class_map("Dog=Cat")
    with pytest.raises(DatasetError, match="maps 'viral pneumonia' twice"):
        layouts.parse_class_map("Viral Pneumonia=Pneumonia,viral pneumonia=Normal")


def test_class_map_in_a_manifest_and_a_run_config(tmp_path):
    root = make_tree(tmp_path / "ds")
    (root / "train" / "PNEUMONIA").rename(root / "train" / "Bacterial Pneumonia")
    with pytest.raises(DatasetError, match="unknown class folder train/Bacterial Pneumonia/"):
        data.load_index(root)
    assert data.load_index(root, "Bacterial Pneumonia=Pneumonia").counts().loc["train", "Pneumonia"] == 2
    config = RunConfig(data_dir=str(root), class_map="Bacterial Pneumonia=Pneumonia")
    assert data.run_index(config).counts().to_numpy().tolist() == [[2] * 5] * 3


def test_synthetic_lung_masks(tmp_path):
    from cxrdrift import cli

    root = tmp_path / "syn"
    assert cli.main(["data", "synth", str(root), "--train", "5", "--val", "5", "--test", "5", "--size", "32",
                     "--lung-masks"]) == 0
    index = data.load_index(root)
    assert len(index.lung_masks) == 15
    sample = index.split("test")["sample_id"].iloc[0]
    lungs = data.load_lung_masks(index, index.split("test").head(1), 32)[0]
    assert index.lung_mask_path(sample) == (root / "lung_masks" / sample).resolve()
    assert 0.15 < lungs.mean() < 0.6  # two lung fields: a good part of the image, not all of it
    lesion = data.load_masks(index, index.split("test"), 32)
    assert not (lesion & ~data.load_lung_masks(index, index.split("test"), 32)).any()  # lesions lie in the lungs
