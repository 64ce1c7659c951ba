"""What chapter 07 and `cxrdrift run` report: the five verdicts, their sensitivity to the study's
free choices, every cell's drift between its chance level and its ceiling, and the common support.

All of it reads `evidence.parquet` (and `randomization.parquet` for the ceiling); the rules are
`cxrdrift.findings`'.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from . import findings, inference
from .artifacts import RunPaths, is_current, read_json, stamp, write_json
from .config import RunConfig
from .drift import METHOD_LABELS, PAPER_DEPTH, class_weights, load_compared_rows
from .evidence import (MAIN, THRESHOLDS, TOP_SHARES, alpha_setting, depth_setting, kept_count_weights, load_evidence,
                       threshold_setting, top_setting)

KEPT_WEIGHTS = "kept-count weights"
COARSE_GRID = 3  # a map grid with fewer rows or columns than this cannot place much
BASELINE_COLUMNS = ["method", "arch", "metric", "phase", "ci_low", "ci_high", "chance", "ceiling", "area_early",
                    "area_late"]
SENSITIVITY_COLUMNS = ["finding", "setting", "verdict", "estimate", "ci_low", "ci_high", "level", "n_images"]
BASELINE_METRICS = ("spatial_displacement", "overlap_iou", "adjusted_iou", "pattern_correlation", "rank_correlation")


def verdict_table(config: RunConfig, setting: str = MAIN, weights: dict[str, float] | None = None) -> pd.DataFrame:
    """`findings.evaluate` on this run's evidence under `setting` (default the run's own)."""
    return findings.evaluate(load_evidence(config, setting), weights or class_weights(config),
                             config.bootstrap_samples, config.seed)


def sensitivity_settings(config: RunConfig) -> list[str]:
    """Every setting the verdicts are checked under besides the run's own (its threshold is not
    repeated among the thresholds)."""
    present = set(load_evidence(config, None)["setting"])
    named = [threshold_setting(t) for t in THRESHOLDS if t != config.threshold] + [top_setting(s) for s in TOP_SHARES]
    named += [alpha_setting(config)] + [depth_setting(d) for d in config.cam_layers if d != PAPER_DEPTH]
    return [s for s in named if s in present] + [KEPT_WEIGHTS]


def sensitivity_table(config: RunConfig) -> pd.DataFrame:
    """Long: finding, setting, verdict, estimate, ci_low, ci_high, level, n_images for the run's
    own setting ("this run") and every other setting of `sensitivity_settings`."""
    parts = [verdict_table(config).assign(setting="this run")]
    for setting in sensitivity_settings(config):
        result = (verdict_table(config, MAIN, kept_count_weights(config)) if setting == KEPT_WEIGHTS
                  else verdict_table(config, setting))
        parts.append(result.assign(setting=setting))
    return pd.concat(parts, ignore_index=True)[SENSITIVITY_COLUMNS]


def holds_in(sensitivity: pd.DataFrame) -> pd.DataFrame:
    """Per finding: the run's verdict and in how many other settings the same verdict comes out."""
    rows = []
    for finding, group in sensitivity.groupby("finding", sort=False):
        own = group.loc[group["setting"] == "this run", "verdict"].iloc[0]
        others = group[group["setting"] != "this run"]
        rows.append({"finding": finding, "verdict": own,
                     "holds in": f"{int((others['verdict'] == own).sum())} of {len(others)} settings",
                     "other outcomes": ", ".join(f"{o} ({n})" for o, n in
                                                 others.loc[others["verdict"] != own, "verdict"].value_counts().items())
                                       or "none"})
    return pd.DataFrame(rows)


