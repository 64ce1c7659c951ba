"""`cxrdrift audit`: how far the evidence of a classifier moved between two of its checkpoints.

The study's machinery on a user's two Keras models of one architecture: the fused CAM pass
(`cams.FusedCamPass`, one forward/backward pass per model and batch for every method), the metric
suite (`metrics.drift_metrics`), class weighting and bootstrap intervals (`metrics.summarize`),
the chance baseline of shuffled same-class pairs (`baselines.shuffled_partners`) and the
randomization ceiling (the later model with its top re-initialized). Images stream through
tf.data; what is kept per image is its low-resolution raw maps and its metric values.

Outputs in the audit directory: `images.parquet` (one row per image and method), `ceiling.parquet`,
`maps.npz` (raw maps and logits: the report's overlays, and what a later audit of the same models,
images and map settings scores again without a model pass), `summary.json` (what a pipeline
reads; its `statistics` are what `--fail-if` tests) and, from `audit_report`, `figures/` and
`report.html`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from . import audit_data, audit_models, baselines, metrics, progress
from .artifacts import RunPaths, fingerprint, is_current, read_npz, write_json, write_npz, write_parquet
from .cams import FusedCamPass, check_methods, postprocess
from .config import CAM_METHODS, CLASSES, RunConfig
from .models import TARGET_LAYERS

TARGETS = ("label", "predicted")
EXIT_GATE = 3
CHUNK = 256  # maps post-processed at once for the baseline and ceiling: bounds memory
# Metrics where a smaller value means more drift; the others grow with drift (concentration
# change in absolute value).
AGREEMENT_METRICS = ("overlap_iou", "pattern_correlation", "rank_correlation", "adjusted_iou")
SUMMARY_FIELDS = ("mean", "std", "n", "ci_low", "ci_high")


class AuditError(ValueError):
    """Settings or inputs an audit cannot run with."""


@dataclass(frozen=True)
class AuditSettings:
    """The `-p NAME VALUE` knobs of an audit."""

    methods: tuple[str, ...] = CAM_METHODS
    threshold: float = 0.5          # the study's overlap threshold on [0, 1] maps
    batch_size: int = 32
    n_boot: int = 1000              # bootstrap resamples per interval (0: no intervals)
    seed: int = 0                   # bootstrap, shuffled partners; the ceiling uses seed + 1, as the study
    alpha_norm: bool = False        # Grad-CAM++ alpha normalization (cams.gradcampp_alpha)
    primary_method: str = "layercam"  # whose metrics the bare statistic names and the review list use
    flag_metric: str = "overlap_iou"  # an image is flagged when this drifts beyond its chance mean
    ceiling_images: int = 256       # images the randomized copy is mapped on (a scale, not a census)
    review: int = 12                # flagged images the report shows with both maps

    def __post_init__(self) -> None:
        check_methods(self.methods)
        if self.primary_method not in self.methods:
            raise AuditError(f"primary_method={self.primary_method!r} is not among methods {list(self.methods)}")
        if self.flag_metric not in metrics.SUITE_METRICS:
            raise AuditError(f"flag_metric={self.flag_metric!r}; choose one of {', '.join(metrics.SUITE_METRICS)}")
        if not 0.0 < self.threshold <= 1.0:
            raise AuditError(f"threshold={self.threshold} must lie in (0, 1]")
        if self.batch_size < 1:
            raise AuditError(f"batch_size={self.batch_size} must be at least 1")
        negative = [name for name in ("n_boot", "ceiling_images", "review") if getattr(self, name) < 0]
        if negative:
            raise AuditError(f"{negative[0]}={getattr(self, negative[0])} must not be negative")

    @classmethod
    def from_pairs(cls, pairs: Sequence[tuple[str, str]]) -> "AuditSettings":
        """Settings from `-p NAME VALUE` strings, each coerced to its field's type."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, text in pairs:
            if name not in fields:
                raise AuditError(f"unknown audit parameter {name!r}; known: {', '.join(fields)}")
            kind = type(getattr(cls(), name))
            try:
                if kind is tuple:
                    values[name] = tuple(part.strip() for part in text.split(",") if part.strip())
                elif kind is bool:
                    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(text)
                    values[name] = text.lower() in ("true", "1", "yes")
                else:
                    values[name] = kind(text)
            except ValueError:
                raise AuditError(f"audit parameter {name}={text!r} is not a {kind.__name__}") from None
        return cls(**values)


