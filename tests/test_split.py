"""`cxrdrift data split`: stratified, groups and identical images in one split, a manifest the check reads."""
from __future__ import annotations

import pandas as pd
import pytest

from cxrdrift import cli, data, split
from test_data import write_image

SIDE = (data.MIN_SIDE, data.MIN_SIDE)


def tb_tree(root, patients: int = 20, per_patient: int = 3):
    """An unsplit TB-style set: `<class>/P<patient>_<view>.png`, several images per patient."""
    seed = 0
    for name in ("Normal", "Tuberculosis", "COVID", "Lung_Opacity", "Viral Pneumonia"):
        for patient in range(patients):
            for view in range(per_patient):
                seed += 1
                write_image(root / name / f"P{name[:2]}{patient:03d}_{view}.png", seed, SIDE)
    return root


def patient(path: str) -> str:
    return path.rsplit("/", 1)[-1].split("_")[0]


def test_groups_and_duplicates_never_cross_splits(tmp_path):
    root = tb_tree(tmp_path / "tb")
    # a copy of one patient's image filed under another patient: the two patients must be joined
    (root / "Normal" / "PNo019_9.png").write_bytes((root / "Normal" / "PNo000_0.png").read_bytes())
    manifest, problems = split.split_dataset(root, val=0.1, test=0.2, seed=3, group_by=r"^(P\w+?)_",
                                             class_map=data.parse_class_map("Viral Pneumonia=Pneumonia"))
    assert problems == []
    assert len(manifest) == 5 * 60 + 1
    assert set(manifest["label"]) == set(data.CLASSES)
    per_patient = manifest.assign(patient=manifest["path"].map(patient)).groupby("patient")["split"].nunique()
    assert (per_patient == 1).all()
    by_path = manifest.set_index("path")["split"]
    assert by_path["Normal/PNo019_9.png"] == by_path["Normal/PNo000_0.png"]
    assert by_path["Normal/PNo019_0.png"] == by_path["Normal/PNo000_0.png"]  # patient 19 went with it
    table = split.split_table(manifest)
    # 20 patients of 3 images per class: 14 / 2 / 4 patients, the copy adds one Normal image
    assert table.loc[["train", "val", "test"], "Tuberculosis"].tolist() == [42, 6, 12]
    assert table.loc["total", "total"] == 301
    again, _ = split.split_dataset(root, val=0.1, test=0.2, seed=3, group_by=r"^(P\w+?)_",
                                   class_map=data.parse_class_map("Viral Pneumonia=Pneumonia"))
    pd.testing.assert_frame_equal(manifest, again)  # the seed fixes the split


def test_without_group_by_images_are_split_alone_but_duplicates_stay_together(tmp_path):
    root = tb_tree(tmp_path / "tb", patients=10, per_patient=1)
    (root / "Tuberculosis" / "copy.png").write_bytes((root / "Tuberculosis" / "PTu003_0.png").read_bytes())
    manifest, _ = split.split_dataset(root, val=0.2, test=0.2, seed=0, class_map={"viralpneumonia": "Pneumonia"})
    by_path = manifest.set_index("path")["split"]
    assert by_path["Tuberculosis/copy.png"] == by_path["Tuberculosis/PTu003_0.png"]
    assert split.split_table(manifest).loc[["train", "val", "test"], "Normal"].tolist() == [6, 2, 2]


def test_manifest_written_and_checked(tmp_path, capsys):
    root = tb_tree(tmp_path / "tb", patients=6, per_patient=2)
    out = root / "manifest.csv"
    code = cli.main(["data", "split", str(root), "--out", str(out), "--group-by", r"^(P\w+?)_",
                     "--class-map", "Viral Pneumonia=Pneumonia", "--test", "0.34", "--val", "0.17"])
    printed = capsys.readouterr().out
    assert code == 0 and f"manifest written to {out}" in printed
    assert "Tuberculosis" in printed.splitlines()[0] and printed.splitlines()[-2].split()[:2] == ["total", "12"]
    written = pd.read_csv(out)
    assert list(written.columns) == ["path", "label", "split"]
    report = data.check(root, class_map="Viral Pneumonia=Pneumonia")
    assert report.ok and report.counts.to_numpy().sum() == 60
    assert report.counts.loc[["train", "val", "test"], "Normal"].tolist() == [6, 2, 4]
    assert cli.main(["data", "check", str(root), "--class-map", "Viral Pneumonia=Pneumonia"]) == 0


def test_radiography_masks_travel_into_the_manifest(tmp_path):
    root = tmp_path / "rd"
    for k, name in enumerate(("COVID", "Normal", "TB", "Lung_Opacity", "Pneumonia")):
        for i in range(5):
            write_image(root / name / "images" / f"{name}-{i}.png", 10 * k + i, SIDE)
            write_image(root / name / "masks" / f"{name}-{i}.png", 1, SIDE)
    out = tmp_path / "elsewhere" / "split.csv"
    out.parent.mkdir()
    manifest, _ = split.write_split(root, out, val=0.2, test=0.2)
    assert not manifest["path"].str.contains("/masks/").any() and len(manifest) == 25
    written = pd.read_csv(out)
    assert written["lung_mask"].iloc[0] == "../rd/COVID/masks/COVID-0.png"
    index = data.load_index(out)
    assert len(index.lung_masks) == 25


def test_too_few_images_for_a_split_are_named(tmp_path):
    root = tb_tree(tmp_path / "tb", patients=3, per_patient=2)
    manifest, problems = split.split_dataset(root, group_by=r"^(P\w+?)_", class_map={"viralpneumonia": "Pneumonia"})
    assert split.split_table(manifest).loc[["train", "val", "test"], "Normal"].tolist() == [4, 0, 2]
    assert [p.message for p in problems][0] == ("class 'Normal' has no images in val: its 6 image(s) in 3 group(s) "
                                                "are too few for the asked shares")
    assert len(problems) == 5


@pytest.mark.parametrize("options,message", [
    ({"val": 0.5, "test": 0.5}, "leave nothing to train on"),
    ({"test": 0.0}, "--test 0.0 must lie strictly between 0 and 1"),
    ({"group_by": "(unclosed"}, "is not a regular expression"),
])
def test_bad_options(tmp_path, options, message):
    root = tb_tree(tmp_path / "tb", patients=2, per_patient=1)
    with pytest.raises(split.SplitError, match=message):
        split.split_dataset(root, class_map={"viralpneumonia": "Pneumonia"}, **options)


def test_already_split_and_unknown_class(tmp_path, capsys):
    root = tmp_path / "ds"
    write_image(root / "train" / "NORMAL" / "a.png", 1, SIDE)
    with pytest.raises(split.SplitError, match=r"is already split \(it has train/\)"):
        split.split_dataset(root)
    other = tb_tree(tmp_path / "tb", patients=1, per_patient=1)
    assert cli.main(["data", "split", str(other), "--out", str(other / "manifest.csv")]) == cli.EXIT_BAD_INPUT
    assert "unknown class folder Viral Pneumonia/" in capsys.readouterr().err
