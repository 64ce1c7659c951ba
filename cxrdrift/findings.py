"""The paper's five headline findings, each a statistic with a bootstrap interval and a stated rule.

Every finding is turned into one number whose sign (or side of a stated bound) says whether this
run shows the paper's pattern. The number is computed from class-weighted means of per-image
drift on the common support (`inference.common_support`: the same images in every cell), and its
distribution from the paired two-level bootstrap (`inference.bootstrap_moments`). Four outcomes:

- reproduced: every component of the statistic lies on the paper's side of the bound (the
  decisive one's interval excludes the bound; an intersection-union test);
- contradicted: some component lies on the other side, at the level split among the components
  (Bonferroni), so that picking the worst of several noisy components cannot fake a contradiction;
- inconclusive: neither;
- not testable: a cell is missing or fewer than MIN_SAMPLES images are common to every cell.

The five findings are one family: Holm's step-down procedure at family-wise level ALPHA gives each
finding its one-sided level alpha_k, and the interval shown is the central (1 - 2 alpha_k) one, so
"the interval lies on the paper's side" and "Holm rejects the opposite" are the same statement.
No bound comes from the paper's numbers: the only bounds are 0 (a difference's sign) and, for
the displacement, one half of the chance level (nearer the same image's map than another image's).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from . import inference
from .inference import Moments

REPRODUCED = "reproduced"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable"
OUTCOMES = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)

ALPHA = 0.05        # family-wise error rate over the five findings (Holm)
MIN_SAMPLES = 20    # fewer common images than this cannot support an interval worth reading

LAYERCAM, GRADCAMPP = "layercam", "gradcampp"
DENSENET, RESNET, INCEPTION = "DenseNet201", "ResNet50V2", "InceptionV3"
ARCHS = (DENSENET, RESNET, INCEPTION)
METHODS = (LAYERCAM, GRADCAMPP)
CELLS = tuple((method, arch) for method in METHODS for arch in ARCHS)
METHOD_NAMES = {LAYERCAM: "LayerCAM", GRADCAMPP: "Grad-CAM++"}
CHANCE_PREFIX = "chance_"
NEAR_IDENTITY = 0.5  # displacement as a share of the chance level: nearer the same image than another


# Each statistic returns its components (..., K): a finding is reproduced when every component
# lies on the paper's side (the smallest, or for finding 1 the largest, decides), and contradicted
# when any one lies on the other side at the Bonferroni-split level.

def _displacement_ratio(m: Moments) -> np.ndarray:
    return np.stack([m.mean(method, arch, "spatial_displacement") / m.mean(method, arch, "chance_spatial_displacement")
                     for method, arch in CELLS], axis=-1)


def _iou(m: Moments, method: str, arch: str) -> np.ndarray:
    return m.mean(method, arch, "overlap_iou")


def _architecture_gap(m: Moments) -> np.ndarray:
    # the paper's most and least stable architecture under each method, fixed in advance
    return np.stack([_iou(m, LAYERCAM, INCEPTION) - _iou(m, LAYERCAM, RESNET),
                     _iou(m, GRADCAMPP, DENSENET) - _iou(m, GRADCAMPP, RESNET)], axis=-1)


def pair_difference(m: Moments, method: str, first: str = INCEPTION, second: str = DENSENET) -> np.ndarray:
    """IoU(first) − IoU(second) under `method`."""
    return _iou(m, method, first) - _iou(m, method, second)


def interaction(m: Moments) -> np.ndarray:
    """[IoU_LC(InceptionV3) − IoU_LC(DenseNet201)] − [IoU_G++(InceptionV3) − IoU_G++(DenseNet201)]."""
    return pair_difference(m, LAYERCAM) - pair_difference(m, GRADCAMPP)


def _reversal(m: Moments) -> np.ndarray:
    return np.stack([pair_difference(m, LAYERCAM), -pair_difference(m, GRADCAMPP)], axis=-1)


def _method_gap(m: Moments, arch: str) -> np.ndarray:
    return np.abs(_iou(m, LAYERCAM, arch) - _iou(m, GRADCAMPP, arch))


def _method_sensitivity(m: Moments) -> np.ndarray:
    return np.stack([_method_gap(m, INCEPTION) - _method_gap(m, DENSENET),
                     _method_gap(m, RESNET) - _method_gap(m, DENSENET)], axis=-1)


def _resnet_gradcampp(m: Moments) -> np.ndarray:
    others = [cell for cell in CELLS if cell != (GRADCAMPP, RESNET)]
    lower = [_iou(m, *cell) - _iou(m, GRADCAMPP, RESNET) for cell in others]
    wider = [m.std(GRADCAMPP, RESNET, "overlap_iou") - m.std(*cell, "overlap_iou") for cell in others]
    return np.stack(lower + wider, axis=-1)


@dataclass(frozen=True)
class Finding:
    """One headline claim as a statistic, the side of `bound` the paper is on, and the rule in words."""

    title: str
    paper: str
    statistic_name: str
    components: Callable[[Moments], np.ndarray]
    bound: float
    paper_above: bool
    rule: str
    measures: tuple[str, ...] = ("overlap_iou",)

    def statistic(self, components: np.ndarray) -> np.ndarray:
        """The component nearest the bound from the paper's side: the one that decides reproduction."""
        return components.min(axis=-1) if self.paper_above else components.max(axis=-1)

    def p_values(self, components: np.ndarray) -> tuple[float, float]:
        """One-sided bootstrap p of the paper's side (the largest over components: all must hold)
        and of the other side (the smallest over components: one suffices)."""
        paper = [inference.one_sided_p(c, self.bound, self.paper_above) for c in components.T]
        other = [inference.one_sided_p(c, self.bound, not self.paper_above) for c in components.T]
        return max(paper), min(other)


