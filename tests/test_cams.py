"""The CAM engine: hand-computed maps, NumPy closed forms, tf-keras-vis agreement, real backbones."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import keras
from PIL import Image

from cxrdrift import cams
from cxrdrift.models import EARLIER_LAYERS, TARGET_LAYERS, build_model, preprocess_input

tkv_scores = pytest.importorskip("tf_keras_vis.utils.scores")
from tf_keras_vis.gradcam import Gradcam  # noqa: E402
from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus  # noqa: E402
from tf_keras_vis.layercam import Layercam  # noqa: E402

TOLERANCE = 1e-4


# -- a model small enough to compute by hand ---------------------------------------------------
# The input itself is the target layer (identity), then global average pooling and a Dense head,
# so g_k = W_ck / (h·w) is constant over space.
HAND_A0 = np.array([[1.0, 2.0], [3.0, 4.0]])
HAND_A1 = np.array([[0.0, 1.0], [1.0, 0.0]])
HAND_W = np.array([[4.0, -4.0], [-4.0, 8.0]])  # rows: channels, columns: classes


def hand_model() -> keras.Model:
    inputs = keras.Input((2, 2, 2), name="image")
    features = keras.layers.Activation("linear", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    logits = keras.layers.Dense(2, name="logits")(pooled)
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights([HAND_W, np.zeros(2)])
    return model


def test_hand_computed_maps() -> None:
    image = np.stack([HAND_A0, HAND_A1], axis=-1)[None].astype(np.float32)
    images = np.concatenate([image, image])
    maps = cams.compute_cams(hand_model(), images, [0, 1], "features")
    normed = cams.compute_cams(hand_model(), images, [0, 1], "features", methods=["gradcampp"],
                               alpha_norm=True)["gradcampp"]
    # class 0: g = (1, -1)
    np.testing.assert_allclose(maps["gradcam"][0], [[1, 1], [2, 4]], atol=1e-6)      # relu(A0 - A1)
    np.testing.assert_allclose(maps["layercam"][0], HAND_A0, atol=1e-6)              # relu(g) = (1, 0)
    np.testing.assert_allclose(maps["gradcampp"][0], HAND_A0 / 3, atol=1e-6)        # alpha = 1/(2+10), w0 = 4/12
    np.testing.assert_allclose(normed[0], HAND_A0, atol=1e-6)                       # alpha = 1/4, w0 = 1
    # class 1: g = (-1, 2)
    np.testing.assert_allclose(maps["gradcam"][1], np.zeros((2, 2)), atol=1e-6)      # relu(-A0 + 2 A1) = 0
    np.testing.assert_allclose(maps["layercam"][1], 2 * HAND_A1, atol=1e-6)
    np.testing.assert_allclose(maps["gradcampp"][1], 4 / 3 * HAND_A1, atol=1e-6)    # alpha = 4/24, w1 = 4·2/6
    assert all(m.dtype == np.float32 and m.shape == (2, 2, 2) for m in maps.values())


# -- small convolutional model: NumPy closed forms and tf-keras-vis -----------------------------

@pytest.fixture(scope="module")
def small_model() -> keras.Model:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="early")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="features")(x)  # may be negative
    x = keras.layers.Conv2D(5, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))


@pytest.fixture(scope="module")
def small_batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(size=(7, 16, 16, 3)).astype(np.float32), np.array([0, 1, 2, 3, 0, 1, 2])


def numpy_reference(model: keras.Model, layer: str, images: np.ndarray, classes: np.ndarray,
                    alpha_norm: bool) -> dict[str, np.ndarray]:
    """The DESIGN formulas in NumPy on (A, g) taken one sample at a time, eagerly."""
    sub = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    out = {"gradcam": [], "gradcampp": [], "layercam": []}
    for image, c in zip(images, classes):
        with tf.GradientTape() as tape:
            x = tf.constant(image[None])
            tape.watch(x)
            a, logits = sub(x, training=False)
            score = logits[0, int(c)]
        A = a.numpy()[0].astype(np.float64)
        g = tape.gradient(score, a).numpy()[0].astype(np.float64)
        out["gradcam"].append(np.maximum((A * g.mean(axis=(0, 1))).sum(-1), 0))
        out["layercam"].append(np.maximum((A * np.maximum(g, 0)).sum(-1), 0))
        denominator = 2 * g**2 + A.sum(axis=(0, 1)) * g**3
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(denominator != 0, g**2 / denominator, 0.0)
            if alpha_norm:
                total = alpha.sum(axis=(0, 1))
                alpha = alpha / np.where(total != 0, total, 1.0)
        weights = (alpha * np.maximum(g, 0)).sum(axis=(0, 1))
        out["gradcampp"].append(np.maximum((A * weights).sum(-1), 0))
    return {name: np.stack(maps) for name, maps in out.items()}


@pytest.mark.parametrize("alpha_norm", [False, True])
def test_matches_numpy_closed_form(small_model, small_batch, alpha_norm) -> None:
    images, classes = small_batch
    ours = cams.compute_cams(small_model, images, classes, "features", alpha_norm=alpha_norm)
    expected = numpy_reference(small_model, "features", images, classes, alpha_norm)
    for name in cams.CAM_METHODS:
        scale = np.abs(expected[name]).max()
        np.testing.assert_allclose(ours[name], expected[name], atol=1e-5 * scale, rtol=1e-4, err_msg=name)
    assert not np.allclose(ours["gradcampp"], ours["layercam"])


def test_batching_does_not_change_maps(small_model, small_batch) -> None:
    images, classes = small_batch
    whole = cams.compute_cams(small_model, images, classes, "features", batch_size=32)
    for batch_size in (1, 3):
        parts = cams.compute_cams(small_model, images, classes, "features", batch_size=batch_size)
        for name in cams.CAM_METHODS:
            np.testing.assert_allclose(parts[name], whole[name], rtol=1e-5, atol=1e-6)
    single = cams.compute_cams(small_model, images[:1], classes[:1], "features", methods=["layercam"])
    np.testing.assert_allclose(single["layercam"][0], whole["layercam"][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alpha_norm", [False, True])
def test_two_layers_from_one_pass(small_model, small_batch, alpha_norm) -> None:
    """Maps at an earlier layer (16x16, before the stride) and the last one (8x8) from one pass:
    each equals its own single-layer pass and the NumPy closed form at that layer."""
    images, classes = small_batch
    both = cams.compute_layer_cams(small_model, images, classes, ("features", "early"), alpha_norm=alpha_norm,
                                   batch_size=3)
    assert list(both) == ["features", "early"]
    assert both["features"]["layercam"].shape == (7, 8, 8) and both["early"]["layercam"].shape == (7, 16, 16)
    for layer, maps in both.items():
        alone = cams.compute_cams(small_model, images, classes, layer, alpha_norm=alpha_norm)
        expected = numpy_reference(small_model, layer, images, classes, alpha_norm)
        for name in cams.CAM_METHODS:
            np.testing.assert_allclose(maps[name], alone[name], rtol=1e-5, atol=1e-6, err_msg=f"{layer} {name}")
            scale = np.abs(expected[name]).max()
            np.testing.assert_allclose(maps[name], expected[name], atol=1e-5 * scale, rtol=1e-4,
                                       err_msg=f"{layer} {name}")
    assert cams.fused_pass(small_model, ("features", "early")).map_shapes == {"features": (8, 8), "early": (16, 16)}


def test_earlier_layer_matches_tf_keras_vis_small_model(small_model, small_batch) -> None:
    images, classes = small_batch
    ours = cams.compute_layer_cams(small_model, images, classes, ("features", "early"), alpha_norm=True)["early"]
    assert_agree_after_postprocess(ours, tf_keras_vis_maps(small_model, "early", images, classes), (16, 16))


def test_layer_errors(small_model, small_batch) -> None:
    images, classes = small_batch
    with pytest.raises(cams.CamError, match="no layer named 'erly'.*early"):
        cams.compute_layer_cams(small_model, images, classes, ("features", "erly"))
    with pytest.raises(cams.CamError, match="distinct"):
        cams.compute_layer_cams(small_model, images, classes, ("features", "features"))
    with pytest.raises(cams.CamError, match="distinct"):
        cams.compute_layer_cams(small_model, images, classes, ())
    with pytest.raises(ValueError, match="unknown architecture"):
        cams.layer_of("VGG16", "earlier")
    assert cams.layer_of("InceptionV3", "target") == "mixed10" and cams.layer_of("InceptionV3", "earlier") == "mixed7"
    assert cams.layer_of("InceptionV3", "mixed8") == "mixed8"
    from cxrdrift.config import profile

    assert cams.cam_layers(profile("smoke"), "DenseNet201") == {"target": "conv5_block32_concat",
                                                                "earlier": "conv4_block48_concat"}
    with pytest.raises(cams.CamError, match="same layer of InceptionV3 twice"):
        cams.cam_layers(profile("smoke", cam_layers="target,mixed10"), "InceptionV3")
    assert cams.map_key("layercam", "conv5_block3_out", "ResNet50V2") == "layercam"
    assert cams.map_key("layercam", "conv4_block5_out", "ResNet50V2") == "layercam@conv4_block5_out"


def tf_keras_vis_maps(model: keras.Model, layer: str, images: np.ndarray, classes: np.ndarray,
                      methods=("gradcam", "gradcampp", "layercam")) -> dict[str, np.ndarray]:
    """tf-keras-vis on the logits model at exactly `layer` (no conv-layer seeking), raw maps."""
    score = tkv_scores.CategoricalScore([int(c) for c in classes])
    options = dict(penultimate_layer=layer, seek_penultimate_conv_layer=False, expand_cam=False,
                   normalize_cam=False)
    makers = {"gradcam": Gradcam, "gradcampp": GradcamPlusPlus, "layercam": Layercam}
    return {name: np.asarray(makers[name](model, clone=False)(score, images, **options)) for name in methods}


def assert_agree_after_postprocess(ours: dict, reference: dict, size: tuple[int, int]) -> None:
    for name, maps in reference.items():
        np.testing.assert_allclose(cams.postprocess(ours[name], size), cams.postprocess(maps, size),
                                   atol=TOLERANCE, err_msg=name)


def test_matches_tf_keras_vis_small_model(small_model, small_batch) -> None:
    images, classes = small_batch
    ours = cams.compute_cams(small_model, images, classes, "features", alpha_norm=True)
    assert_agree_after_postprocess(ours, tf_keras_vis_maps(small_model, "features", images, classes),
                                   (16, 16))


# -- post-processing -------------------------------------------------------------------------------

def test_postprocess_resizes_and_normalizes() -> None:
    raw = np.array([[[0.0, 2.0], [4.0, 6.0]], [[3.0, 3.0], [3.0, 3.0]]], np.float32)
    out = cams.postprocess(raw, (4, 4))
    assert out.shape == (2, 4, 4) and out.dtype == np.float32
    # half-pixel bilinear upsampling of [[0, 2], [4, 6]], then min-max
    expected = np.array([0.0, 0.5, 1.5, 2.0])[None, :] + np.array([0.0, 1.0, 3.0, 4.0])[:, None]
    np.testing.assert_allclose(out[0], expected / 6.0, atol=1e-6)
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(cams.degenerate_mask(raw), [False, True])
    np.testing.assert_allclose(cams.postprocess(raw[0], (4, 4)), out[0])
    # flatness is relative to the map's own scale: tiny but structured counts, large and flat does not
    assert not cams.degenerate_mask(np.full((3, 3), 1e-13) + np.eye(3) * 1e-13).any()
    assert cams.degenerate_mask(np.full((3, 3), 4e3) + np.eye(3) * 1e-4).all()


# -- clear errors ----------------------------------------------------------------------------------

def test_clear_errors(small_model, small_batch) -> None:
    images, classes = small_batch
    with pytest.raises(cams.CamError, match="no layer named 'featurs'.*features"):
        cams.compute_cams(small_model, images, classes, "featurs")
    pool = [layer.name for layer in small_model.layers if "pooling" in layer.name][0]
    with pytest.raises(cams.CamError, match="4-D"):
        cams.compute_cams(small_model, images, classes, pool)
    with pytest.raises(cams.CamError, match="7 images"):
        cams.compute_cams(small_model, images, classes[:3], "features")
    with pytest.raises(cams.CamError, match="class index 4 is out of range"):
        cams.compute_cams(small_model, images, np.full(7, 4), "features")
    with pytest.raises(cams.CamError, match="unknown CAM method 'scorecam'"):
        cams.compute_cams(small_model, images, classes, "features", methods=["layercam", "scorecam"])
    with pytest.raises(cams.CamError, match="do not fit the model input"):
        cams.compute_cams(small_model, images[:, :8], classes, "features")
    feature_model = keras.Model(small_model.inputs, small_model.get_layer("features").output)
    with pytest.raises(cams.CamError, match="2-D logits"):
        cams.compute_cams(feature_model, images, classes, "features")
    assert issubclass(cams.CamError, ValueError)


# -- real backbones at small input, random weights ------------------------------------------------

@functools.lru_cache(maxsize=None)
def backbone_batch(arch: str, size: int, n: int = 3) -> tuple[keras.Model, np.ndarray, np.ndarray]:
    keras.utils.set_random_seed(3)
    model = build_model(arch, size, None)
    images = np.random.default_rng(5).uniform(-1, 1, size=(n, size, size, 3)).astype(np.float32)
    return model, images, np.arange(n) % 5


@pytest.mark.slow
@pytest.mark.parametrize("arch,size", [("DenseNet201", 64), ("ResNet50V2", 64), ("InceptionV3", 139)])
def test_real_backbones_match_tf_keras_vis(arch, size) -> None:
    """The paper's layer and the earlier one, both from one pass, each against tf-keras-vis."""
    model, images, classes = backbone_batch(arch, size)
    layers = (TARGET_LAYERS[arch], EARLIER_LAYERS[arch])
    both = cams.compute_layer_cams(model, images, classes, layers, alpha_norm=True)
    plain = cams.compute_layer_cams(model, images, classes, layers, methods=["gradcampp"])
    for layer in layers:
        ours = both[layer]
        for maps in (*ours.values(), plain[layer]["gradcampp"]):
            assert np.isfinite(maps).all()
            assert maps.shape[1:] == model.get_layer(layer).output.shape[1:3]
        assert_agree_after_postprocess(ours, tf_keras_vis_maps(model, layer, images, classes), (size, size))
    target, earlier = (model.get_layer(layer).output.shape[1] for layer in layers)
    assert earlier > target   # the earlier layer's grid is finer