@dataclass(frozen=True)
class AuditResult:
    """Where an audit wrote its files, and its summary."""

    out: Path
    summary: dict[str, Any]

    @property
    def report(self) -> Path:
        return self.out / "report.html"


# -- the pass over the images ---------------------------------------------------------------------

def _maps_and_logits(passes: Mapping[str, FusedCamPass], images: np.ndarray, classes: np.ndarray,
                     settings: AuditSettings) -> tuple[dict, dict, np.ndarray]:
    """Raw maps per method of the later and earlier model, their logits, and the explained classes:
    the true label, or (negative `classes`) the later model's prediction, for both models."""
    late_maps, late_logits = passes["after"].run_batch(images, classes, settings.methods, settings.alpha_norm)
    explained = np.where(classes < 0, late_logits.argmax(axis=1), classes).astype(np.int32)
    early_maps, early_logits = passes["before"].run_batch(images, explained, settings.methods, settings.alpha_norm)
    layer = passes["after"].layer_name
    return ({"before": early_maps[layer], "after": late_maps[layer]},
            {"before": early_logits, "after": late_logits}, explained)


def stream_maps(passes: Mapping[str, FusedCamPass], ceiling: FusedCamPass | None, frame: pd.DataFrame,
            preprocess, size: int, target: str, settings: AuditSettings) -> dict[str, Any]:
    """One streamed pass: raw maps, logits and explained classes of every image, the ceiling's
    raw maps of the first `ceiling_images`."""
    raw = {role: {m: [] for m in settings.methods} for role in ("before", "after", "ceiling")}
    logits = {"before": [], "after": []}
    explained = []
    for images, labels in audit_data.batches(frame, preprocess, size, settings.batch_size):
        classes = labels if target == "label" else np.full(len(labels), -1, np.int32)
        maps, batch_logits, batch_explained = _maps_and_logits(passes, images, classes, settings)
        room = settings.ceiling_images - sum(len(part) for part in explained)
        if ceiling is not None and room > 0:
            ceiling_maps, _ = ceiling.run_batch(images[:room], batch_explained[:room], settings.methods,
                                                settings.alpha_norm)
            maps["ceiling"] = ceiling_maps[ceiling.layer_name]
        for role, per_method in maps.items():
            for method, array in per_method.items():
                raw[role][method].append(array)
        for role in logits:
            logits[role].append(batch_logits[role])
        explained.append(batch_explained)
    return {"raw": {role: {m: np.concatenate(parts) if parts else None for m, parts in per.items()}
                    for role, per in raw.items()},
            "logits": {role: np.concatenate(parts) for role, parts in logits.items()},
            "explained": np.concatenate(explained)}


def _passes(models: Mapping[str, Any], path: str, settings: AuditSettings
            ) -> tuple[dict[str, FusedCamPass], FusedCamPass | None]:
    """The fused passes of both models and of the ceiling's randomized copy (None without one)."""
    passes = {role: FusedCamPass(model, path, features=audit_models.feature_model(model, path))
              for role, model in models.items()}
    if not settings.ceiling_images:
        return passes, None
    ceiling_model = audit_models.randomized_copy(models["after"], path, settings.seed + 1)
    return passes, FusedCamPass(ceiling_model, path, features=audit_models.feature_model(ceiling_model, path))


