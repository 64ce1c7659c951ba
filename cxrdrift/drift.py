"""The true-positive filter and drift stages, and the tables derived from their files.

Stage 3, `run_true_positive_filter`: `predictions.parquet` -> `true_positives.parquet`.
Stage 5, `run_drift_stage`: the raw maps of the two compared epochs -> `drift.parquet`, one row
per (architecture, method, sample) with the four metrics of `cxrdrift.metrics`.
`table3`, `per_class_table`, `ranking`, `ranking_reversal` and `ranking_uncertainty` read only
those files. With maps at more than one depth (`cam_layers`), drift.parquet holds rows for each,
marked by `depth` and `layer`; every reader takes the paper's layer unless given another depth,
and `depth_table` and `depth_ranking` put the depths side by side.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from . import metrics
from .artifacts import RunPaths, is_current, stamp, write_parquet
from .config import RunConfig

METHOD_LABELS = {"layercam": "LayerCAM", "gradcampp": "Grad-CAM++", "gradcam": "Grad-CAM"}
METRIC_LABELS = {"spatial_displacement": "Spatial disp.", "overlap_iou": "Overlap IoU",
                 "pattern_correlation": "Pattern corr.", "concentration_change": "Conc. change",
                 "rank_correlation": "Rank corr.", "adjusted_iou": "Adjusted IoU"}
CHUNK = 256  # samples post-processed at once: bounds memory at the paper's 224 px
PAPER_DEPTH = "target"  # cams.PAPER_DEPTH: the paper's layer


class DriftError(ValueError):
    """A missing or inconsistent artifact that the drift stages need."""


def _require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise DriftError(f"{path} is missing: run the {stage} first")
    return path


# -- stage 3: true-positive filter ----------------------------------------------------------------

def run_true_positive_filter(config: RunConfig, force: bool = False) -> pd.DataFrame:
    """Write `true_positives.parquet`: every test sample, whether it is kept (every architecture
    right at both compared epochs) and the per-(arch, epoch) correctness columns."""
    paths = RunPaths.of(config)
    source = _require(paths.predictions, "training stage")
    expected = stamp(config, "true_positives", [source])
    if not force and is_current(paths.true_positives, expected):
        return pd.read_parquet(paths.true_positives)
    predictions = pd.read_parquet(source)
    try:
        frame = metrics.true_positive_mask(predictions, config.architectures, config.compared_epochs)
    except metrics.MetricInputError as err:
        raise DriftError(f"{source}: {err}") from None
    write_parquet(paths.true_positives, frame, stamp=expected)
    return frame


def load_true_positives(config: RunConfig) -> pd.DataFrame:
    return pd.read_parquet(_require(RunPaths.of(config).true_positives, "true-positive filter"))


def correctness_columns(true_positives: pd.DataFrame) -> list[str]:
    return [c for c in true_positives.columns if c.startswith("correct_")]


def true_positive_summary(true_positives: pd.DataFrame) -> pd.DataFrame:
    """Per class and in total: test samples, kept samples and the kept share in percent."""
    from .data import CLASSES

    per_class = true_positives.groupby("label")["kept"].agg(test="size", kept="sum")
    per_class = per_class.reindex([c for c in CLASSES if c in per_class.index])
    per_class.loc["All classes"] = per_class.sum()
    return per_class.assign(kept_pct=100 * per_class["kept"] / per_class["test"])


def failure_patterns(true_positives: pd.DataFrame) -> pd.DataFrame:
    """How many samples share each pattern of per-model correctness (one bool column per
    (arch, epoch) model, True = right), most common first; the all-True row is the kept set."""
    columns = correctness_columns(true_positives)
    return (true_positives.groupby(columns).size().rename("samples").reset_index()
            .sort_values("samples", ascending=False, kind="stable").reset_index(drop=True))


def absent_classes(true_positives: pd.DataFrame) -> list[str]:
    """Classes that have test images but no kept one, in CLASSES order."""
    from .data import CLASSES

    kept = set(true_positives.loc[true_positives["kept"], "label"])
    return [c for c in CLASSES if c in set(true_positives["label"]) and c not in kept]


def class_weights(config: RunConfig) -> dict[str, float]:
    """Inverse-frequency class weights from the whole test set's class counts."""
    from .data import inverse_frequency_weights

    counts = load_true_positives(config)["label"].value_counts()
    return inverse_frequency_weights({label: int(n) for label, n in counts.items()})