def interaction_table(config: RunConfig, level: float = 0.95) -> pd.DataFrame:
    """Finding 3's parts on the common support: IoU(InceptionV3) − IoU(DenseNet201) under each of
    the paper's methods and their difference (the interaction), each with its paired interval."""
    frame = load_evidence(config)
    support = inference.common_support(frame, findings.CELLS, ["overlap_iou"])
    weights = class_weights(config)
    point = inference.point_moments(support, weights)
    boots = inference.bootstrap_moments(support, weights, config.bootstrap_samples, config.seed)
    parts = {f"IoU({findings.INCEPTION}) − IoU({findings.DENSENET}), {METHOD_LABELS[m]}":
             (lambda moments, m=m: findings.pair_difference(moments, m)) for m in findings.METHODS}
    parts["interaction: LayerCAM difference − Grad-CAM++ difference"] = findings.interaction
    rows = []
    for name, statistic in parts.items():
        low, high = inference.percentile_interval(statistic(boots), level)
        rows.append({"quantity": name, "estimate": f"{float(statistic(point)):.3f}",
                     f"{level:.0%} interval": f"[{low:.3f}, {high:.3f}]"})
    return pd.DataFrame(rows)


def slope_table(baselines: pd.DataFrame) -> pd.DataFrame:
    """`baseline_table`'s phase drift in Table 3's long shape (method, arch, metric, mean, ci_low,
    ci_high), for the slope charts."""
    return baselines.rename(columns={"phase": "mean"})[["method", "arch", "metric", "mean", "ci_low", "ci_high"]]


def _support(frame: pd.DataFrame) -> inference.Support:
    cells = [c for c in findings.CELLS if c in set(map(tuple, frame[["method", "arch"]].to_numpy()))]
    return inference.common_support(frame, cells, ["overlap_iou", "spatial_displacement"])


def grid_of(config: RunConfig, arch: str, method: str, depth: str = PAPER_DEPTH) -> tuple[int, int]:
    """(rows, columns) of the raw maps `arch` and `method` give at `depth`."""
    from .cams import load_cams

    return tuple(int(n) for n in load_cams(config, arch, config.late_epoch, depth)[method].shape[1:3])


def support_table(config: RunConfig) -> pd.DataFrame:
    """Per cell of the paper's methods: images mapped, scored in this cell, lost because another
    cell could not score them, common to every cell, and the grid its maps come from."""
    frame = load_evidence(config)
    if frame.empty:
        return pd.DataFrame(columns=["method", "arch", "mapped", "scored", "lost to other cells", "common to all",
                                     "grid", "coarser than 3x3"])
    table = _support(frame).counts.copy()
    grids = [grid_of(config, a, m) for m, a in zip(table["method"], table["arch"])]
    table["grid"] = [f"{rows}x{columns}" for rows, columns in grids]
    table["coarse"] = [min(grid) < COARSE_GRID for grid in grids]
    table["coarse"] = table["coarse"].map({True: "yes", False: "no"})
    return table.assign(method=table["method"].map(METHOD_LABELS)).rename(columns={
        "lost_to_other_cells": "lost to other cells", "common": "common to all", "coarse": "coarser than 3x3"})