FINDINGS: tuple[Finding, ...] = (
    Finding("1. Coarse localization is stable",
            "spatial displacement 0.090–0.138 for every architecture and method",
            "largest displacement / its chance level", _displacement_ratio, NEAR_IDENTITY, False,
            "every cell's mean centre-of-mass displacement must stay below half of what the same model "
            "gives between two different images of one class (shuffled pairs)",
            ("spatial_displacement", "chance_spatial_displacement")),
    Finding("2. Overlap IoU depends on the architecture",
            "IoU 0.519–0.777 (LayerCAM), 0.383–0.690 (Grad-CAM++)",
            "smaller of IoU(InceptionV3 − ResNet50V2, LayerCAM) and IoU(DenseNet201 − ResNet50V2, Grad-CAM++)",
            _architecture_gap, 0.0, True,
            "under each method the paper's most stable architecture must have a higher IoU than its least "
            "stable one (ResNet50V2)"),
    Finding("3. The IoU ranking reverses between methods",
            "LayerCAM: InceptionV3 > DenseNet201 > ResNet50V2; Grad-CAM++: DenseNet201 > InceptionV3 > ResNet50V2",
            "smaller of IoU(InceptionV3 − DenseNet201, LayerCAM) and IoU(DenseNet201 − InceptionV3, Grad-CAM++)",
            _reversal, 0.0, True,
            "the pair the paper orders differently must be ordered InceptionV3 first under LayerCAM and "
            "DenseNet201 first under Grad-CAM++, both with intervals that exclude zero"),
    Finding("4. DenseNet201 depends least on the method",
            "DenseNet201 0.699 vs 0.690; InceptionV3 0.777 vs 0.643",
            "smallest |IoU(LayerCAM) − IoU(Grad-CAM++)| of the others minus DenseNet201's",
            _method_sensitivity, 0.0, True,
            "DenseNet201's gap between the methods must be smaller than both other architectures' (the "
            "paper's own table gives ResNet50V2 a gap as large as InceptionV3's, so which is largest is not tested)"),
    Finding("5. ResNet50V2 under Grad-CAM++: lowest IoU, widest spread",
            "0.383 ± 0.174",
            "smaller of (lowest other mean IoU − its mean) and (its std − widest other std)",
            _resnet_gradcampp, 0.0, True,
            "among the six cells of the paper's methods, Grad-CAM++ ResNet50V2 must have both the lowest "
            "mean IoU and the largest standard deviation"),
)

COLUMNS = ["finding", "paper", "statistic", "estimate", "ci_low", "ci_high", "level", "p_value", "rule",
           "verdict", "n_images", "n_seeds", "evidence"]


def _measures() -> list[str]:
    return list(dict.fromkeys(measure for finding in FINDINGS for measure in finding.measures))


def _absent_cells(frame: pd.DataFrame) -> list[str]:
    present = set(map(tuple, frame[["method", "arch"]].drop_duplicates().to_numpy()))
    return [f"{METHOD_NAMES[m]} {a}" for m, a in CELLS if (m, a) not in present]


def _support(frame: pd.DataFrame) -> inference.Support | None:
    """The common support of the paper's six cells, or None when the table cannot have one."""
    if set(_measures()) - set(frame.columns) or frame.empty or _absent_cells(frame):
        return None
    return inference.common_support(frame, CELLS, _measures())


def untestable_reason(frame: pd.DataFrame, support: inference.Support | None = None) -> str | None:
    """Why the findings cannot be tested on this per-image table, or None when they can."""
    missing = sorted(set(_measures()) - set(frame.columns))
    if missing:
        return f"the drift table lacks {', '.join(missing)}"
    if frame.empty:
        return "no compared image has maps"
    absent = _absent_cells(frame)
    if absent:
        return f"this run has no {', '.join(absent)}"
    support = support or _support(frame)
    if support.n_images < MIN_SAMPLES:
        return (f"{support.n_images} image{'s are' if support.n_images != 1 else ' is'} scored in every cell "
                f"of the paper's two methods, fewer than {MIN_SAMPLES}")
    return None