def _maps_stamp(models: Mapping[str, Any], frame: pd.DataFrame, path: str, size: int, target: str,
                preprocess: str, classes: Sequence[str], settings: AuditSettings) -> str:
    """What the streamed maps and logits depend on: both models (architecture and weights), the
    images' names and contents, the layer, input and target, and the settings that change a map
    (not the threshold, the bootstrap or the report's)."""
    shaping = ("methods", "batch_size", "alpha_norm", "seed", "ceiling_images")
    return json.dumps({"models": {role: audit_models.digest(model) for role, model in models.items()},
                       "images": fingerprint(dict(zip(frame["sample_id"].astype(str), frame["path"].astype(str)))),
                       "layer": path, "size": size, "target": target, "preprocess": preprocess,
                       "classes": list(classes), "settings": {name: getattr(settings, name) for name in shaping}},
                      sort_keys=True)


def _stored_stream(maps_file: Path, expected: str, settings: AuditSettings) -> dict[str, Any] | None:
    """The maps, logits and explained classes an earlier audit of the same models, images and
    map settings left in `maps_file`, or None."""
    if not is_current(maps_file, expected):
        return None
    stored = read_npz(maps_file)
    progress.message(f"maps of the earlier audit in {maps_file.parent} reused (same models, images and settings)")
    return {"raw": {role: {method: stored.get(f"{role}.{method}") for method in settings.methods}
                    for role in ("before", "after", "ceiling")},
            "logits": {role: stored[f"logits.{role}"] for role in ("before", "after")},
            "explained": stored["explained"]}


def _metric_rows(early_raw: np.ndarray, late_raw: np.ndarray, size: int, threshold: float,
                 late_positions: np.ndarray | None = None) -> pd.DataFrame:
    """The metric suite between post-processed earlier maps and later maps (at `late_positions`,
    default the same images), in chunks; NaN where a position is -1."""
    n = len(early_raw)
    partner = np.arange(n) if late_positions is None else np.asarray(late_positions)
    columns = {name: np.full(n, np.nan) for name in metrics.SUITE_METRICS}
    for start in range(0, n, CHUNK):
        rows = np.arange(start, min(start + CHUNK, n))
        rows = rows[partner[rows] >= 0]
        if not len(rows):
            continue
        values = metrics.drift_metrics(postprocess(early_raw[rows], (size, size)),
                                       postprocess(late_raw[partner[rows]], (size, size)), threshold)
        for name, array in values.items():
            columns[name][rows] = array
    return pd.DataFrame(columns)


# -- statistics ---------------------------------------------------------------------------------

def inverse_frequency(labels: Sequence[str]) -> dict[str, float]:
    """The study's class weights, w_c = (1/n_c) / sum_k (1/n_k), for any class names."""
    counts = pd.Series(list(labels)).value_counts()
    inverse = 1.0 / counts.astype(float)
    return (inverse / inverse.sum()).to_dict()


def _summary(values: pd.Series, labels: pd.Series, weights: Mapping[str, float], settings: AuditSettings) -> dict:
    result = metrics.summarize(values.to_numpy(float), labels.to_numpy(str), weights, settings.n_boot, settings.seed)
    return {name: getattr(result, name) for name in SUMMARY_FIELDS}


def drift_beyond_chance(values: pd.Series, chance_mean: float, metric: str) -> pd.Series:
    """True where an image's metric shows more drift than the chance level of shuffled pairs."""
    if metric in AGREEMENT_METRICS:
        return values < chance_mean
    if metric == "concentration_change":
        return values.abs() > abs(chance_mean)
    return values > chance_mean