def baseline_table(config: RunConfig) -> pd.DataFrame:
    """Per method, architecture and metric, on the common support (Grad-CAM on the same images):
    phase drift with its paired bootstrap interval, the chance level (shuffled pairs), the
    ceiling (the randomized late model, when the run has it), and both maps' salient areas."""
    frame = load_evidence(config)
    support = _support(frame) if len(frame) else None
    if support is None or not support.n_images:
        return pd.DataFrame(columns=BASELINE_COLUMNS)
    frame = frame[frame["sample_id"].isin(set(support.sample_ids))]
    weights = class_weights(config)
    ceiling = load_compared_rows(config, RunPaths.of(config).randomization)
    measures = [*BASELINE_METRICS, *(f"chance_{m}" for m in BASELINE_METRICS), "area_early", "area_late"]
    cells = list(dict.fromkeys(map(tuple, frame[["method", "arch"]].to_numpy())))
    cell_support = inference.common_support(frame, cells, measures, required=[])
    point = inference.point_moments(cell_support, weights)
    boots = inference.bootstrap_moments(cell_support, weights, config.bootstrap_samples, config.seed)
    rows = []
    for method, arch in cells:
        for metric in BASELINE_METRICS:
            low, high = inference.percentile_interval(boots.mean(method, arch, metric), 0.95)
            row = {"method": method, "arch": arch, "metric": metric,
                   "phase": float(point.mean(method, arch, metric)), "ci_low": low, "ci_high": high,
                   "chance": float(point.mean(method, arch, f"chance_{metric}")), "ceiling": np.nan,
                   "area_early": float(point.mean(method, arch, "area_early")),
                   "area_late": float(point.mean(method, arch, "area_late"))}
            if ceiling is not None and metric in ceiling.columns:
                rows_ceiling = ceiling[(ceiling["method"] == method) & (ceiling["arch"] == arch)
                                       & ceiling["sample_id"].isin(set(support.sample_ids))]
                row["ceiling"] = _weighted_mean(rows_ceiling, metric, weights)
            rows.append(row)
    return pd.DataFrame(rows, columns=BASELINE_COLUMNS)


def _weighted_mean(frame: pd.DataFrame, metric: str, weights: dict[str, float]) -> float:
    from .metrics import weighted_summary

    mean, _ = weighted_summary(frame[metric].to_numpy(), frame["label"].to_numpy(), weights)
    return mean


def baseline_table_wide(table: pd.DataFrame, metric: str, digits: int = 3) -> pd.DataFrame:
    """One row per (method, architecture) of `metric`: the fine-tuning drift with its interval,
    its chance level and its ceiling; both maps' salient areas beside the overlap metrics."""
    rows = table[table["metric"] == metric].set_index(["method", "arch"])
    wide = pd.DataFrame({
        "fine-tuning drift [95 % interval]": [f"{r.phase:.{digits}f} [{r.ci_low:.{digits}f}, {r.ci_high:.{digits}f}]"
                                              for r in rows.itertuples()],
        "chance (shuffled pairs)": rows["chance"].map(lambda v: f"{v:.{digits}f}").to_list(),
        "ceiling (randomized model)": rows["ceiling"].map(lambda v: f"{v:.{digits}f}" if pd.notna(v) else "—").to_list(),
    }, index=rows.index)
    if metric in ("overlap_iou", "adjusted_iou"):
        wide["salient area, early / late"] = [f"{r.area_early:.2f} / {r.area_late:.2f}" for r in rows.itertuples()]
    wide.index = wide.index.set_names(["Method", "Architecture"])
    return wide.rename(index=METHOD_LABELS, level="Method")


def outcome_table(result: pd.DataFrame) -> pd.DataFrame:
    """The verdicts at a glance: finding, verdict, statistic, its value with the interval, the level."""
    return pd.DataFrame({"finding": result["finding"], "verdict": result["verdict"], "statistic": result["statistic"],
                         "value [interval]": [_value_interval(r) for _, r in result.iterrows()],
                         "interval level": result["level"].map(lambda v: f"{v:.1%}" if pd.notna(v) else "—")})


def _value_interval(row: pd.Series) -> str:
    if row["verdict"] == findings.NOT_TESTABLE:
        return "—"
    return f"{row['estimate']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"


def sensitivity_rows(sensitivity: pd.DataFrame, finding: str) -> pd.DataFrame:
    """One finding's rows of `sensitivity_table`: setting, verdict, value [interval], images."""
    rows = sensitivity[sensitivity["finding"] == finding]
    return pd.DataFrame({"setting": rows["setting"], "verdict": rows["verdict"],
                         "value [interval]": [_value_interval(r) for _, r in rows.iterrows()],
                         "images": rows["n_images"]})


