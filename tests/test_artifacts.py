"""Stamps: what an artifact was computed from, stored in it, compared before a stage skips work."""
import shutil

import numpy as np
import pandas as pd
import pytest

from cxrdrift import config as cfg
from cxrdrift.artifacts import (STAMP_KEY, RunPaths, fingerprint, is_current, read_json, read_npz, stamp,
                                stored_stamp, write_json, write_npz, write_parquet)


def test_every_field_is_stamped_by_a_stage_or_named_as_shaping_no_artifact():
    stamped = set().union(*cfg.STAGE_FIELDS.values())
    assert stamped | set(cfg.UNSTAMPED_FIELDS) == set(cfg.FIELDS)
    assert not stamped & set(cfg.UNSTAMPED_FIELDS)
    assert "seed" in cfg.STAGE_FIELDS["training"] and "threshold" not in cfg.STAGE_FIELDS["training"]


def test_a_stamp_changes_with_its_stages_fields_inputs_and_facts_only(tmp_path):
    config = cfg.profile("smoke", run_dir=str(tmp_path / "run"))
    source = tmp_path / "a" / "predictions.parquet"
    source.parent.mkdir()
    source.write_bytes(b"one")
    first = stamp(config, "drift", [source], arch="ResNet50V2")
    assert first == stamp(config, "drift", [source], arch="ResNet50V2")
    assert first != stamp(config.replace(threshold=0.4), "drift", [source], arch="ResNet50V2")
    assert first == stamp(config.replace(bootstrap_samples=7, run_dir="elsewhere"), "drift", [source],
                          arch="ResNet50V2")
    assert first != stamp(config, "drift", [source], arch="DenseNet201")
    assert first != stamp(config, "localization", [source], arch="ResNet50V2")
    copy = tmp_path / "b" / "c" / "predictions.parquet"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(source, copy)
    assert fingerprint([copy]) == fingerprint([source])  # same name and bytes, anywhere
    assert fingerprint({"test/Normal/1": source}) != fingerprint({"test/COVID-19/1": source})
    source.write_bytes(b"two")
    assert first != stamp(config, "drift", [source], arch="ResNet50V2")
    with pytest.raises(KeyError):
        stamp(config, "no such stage")


def test_each_kind_of_artifact_keeps_its_stamp(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    write_parquet(tmp_path / "t.parquet", frame, stamp="s1")
    write_npz(tmp_path / "m.npz", {"x": np.arange(3)}, stamp="s2")
    write_json(tmp_path / "state.json", {"epoch": 4}, stamp="s3")
    assert [stored_stamp(tmp_path / name) for name in ("t.parquet", "m.npz", "state.json")] == ["s1", "s2", "s3"]
    assert STAMP_KEY not in frame.attrs  # the caller's frame is left alone
    assert pd.read_parquet(tmp_path / "t.parquet")["x"].tolist() == [1.0, 2.0]
    assert list(read_npz(tmp_path / "m.npz")) == ["x"]
    assert read_json(tmp_path / "state.json")["epoch"] == 4
    assert is_current(tmp_path / "m.npz", "s2") and not is_current(tmp_path / "m.npz", "s1")
    # unstamped, missing or unreadable: never current
    write_parquet(tmp_path / "plain.parquet", frame)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    (tmp_path / "broken.json").write_text("{")
    for name in ("plain.parquet", "missing.parquet", "broken.npz", "broken.json"):
        assert stored_stamp(tmp_path / name) is None and not is_current(tmp_path / name, "s1")
    with pytest.raises(ValueError, match="stamps are kept in"):
        stored_stamp(tmp_path / "history.csv")


def test_run_paths_own_the_training_files():
    paths = RunPaths.of(cfg.profile("smoke", run_dir="runs/x"))
    assert paths.training_state("InceptionV3").as_posix() == "runs/x/models/InceptionV3/state.json"
    assert paths.last_weights("InceptionV3").parent == paths.last_optimizer("InceptionV3").parent == \
        paths.weights_description("InceptionV3").parent == paths.model_dir("InceptionV3")
    assert paths.training_log.as_posix() == "runs/x/logs/training.log"