@pytest.mark.slow
def test_inception_v3_gradient_is_constant_per_channel() -> None:
    """mixed10 feeds global average pooling: Grad-CAM is the CAM, normalized Grad-CAM++ is LayerCAM."""
    model, images, classes = backbone_batch("InceptionV3", 139)
    # trained heads have large logit gradients; scale the random head so sum_ij(A)·g is of order 1
    dense = model.get_layer("logits")
    original = dense.kernel.numpy()
    dense.kernel.assign(original * 300.0)
    try:
        check_inception_identities(model, images, classes)
    finally:
        dense.kernel.assign(original)


def check_inception_identities(model: keras.Model, images: np.ndarray, classes: np.ndarray) -> None:
    ours = cams.compute_cams(model, images, classes, "mixed10")
    normed = cams.compute_cams(model, images, classes, "mixed10", methods=["gradcampp"], alpha_norm=True)
    features = keras.Model(model.inputs[0], model.get_layer("mixed10").output)(images, training=False).numpy()
    h, w = features.shape[1:3]
    kernel = model.get_layer("logits").kernel.numpy()                         # (K, classes)
    class_map = np.maximum(np.einsum("nijk,kn->nij", features, kernel[:, classes]) / (h * w), 0)
    np.testing.assert_allclose(ours["gradcam"], class_map, rtol=1e-4, atol=1e-6 * np.abs(class_map).max())
    np.testing.assert_allclose(normed["gradcampp"], ours["layercam"], rtol=1e-4,
                               atol=1e-6 * np.abs(ours["layercam"]).max())
    size = (139, 139)
    np.testing.assert_allclose(cams.postprocess(normed["gradcampp"], size),
                               cams.postprocess(ours["layercam"], size), atol=TOLERANCE)
    # the un-normalized form (our default) weighs channels by 1/(2 + sum_ij(A_k) g_k): not proportional
    ratio = ours["gradcampp"] / ours["layercam"]
    assert (ratio.std(axis=(1, 2)) / ratio.mean(axis=(1, 2)) > 1e-5).all()


