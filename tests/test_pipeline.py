"""End to end: the smoke profile executes every chapter and builds the book (what CI runs).

The book is built in a copy of the project's book sources under a temporary folder, so the test
neither needs nor touches the developer's own `book/chapters`, `_build` or `runs`.
"""
import json
import re
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from cxrdrift import book, config as cfg, evidence, pipeline, replicates, verdicts
from cxrdrift.artifacts import RunPaths, read_npz
from cxrdrift.data import CLASSES
from cxrdrift.models import EARLIER_LAYERS, TARGET_LAYERS

ROOT = Path(__file__).resolve().parents[1]
BOOK_SOURCES = ("_config.yml", "_toc.yml", "notebooks", "book")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_book(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke_book")
    for name in BOOK_SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("chapters", "_build"))
        else:
            shutil.copy2(source, root / name)
    # one replicate seed, so that the book trains and maps it as the demo does its two, and a
    # fine-tuning epoch of a third of the training images, as the demo takes a share
    config = cfg.profile("smoke", run_dir=str(root / "runs" / "smoke"), replicate_seeds=(1,), finetune_images=40)
    html = book.run_book(config, root=root)
    return root, config, html


def chapters(root: Path) -> list[Path]:
    return sorted((root / "book" / "chapters").glob("[0-9][0-9]_*.ipynb"))