# -- stage 5: drift -------------------------------------------------------------------------------

def mapped_samples(config: RunConfig) -> pd.DataFrame:
    """The test samples whose maps are compared: the kept ones, or all when cam_samples='all'."""
    samples = load_true_positives(config)[["sample_id", "label", "kept"]]
    if config.cam_samples == "true_positives":
        samples = samples[samples["kept"]]
    return samples.reset_index(drop=True)


def _rows_of(cams: dict[str, np.ndarray], sample_ids: pd.Series, where: str) -> np.ndarray:
    """Positions of `sample_ids` in a CAM file; DriftError if any is absent."""
    positions = pd.Index(cams["sample_id"].astype(str)).get_indexer(sample_ids.astype(str))
    if (positions < 0).any():
        first = sample_ids[positions < 0].iloc[0]
        raise DriftError(f"{where} has no map for {int((positions < 0).sum())} of {len(sample_ids)} "
                         f"samples to compare (first: {first!r}); rerun the CAM stage")
    return positions


def epoch_maps(config: RunConfig, arch: str, method: str, epoch: int, sample_ids: Sequence[str],
               depth: str = PAPER_DEPTH) -> np.ndarray:
    """Post-processed (N, S, S) maps of `sample_ids` at `epoch` and `depth`, in that order."""
    from .cams import load_cams, postprocess

    cams = load_cams(config, arch, epoch, depth)
    where = f"cams/{arch}/epoch_{epoch:02d}.npz"
    if method not in cams:
        raise DriftError(f"{where} holds no {method!r} maps (it has "
                         f"{sorted(k for k in cams if k != 'sample_id')}); rerun the CAM stage")
    rows = _rows_of(cams, pd.Series(list(sample_ids), dtype=str), where)
    return postprocess(cams[method][rows], (config.image_size, config.image_size))