# -- the stage on a tiny run directory --------------------------------------------------------------

@pytest.mark.slow
def test_a_later_map_of_a_backbone_reuses_its_model_with_the_maps_of_a_model_built_anew(tmp_path) -> None:
    keras.utils.set_random_seed(0)
    for name in ("a", "b"):
        build_model("ResNet50V2", 64, None).save_weights(tmp_path / f"{name}.weights.h5")
    rng = np.random.default_rng(0)
    batch = rng.uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32), np.array([0, 1, 2, 3], np.int32)
    layers, methods = (TARGET_LAYERS["ResNet50V2"], EARLIER_LAYERS["ResNet50V2"]), ("layercam", "gradcampp")

    model = cams.mapping_model("ResNet50V2", 64, tmp_path / "a.weights.h5")
    first = cams.fused_pass(model, layers).run_layers([batch], methods)
    head = model.get_layer("logits")
    head.kernel.assign(head.kernel * -3.0)  # changed in place, as the randomized copy changes its top
    again = cams.mapping_model("ResNet50V2", 64, tmp_path / "b.weights.h5")
    assert again is model
    maps = cams.fused_pass(again, layers).run_layers([batch], methods)

    fresh = build_model("ResNet50V2", 64, None)
    fresh.load_weights(tmp_path / "b.weights.h5")
    expected = cams.fused_pass(fresh, layers).run_layers([batch], methods)
    for layer in layers:
        for method in methods:
            np.testing.assert_array_equal(maps[layer][method], expected[layer][method])
    assert not np.array_equal(maps[layers[0]]["layercam"], first[layers[0]]["layercam"])
    assert cams.mapping_model("ResNet50V2", 32, tmp_path / "a.weights.h5") is not model  # another size