def evaluate(frame: pd.DataFrame, weights: Mapping[str, float], n_boot: int, seed: int,
             alpha: float = ALPHA) -> pd.DataFrame:
    """One row per finding (COLUMNS) from a per-image drift table with columns method, arch,
    sample_id, label, optionally seed, and the measures the findings use (`overlap_iou`,
    `spatial_displacement`, `chance_spatial_displacement`)."""
    support = _support(frame)
    why = untestable_reason(frame, support)
    rows, resampled = [], []
    if why is None:
        point = inference.point_moments(support, weights)
        boots = inference.bootstrap_moments(support, weights, n_boot, seed)
    for finding in FINDINGS:
        row = {"finding": finding.title, "paper": finding.paper, "statistic": finding.statistic_name,
               "rule": finding.rule, "n_images": support.n_images if support else 0,
               "n_seeds": len(support.seeds) if support else 0, "evidence": ""}
        if why is not None:
            rows.append({**row, "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan, "level": np.nan,
                         "p_value": np.nan, "verdict": NOT_TESTABLE, "evidence": why})
            resampled.append(None)
            continue
        components = np.asarray(finding.components(boots), dtype=np.float64)
        paper_p, other_p = finding.p_values(components)
        rows.append({**row, "estimate": float(finding.statistic(finding.components(point))),
                     "p_value": paper_p, "p_other": other_p, "k": components.shape[-1]})
        resampled.append(finding.statistic(components))
    levels, rejected = inference.holm([r["p_value"] for r in rows], alpha)
    for row, values, level, holm_rejects, finding in zip(rows, resampled, levels, rejected, FINDINGS):
        if values is None:
            continue
        row["level"] = 1.0 - 2.0 * level
        row["ci_low"], row["ci_high"] = inference.percentile_interval(values, row["level"])
        on_paper_side = row["p_value"] <= level
        other_p, k = row.pop("p_other"), row.pop("k")
        if holm_rejects:
            row["verdict"] = REPRODUCED
        elif other_p <= level / k:
            row["verdict"] = CONTRADICTED
        else:
            row["verdict"] = INCONCLUSIVE
            if on_paper_side:
                row["evidence"] = "on the paper's side at its level, but Holm stopped at a finding with a larger p"
            elif (row["ci_high"] < finding.bound) if finding.paper_above else (row["ci_low"] > finding.bound):
                row["evidence"] = (f"the decisive part lies on the other side, but none of the {k} parts does at "
                                   f"the level split among them")
    return pd.DataFrame(rows, columns=COLUMNS)


def order_probabilities(frame: pd.DataFrame, weights: Mapping[str, float], n_boot: int, seed: int,
                        metric: str = "overlap_iou") -> pd.DataFrame:
    """Per method: the paper's order of the three architectures by `metric`, and the share of the
    paired resamples (common support) that give exactly that order."""
    from .reported import paper_table3

    support = inference.common_support(frame, CELLS, [metric])
    if support.n_images < MIN_SAMPLES:
        return pd.DataFrame(columns=["method", "paper_order", "probability"])
    boots = inference.bootstrap_moments(support, weights, n_boot, seed)
    paper = paper_table3()
    rows = []
    for method in METHODS:
        cells = paper[(paper["method"] == method) & (paper["metric"] == metric)]
        order = list(cells.sort_values("mean", ascending=False)["arch"])
        means = np.stack([boots.mean(method, arch, metric) for arch in order], axis=1)
        rows.append({"method": method, "paper_order": " > ".join(order),
                     "probability": float((np.diff(means, axis=1) < 0).all(axis=1).mean())})
    return pd.DataFrame(rows)


def finding_markdown(findings: pd.DataFrame, number: int) -> str:
    """Finding `number` (1-based) of an `evaluate` result as a short Markdown block."""
    row = findings.iloc[number - 1]
    if row["verdict"] == NOT_TESTABLE:
        result = f"not testable: {row['evidence']}"
    else:
        result = (f"{row['estimate']:.3f}, {row['level']:.1%} interval [{row['ci_low']:.3f}, {row['ci_high']:.3f}] "
                  f"({row['n_images']} images in every cell, {row['n_seeds']} training "
                  f"seed{'s' if row['n_seeds'] != 1 else ''}; one-sided bootstrap p = {row['p_value']:.3f})")
        if row["evidence"]:
            result += f"; {row['evidence']}"
    return (f"**{row['finding']}** — **{row['verdict']}**\n\n- the paper: {row['paper']}\n"
            f"- statistic: {row['statistic']}\n- this run: {result}\n- rule: {row['rule']}\n")


__all__ = ["REPRODUCED", "CONTRADICTED", "INCONCLUSIVE", "NOT_TESTABLE", "OUTCOMES", "ALPHA", "MIN_SAMPLES",
           "Finding", "FINDINGS", "COLUMNS", "evaluate", "interaction", "pair_difference",
           "order_probabilities", "finding_markdown", "untestable_reason"]
