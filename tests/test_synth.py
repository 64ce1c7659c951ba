"""The synthetic chest-radiograph generator: proportions, determinism, lesion masks, files on disk."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cxrdrift import synth

LESION_CLASSES = [name for name in synth.CLASSES if name != "Normal"]


@pytest.fixture(scope="module")
def per_class() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """40 images of each class at 96 px: images, lesion masks, lung fields."""
    out = {}
    for name in synth.CLASSES:
        out[name] = synth.render_batch([name] * 40, 96, seed=3, return_lungs=True)
    return out


def _lung_frame(lungs: np.ndarray) -> tuple[int, int, float]:
    """Top row, bottom row and the middle column between the two lung fields of one image."""
    rows = np.flatnonzero(lungs.any(axis=1))
    cols = np.flatnonzero(lungs.any(axis=0))
    return rows[0], rows[-1], (cols[0] + cols[-1]) / 2


# -- class proportions ------------------------------------------------------------------------

def test_table1_counts_are_reproduced_exactly():
    assert synth.split_class_counts(3354) == {"Normal": 317, "Pneumonia": 855, "Tuberculosis": 141,
                                              "COVID-19": 839, "Lung Opacity": 1202}
    assert abs(sum(synth.TABLE1_PROPORTIONS.values()) - 1.0) < 1e-12


@pytest.mark.parametrize("n", [5, 6, 17, 40, 400, 1675, 11733])
def test_split_class_counts_exact_total_and_one_per_class(n):
    counts = synth.split_class_counts(n)
    assert list(counts) == list(synth.CLASSES)
    assert sum(counts.values()) == n
    assert min(counts.values()) >= 1
    ideal = {name: p * n for name, p in synth.TABLE1_PROPORTIONS.items()}
    if n >= 400:  # largest remainder: never more than one image off the ideal share
        assert all(abs(counts[name] - ideal[name]) < 1 for name in counts)


def test_split_class_counts_hand_computed_and_errors():
    # 40 x (9.45 %, 25.49 %, 4.20 %, 25.01 %, 35.84 %) = 3.78, 10.20, 1.68, 10.01, 14.34
    assert synth.split_class_counts(40) == {"Normal": 4, "Pneumonia": 10, "Tuberculosis": 2,
                                            "COVID-19": 10, "Lung Opacity": 14}
    assert synth.split_class_counts(3, {"a": 0.98, "b": 0.01, "c": 0.01}) == {"a": 1, "b": 1, "c": 1}
    with pytest.raises(synth.SynthError, match="at least 5 images"):
        synth.split_class_counts(4)


# -- rendering ---------------------------------------------------------------------------------

def test_render_batch_shapes_dtypes_and_determinism():
    labels = ["Normal", "Pneumonia", "Tuberculosis", "COVID-19", "Lung Opacity", "Pneumonia"]
    images, masks = synth.render_batch(labels, 64, seed=11)
    assert images.shape == masks.shape == (6, 64, 64)
    assert images.dtype == np.uint8 and masks.dtype == bool
    again, again_masks = synth.render_batch(labels, 64, seed=11)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(masks, again_masks)
    other, _ = synth.render_batch(labels, 64, seed=12)
    assert all(np.abs(other[i].astype(int) - images[i]).mean() > 5 for i in range(6))
    assert len({img.tobytes() for img in images}) == 6  # no two images alike
    # an image depends only on (seed, position, label), not on the rest of the batch
    head, _ = synth.render_batch(labels[:2], 64, seed=11)
    np.testing.assert_array_equal(head, images[:2])
    assert images.std() > 20  # a real picture, not a flat field


def test_render_batch_rejects_unknown_class_and_tiny_size():
    with pytest.raises(synth.SynthError, match="unknown class"):
        synth.render_batch(["Normal", "Flu"], 64, seed=0)
    with pytest.raises(synth.SynthError, match="at least 16"):
        synth.render_batch(["Normal"], 8, seed=0)


def test_masks_empty_for_normal_and_inside_the_lungs_otherwise(per_class):
    _, masks, lungs = per_class["Normal"]
    assert not masks.any()
    for name in LESION_CLASSES:
        _, masks, lungs = per_class[name]
        assert masks.reshape(40, -1).sum(1).min() > 0, name
        assert not (masks & ~lungs).any(), name
        assert masks.mean() < 0.15, name  # a lesion, not the whole chest


def test_tuberculosis_upper_and_pneumonia_lower_zones(per_class):
    def mask_height(name: str) -> np.ndarray:
        """Each image's lesion centroid height: 0 at the lung apex, 1 at the base."""
        _, masks, lungs = per_class[name]
        heights = []
        for mask, lung in zip(masks, lungs):
            top, bottom, _ = _lung_frame(lung)
            heights.append((np.nonzero(mask)[0].mean() - top) / (bottom - top))
        return np.array(heights)

    assert np.mean(mask_height("Tuberculosis") < 0.4) >= 0.9
    assert np.mean(mask_height("Pneumonia") > 0.4) >= 0.8


