"""What a run could not measure, and why, in sentences a reader understands.

A weak or unlucky run (random weights, a few epochs, a small test set) can finish every stage and
still leave parts of the study without data: no test image kept by the true-positive filter,
kept images from only some classes, a model that never predicts some class, an architecture
whose maps are all degenerate under a method. The functions here read the run directory and say
so; `cxrdrift run` prints `summary_line` at the end and the chapters show the same sentences
where the missing numbers would have been.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from . import findings, metrics
from .artifacts import RunPaths
from .config import RunConfig
from .data import CLASSES
from .drift import METHOD_LABELS, absent_classes, class_weights, load_drift, load_true_positives, mapped_samples, summary_table
from .evidence import load_evidence


def _names(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def kept_sentence(true_positives: pd.DataFrame) -> str | None:
    """None when every tested class kept an image; otherwise what the filter left and what it means."""
    kept, total = int(true_positives["kept"].sum()), len(true_positives)
    if kept == 0:
        return (f"No test image passed the true-positive filter (0 of {total}): no image was classified "
                "correctly by every architecture at both compared epochs, so there are no maps to compare "
                "and the drift measures, Table 3, the ranking and the findings have nothing to measure.")
    absent = absent_classes(true_positives)
    if not absent:
        return None
    present = [c for c in CLASSES if c in set(true_positives.loc[true_positives["kept"], "label"])]
    return (f"The {kept} kept test image{'s' if kept != 1 else ''} (of {total}) come from "
            f"{len(present)} of {len(present) + len(absent)} classes: {_names(absent)} kept none. "
            f"Every class-weighted mean is over the classes present ({_names(present)}) and says "
            "nothing about the absent ones.")


def never_predicted(predictions: pd.DataFrame, architectures: Sequence[str],
                    epochs: Sequence[int]) -> dict[tuple[str, int], list[str]]:
    """Per (architecture, epoch) with a test class it never predicts: those classes, in CLASSES order."""
    chosen = predictions[predictions["arch"].isin(architectures) & predictions["epoch"].isin(epochs)]
    predicted = chosen[metrics.logit_columns(chosen)].to_numpy().argmax(axis=1)
    seen = pd.Series(predicted, index=chosen.index).groupby([chosen["arch"], chosen["epoch"]]).unique()
    tested = [c for c in CLASSES if c in set(chosen["label"])]
    result = {}
    for arch in architectures:
        for epoch in epochs:
            if (arch, epoch) in seen.index:
                missing = [c for c in tested if CLASSES.index(c) not in set(seen[arch, epoch])]
                if missing:
                    result[arch, epoch] = missing
    return result


def never_predicted_sentence(predictions: pd.DataFrame, architectures: Sequence[str],
                             epochs: Sequence[int]) -> str | None:
    """Which models never predict which test classes at the compared epochs (their images of those
    classes cannot be kept), or None when every model predicts every class at least once."""
    missing = never_predicted(predictions, architectures, epochs)
    if not missing:
        return None
    by_arch: dict[str, set[str]] = {}
    for (arch, _), classes in missing.items():
        by_arch.setdefault(arch, set()).update(classes)
    parts = [f"{arch} never predicts {_names([c for c in CLASSES if c in classes])}"
             for arch, classes in by_arch.items()]
    return (f"At a compared epoch, {'; '.join(parts)}. An image of a class that a compared model never "
            "predicts cannot pass the true-positive filter; that model's recall and F1 for the class are 0.")


def flat_cells(drift: pd.DataFrame) -> list[tuple[str, str]]:
    """(method, arch) cells with compared images but no scored map pair (every map degenerate)."""
    scored = drift.assign(scored=drift[list(metrics.DRIFT_METRICS)].notna().any(axis=1))
    per_cell = scored.groupby(["method", "arch"], sort=False)["scored"].any()
    return [cell for cell, any_scored in per_cell.items() if not any_scored]


def flat_sentence(drift: pd.DataFrame) -> str | None:
    """The architectures whose maps are all degenerate under a method, or None."""
    cells = flat_cells(drift)
    if not cells:
        return None
    named = _names([f"{arch} under {METHOD_LABELS.get(method, method)}" for method, arch in cells])
    return (f"Every map pair of {named} is degenerate (a flat map at one of the epochs): "
            f"{'that cell has' if len(cells) == 1 else 'those cells have'} no drift value, shows as n/a "
            "in the tables and is left out of the means, the ranking and the figures.")


def few_sentence(table: pd.DataFrame) -> str | None:
    """Cells of a `summary_table` scored on fewer than `metrics.MIN_BOOTSTRAP` images (but at least
    one): too few for a bootstrap interval; None when there are none."""
    counts = table.groupby(["method", "arch"], sort=False)["n"].min()
    few = counts[(counts > 0) & (counts < metrics.MIN_BOOTSTRAP)]
    if few.empty:
        return None
    named = _names([f"{arch} under {METHOD_LABELS.get(method, method)} ({n})" for (method, arch), n in few.items()])
    return (f"Too few scored images for a bootstrap interval in {named}: a resample of one image "
            "repeats that image, so no interval is given.")


def findings_sentence(evidence: pd.DataFrame) -> str | None:
    """Why the paper's findings cannot be tested on a per-image evidence table (`cxrdrift.evidence`);
    None when they can."""
    why = findings.untestable_reason(evidence)
    if why is None:
        return None
    return f"{len(findings.FINDINGS)} of {len(findings.FINDINGS)} of the paper's findings are not testable: {why}."


def unmapped_sentence(config: RunConfig) -> str | None:
    """Why no test image has maps to compare (the filter kept none), or None when some have."""
    if len(mapped_samples(config)):
        return None
    return kept_sentence(load_true_positives(config))


def unscored_sentence(config: RunConfig) -> str | None:
    """Why drift.parquet holds no drift value at all (no image kept, or every map pair degenerate),
    or None when something was scored."""
    reason = unmapped_sentence(config)
    drift = load_drift(config)
    if reason or drift[list(metrics.DRIFT_METRICS)].notna().any(axis=None):
        return reason
    return (f"None of the {drift['sample_id'].nunique()} compared images has a scored map pair: every map is "
            "degenerate (flat) at one of the epochs under every architecture and method, so there is no drift "
            "to measure.")


def drift_sentences(config: RunConfig, table: pd.DataFrame) -> list[str]:
    """What Table 3 (`table`, a `summary_table` of this run) lacks: cells whose maps are all
    degenerate, and cells too small for a bootstrap interval."""
    return [s for s in (flat_sentence(load_drift(config)), few_sentence(table)) if s]


def filter_sentences(config: RunConfig) -> list[str]:
    """What the true-positive filter could not keep and why: models that never predict a class at
    a compared epoch, no kept image, absent classes (stages not yet run are skipped)."""
    paths = RunPaths.of(config)
    sentences = []
    if paths.predictions.exists():
        sentences.append(never_predicted_sentence(pd.read_parquet(paths.predictions), config.architectures,
                                                  config.compared_epochs))
    if paths.true_positives.exists():
        sentences.append(kept_sentence(load_true_positives(config)))
    return [s for s in sentences if s]


def run_gaps(config: RunConfig) -> list[str]:
    """Every sentence above that applies to the run directory of `config` (stages not yet run are
    skipped)."""
    paths = RunPaths.of(config)
    sentences: list[str | None] = list(filter_sentences(config))
    if paths.drift.exists():
        table = summary_table(load_drift(config), class_weights(config), 0, config.seed)
        sentences += drift_sentences(config, table)
    if paths.evidence.exists():
        sentences.append(findings_sentence(load_evidence(config)))
    return [s for s in sentences if s]


def summary_line(config: RunConfig) -> str:
    """The last line of `cxrdrift run`: finished, and what could not be measured and why."""
    gaps = run_gaps(config)
    if not gaps:
        return f"[{config.profile}] finished: every stage measured what it was asked to."
    return (f"[{config.profile}] finished, but {len(gaps)} thing{'s' if len(gaps) != 1 else ''} could not be "
            "measured:\n" + "\n".join(f"  - {gap}" for gap in gaps))


__all__ = ["kept_sentence", "never_predicted", "never_predicted_sentence", "flat_cells",
           "flat_sentence", "few_sentence", "findings_sentence", "drift_sentences", "filter_sentences", "unmapped_sentence", "unscored_sentence", "run_gaps",
           "summary_line"]