def _predictive(labels: np.ndarray, logits: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    scores = metrics.predictive_metrics(labels, logits, classes)
    return {name: scores[name] for name in ("accuracy", "auc", "f1")}


def _groups(frame: pd.DataFrame, labelled: bool) -> np.ndarray:
    if not labelled:
        return np.where(frame["pred_before"] == frame["pred_after"], "same prediction", "changed prediction")
    right_before = frame["pred_before"] == frame["label_index"]
    right_after = frame["pred_after"] == frame["label_index"]
    return np.select([right_before & right_after, ~right_before & right_after, right_before & ~right_after],
                     ["correct under both", "corrected", "broken"], "wrong under both")


def analysed_group(labelled: bool) -> str:
    """The images whose drift is summarized: correct under both models (the study's filter), or,
    unlabelled, those whose prediction did not change."""
    return "correct under both" if labelled else "same prediction"


def flat_statistics(summary: Mapping[str, Any], primary: str) -> dict[str, float]:
    """Every summary number a gate can test, by name: `method.metric[.field]`, the primary
    method's also as `metric[.field]`, predictive metrics as `accuracy_after` and counts."""
    flat: dict[str, float] = {f"{name}_{role}": value for role, scores in summary["predictive"].items()
                              for name, value in scores.items()}
    flat.update({name: float(value) for name, value in summary["counts"].items()})
    for method, per_metric in summary["drift"].items():
        for metric, stats in per_metric.items():
            for field, value in stats.items():
                suffix = "" if field == "mean" else f".{field}"
                flat[f"{method}.{metric}{suffix}"] = value
                if method == primary:
                    flat[f"{metric}{suffix}"] = value
    return {name: (float(value) if value is not None else math.nan) for name, value in flat.items()}


# -- the gate ---------------------------------------------------------------------------------------

_OPERATORS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
              "<": operator.lt, ">": operator.gt}
_CONDITION = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(<=|>=|==|!=|<|>)\s*([-+0-9.eEinfINF]+)\s*$")


def parse_condition(text: str) -> tuple[str, str, float]:
    """`name<op>value`, e.g. `overlap_iou<0.5`, as (name, op, value)."""
    match = _CONDITION.match(text)
    if not match:
        raise AuditError(f"--fail-if {text!r} is not a condition like \"overlap_iou<0.5\" "
                         f"(operators {', '.join(_OPERATORS)})")
    try:
        return match[1], match[2], float(match[3])
    except ValueError:
        raise AuditError(f"--fail-if {text!r}: {match[3]!r} is not a number") from None


def failed_conditions(statistics: Mapping[str, float], conditions: Sequence[str]) -> list[str]:
    """A line for each condition that holds (the audit fails on it), or whose statistic is NaN."""
    failures = []
    for text in conditions:
        name, op, value = parse_condition(text)
        if name not in statistics:
            close = sorted((key for key in statistics if name in key), key=len)[:6]
            raise AuditError(f"--fail-if {text!r}: no statistic {name!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else
                                "; see summary.json's \"statistics\" for every name"))
        actual = statistics[name]
        if math.isnan(actual):
            failures.append(f"{name} is NaN (not computed), so {text!r} cannot be ruled out")
        elif _OPERATORS[op](actual, value):
            failures.append(f"{name} = {actual:.4g}, and the gate fails when {name} {op} {value:g}")
    return failures


# -- the audit ---------------------------------------------------------------------------------------

def _check_inputs(target: str, images: audit_data.AuditImages) -> None:
    if target not in TARGETS:
        raise AuditError(f"target={target!r}; choose {' or '.join(TARGETS)}")
    if target == "label" and not images.labelled:
        raise AuditError(f"the images in {images.root} have no labels ({images.layout}): explain the later model's "
                         "predictions with --target predicted")