def test_covid_bilateral_and_pneumonia_mostly_unilateral(per_class):
    def sides(name: str) -> np.ndarray:
        _, masks, lungs = per_class[name]
        out = []
        for mask, lung in zip(masks, lungs):
            _, _, middle = _lung_frame(lung)
            cols = np.nonzero(mask)[1]
            out.append(((cols < middle).any(), (cols > middle).any()))
        return np.array(out)

    covid, pneumonia = sides("COVID-19"), sides("Pneumonia")
    assert covid.all(axis=1).mean() >= 0.9
    assert (pneumonia.sum(axis=1) == 1).mean() >= 0.7


def test_lesions_are_opacities_brighter_than_the_lung(per_class):
    """A lesion is an opacity: masked pixels are brighter than the rest of the lung field."""
    for name in LESION_CLASSES:
        images, masks, lungs = per_class[name]
        brighter = [img[m].mean() > img[lung & ~m].mean() for img, m, lung in zip(images, masks, lungs)]
        assert np.mean(brighter) >= 0.9, name


def test_source_task_labels_one_finding_drawn_like_its_class_pattern():
    images, labels, lesions = synth.source_task(80, 64, seed=5)
    assert images.shape == lesions.shape == (80, 64, 64) and images.dtype == np.uint8 and lesions.dtype == bool
    assert labels.shape == (80, len(synth.FINDINGS)) and labels.dtype == np.float32
    assert set(np.unique(labels)) <= {0.0, 1.0} and labels.sum(1).max() == 1
    # every finding occurs, and about one image in five shows none (and has no lesion)
    assert (labels.sum(0) > 0).all() and 0.08 < (labels.sum(1) == 0).mean() < 0.35
    np.testing.assert_array_equal(lesions.any(axis=(1, 2)), labels.any(1))
    again, again_labels, again_lesions = synth.source_task(80, 64, seed=5)
    for a, b in ((images, again), (labels, again_labels), (lesions, again_lesions)):
        np.testing.assert_array_equal(a, b)
    # drawn from the source's own streams: not the target's images of the same classes
    target, _ = synth.render_batch(["Pneumonia"] * 4, 64, seed=5)
    assert not any(np.array_equal(t, s) for t in target for s in images)
    # each finding is drawn like its class: cavitating nodules in the upper zones, consolidation
    # and ground glass lower down
    shows = {name: labels[:, k] == 1 for k, name in enumerate(synth.FINDINGS)}
    rows = {name: np.nonzero(lesions[chosen])[1] for name, chosen in shows.items()}
    assert np.mean(rows["cavitating nodules"] < 32) > 0.9
    assert np.mean(rows["consolidation"] >= 28) > 0.8 and np.mean(rows["ground glass"] >= 28) > 0.8


def test_raw_pixel_linear_baseline_stays_low():
    """The findings' crude generator let a linear model on 32x32 pixels reach 0.95; ours must not."""
    rng = np.random.default_rng(0)
    labels = list(rng.choice(synth.CLASSES, size=900))
    images, masks = synth.render_batch(labels, 64, seed=21)
    pixels = images.reshape(-1, 32, 2, 32, 2).mean(axis=(2, 4)).reshape(len(labels), -1) / 255.0
    y = np.array(labels)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000))
    accuracy = model.fit(pixels[:600], y[:600]).score(pixels[600:], y[600:])
    assert 0.2 < accuracy < 0.75
    # ... while the classes stay separable by where their lesions are (mask zone areas)
    zones = masks.reshape(-1, 8, 8, 8, 8).mean(axis=(2, 4)).reshape(len(labels), -1)
    zone_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    assert zone_model.fit(zones[:600], y[:600]).score(zones[600:], y[600:]) > accuracy + 0.1