def test_every_chapter_is_executed_without_errors(smoke_book):
    root, _, _ = smoke_book
    executed = chapters(root)
    assert [p.stem for p in executed] == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.md"))
    assert len(executed) == 9
    for path in executed:
        notebook = nbformat.read(path, as_version=4)
        errors = [output for cell in notebook.cells if cell.cell_type == "code"
                  for output in cell.get("outputs", []) if output.get("output_type") == "error"]
        assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
        images = [output for cell in notebook.cells if cell.cell_type == "code"
                  for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
        assert images, f"{path.name} shows no figure"


def test_every_chapter_is_in_the_html_with_its_figures_and_the_smoke_banner(smoke_book):
    root, _, html = smoke_book
    assert (html / "index.html").exists()
    for path in chapters(root):
        page = html / "book" / "chapters" / f"{path.stem}.html"
        assert page.exists(), page
        text = page.read_text()
        sources = re.findall(r'<img[^>]+src="([^"]+)"', text)
        assert sources, f"{page.name} embeds no image"
        for source in sources:
            if not source.startswith(("data:", "http")):
                assert (page.parent / source).resolve().exists(), f"{page.name}: missing {source}"
        assert "smoke" in text and "synthetic" in text.lower(), f"{page.name} lacks the smoke banner"


def test_run_directory_holds_every_artifact(smoke_book):
    _, config, _ = smoke_book
    paths = RunPaths.of(config)
    stored = json.loads(paths.config.read_text())
    assert stored["config"]["profile"] == "smoke"
    assert {arch: stored["resolved"]["weights"][arch]["kind"] for arch in config.architectures} == \
        dict.fromkeys(config.architectures, "none")

    predictions = pd.read_parquet(paths.predictions)
    n_test = sum(stored["resolved"]["dataset"]["counts"]["test"].values())
    assert n_test == config.synth_test
    assert len(predictions) == len(config.architectures) * config.total_epochs * n_test
    assert predictions.groupby(["arch", "epoch"]).size().eq(n_test).all()

    history = pd.read_csv(paths.history)
    assert sorted(history["epoch"].unique()) == list(range(1, config.total_epochs + 1))
    assert set(history["phase"]) == {"transfer", "finetune"}

    for arch in config.architectures:
        assert sorted(p.name for p in paths.model_dir(arch).glob("epoch_*.weights.h5")) == \
            [paths.weights(arch, epoch).name for epoch in config.saved_epochs()]
        for epoch in config.compared_epochs:
            maps = read_npz(paths.cams(arch, epoch))
            assert len(maps["sample_id"]) > 0
            # the smoke profile maps two depths from one pass: the paper's layer and a finer grid
            target, earlier = (str(layer) for layer in maps["layers"])
            assert (target, earlier) == (TARGET_LAYERS[arch], EARLIER_LAYERS[arch])
            for method in config.cam_methods:
                assert maps[method].dtype.name == "float32" and maps[method].shape[0] == len(maps["sample_id"])
                finer = maps[f"{method}@{earlier}"]
                assert finer.shape[0] == len(maps["sample_id"]) and finer.shape[1] > maps[method].shape[1]

    true_positives = pd.read_parquet(paths.true_positives)
    assert len(true_positives) == n_test and true_positives["kept"].dtype == bool
    every_depth = pd.read_parquet(paths.drift)
    assert set(every_depth["depth"]) == {"target", "earlier"}
    assert set(every_depth["layer"]) == {*(TARGET_LAYERS[a] for a in config.architectures),
                                         *(EARLIER_LAYERS[a] for a in config.architectures)}
    assert every_depth["overlap_iou"][every_depth["depth"] == "earlier"].notna().any()
    drift = every_depth[every_depth["depth"] == "target"]
    assert set(drift["arch"]) == set(config.architectures)
    assert set(drift["method"]) == set(config.cam_methods)
    assert set(drift["label"]) <= set(CLASSES)
    scored = drift["overlap_iou"].dropna()
    assert len(scored) > 0 and scored.between(0, 1).all()

    # beyond the paper (chapter 08): ground truth on the synthetic masks, the randomization
    # ceiling, and drift across every epoch (smoke maps all three)
    localization = pd.read_parquet(paths.localization)
    assert set(localization["epoch"]) == set(config.cam_epoch_list()) == {1, 2, 3}
    assert "Normal" not in set(localization["label"])
    assert localization["energy_inside"].dropna().between(0, 1).all()
    assert localization["lesion_share"].between(0, 1).all()
    assert set(localization["depth"]) == {"target", "earlier"}
    randomized = pd.read_parquet(paths.randomization)
    assert set(randomized["method"]) == set(config.cam_methods) and len(randomized) == len(drift)
    trajectory = pd.read_parquet(paths.trajectory)
    assert set(trajectory["reference"]) == {"early", "late"} and set(trajectory["epoch"]) == {1, 2, 3}

    # the replicate: trained in chapter 2's process, in the fine-tuning steps the main run traced;
    # its randomly initialized backbones differ from the main run's, so it computes its own
    # features (tests/test_train.py shares them between runs that start from the same weights)
    replica = RunPaths.of(replicates.replicate_config(config, 1))
    log = replica.training_log.read_text()
    assert "frozen features" not in log
    assert log.count("fine-tuning in the model an earlier run of this process compiled") == len(config.architectures)
    assert all(replica.weights(arch, config.late_epoch).is_file() for arch in config.architectures)
    assert set(pd.read_parquet(paths.noise_floor)["seed"]) == {1}
    assert set(evidence.load_evidence(config)["seed"]) == {0, 1}
    assert (verdicts.seed_rankings(config).groupby("method")["count"].sum() == 2).all()
    assert len(replicates.floor_excess(config)) == len(config.cam_methods) * len(config.architectures) * 4


def test_unchanged_chapters_are_not_executed_again(smoke_book):
    root, config, _ = smoke_book
    results = book.execute_notebooks(config, root=root, progress_bar=False)
    assert [result.status for result in results] == ["skipped"] * len(chapters(root))


def test_a_finished_run_is_skipped_stage_by_stage_and_a_change_redoes_exactly_what_depends_on_it(
        smoke_book, tmp_path):
    _, config, _ = smoke_book
    run = tmp_path / "finished"  # a copy elsewhere: nothing is stamped with where the run or its data lie
    shutil.copytree(config.run_dir, run)
    config = config.replace(run_dir=str(run))

    def artifacts() -> dict[str, int]:
        """Every artifact's modification time (config.json and the logs are rewritten by every run)."""
        return {path.relative_to(run).as_posix(): path.stat().st_mtime_ns for path in run.rglob("*")
                if path.is_file() and path.name != "config.json" and "logs" not in path.parts}

    def rewritten(before: dict[str, int]) -> set[str]:
        after = artifacts()
        assert set(after) == set(before)
        return {name for name, mtime in after.items() if mtime != before[name]}

    before = artifacts()
    assert {"predictions.parquet", "true_positives.parquet", "drift.parquet", "localization.parquet",
            "randomization.parquet", "trajectory.parquet", "cams/ResNet50V2/epoch_03.npz",
            "models/ResNet50V2/state.json", "evidence.parquet", "evidence_threshold_free.parquet",
            "randomization/ResNet50V2.npz", "tables/verdicts.json",
            "replicates/seed_1/models/ResNet50V2/state.json"} <= set(before)
    pipeline.run_all(config)
    assert rewritten(before) == set()  # the copy's replicate included: it reads the copy's data

    # a field: the threshold scores maps, so the stages that score them recompute, no map and no model
    before = artifacts()
    pipeline.run_all(config.replace(threshold=0.4))
    assert rewritten(before) == {"drift.parquet", "localization.parquet", "randomization.parquet",
                                 "trajectory.parquet", "noise_floor.parquet", "evidence.parquet",
                                 "tables/verdicts.json"}
    # (neither the randomized copy's maps nor the evidence no threshold decides: both are stamped without it)

    # an input: another checkpoint for one epoch of one architecture redoes that epoch's maps and
    # every table read from them; the other maps, the models, the replicate and the true positives stay
    paths = RunPaths(run)
    shutil.copyfile(paths.weights("ResNet50V2", 2), paths.weights("ResNet50V2", 3))
    before = artifacts()
    pipeline.run_all(config.replace(threshold=0.4))
    assert rewritten(before) == {"cams/ResNet50V2/epoch_03.npz", "drift.parquet", "localization.parquet",
                                 "randomization/ResNet50V2.npz", "randomization.parquet", "trajectory.parquet",
                                 "noise_floor.parquet", "evidence_threshold_free.parquet", "evidence.parquet",
                                 "tables/verdicts.json"}