def run_audit(before: str | Path, after: str | Path, data_dir: str | Path, out: str | Path, *,
              split: str = "test", layer: str | None = None, target: str = "label", preprocess: str = "none",
              classes: Sequence[str] | None = None, settings: AuditSettings | None = None,
              report: bool = True) -> AuditResult:
    """Audit checkpoint `before` against `after` on the images of `data_dir` into `out`."""
    settings = settings or AuditSettings()
    models = {"before": audit_models.load_model(before), "after": audit_models.load_model(after)}
    audit_models.check_pair(models["before"], models["after"])
    size = audit_models.input_size(models["after"])
    transform = audit_models.preprocessing(preprocess)
    path = audit_models.layer_path(models["after"], layer)
    width = int(models["after"].outputs[0].shape[-1])
    images = audit_data.scan(data_dir, width, split, classes)
    _check_inputs(target, images)
    skipped = audit_data.undecodable(images.frame)
    frame = images.frame.drop(index=skipped).reset_index(drop=True)
    if frame.empty:
        raise AuditError(f"none of the {len(images.frame)} images in {images.root} can be decoded")
    out = Path(out)
    maps_stamp = _maps_stamp(models, frame, path, size, target, preprocess, images.classes, settings)
    streamed = _stored_stream(out / "maps.npz", maps_stamp, settings)
    if streamed is None:
        streamed = stream_maps(*_passes(models, path, settings), frame, transform, size, target, settings)

    frame["explained"] = np.asarray(images.classes)[streamed["explained"]]
    for role in ("before", "after"):
        frame[f"pred_{role}"] = streamed["logits"][role].argmax(axis=1)
    frame["changed_prediction"] = frame["pred_before"] != frame["pred_after"]
    frame["group"] = _groups(frame, images.labelled)
    partners = baselines.shuffled_partners(frame["explained"].to_numpy(str), settings.seed)
    rows, ceiling_rows = [], []
    raw = streamed["raw"]
    for method in settings.methods:
        values = _metric_rows(raw["before"][method], raw["after"][method], size, settings.threshold)
        chance = _metric_rows(raw["before"][method], raw["after"][method], size, settings.threshold, partners)
        rows.append(pd.concat([frame.assign(method=method), values,
                               chance.add_prefix("chance_")], axis=1))
        if raw["ceiling"][method] is not None:
            n = len(raw["ceiling"][method])
            ceiling_values = _metric_rows(raw["after"][method][:n], raw["ceiling"][method], size, settings.threshold)
            ceiling_rows.append(pd.concat([frame.iloc[:n][["sample_id", "explained", "group"]].assign(method=method),
                                           ceiling_values], axis=1))
    table = pd.concat(rows, ignore_index=True)
    ceiling_table = pd.concat(ceiling_rows, ignore_index=True) if ceiling_rows else pd.DataFrame()
    weights = inverse_frequency(frame["explained"])
    summary = _summarize(table, ceiling_table, frame, streamed, images, weights, settings)
    table["flagged"] = False
    for method in settings.methods:
        rows_of = table["method"] == method
        chance_mean = summary["drift"][method][settings.flag_metric]["chance"]
        table.loc[rows_of, "flagged"] = (drift_beyond_chance(table.loc[rows_of, settings.flag_metric], chance_mean,
                                                             settings.flag_metric)
                                         & (table.loc[rows_of, "group"] == analysed_group(images.labelled)))
    primary = table[table["method"] == settings.primary_method]
    summary["counts"]["flagged"] = int(primary["flagged"].sum())
    summary["counts"]["flagged_share"] = float(primary["flagged"].sum() / max(summary["counts"]["analysed"], 1))
    summary.update(before=str(before), after=str(after), data_dir=str(images.root), split=split, layer=path,
                   target=target, preprocess=preprocess, image_size=size, layout=images.layout,
                   classes=list(images.classes), class_order=images.order, labelled=images.labelled,
                   skipped_files=[str(p) for p in images.frame["path"].iloc[skipped]],
                   identical=audit_models.identical(models["before"], models["after"]),
                   settings=dataclasses.asdict(settings), class_weights=weights)
    summary["statistics"] = flat_statistics(summary, settings.primary_method)
    write_parquet(out / "images.parquet", table)
    write_parquet(out / "ceiling.parquet", ceiling_table)
    write_npz(out / "maps.npz", {"sample_id": frame["sample_id"].to_numpy(str),
                                 **{f"{role}.{method}": array for role, per in raw.items()
                                    for method, array in per.items() if array is not None},
                                 **{f"logits.{role}": array for role, array in streamed["logits"].items()},
                                 "explained": streamed["explained"]}, stamp=maps_stamp)
    write_json(out / "summary.json", _jsonable(summary))
    result = AuditResult(out, summary)
    if report:
        from .audit_report import write_report

        write_report(out)
    else:  # a report of an earlier audit in this directory would now describe other numbers
        for stale in (out / "report.html", out / "report.ipynb"):
            stale.unlink(missing_ok=True)
    return result