# -- dataset on disk ---------------------------------------------------------------------------

COUNTS = {"train": 12, "val": 6, "test": 7}


def _files(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_generate_dataset_layout_masks_and_marker(tmp_path):
    out = synth.generate_dataset(tmp_path / "data", COUNTS, size=48, seed=4)
    assert (out / synth.MARKER).exists()
    params = json.loads((out / "generator.json").read_text())
    assert params["seed"] == 4 and params["size"] == 48 and params["counts"] == COUNTS
    assert params["version"] == synth.GENERATOR_VERSION
    for split, n in COUNTS.items():
        expected = synth.split_class_counts(n)
        for name in synth.CLASSES:
            images = sorted((out / split / name).iterdir())
            masks = sorted((out / "masks" / split / name).iterdir())
            assert [p.name for p in images] == [f"{k:06d}.png" for k in range(expected[name])]
            assert [p.name for p in masks] == [p.name for p in images]
            for image_path, mask_path in zip(images, masks):
                image, mask = Image.open(image_path), np.array(Image.open(mask_path))
                assert image.mode == "L" and image.size == (48, 48)
                assert set(np.unique(mask)) <= {0, 255}
                assert mask.any() == (name != "Normal")
    # the files hold what render would give: same pixels as the in-memory renderer
    rngs = synth._streams(4, synth._split_key("train"), synth.CLASSES.index("COVID-19"), np.arange(2))
    images, masks, _ = synth._render(["COVID-19"] * 2, 48, rngs)
    np.testing.assert_array_equal(np.array(Image.open(out / "train" / "COVID-19" / "000001.png")), images[1])
    np.testing.assert_array_equal(np.array(Image.open(out / "masks" / "train" / "COVID-19" / "000001.png")),
                                  masks[1].astype(np.uint8) * 255)


def test_generate_dataset_skips_complete_regenerates_partial_and_is_deterministic(tmp_path):
    out = synth.generate_dataset(tmp_path / "a", COUNTS, size=32, seed=1)
    first = _files(out)
    stamp = (out / "test" / "Normal" / "000000.png").stat().st_mtime_ns
    synth.generate_dataset(out, COUNTS, size=32, seed=1)  # complete, same parameters: untouched
    assert (out / "test" / "Normal" / "000000.png").stat().st_mtime_ns == stamp

    # interrupted run: no marker, a file missing, a stray half-written file
    (out / synth.MARKER).unlink()
    (out / "train" / "Pneumonia" / "000001.png").unlink()
    (out / "train" / "Pneumonia" / "000099.png").write_bytes(b"half")
    synth.generate_dataset(out, COUNTS, size=32, seed=1)
    assert (out / synth.MARKER).exists()
    assert _files(out) == first  # byte-identical PNGs, stray file gone

    # same seed elsewhere: identical bytes; another seed: different images, same layout
    assert _files(synth.generate_dataset(tmp_path / "b", COUNTS, size=32, seed=1)) == first
    other = _files(synth.generate_dataset(out, COUNTS, size=32, seed=2))
    assert other.keys() == first.keys() and other != first


def test_larger_split_keeps_earlier_images(tmp_path):
    small = _files(synth.generate_dataset(tmp_path / "small", {"train": 10}, size=32, seed=9))
    large = _files(synth.generate_dataset(tmp_path / "large", {"train": 30}, size=32, seed=9))
    assert small.keys() < large.keys()
    assert all(large[name] == data for name, data in small.items())


def test_generate_dataset_refuses_foreign_folder_and_bad_counts(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(synth.SynthError, match="holds no synthetic dataset"):
        synth.generate_dataset(tmp_path / "mine", COUNTS, size=32, seed=0)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(synth.SynthError, match="non-negative integer"):
        synth.generate_dataset(tmp_path / "x", {"train": -1}, size=32, seed=0)
    with pytest.raises(synth.SynthError, match="at least 5 images"):
        synth.generate_dataset(tmp_path / "x", {"train": 3}, size=32, seed=0)
    with pytest.raises(synth.SynthError, match="at least 16"):
        synth.generate_dataset(tmp_path / "x", {"train": 10}, size=8, seed=0)