def compared_maps(config: RunConfig, arch: str, method: str, sample_ids: Sequence[str],
                  depth: str = PAPER_DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """Post-processed (N, S, S) maps of `sample_ids` at the earlier and the later compared epoch."""
    early, late = (epoch_maps(config, arch, method, epoch, sample_ids, depth) for epoch in config.compared_epochs)
    return early, late


def drift_rows(early: np.ndarray, late: np.ndarray, threshold: float,
               names: Sequence[str] = metrics.SUITE_METRICS) -> pd.DataFrame:
    """The metrics `names` (default the suite) and degenerate flags of aligned post-processed map pairs."""
    values = metrics.drift_metrics(early, late, threshold, names)
    return pd.DataFrame({**values,
                         "degenerate_early": ~np.isfinite(early).all(axis=(1, 2)),
                         "degenerate_late": ~np.isfinite(late).all(axis=(1, 2))})


def _arch_method_frame(config: RunConfig, arch: str, method: str, samples: pd.DataFrame,
                       depth: str = PAPER_DEPTH) -> pd.DataFrame:
    from .cams import layer_of

    parts = []
    for start in range(0, len(samples), CHUNK):  # chunks bound memory; each is vectorized
        chunk = samples.iloc[start:start + CHUNK]
        early, late = compared_maps(config, arch, method, chunk["sample_id"], depth)
        parts.append(drift_rows(early, late, config.threshold))
    values = pd.concat(parts, ignore_index=True) if parts else drift_rows(
        np.zeros((0, 1, 1)), np.zeros((0, 1, 1)), config.threshold)
    return pd.concat([pd.DataFrame({"arch": arch, "method": method}, index=samples.index),
                      samples, values.set_index(samples.index),
                      pd.DataFrame({"depth": depth, "layer": layer_of(arch, depth)}, index=samples.index)],
                     axis=1)


def run_drift_stage(config: RunConfig, force: bool = False) -> pd.DataFrame:
    """Write `drift.parquet`: arch, method, sample_id, label, kept, the four metrics, the
    degenerate flags, and the depth and layer the maps come from, for every architecture, CAM
    method and depth (`cam_layers`) of the config. `load_drift` gives the paper's layer's rows."""
    paths = RunPaths.of(config)
    inputs = [_require(paths.true_positives, "true-positive filter")]
    inputs += [_require(paths.cams(arch, epoch), "CAM stage")
               for arch in config.architectures for epoch in config.compared_epochs]
    expected = stamp(config, "drift", inputs)
    if not force and is_current(paths.drift, expected):
        return pd.read_parquet(paths.drift)
    samples = mapped_samples(config)
    frame = pd.concat([_arch_method_frame(config, arch, method, samples, depth)
                       for depth in depths(config)
                       for arch in config.architectures for method in config.cam_methods],
                      ignore_index=True)
    write_parquet(paths.drift, frame, stamp=expected)
    return frame


def depths(config: RunConfig) -> list[str]:
    """The depths of `config.cam_layers`, the paper's layer first."""
    return [PAPER_DEPTH, *(d for d in config.cam_layers if d != PAPER_DEPTH)]


def load_drift(config: RunConfig, samples: str | None = None, depth: str | None = PAPER_DEPTH) -> pd.DataFrame:
    """drift.parquet's rows for `samples` ('kept' or 'all'; default: what cam_samples mapped) at
    `depth` (default the paper's layer, what chapters 4-7 show; None: every depth). A table
    without a depth column holds the paper's layer only."""
    frame = pd.read_parquet(_require(RunPaths.of(config).drift, "drift stage"))
    if depth is not None and "depth" in frame.columns:
        if len(frame) and depth not in set(frame["depth"]):
            raise DriftError(f"drift.parquet has no rows at depth {depth!r} (it has "
                             f"{sorted(set(frame['depth']))}): add it to cam_layers and rerun the CAM and drift stages")
        frame = frame[frame["depth"] == depth]
    if _samples(config, samples) == "kept":
        frame = frame[frame["kept"]]
    return frame.reset_index(drop=True)


def load_compared_rows(config: RunConfig, path: Path) -> pd.DataFrame | None:
    """A per-sample table with a `kept` column (ground truth, ceiling, noise floor) restricted to
    the compared samples — the kept ones, or all when cam_samples='all' — or None when its stage
    did not write it."""
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    if config.cam_samples == "true_positives":
        frame = frame[frame["kept"]]
    return frame.reset_index(drop=True)


def _samples(config: RunConfig, samples: str | None) -> str:
    chosen = samples or ("kept" if config.cam_samples == "true_positives" else "all")
    if chosen not in ("kept", "all"):
        raise DriftError(f"samples={samples!r}: choose 'kept' or 'all'")
    return chosen


# -- tables ---------------------------------------------------------------------------------------

def summary_table(drift: pd.DataFrame, weights: dict[str, float], n_boot: int, seed: int,
                  level: float = 0.95) -> pd.DataFrame:
    """Long table: method, arch, metric, weighted mean, std, n, n_dropped, ci_low, ci_high."""
    rows = []
    for (method, arch), group in drift.groupby(["method", "arch"], sort=False):
        for metric in metrics.DRIFT_METRICS:
            s = metrics.summarize(group[metric].to_numpy(), group["label"].to_numpy(), weights,
                                  n_boot, seed, level)
            rows.append({"method": method, "arch": arch, "metric": metric, **s.as_dict()})
    return pd.DataFrame(rows, columns=["method", "arch", "metric", "mean", "std", "n", "n_dropped",
                                       "ci_low", "ci_high"])


def weighted_means(frame: pd.DataFrame, keys: Sequence[str], columns: Sequence[str],
                   weights: dict[str, float]) -> pd.DataFrame:
    """Class-weighted mean of each of `columns` per group of `keys` (NaN dropped), one row a group."""
    rows = []
    for group_keys, group in frame.groupby(list(keys), sort=False):
        row = dict(zip(keys, group_keys))
        for column in columns:
            row[column], _ = metrics.weighted_summary(group[column].to_numpy(), group["label"].to_numpy(), weights)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, *columns])