def _summarize(table: pd.DataFrame, ceiling_table: pd.DataFrame, frame: pd.DataFrame, streamed: Mapping,
               images: audit_data.AuditImages, weights: Mapping[str, float], settings: AuditSettings) -> dict:
    analysed = analysed_group(images.labelled)
    counts = {"images": len(frame), "skipped": len(images.frame) - len(frame),
              "analysed": int((frame["group"] == analysed).sum()),
              "changed_predictions": int(frame["changed_prediction"].sum()),
              **{"group_" + name.replace(" ", "_"): int(n) for name, n in frame["group"].value_counts().items()}}
    predictive = ({role: _predictive(frame["label_index"].to_numpy(), streamed["logits"][role], images.classes)
                   for role in ("before", "after")} if images.labelled else {})
    drift: dict[str, dict[str, dict]] = {}
    changed: dict[str, dict[str, float]] = {}
    for method in settings.methods:
        rows = table[(table["method"] == method) & (table["group"] == analysed)]
        moved = table[(table["method"] == method) & table["changed_prediction"]]
        ceiling_rows = (ceiling_table[(ceiling_table["method"] == method) & (ceiling_table["group"] == analysed)]
                        if len(ceiling_table) else ceiling_table)
        drift[method], changed[method] = {}, {}
        for metric in metrics.SUITE_METRICS:
            stats = _summary(rows[metric], rows["explained"], weights, settings)
            stats["chance"] = metrics.weighted_summary(rows[f"chance_{metric}"].to_numpy(float),
                                                       rows["explained"].to_numpy(str), weights)[0]
            stats["ceiling"] = (metrics.weighted_summary(ceiling_rows[metric].to_numpy(float),
                                                         ceiling_rows["explained"].to_numpy(str), weights)[0]
                                if len(ceiling_rows) else math.nan)
            drift[method][metric] = stats
            changed[method][metric] = metrics.weighted_summary(moved[metric].to_numpy(float),
                                                               moved["explained"].to_numpy(str), weights)[0]
    return {"counts": counts, "predictive": predictive, "drift": drift, "changed_prediction_drift": changed,
            "analysed_group": analysed}


def study_audit(config: RunConfig, arch: str, out: str | Path | None = None, report: bool = True,
                **overrides: Any) -> AuditResult:
    """The audit of a study run's own checkpoints of `arch` at the compared epochs, exported as
    `.keras` files, with the run's layer, preprocessing, class order, methods, threshold, CAM batch
    size and seed (`overrides` change other AuditSettings); written to `<run_dir>/audit/<arch>`
    unless `out` says otherwise. With the run's batches the maps are the CAM stage's to float32
    round-off, which batch composition changes: the same batch size 1 gives the same bits."""
    paths = RunPaths.of(config)
    out = Path(out) if out is not None else paths.root / "audit" / arch
    files = [audit_models.export_checkpoint(arch, config.image_size, paths.weights(arch, epoch),
                                            out / "models" / f"epoch_{epoch:02d}.keras")
             for epoch in config.compared_epochs]
    methods = tuple(config.cam_methods)
    settings = AuditSettings(methods=methods, threshold=config.threshold, batch_size=config.cam_batch_size,
                             n_boot=config.bootstrap_samples, seed=config.seed, alpha_norm=config.alpha_norm,
                             primary_method="layercam" if "layercam" in methods else methods[0])
    settings = dataclasses.replace(settings, **overrides)
    return run_audit(*files, config.data_dir or paths.data, out, layer=TARGET_LAYERS[arch],
                     preprocess=audit_models.STUDY_PREPROCESSING[arch], classes=CLASSES, settings=settings,
                     report=report)