def support_sentence(result: pd.DataFrame) -> str:
    """How many images and training seeds the verdicts rest on, and whether training noise is in them."""
    images, seeds = int(result["n_images"].max()), int(result["n_seeds"].max())
    text = (f"{images} images are scored in every cell of the paper's two methods; {seeds} training "
            f"seed{'s' if seeds != 1 else ''} per architecture")
    if seeds > 1:
        return text + ", resampled before the images, so training noise is in every interval."
    return text + (" — training noise is **not** in these intervals (`replicate_seeds` adds replicates; "
                   "chapter 8 measures their noise floor).")


def seed_table(config: RunConfig) -> pd.DataFrame:
    """Each training seed's own Table 3: seed, method, arch and the class-weighted mean of each of
    the paper's four metrics over the compared images (the run's setting)."""
    from .drift import weighted_means
    from .metrics import DRIFT_METRICS

    evidence = load_evidence(config)
    evidence = evidence[evidence["depth"] == PAPER_DEPTH]
    return weighted_means(evidence, ["seed", "method", "arch"], DRIFT_METRICS, class_weights(config))


def seed_rankings(config: RunConfig, metric: str = "overlap_iou") -> pd.DataFrame:
    """Per method, each order of the architectures by `metric` (most stable first) that some seed
    gives, with the seeds that give it: method, order, seeds (a list), count, share."""
    from .drift import ranking

    table = seed_table(config).melt(id_vars=["seed", "method", "arch"], var_name="metric", value_name="mean")
    if metric == "spatial_displacement":  # less displacement is more stable
        table["mean"] = -table["mean"]
    orders = [{"seed": seed, "method": method, "order": " > ".join(order)}
              for seed, part in table.groupby("seed") for method, order in ranking(part, metric).items()]
    frame = pd.DataFrame(orders, columns=["seed", "method", "order"])
    grouped = frame.groupby(["method", "order"], sort=False)["seed"].apply(sorted).rename("seeds").reset_index()
    grouped["count"] = grouped["seeds"].map(len)
    grouped["share"] = grouped["count"] / frame["seed"].nunique()
    return grouped.sort_values(["method", "count"], ascending=[True, False], kind="stable").reset_index(drop=True)


def write_verdicts(config: RunConfig, force: bool = False) -> pd.DataFrame:
    """Write tables/verdicts.json — the verdicts, their sensitivity and every cell's baselines, one
    JSON a pipeline can read — unless its stamp (the evidence, the ceiling, the bootstrap's size and
    seed) is current; return the verdicts."""
    paths = RunPaths.of(config)
    inputs = [paths.evidence] + ([paths.randomization] if paths.randomization.exists() else [])
    expected = stamp(config, "verdicts", inputs)
    target = paths.tables / "verdicts.json"
    if force or not is_current(target, expected):
        tables = {"verdicts": verdict_table(config), "sensitivity": sensitivity_table(config),
                  "baselines": baseline_table(config)}
        write_json(target, {name: json.loads(table.to_json(orient="records")) for name, table in tables.items()},
                   stamp=expected)
    return load_verdicts(config)["verdicts"]


def load_verdicts(config: RunConfig) -> dict[str, pd.DataFrame]:
    """tables/verdicts.json as tables: "verdicts", "sensitivity", "baselines" (JSON null read as NaN)."""
    data = read_json(RunPaths.of(config).tables / "verdicts.json")
    columns = {"verdicts": findings.COLUMNS, "sensitivity": SENSITIVITY_COLUMNS, "baselines": BASELINE_COLUMNS}
    return {name: pd.DataFrame(data[name], columns=columns.get(name)).fillna(np.nan)
            for name in ("verdicts", "sensitivity", "baselines")}


__all__ = ["KEPT_WEIGHTS", "COARSE_GRID", "BASELINE_METRICS", "verdict_table", "sensitivity_settings",
           "sensitivity_table", "sensitivity_rows", "holds_in", "interaction_table", "slope_table", "support_table",
           "support_sentence", "outcome_table", "baseline_table", "baseline_table_wide", "grid_of",
           "seed_table", "seed_rankings", "write_verdicts", "load_verdicts"]
