import json

import pytest

from cxrdrift import config as cfg
from cxrdrift.artifacts import RunPaths, read_json, write_config


def test_paper_profile_follows_the_paper():
    config = cfg.profile("paper", data_dir="/data/cxr")
    assert config.architectures == ("DenseNet201", "ResNet50V2", "InceptionV3")
    assert (config.epochs_tl, config.epochs_ft) == (10, 10)
    assert config.compared_epochs == (8, 19)
    assert config.cam_methods[:2] == ("layercam", "gradcampp")   # the paper's; Grad-CAM comes free
    assert config.weights == "imagenet"
    assert config.save_epochs == "all"
    assert not config.scaled and not config.synthetic_data
    assert config.run_dir == "runs/paper"


def test_paper_profile_requires_the_real_dataset():
    with pytest.raises(cfg.ConfigError, match="--data-dir"):
        cfg.profile("paper")


@pytest.mark.parametrize("name, weights", [("demo", "synthetic"), ("smoke", "none")])
def test_small_profiles_are_synthetic_and_scaled(name, weights):
    config = cfg.profile(name)
    assert config.synthetic_data and config.weights == weights and config.scaled
    assert config.early_epoch <= config.epochs_tl < config.late_epoch <= config.total_epochs
    assert config.run_dir == f"runs/{name}"


def test_every_field_states_where_its_default_comes_from():
    for row in cfg.describe_fields():
        assert row["source"], row["field"]
        assert row["help"], row["field"]
    sources = {row["field"]: row["source"] for row in cfg.describe_fields()}
    assert sources["epochs_tl"].startswith("paper")
    assert sources["lr_ft"].startswith("assumption")
    assert {"lr_tl", "lr_ft", "threshold", "batch_size", "image_size", "alpha_norm", "seed"} <= {
        row["field"] for row in cfg.assumptions()}


def test_overrides_are_converted_from_strings():
    config = cfg.profile("demo", threshold="0.4", epochs_ft="5", late_epoch=14, augment="true",
                         architectures="ResNet50V2,InceptionV3", run_dir="runs/trial")
    assert config.threshold == 0.4 and config.epochs_ft == 5 and config.augment is True
    assert config.architectures == ("ResNet50V2", "InceptionV3")
    assert config.run_dir == "runs/trial"


@pytest.mark.parametrize("overrides, message", [
    ({"thresold": 0.4}, "unknown parameter 'thresold'"),
    ({"threshold": "high"}, "threshold: expected float"),
    ({"epochs_tl": 2.5}, "epochs_tl: expected int"),
    ({"augment": "maybe"}, "augment: expected bool"),
    ({"architectures": "VGG16"}, "'VGG16' is not one of"),
    ({"cam_methods": ["layercam", "scorecam"]}, "'scorecam' is not one of"),
    ({"threshold": 1.5}, "threshold=1.5 must lie in"),
    ({"early_epoch": 9, "epochs_tl": 4}, "early_epoch=9 must lie in the frozen phase"),
    ({"late_epoch": 2}, "late_epoch=2 must lie in the fine-tuning phase"),
])
def test_bad_overrides_get_clear_errors(overrides, message):
    with pytest.raises(cfg.ConfigError, match=message):
        cfg.profile("demo", **overrides)


def test_unknown_profile():
    with pytest.raises(cfg.ConfigError, match="unknown profile 'fast'"):
        cfg.profile("fast")


def test_config_json_round_trip(tmp_path):
    config = cfg.profile("smoke", run_dir=str(tmp_path / "run"), threshold=0.3)
    path = write_config(config, {"dataset": {"synthetic": True}})
    stored = read_json(path)
    assert stored["config"]["threshold"] == 0.3
    assert stored["resolved"] == {"dataset": {"synthetic": True}}
    assert cfg.RunConfig.load(path) == config
    # facts recorded later are merged with earlier ones for the same config ...
    write_config(config, {"weights": {"ResNet50V2": "synthetic"}})
    assert set(read_json(path)["resolved"]) == {"dataset", "weights"}
    # ... and dropped when the configuration changed
    write_config(config.replace(threshold=0.6))
    assert read_json(path)["resolved"] == {}
    assert json.loads(RunPaths.of(config).config.read_text())["config"]["threshold"] == 0.6


def test_compared_and_saved_epochs():
    config = cfg.profile("paper", data_dir="x", cam_epochs="compared")
    assert config.cam_epoch_list() == (8, 19)
    assert config.saved_epochs() == tuple(range(1, 21))
    assert config.replace(cam_epochs="all").cam_epoch_list() == tuple(range(1, 21))
    assert config.replace(save_epochs="compared").saved_epochs() == (8, 19)
    # the paper profile maps every epoch (drift across epochs, beyond the paper), which keeps them all
    paper = cfg.profile("paper", data_dir="x", save_epochs="compared")
    assert paper.cam_epoch_list() == paper.saved_epochs() == tuple(range(1, 21))


def test_cam_layers_keep_the_paper_layer():
    paper = cfg.profile("paper", data_dir="/data/cxr")
    assert paper.cam_layers == ("target",)                    # the paper's layer alone
    assert cfg.profile("demo").cam_layers == cfg.profile("smoke").cam_layers == ("target", "earlier")
    assert cfg.profile("smoke", cam_layers="target,mixed8").cam_layers == ("target", "mixed8")
    for bad in ("earlier", "target,target", ""):
        with pytest.raises(cfg.ConfigError, match="cam_layers"):
            cfg.profile("smoke", cam_layers=bad)