def drift_means(config: RunConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """Class-weighted mean and n of each drift metric per method and architecture of a
    drift.parquet-shaped `frame` (NaN dropped): method, arch, metric, mean, n."""
    return summary_table(frame, class_weights(config), 1, config.seed)[["method", "arch", "metric", "mean", "n"]]


def table3(config: RunConfig, samples: str | None = None, depth: str = PAPER_DEPTH) -> pd.DataFrame:
    """This run's Table 3 (long form), from drift.parquet, weighted by the whole test set's
    class counts, with `config.bootstrap_samples` stratified bootstrap resamples, at `depth`
    (default the paper's layer)."""
    table = summary_table(load_drift(config, samples, depth), class_weights(config),
                          config.bootstrap_samples, config.seed)
    table.attrs["samples"] = _samples(config, samples)
    table.attrs["depth"] = depth
    return table


def per_class_table(config: RunConfig, samples: str | None = None, depth: str = PAPER_DEPTH) -> pd.DataFrame:
    """Mean, std and n of each metric per method, architecture and class (NaN dropped) at `depth`;
    a class with test images but no compared one has a row with n = 0 and NaN mean and std."""
    long = load_drift(config, samples, depth).melt(id_vars=["method", "arch", "label"],
                                            value_vars=list(metrics.DRIFT_METRICS), var_name="metric")
    table = (long.groupby(["method", "arch", "metric", "label"], sort=False)["value"]
             .agg(mean="mean", std=lambda v: v.std(ddof=0), n="count").reset_index())
    tested = load_true_positives(config)
    absent = absent_classes(tested) if _samples(config, samples) == "kept" else []
    cells = table[["method", "arch", "metric"]].drop_duplicates()
    missing = cells.merge(pd.DataFrame({"label": absent}), how="cross").assign(mean=np.nan, std=np.nan, n=0)
    return pd.concat([table, missing], ignore_index=True) if len(missing) else table


def table3_wide(table: pd.DataFrame, with_ci: bool = True, digits: int = 3) -> pd.DataFrame:
    """Paper-shaped Table 3: rows (Method, Architecture), one 'mean ± std [low, high]' column per
    metric, and when the table has counts an `n` column: samples scored by every metric, of all
    (the rest are NaN, e.g. degenerate maps), so a mean over few samples shows as such. A
    `sign_known` column (the paper's table) prints unknown signs as '±|x|'."""
    def cell(row: pd.Series) -> str:
        if pd.isna(row["mean"]):
            return "n/a"
        mean = f"{row['mean']:.{digits}f}"
        if "sign_known" in row and not row["sign_known"]:
            mean = f"|{abs(row['mean']):.{digits}f}|"
        text = f"{mean} ± {row['std']:.{digits}f}"
        if with_ci and "ci_low" in row and pd.notna(row["ci_low"]):
            text += f" [{row['ci_low']:.{digits}f}, {row['ci_high']:.{digits}f}]"
        return text

    cells = table.assign(cell=table.apply(cell, axis=1))
    wide = cells.pivot_table(index=["method", "arch"], columns="metric", values="cell",
                             aggfunc="first", sort=False)
    wide = wide[[m for m in metrics.DRIFT_METRICS if m in wide.columns]].rename(columns=METRIC_LABELS)
    if "n" in table.columns:
        counts = table.assign(total=table["n"] + table["n_dropped"]).groupby(
            ["method", "arch"], sort=False).agg(scored=("n", "min"), total=("total", "max"))
        wide["n"] = [f"{scored}" if scored == total else f"{scored} of {total}"
                     for scored, total in counts.loc[wide.index].itertuples(index=False)]
    wide.index = wide.index.set_names(["Method", "Architecture"])
    wide = wide.rename(index=METHOD_LABELS, level="Method")
    wide.columns.name = None
    return wide


def ranking(table: pd.DataFrame, metric: str = "overlap_iou") -> dict[str, list[str]]:
    """Architectures ordered by `metric`'s mean, highest first, under each method; an architecture
    with no scored sample under a method (NaN mean, e.g. every map degenerate) is left out of that
    method's order rather than ranked last."""
    chosen = table[(table["metric"] == metric) & table["mean"].notna()]
    chosen = chosen.sort_values("mean", ascending=False, kind="stable")
    return {method: list(chosen.loc[chosen["method"] == method, "arch"])
            for method in table["method"].unique()}


@dataclass(frozen=True)
class RankingReversal:
    """Whether the order of architectures differs between methods, and which pairs swap."""

    reversed: bool
    orders: dict[str, list[str]]
    swapped: list[tuple[str, str]]

    def describe(self) -> str:
        shown = "; ".join(f"{METHOD_LABELS.get(m, m)}: {' > '.join(order)}" for m, order in self.orders.items())
        if sum(len(order) >= 2 for order in self.orders.values()) < 2:
            return ("Not testable: fewer than two methods have two or more architectures with a scored map "
                    f"({shown or 'none has any'}).")
        if not self.reversed:
            return f"Same order under every method ({shown})."
        pairs = ", ".join(f"{a} / {b}" for a, b in self.swapped)
        return f"The order changes between methods ({shown}); pairs that swap: {pairs}."


def _swapped_pairs(orders: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Pairs of architectures that one method orders one way and another method the other way."""
    swapped = set()
    for order in orders.values():
        for other in orders.values():
            for i, a in enumerate(order):
                for b in order[i + 1:]:
                    if a in other and b in other and other.index(a) > other.index(b):
                        swapped.add(tuple(sorted((a, b))))
    return sorted(swapped)


def ranking_reversal(table: pd.DataFrame, metric: str = "overlap_iou") -> RankingReversal:
    """Compare the per-method orders of `ranking`: a pair of architectures swaps when one method
    puts the first above the second and another method the opposite."""
    orders = ranking(table, metric)
    swapped = _swapped_pairs(orders)
    return RankingReversal(bool(swapped), orders, swapped)


@dataclass(frozen=True)
class RankingUncertainty:
    """How often each order of architectures and a reversal between methods occur when the
    compared samples are resampled."""

    orders: pd.DataFrame          # method, order ("A > B > C"), probability; most likely first
    reversal_probability: float   # any pair swapped between methods; NaN with too little to resample
    n_boot: int
    n_samples: int                # compared images with at least one scored map
    metric: str = "overlap_iou"

    def paper_order_probability(self, method: str) -> float:
        """Share of the resamples giving the paper's full order under `method` for this metric (NaN
        where the paper's order is unknown: a method or metric it lacks, a sign its text lost)."""
        from .reported import paper_table3

        paper = paper_table3()
        cells = paper[(paper["method"] == method) & (paper["metric"] == self.metric)]
        if (cells.empty or not cells["sign_known"].all() or self.n_samples < metrics.MIN_BOOTSTRAP
                or "method" not in self.orders):
            return float("nan")
        order = " > ".join(cells.sort_values("mean", ascending=False)["arch"])
        ours = self.orders[self.orders["method"] == method]
        if ours.empty or any(set(o.split(" > ")) != set(cells["arch"]) for o in ours["order"]):
            return float("nan")  # this run does not rank the paper's three architectures
        return float(ours.loc[ours["order"] == order, "probability"].sum())

    def describe(self) -> str:
        """One sentence: how often the resamples give the paper's order under each of its methods
        (and how often any pair swaps between methods), or why it was not tested."""
        if self.n_samples < metrics.MIN_BOOTSTRAP:
            return (f"Not testable: {self.n_samples} compared image{'s' if self.n_samples != 1 else ''} "
                    f"with a scored map, fewer than the {metrics.MIN_BOOTSTRAP} a bootstrap needs.")
        methods = [m for m in PAPER_METHODS if m in set(self.orders.get("method", ()))]
        paper = [f"the paper's {METHOD_LABELS.get(m, m)} order in {p:.0%}" for m in methods
                 if np.isfinite(p := self.paper_order_probability(m))]
        return (f"{self.n_boot} paired bootstrap resamples of {self.n_samples} images: "
                + (", ".join(paper) + "; " if paper else "")
                + f"some pair of architectures ordered differently by two methods in {self.reversal_probability:.0%}.")


def _resampled_means(values: np.ndarray, weights: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Weighted means (boot, cell) of `values` (sample, cell) over the resampled rows `index`
    (boot, sample), NaN values ignored; NaN where a cell has none."""
    x = values[index]
    finite = np.isfinite(x)
    w = weights[index][..., None] * finite
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.where(finite, x, 0.0) * w).sum(1) / w.sum(1)


def ranking_uncertainty(drift: pd.DataFrame, weights: dict[str, float], n_boot: int, seed: int,
                        metric: str = "overlap_iou") -> RankingUncertainty:
    """Bootstrap the ranking: resample the compared samples within each class (the same resample
    for every architecture and method, so the comparison stays paired), recompute every
    class-weighted mean of `metric` (NaN values ignored, as in `table3`), order the architectures
    under each method as `ranking` does, and count orders and reversals. With fewer than
    `metrics.MIN_BOOTSTRAP` images that have a scored map there is nothing to resample: the result
    has no orders and a NaN reversal probability."""
    if n_boot < 1:
        raise DriftError(f"n_boot={n_boot} must be at least 1")
    values = drift.pivot_table(index=["sample_id", "label"], columns=["method", "arch"], values=metric,
                               dropna=False, sort=False)
    n_scored = int(values.notna().any(axis=1).sum())
    if n_scored < metrics.MIN_BOOTSTRAP:
        return RankingUncertainty(pd.DataFrame(columns=["method", "order", "probability"]), float("nan"),
                                  n_boot, n_scored, metric)
    labels = values.index.get_level_values("label").to_numpy()
    sample_weight = np.array([weights[label] for label in labels])
    rng = np.random.default_rng(seed)
    index = np.concatenate([rng.choice(np.flatnonzero(labels == label), size=(n_boot, int((labels == label).sum())))
                            for label in pd.unique(labels)], axis=1)
    means = np.concatenate([_resampled_means(values.to_numpy(), sample_weight, index[start:start + 100])
                            for start in range(0, n_boot, 100)])   # (boot, cell), blocks bound memory
    cells = list(values.columns)
    methods = list(dict.fromkeys(method for method, _ in cells))
    counts: dict[tuple[str, str], int] = {}
    reversals = 0
    for boot in means:
        orders = {}
        for method in methods:
            scored = [(mean, arch) for (m, arch), mean in zip(cells, boot) if m == method and np.isfinite(mean)]
            orders[method] = [arch for _, arch in sorted(scored, key=lambda pair: -pair[0])]
            key = (method, " > ".join(orders[method]))
            counts[key] = counts.get(key, 0) + 1
        reversals += bool(_swapped_pairs(orders))
    table = pd.DataFrame([{"method": method, "order": order, "probability": n / n_boot}
                          for (method, order), n in counts.items()])
    table = table.sort_values(["method", "probability"], ascending=[True, False], kind="stable")
    return RankingUncertainty(table.reset_index(drop=True), reversals / n_boot, n_boot, n_scored, metric)


PAPER_METHODS = ("layercam", "gradcampp")


def ranking_uncertainty_of_run(config: RunConfig, metric: str = "overlap_iou", samples: str | None = None,
                               methods: Sequence[str] | None = None,
                               depth: str = PAPER_DEPTH) -> RankingUncertainty:
    """`ranking_uncertainty` of this run's drift.parquet at `depth` (only `methods`, default all)
    with its class weights and bootstrap size."""
    drift = load_drift(config, samples, depth)
    if methods is not None:
        drift = drift[drift["method"].isin(list(methods))]
    return ranking_uncertainty(drift, class_weights(config), config.bootstrap_samples, config.seed, metric)


# -- evidence at more than one depth ----------------------------------------------------------------

def layer_name(layer: str, depth: str) -> str:
    """A layer as the book prints it, the paper's marked: 'mixed10 (paper)'."""
    return f"{layer} (paper)" if depth == PAPER_DEPTH else layer


def _layer_columns(config: RunConfig, table: pd.DataFrame, depth: str) -> pd.DataFrame:
    from .cams import layer_of

    layers = table["arch"].map(lambda arch: layer_of(arch, depth))
    return table.assign(depth=depth, layer=layers, paper_layer=depth == PAPER_DEPTH)


def depth_table(config: RunConfig, samples: str | None = None) -> pd.DataFrame:
    """`table3` at every depth of `cam_layers`, stacked: depth, layer, paper_layer (True on the
    paper's layer's rows, which are `table3(config)` itself), then table3's columns."""
    frames = [_layer_columns(config, table3(config, samples, depth), depth) for depth in depths(config)]
    table = pd.concat(frames, ignore_index=True)
    return table[["depth", "layer", "paper_layer", *(c for c in table.columns
                                                     if c not in ("depth", "layer", "paper_layer"))]]


def depth_table_wide(table: pd.DataFrame, with_ci: bool = False, digits: int = 3) -> pd.DataFrame:
    """`depth_table` in `table3_wide`'s shape with a row per (Method, Architecture, Depth), the
    depths of each cell together and the paper's layer first, and a Layer column ('(paper)' marks
    the paper's layer)."""
    from .cams import depth_label

    parts = {}
    for depth, group in table.groupby("depth", sort=False):
        wide = table3_wide(group.drop(columns=["depth", "layer", "paper_layer"]), with_ci, digits)
        layers = group.drop_duplicates("arch").set_index("arch")["layer"]
        wide.insert(0, "Layer", [layer_name(layers[arch], depth) for arch in wide.index.get_level_values(1)])
        parts[depth_label(depth)] = wide
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, names=["Depth"]).reorder_levels([1, 2, 0])
    cells = list(dict.fromkeys((m, a) for m, a, _ in out.index))
    order = sorted(range(len(out)), key=lambda i: (cells.index(out.index[i][:2]), i))
    return out.iloc[order]


@dataclass(frozen=True)
class DepthRanking:
    """The ranking of architectures at each depth: the per-method orders, whether they reverse
    between methods, how often a resample reverses them, and whether the order depends on the depth."""

    reversals: dict[str, RankingReversal]          # depth -> the reversal test at that depth
    uncertainties: dict[str, RankingUncertainty]   # depth -> its bootstrap
    metric: str

    def table(self) -> pd.DataFrame:
        """depth, paper_layer, method, order, reversal between methods, and in the resamples the
        share with the paper's order under that method and with any pair swapped between methods."""
        rows = []
        for depth, reversal in self.reversals.items():
            testable = sum(len(order) >= 2 for order in reversal.orders.values()) >= 2
            for method, order in reversal.orders.items():
                rows.append({"depth": depth, "paper_layer": depth == PAPER_DEPTH, "method": method,
                             "order": " > ".join(order) or "none scored",
                             "reversal": reversal.reversed if testable else None,
                             "P(paper's order)": self.uncertainties[depth].paper_order_probability(method),
                             "P(any pair swaps)": self.uncertainties[depth].reversal_probability})
        return pd.DataFrame(rows, columns=["depth", "paper_layer", "method", "order", "reversal", "P(paper's order)",
                                           "P(any pair swaps)"])

    def changed_orders(self) -> list[str]:
        """Methods whose order of architectures (two or more scored) differs between two depths."""
        changed = []
        methods = dict.fromkeys(m for reversal in self.reversals.values() for m in reversal.orders)
        for method in methods:
            orders = [tuple(r.orders.get(method, ())) for r in self.reversals.values()]
            orders = [order for order in orders if len(order) >= 2]
            if len(orders) >= 2 and _swapped_pairs(dict(enumerate(map(list, orders)))):
                changed.append(method)
        return changed

    def describe(self) -> str:
        """The verdict: the reversal at each depth, and whether the ranking depends on the layer."""
        from .cams import depth_phrase

        if len(self.reversals) < 2:
            return ("This run took maps at the paper's layer only (`cam_layers`); "
                    "`-p cam_layers target,earlier` adds the layer before the last down-sampling.")
        parts = [f"At {depth_phrase(depth)}: {reversal.describe()} "
                 f"{self.uncertainties[depth].describe()}" for depth, reversal in self.reversals.items()]
        testable = [d for d, r in self.reversals.items()
                    if sum(len(order) >= 2 for order in r.orders.values()) >= 2]
        if len(testable) < 2:
            verdict = "Whether the ranking depends on the layer is not testable in this run."
        else:
            held = [d for d in testable if self.reversals[d].reversed]
            absent = [d for d in testable if not self.reversals[d].reversed]
            names = lambda chosen: " and ".join(depth_phrase(d) for d in chosen)  # noqa: E731
            verdict = ("The methods reverse the ranking at every depth" if not absent else
                       "The methods rank the architectures alike at every depth" if not held else
                       f"The methods reverse the ranking at {names(held)}, not at {names(absent)}")
            changed = self.changed_orders()
            verdict += ("; the order of architectures changes with the layer under "
                        f"{', '.join(METHOD_LABELS.get(m, m) for m in changed)}." if changed else
                        "; each method orders the architectures the same way at every depth.")
        return " ".join(parts + [verdict])


def depth_ranking(config: RunConfig, metric: str = "overlap_iou", samples: str | None = None,
                  methods: Sequence[str] | None = None) -> DepthRanking:
    """The ranking, its reversal between `methods` (default all) and its bootstrap at every depth."""
    reversals, uncertainties = {}, {}
    for depth in depths(config):
        table = table3(config, samples, depth)
        if methods is not None:
            table = table[table["method"].isin(list(methods))]
        reversals[depth] = ranking_reversal(table, metric)
        uncertainties[depth] = ranking_uncertainty_of_run(config, metric, samples, methods, depth)
    return DepthRanking(reversals, uncertainties, metric)


# -- samples for figures ----------------------------------------------------------------------------

def load_test_images(config: RunConfig, sample_ids: Sequence[str]) -> np.ndarray:
    """Raw uint8 (N, S, S, 3) test images of `sample_ids`, in that order, at the model input size."""
    from .data import load_images, run_index

    root = config.data_dir or RunPaths.of(config).data
    test = run_index(config).split("test").set_index("sample_id")
    missing = [s for s in sample_ids if s not in test.index]
    if missing:
        raise DriftError(f"test split of {root} has no sample {missing[0]!r}")
    return load_images(test.loc[list(sample_ids)].reset_index(), config.image_size)


def qualitative_samples(config: RunConfig, per_class: int = 2, seed: int | None = None) -> pd.DataFrame:
    """Up to `per_class` kept samples of each class (sample_id, label), for the overlay figure."""
    from .data import CLASSES

    kept = load_true_positives(config)
    kept = kept[kept["kept"]]
    shuffled = kept.sample(frac=1.0, random_state=config.seed if seed is None else seed)
    picked = shuffled.groupby("label", sort=False).head(per_class)
    order = {c: i for i, c in enumerate(CLASSES)}
    return (picked.assign(_o=picked["label"].map(order)).sort_values(["_o", "sample_id"])
            [["sample_id", "label"]].reset_index(drop=True))


def qualitative_maps(config: RunConfig, arch: str, sample_ids: Sequence[str]) -> dict[tuple[str, int], np.ndarray]:
    """Post-processed maps of `sample_ids` per (method, epoch), methods in config order."""
    maps = {}
    for method in config.cam_methods:
        early, late = compared_maps(config, arch, method, sample_ids)
        maps[method, config.early_epoch], maps[method, config.late_epoch] = early, late
    return maps


# -- toy maps for teaching ----------------------------------------------------------------------------

def _blob(shape: tuple[int, int], centre: tuple[float, float], sigma: float) -> np.ndarray:
    rows, cols = np.indices(shape)
    return np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))