@pytest.mark.slow
def test_cam_stage_writes_skips_and_recomputes(tmp_path) -> None:
    from cxrdrift import data
    from cxrdrift.artifacts import RunPaths, write_parquet
    from cxrdrift.config import profile

    config = profile("smoke", run_dir=str(tmp_path / "run"), architectures=["ResNet50V2"], image_size=64,
                     synth_size=64, synth_train=5, synth_val=5, synth_test=12, cam_batch_size=5,
                     cam_samples="true_positives", cam_epochs="compared")
    paths = RunPaths.of(config)
    test = data.prepare(config).split("test")
    kept = test["sample_id"].to_numpy()[::2]
    write_parquet(paths.true_positives, test[["sample_id", "label"]].assign(
        kept=test["sample_id"].isin(kept)))
    keras.utils.set_random_seed(0)
    model = build_model("ResNet50V2", 64, None)
    early, late = config.compared_epochs
    paths.model_dir("ResNet50V2").mkdir(parents=True)
    model.save_weights(paths.weights("ResNet50V2", early))
    head = model.get_layer("logits")
    head.kernel.assign(head.kernel * -2.0)
    model.save_weights(paths.weights("ResNet50V2", late))

    assert config.cam_layers == ("target", "earlier")   # the smoke profile maps both depths
    written = cams.run_cam_stage(config)
    assert written == [paths.cams("ResNet50V2", early), paths.cams("ResNet50V2", late)]
    late_maps = cams.load_cams(config, "ResNet50V2", late)
    assert sorted(late_maps) == sorted(["sample_id", *config.cam_methods, cams.OTHER_ALPHA])
    from cxrdrift.artifacts import read_npz
    stored = read_npz(paths.cams("ResNet50V2", late))       # the file names its layers; no pickle needed
    assert list(stored["layers"]) == ["conv5_block3_out", "conv4_block5_out"]
    assert list(stored["depths"]) == ["target", "earlier"]
    finer = cams.load_cams(config, "ResNet50V2", late, "earlier")
    assert sorted(finer) == sorted(late_maps) and finer["layercam"].shape == (len(kept), 4, 4)
    np.testing.assert_array_equal(finer["sample_id"], kept)
    np.testing.assert_array_equal(finer["gradcam"], stored["gradcam@conv4_block5_out"])
    layer_rows = cams.layer_table(config)
    assert list(layer_rows[["layer", "paper_layer", "grid"]].itertuples(index=False, name=None)) == [
        ("conv5_block3_out", True, "2×2"), ("conv4_block5_out", False, "4×4")]
    with pytest.raises(cams.CamError, match="not at mixed7"):
        cams.load_cams(config, "ResNet50V2", late, "mixed7")
    np.testing.assert_array_equal(late_maps["sample_id"], kept)
    rows = test[test["sample_id"].isin(kept)]
    images = np.concatenate(list(data.make_dataset(rows, preprocess_input("ResNet50V2"), 64, 32, with_labels=False).as_numpy_iterator()))
    expected = cams.compute_cams(model, images, rows["label_index"], "conv5_block3_out",
                                 methods=config.cam_methods)
    expected_finer = cams.compute_cams(model, images, rows["label_index"], "conv4_block5_out",
                                       methods=config.cam_methods)
    for name in config.cam_methods:
        assert late_maps[name].dtype == np.float32 and late_maps[name].shape == (len(kept), 2, 2)
        np.testing.assert_allclose(late_maps[name], expected[name], rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(finer[name], expected_finer[name], rtol=1e-4, atol=1e-7)
    assert not np.allclose(cams.load_cams(config, "ResNet50V2", early)["layercam"], late_maps["layercam"])

    finished = {p: p.stat().st_mtime_ns for p in written}
    cams.run_cam_stage(config)
    assert {p: p.stat().st_mtime_ns for p in written} == finished          # same config: skipped
    image = Path(rows["path"].iloc[0])
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    cams.run_cam_stage(config)                                                # same bytes, newer time: skipped
    assert {p: p.stat().st_mtime_ns for p in written} == finished
    with Image.open(image) as original:
        Image.fromarray(255 - np.asarray(original)).save(image)
    cams.run_cam_stage(config)                                                # images regenerated: recomputed
    assert all(p.stat().st_mtime_ns != finished[p] for p in written)
    finished = {p: p.stat().st_mtime_ns for p in written}
    normed = config.replace(alpha_norm=True)
    cams.run_cam_stage(normed)                                                # stale: recomputed
    assert all(p.stat().st_mtime_ns != finished[p] for p in written)
    assert not np.allclose(cams.load_cams(normed, "ResNet50V2", late)["gradcampp"], late_maps["gradcampp"])

    table = cams.degenerate_table(config)
    assert list(table[["epoch", "method", "maps"]].itertuples(index=False, name=None)) == [
        (e, m, len(kept)) for e in (early, late) for m in config.cam_methods]
    assert ((table["degenerate"] >= 0) & (table["share"] == table["degenerate"] / len(kept))).all()
    agreement = cams.method_agreement(config)
    assert len(agreement) == 2 * len(kept)
    r = agreement["pattern_correlation"].to_numpy()
    assert np.all(np.isnan(r) | ((r >= -1) & (r <= 1)))
    examples = cams.compared_examples(config, "ResNet50V2", "layercam", per_class=1)
    assert examples.images.shape == (len(examples.sample_ids), 64, 64, 3)
    position = list(kept).index(examples.sample_ids[0])
    np.testing.assert_allclose(examples.late[0], cams.postprocess(late_maps["layercam"][position], (64, 64)))
    from cxrdrift.plots import cams as cam_plots
    figure = cam_plots.plot_compared_examples(examples, config.threshold)
    assert len(figure.axes) == 4 * len(examples.sample_ids)
    for figure in (cam_plots.plot_degenerate_share(table), cam_plots.plot_method_agreement(agreement)):
        assert figure.axes

    identity = cams.alpha_norm_table(normed, samples=3)
    assert list(identity["Grad-CAM++ form"]) == ["alpha_norm=False", "alpha_norm=True"]
    assert (identity["maps scored"] <= 3).all() and (identity["epoch"] == late).all()

    paths.true_positives.unlink()
    with pytest.raises(cams.CamError, match="true-positive filter"):
        cams.run_cam_stage(config, force=True)