def study_agreement(config: RunConfig, arch: str, result: AuditResult) -> pd.DataFrame:
    """Per method and metric of the study's drift.parquet: the images both hold and the largest
    |audit − study| difference over them (0 when the audit reproduces the study's rows)."""
    from .drift import load_drift

    study = load_drift(config)
    study = study[study["arch"] == arch]
    audited = pd.read_parquet(result.out / "images.parquet")
    merged = study.merge(audited, on=["method", "sample_id"], suffixes=("_study", "_audit"))
    rows = []
    for method, part in merged.groupby("method", sort=False):
        for metric in metrics.SUITE_METRICS:
            if f"{metric}_study" not in part:
                continue
            difference = (part[f"{metric}_study"] - part[f"{metric}_audit"]).abs()
            both_nan = part[f"{metric}_study"].isna() & part[f"{metric}_audit"].isna()
            rows.append({"method": method, "metric": metric, "images": len(part),
                         "max |audit − study|": float(difference[~both_nan].max()) if (~both_nan).any() else 0.0,
                         "NaN in one only": int(part[f"{metric}_study"].isna().ne(part[f"{metric}_audit"].isna()).sum())})
    return pd.DataFrame(rows, columns=["method", "metric", "images", "max |audit − study|", "NaN in one only"])


def command_line(summary: Mapping[str, Any]) -> str:
    """The `cxrdrift audit` command that repeats an audit (settings that differ from the defaults)."""
    import shlex

    defaults = dataclasses.asdict(AuditSettings())
    parts = ["cxrdrift", "audit", "--before", summary["before"], "--after", summary["after"], "--data-dir",
             summary["data_dir"], "--split", summary["split"], "--layer", summary["layer"], "--target",
             summary["target"], "--preprocess", summary["preprocess"]]
    if summary["class_order"] == audit_data.GIVEN_ORDER:
        parts += ["--classes", ",".join(summary["classes"])]
    for name, value in summary["settings"].items():
        value = ",".join(value) if isinstance(value, (list, tuple)) else value
        default = defaults[name]
        if value != (",".join(default) if isinstance(default, tuple) else default):
            parts += ["-p", name, str(value).lower() if isinstance(value, bool) else str(value)]
    return " ".join(shlex.quote(str(part)) for part in parts)


def describe(result: AuditResult) -> str:
    """What the audit found, in a few lines for the terminal."""
    summary = result.summary
    counts, settings = summary["counts"], summary["settings"]
    method = settings["primary_method"]
    lines = [f"audited {counts['images']} images ({counts['skipped']} undecodable, skipped) at layer "
             f"{summary['layer']}: {counts['changed_predictions']} changed prediction, {counts['analysed']} "
             f"{summary['analysed_group']}"]
    skipped = summary["skipped_files"]
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        lines.append("undecodable: " + ", ".join(skipped[:5]) + more)
    if summary["identical"]:
        lines.append("the two models are identical (every weight equal): the drift is zero")
    for role, scores in summary["predictive"].items():
        lines.append(f"{role}: accuracy {scores['accuracy']:.3f}, macro AUC {scores['auc']:.3f}")
    for metric, stats in summary["drift"][method].items():
        lines.append(f"{method} {metric}: {stats['mean']:.3f} (chance {stats['chance']:.3f}, "
                     f"ceiling {stats['ceiling']:.3f}, n {stats['n']})")
    lines.append(f"flagged for review: {counts['flagged']} (their {method} {settings['flag_metric']} drifts beyond "
                 "the chance level)")
    lines.append(f"written: {result.out / 'summary.json'}"
                 + (f", {result.report}" if result.report.is_file() else ""))
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    """JSON-ready copy: NaN becomes null, NumPy scalars plain numbers, tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    return value


__all__ = ["AuditError", "AuditSettings", "AuditResult", "TARGETS", "EXIT_GATE", "run_audit", "study_audit",
           "study_agreement", "command_line", "describe", "parse_condition",
           "failed_conditions", "flat_statistics", "inverse_frequency", "drift_beyond_chance", "analysed_group"]
