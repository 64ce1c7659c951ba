"""The demo's budgets, read from a finished run directory (what `make book` wrote).

    .venv/bin/python benchmarks/demo_targets.py [--run-dir runs/demo]

Prints, each beside its target and as a ratio: every architecture's test accuracy at the two
compared epochs (target: at least 0.80 at the late one), the share of test samples the
true-positive filter keeps (target: at least 30 %), the pre-training and training seconds per
architecture, and the wall time of each chapter of the last `cxrdrift book` run (target: 10
minutes for a first `make book`, 5 with pre-training cached). Exits 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


from cxrdrift import drift, train
from cxrdrift.config import RunConfig

ACCURACY_TARGET, KEPT_TARGET = 0.80, 0.30
BOOK_MINUTES_FIRST, BOOK_MINUTES_CACHED = 10.0, 5.0


def chapter_seconds(root: Path) -> dict[str, float]:
    """Wall seconds of each chapter's last execution, from the book's `.run.json` records."""
    return {record.name.removesuffix(".run.json"): float(json.loads(record.read_text()).get("wall_s", "nan"))
            for record in sorted((root / "book" / "chapters").glob("*.run.json"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/demo", type=Path)
    args = parser.parse_args()
    config = RunConfig.load(args.run_dir / "config.json")
    early, late = config.compared_epochs
    scores = {epoch: train.epoch_scores(train.load_predictions(config), epoch) for epoch in (early, late)}
    missed = []
    print(f"run {args.run_dir} (profile {config.profile}, {config.image_size} px, epochs {early} and {late})")
    for arch in config.architectures:
        accuracy = {epoch: scores[epoch][arch]["accuracy"] for epoch in (early, late)}
        ok = accuracy[late] >= ACCURACY_TARGET
        missed += [] if ok else [f"{arch} accuracy"]
        print(f"  {arch:<12} test accuracy epoch {early} {accuracy[early]:.3f}, epoch {late} {accuracy[late]:.3f}"
              f" -> {accuracy[late] / ACCURACY_TARGET:.2f}x the {ACCURACY_TARGET:.2f} target {'ok' if ok else 'MISSED'}")
    kept = drift.load_true_positives(config)["kept"].mean()
    missed += [] if kept >= KEPT_TARGET else ["kept share"]
    print(f"  kept by the true-positive filter: {kept:.1%} -> {kept / KEPT_TARGET:.2f}x the "
          f"{KEPT_TARGET:.0%} target {'ok' if kept >= KEPT_TARGET else 'MISSED'}")
    history = train.load_history(config)
    for arch, description in train.iter_weights_descriptions(config):
        phases = history[history["arch"] == arch].groupby("phase")["wall_s"].sum()
        pretrain = (f"pre-training {description.get('seconds', float('nan')):.0f} s"
                    f"{' (from the cache)' if description.get('cached') else ''}")
        print(f"  {arch:<12} {pretrain}; training {phases.get('transfer', 0):.0f} s frozen + "
              f"{phases.get('finetune', 0):.0f} s fine-tuning")
    chapters = chapter_seconds(Path.cwd())
    if chapters:
        total = sum(chapters.values()) / 60
        print("  chapters: " + ", ".join(f"{name.split('_')[0]} {seconds:.0f} s" for name, seconds in chapters.items()))
        print(f"  all chapters {total:.1f} min -> {total / BOOK_MINUTES_FIRST:.2f}x the {BOOK_MINUTES_FIRST:.0f}-minute "
              f"first-build target, {total / BOOK_MINUTES_CACHED:.2f}x the {BOOK_MINUTES_CACHED:.0f}-minute cached one")
    if missed:
        print("missed: " + ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
