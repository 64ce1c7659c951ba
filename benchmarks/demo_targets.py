"""The demo's targets, read from a finished run directory (what `make book` wrote).

    .venv/bin/python benchmarks/demo_targets.py [--run-dir runs/demo] [--setting-rerun]

Prints, each beside its target and as a ratio, with the CPU's vector extensions:
- every architecture's test accuracy at the two compared epochs for every training seed (the main
  run and its replicates): on average over the seeds at least 0.85 at the early and 0.88 at the
  late epoch, no seed below 0.85; the share of test images the true-positive filter keeps (at
  least 50 %);
- the image passes (`cxrdrift.workload`) each backbone's first build needs, against the
  single-seed demo before issue 21 (at most 1.25x);
- whether fine-tuning moves each backbone's evidence beyond the seed noise floor for at least one
  method and metric (`replicates.floor_excess`: interval above zero), and whether chapter 08's
  randomization ceiling lies beyond the fine-tuning drift under at least one method;
- the pre-training and training seconds per architecture and seed, and the wall time of each
  chapter of the last `cxrdrift book` run: at most 40 minutes for a first build (pre-training
  ran), 15 with pre-training cached, 3 after changing one drift setting (`--setting-rerun`, e.g.
  after `cxrdrift book --profile demo -p threshold 0.4`).
Exits 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from cxrdrift import drift, evidence, models, provenance, randomization, replicates, train, workload  # noqa: E402
from cxrdrift.artifacts import RunPaths  # noqa: E402
from cxrdrift.config import RunConfig  # noqa: E402

EARLY_ACCURACY_TARGET, LATE_ACCURACY_TARGET, SEED_ACCURACY_FLOOR, KEPT_TARGET = 0.85, 0.88, 0.85, 0.50
BOOK_MINUTES = {"first": 40.0, "cached": 15.0, "setting rerun": 3.0}
PASSES_RATIO_TARGET = 1.25
# The demo profile as it stood before issue 21 (commit e5c33f5): one seed, fine-tuning on every
# training image for 2 epochs, the same pre-training.
SINGLE_SEED_DEMO = {"replicate_seeds": (), "finetune_images": 0, "epochs_ft": 2, "late_epoch": 12,
                    "synth_train": 1000, "synth_val": 100, "synth_test": 300, "pretrain_images": 4800,
                    "pretrain_epochs": 2, "pretrain_bn_images": 800, "pretrain_bn_epochs": 1}
VECTOR_FLAGS = {"avx2", "avx512_bf16", "amx_bf16"}


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


def seed_accuracy(config: RunConfig) -> dict[str, dict[int, tuple[float, float]]]:
    """arch -> seed -> (test accuracy at the early, at the late compared epoch)."""
    result: dict[str, dict[int, tuple[float, float]]] = {arch: {} for arch in config.architectures}
    for run in evidence.seed_configs(config):
        predictions = train.load_predictions(run)
        scores = {epoch: train.epoch_scores(predictions, epoch) for epoch in run.compared_epochs}
        for arch in config.architectures:
            result[arch][run.seed] = tuple(scores[epoch][arch]["accuracy"] for epoch in run.compared_epochs)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/demo", type=Path)
    parser.add_argument("--setting-rerun", action="store_true",
                        help="the last book run followed a change of one drift setting (3-minute target)")
    args = parser.parse_args()
    config = RunConfig.load(RunPaths(args.run_dir).config)
    early, late = config.compared_epochs
    missed = []
    flags = " ".join(sorted(provenance.cpu_flags() & VECTOR_FLAGS)) or "none of " + ", ".join(sorted(VECTOR_FLAGS))
    print(f"run {args.run_dir} (profile {config.profile}, {config.image_size} px, epochs {early} and {late}); "
          f"CPU vector extensions: {flags}")
    for arch, seeds in seed_accuracy(config).items():
        means = np.mean(list(seeds.values()), axis=0)
        lowest = min(min(pair) for pair in seeds.values())
        ok = (means[0] >= EARLY_ACCURACY_TARGET, means[1] >= LATE_ACCURACY_TARGET, lowest >= SEED_ACCURACY_FLOOR)
        missed += [what for what, good in zip((f"{arch} mean accuracy at epoch {early}",
                                               f"{arch} mean accuracy at epoch {late}", f"{arch} lowest seed"), ok)
                   if not good]
        per_seed = ", ".join(f"seed {seed} {a:.3f}/{b:.3f}" for seed, (a, b) in seeds.items())
        print(f"  {arch:<12} test accuracy epoch {early}/{late}: {per_seed}; mean {means[0]:.3f} "
              f"({means[0] / EARLY_ACCURACY_TARGET:.2f}x the {EARLY_ACCURACY_TARGET:.2f} target) / {means[1]:.3f} "
              f"({means[1] / LATE_ACCURACY_TARGET:.2f}x the {LATE_ACCURACY_TARGET:.2f} target), lowest {lowest:.3f} "
              f"({lowest / SEED_ACCURACY_FLOOR:.2f}x the {SEED_ACCURACY_FLOOR:.2f} floor) "
              f"{'ok' if all(ok) else 'MISSED'}; backbone weights changed by {backbone_change(config, arch):.2%}")
    kept = drift.load_true_positives(config)["kept"]
    missed += [] if kept.mean() >= KEPT_TARGET else ["kept share"]
    print(f"  kept by the true-positive filter: {kept.mean():.1%} -> {kept.mean() / KEPT_TARGET:.2f}x the "
          f"{KEPT_TARGET:.0%} target {'ok' if kept.mean() >= KEPT_TARGET else 'MISSED'}")
    now = workload.totals(workload.image_passes(config, mapped=int(kept.sum())))
    before = workload.totals(workload.image_passes(config.replace(**SINGLE_SEED_DEMO), mapped=int(kept.sum())))
    for arch in config.architectures:
        ratio = now[arch] / before[arch]
        missed += [] if ratio <= PASSES_RATIO_TARGET else [f"{arch} image passes"]
        print(f"  {arch:<12} first-build image passes {now[arch]:,} with {1 + len(config.replicate_seeds)} seeds "
              f"against {before[arch]:,} for the single-seed demo -> {ratio:.3f}x (target at most "
              f"{PASSES_RATIO_TARGET:.2f}x) {'ok' if ratio <= PASSES_RATIO_TARGET else 'MISSED'}")
    excess = replicates.floor_excess(config)
    if excess is None:
        print("  seed noise floor: no replicates in this run")
        missed.append("seeds")
    else:
        for arch, cells in excess.groupby("arch", sort=False):
            beyond = cells[cells["ci_low"] > 0]
            missed += [] if len(beyond) else [f"{arch} drift beyond the seed floor"]
            print(f"  {arch:<12} fine-tuning drift beyond the seed floor (interval above 0) in {len(beyond)} of "
                  f"{len(cells)} method x metric cells: " + (", ".join(
                      f"{drift.METHOD_LABELS[r.method]} {drift.METRIC_LABELS[r.metric]} +{r.excess:.3f}"
                      for r in beyond.itertuples()) or "none (MISSED)"))
    beyond = ceiling_beyond_phase(config)
    if beyond is None:
        print("  randomization ceiling: not computed in this run (randomization_check off)")
    else:
        for arch, methods in beyond.items():
            missed += [] if methods else [f"{arch} ceiling"]
            print(f"  {arch:<12} randomization ceiling beyond the fine-tuning drift under: "
                  f"{', '.join(drift.METHOD_LABELS[m] for m in methods) or 'no method (MISSED)'}")
    pretrained = False
    for arch, description in train.iter_weights_descriptions(config):
        pretrained |= description.get("kind") == "synthetic" and not description.get("cached")
        seconds = []
        for run in evidence.seed_configs(config):
            history = train.load_history(run)
            phases = history[history["arch"] == arch].groupby("phase")["wall_s"].sum()
            seconds.append(f"seed {run.seed} {phases.get('transfer', 0):.0f} s frozen + "
                           f"{phases.get('finetune', 0):.0f} s fine-tuning")
        pretrain = (f"pre-training {description.get('seconds', float('nan')):.0f} s"
                    f"{' (from the cache)' if description.get('cached') else ''}")
        print(f"  {arch:<12} {pretrain}; training " + ", ".join(seconds))
    chapters = chapter_seconds(Path.cwd())
    if chapters:
        total = sum(chapters.values()) / 60
        kind = "setting rerun" if args.setting_rerun else "first" if pretrained else "cached"
        budget = BOOK_MINUTES[kind]
        missed += [] if total <= budget else ["book time"]
        print("  chapters: " + ", ".join(f"{name.split('_')[0]} {seconds:.0f} s" for name, seconds in chapters.items()))
        print(f"  all chapters {total:.1f} min -> {total / budget:.2f}x the {budget:.0f}-minute {kind} target "
              f"({flags})")
    if missed:
        print("missed: " + ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
