"""The demo's budgets, read from a finished run directory (what `make book` wrote).

    .venv/bin/python benchmarks/demo_targets.py [--run-dir runs/demo]

Prints, each beside its target and as a ratio: every architecture's test accuracy at the two
compared epochs (targets: at least 0.85 at the early one, 0.88 at the late one), the share of test
samples the true-positive filter keeps (target: at least 50 %), the pre-training and training
seconds per architecture, and the wall time of each chapter of the last `cxrdrift book` run
(targets: 30 minutes for a first `make book`, which pre-trains, 8 with pre-training cached).
Two checks that the study stays worth doing: the relative change of each backbone's weights
between the compared epochs (fine-tuning must move the network), and whether chapter 08's
randomization ceiling lies beyond the fine-tuning drift (lower overlap IoU and lower pattern
correlation) under at least one method for every architecture. Exits 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


import numpy as np

from cxrdrift import drift, models, randomization, train
from cxrdrift.artifacts import RunPaths
from cxrdrift.config import RunConfig

EARLY_ACCURACY_TARGET, LATE_ACCURACY_TARGET, KEPT_TARGET = 0.85, 0.88, 0.50
BOOK_MINUTES_FIRST, BOOK_MINUTES_CACHED = 30.0, 8.0


def chapter_seconds(root: Path) -> dict[str, float]:
    """Wall seconds of each chapter's last execution, from the book's `.run.json` records."""
    return {record.name.removesuffix(".run.json"): float(json.loads(record.read_text()).get("wall_s", "nan"))
            for record in sorted((root / "book" / "chapters").glob("*.run.json"))}


def backbone_change(config: RunConfig, arch: str) -> float:
    """||w_late - w_early|| / ||w_early|| over the backbone's weights (head excluded)."""
    paths = RunPaths.of(config)
    weights = []
    for epoch in config.compared_epochs:
        model = models.build_model(arch, config.image_size, None)
        model.load_weights(paths.weights(arch, epoch))
        weights.append(np.concatenate([np.ravel(w) for layer in models.backbone_layers(model)
                                       for w in layer.get_weights()]))
    return float(np.linalg.norm(weights[1] - weights[0]) / np.linalg.norm(weights[0]))


def ceiling_beyond_phase(config: RunConfig) -> dict[str, list[str]] | None:
    """Per architecture, the methods under which the randomized copy's maps agree less with the
    late checkpoint's than the early checkpoint's do (lower overlap IoU and lower correlation)."""
    table = randomization.ceiling_table(config)
    if table is None:
        return None
    similarity = table[table["metric"].isin(["overlap_iou", "pattern_correlation"])]
    beyond = similarity.assign(beyond=similarity["randomized"] < similarity["phase"])
    verdict = beyond.groupby(["arch", "method"])["beyond"].all()
    return {arch: [m for (a, m), ok in verdict.items() if a == arch and ok] for arch in config.architectures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/demo", type=Path)
    args = parser.parse_args()
    config = RunConfig.load(RunPaths(args.run_dir).config)
    early, late = config.compared_epochs
    scores = {epoch: train.epoch_scores(train.load_predictions(config), epoch) for epoch in (early, late)}
    missed = []
    print(f"run {args.run_dir} (profile {config.profile}, {config.image_size} px, epochs {early} and {late})")
    for arch in config.architectures:
        accuracy = {epoch: scores[epoch][arch]["accuracy"] for epoch in (early, late)}
        ok = {early: accuracy[early] >= EARLY_ACCURACY_TARGET, late: accuracy[late] >= LATE_ACCURACY_TARGET}
        missed += [f"{arch} accuracy at epoch {e}" for e in (early, late) if not ok[e]]
        print(f"  {arch:<12} test accuracy epoch {early} {accuracy[early]:.3f} "
              f"({accuracy[early] / EARLY_ACCURACY_TARGET:.2f}x the {EARLY_ACCURACY_TARGET:.2f} target "
              f"{'ok' if ok[early] else 'MISSED'}), epoch {late} {accuracy[late]:.3f} "
              f"({accuracy[late] / LATE_ACCURACY_TARGET:.2f}x the {LATE_ACCURACY_TARGET:.2f} target "
              f"{'ok' if ok[late] else 'MISSED'}); backbone weights changed by "
              f"{backbone_change(config, arch):.2%} between the two")
    kept = drift.load_true_positives(config)["kept"].mean()
    missed += [] if kept >= KEPT_TARGET else ["kept share"]
    print(f"  kept by the true-positive filter: {kept:.1%} -> {kept / KEPT_TARGET:.2f}x the "
          f"{KEPT_TARGET:.0%} target {'ok' if kept >= KEPT_TARGET else 'MISSED'}")
    beyond = ceiling_beyond_phase(config)
    if beyond is None:
        print("  randomization ceiling: not computed in this run (randomization_check off)")
    else:
        for arch, methods in beyond.items():
            missed += [] if methods else [f"{arch} ceiling"]
            print(f"  {arch:<12} randomization ceiling beyond the fine-tuning drift under: "
                  f"{', '.join(drift.METHOD_LABELS[m] for m in methods) or 'no method (MISSED)'}")
    history = train.load_history(config)
    pretrained = False
    for arch, description in train.iter_weights_descriptions(config):
        phases = history[history["arch"] == arch].groupby("phase")["wall_s"].sum()
        pretrained |= description.get("kind") == "synthetic" and not description.get("cached")
        pretrain = (f"pre-training {description.get('seconds', float('nan')):.0f} s"
                    f"{' (from the cache)' if description.get('cached') else ''}")
        print(f"  {arch:<12} {pretrain}; training {phases.get('transfer', 0):.0f} s frozen + "
              f"{phases.get('finetune', 0):.0f} s fine-tuning")
    chapters = chapter_seconds(Path.cwd())
    if chapters:
        total = sum(chapters.values()) / 60
        budget = BOOK_MINUTES_FIRST if pretrained else BOOK_MINUTES_CACHED
        kind = "first-build (pre-training ran)" if pretrained else "cached (pre-training from the cache)"
        missed += [] if total <= budget else ["book time"]
        print("  chapters: " + ", ".join(f"{name.split('_')[0]} {seconds:.0f} s" for name, seconds in chapters.items()))
        print(f"  all chapters {total:.1f} min -> {total / budget:.2f}x the {budget:.0f}-minute {kind} target")
    if missed:
        print("missed: " + ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