def _unit(m: np.ndarray) -> np.ndarray:
    return (m - m.min()) / (m.max() - m.min())


def toy_map_pairs(shape: tuple[int, int] = (48, 64)) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Earlier/later map pairs that each metric sees differently: identical; same centre of mass
    but split in two (low displacement, low IoU); a shifted copy; a blurred copy."""
    height, width = shape
    centre = ((height - 1) / 2, (width - 1) / 2)
    base = _unit(_blob(shape, centre, height / 10))
    split = _unit(_blob(shape, (centre[0], centre[1] - width / 4), height / 10)
                  + _blob(shape, (centre[0], centre[1] + width / 4), height / 10))
    shifted = _unit(_blob(shape, (centre[0] + height / 8, centre[1] + width / 8), height / 10))
    blurred = _unit(gaussian_filter(base, sigma=height / 10, mode="constant"))
    return {"identical": (base, base), "same centre, split in two": (base, split),
            "shifted": (base, shifted), "blurred": (base, blurred)}


def toy_metric_table(pairs: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float = 0.5) -> pd.DataFrame:
    """The paper's four metrics of each toy pair, one row per pair."""
    early = np.stack([a for a, _ in pairs.values()])
    late = np.stack([b for _, b in pairs.values()])
    values = metrics.drift_metrics(early, late, threshold)
    return pd.DataFrame(values, index=pd.Index(list(pairs), name="pair"))[list(metrics.DRIFT_METRICS)].rename(
        columns=METRIC_LABELS)
