"""The audit's report: tables and figures from an audit directory, and one offline HTML page.

`write_report(out)` executes the package's audit notebook (`cxrdrift/notebooks/audit.md`) with
papermill on the `cxrdrift` kernel, with one parameter, `audit_dir`, and renders the executed
notebook to `report.html` here, outputs only: figures inlined as data URIs, inline CSS, no script,
so the page makes no request at all (the book's offline standard, without nbconvert's CDN
defaults). A user can rerun the notebook with papermill on any audit directory.
"""
from __future__ import annotations

import html
import math
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from . import data, metrics
from .artifacts import atomic_path, read_json, read_npz, write_text
from .drift import METHOD_LABELS, METRIC_LABELS
from .plots import FIGURE_DPI

NOTEBOOK = "audit.md"
METRIC_NAMES = {**METRIC_LABELS, "rank_correlation": "Rank corr. (Spearman)", "adjusted_iou": "Adjusted IoU"}
CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:72rem;margin:2rem auto;
padding:0 1rem;color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}img{max-width:100%}pre{background:#f6f6f6;padding:.5rem;
overflow-x:auto}h1{border-bottom:2px solid #333}code{background:#f3f3f3;padding:0 .2rem}"""


class AuditReportError(ValueError):
    """An audit directory without the files a report needs, or a failed report notebook."""


def load_audit(out: str | Path) -> dict[str, Any]:
    """summary.json, images.parquet and ceiling.parquet of an audit directory."""
    out = Path(out)
    missing = [name for name in ("summary.json", "images.parquet") if not (out / name).is_file()]
    if missing:
        raise AuditReportError(f"{out} is not an audit directory: {', '.join(missing)} missing (run cxrdrift audit)")
    ceiling = out / "ceiling.parquet"
    return {"summary": read_json(out / "summary.json"), "images": pd.read_parquet(out / "images.parquet"),
            "ceiling": pd.read_parquet(ceiling) if ceiling.is_file() else pd.DataFrame()}


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


# -- tables ---------------------------------------------------------------------------------------

def mapping_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Which model output is which class, and each class's weight."""
    weights = summary["class_weights"]
    return pd.DataFrame({"output": range(len(summary["classes"])), "class": summary["classes"],
                         "weight": [weights.get(c, math.nan) for c in summary["classes"]]})


def predictive_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Accuracy, macro AUC and macro F1 of both models (empty for unlabelled images)."""
    scores = summary["predictive"]
    return pd.DataFrame({role: {name: _number(v) for name, v in scores[role].items()} for role in scores}).T


def groups_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Images per prediction group (correct under both, corrected, broken, ...)."""
    counts = {name[len("group_"):].replace("_", " "): n for name, n in summary["counts"].items()
              if name.startswith("group_")}
    return pd.DataFrame({"images": pd.Series(counts, dtype=int)})


def drift_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Per method and metric: class-weighted mean drift with its interval, the chance baseline,
    the randomization ceiling, and the mean over images that changed prediction."""
    rows = []
    for method, per_metric in summary["drift"].items():
        for metric, stats in per_metric.items():
            rows.append({"method": METHOD_LABELS.get(method, method), "metric": METRIC_NAMES.get(metric, metric),
                         "mean": _number(stats["mean"]), "95% CI": _interval(stats), "n": stats["n"],
                         "chance": _number(stats["chance"]), "ceiling": _number(stats["ceiling"]),
                         "changed predictions": _number(summary["changed_prediction_drift"][method][metric])})
    return pd.DataFrame(rows)


def _interval(stats: Mapping[str, Any]) -> str:
    low, high = _number(stats["ci_low"]), _number(stats["ci_high"])
    return "n/a" if not (math.isfinite(low) and math.isfinite(high)) else f"[{low:.3f}, {high:.3f}]"


def review_table(images: pd.DataFrame, summary: Mapping[str, Any]) -> pd.DataFrame:
    """The flagged images of the primary method, worst first by the flag metric."""
    settings = summary["settings"]
    metric = settings["flag_metric"]
    rows = images[(images["method"] == settings["primary_method"]) & images["flagged"]]
    ascending = metric in ("overlap_iou", "pattern_correlation", "rank_correlation", "adjusted_iou")
    key = rows[metric].abs() if metric == "concentration_change" else rows[metric]
    rows = rows.loc[key.sort_values(ascending=ascending, kind="stable").index]
    return rows[["sample_id", "explained", "pred_before", "pred_after", *metrics.SUITE_METRICS]].reset_index(drop=True)


def settings_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Everything the audit ran with."""
    fields = {name: summary[name] for name in ("before", "after", "data_dir", "split", "layout", "layer", "target",
                                               "preprocess", "image_size", "class_order")}
    fields.update({f"-p {name}": value for name, value in summary["settings"].items()})
    return pd.DataFrame({"value": [", ".join(map(str, v)) if isinstance(v, list) else str(v)
                                   for v in fields.values()]}, index=list(fields))


# -- figures ---------------------------------------------------------------------------------------

def plot_scale(summary: Mapping[str, Any]) -> Figure:
    """Each metric's drift (mean and interval) between its chance baseline and its ceiling, per method."""
    names = list(metrics.SUITE_METRICS)
    methods = list(summary["drift"])
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.8), squeeze=False)
    for ax, metric in zip(axes[0], names):
        for row, method in enumerate(methods):
            stats = summary["drift"][method][metric]
            mean, low, high = (_number(stats[k]) for k in ("mean", "ci_low", "ci_high"))
            errors = [[mean - low], [high - mean]] if math.isfinite(low) else None
            ax.errorbar([mean], [row], xerr=errors, fmt="o", color="black", capsize=3,
                        label="drift (95% CI)" if row == 0 else None)
            ax.plot([_number(stats["chance"])], [row], "s", color="tab:blue", label="chance" if row == 0 else None)
            ax.plot([_number(stats["ceiling"])], [row], "^", color="tab:red", label="ceiling" if row == 0 else None)
        ax.set_yticks(range(len(methods)), [METHOD_LABELS.get(m, m) for m in methods])
        ax.set_ylim(-0.6, len(methods) - 0.4)
        ax.set_title(METRIC_NAMES.get(metric, metric), fontsize=9)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def plot_review(out: str | Path, review: pd.DataFrame, summary: Mapping[str, Any], limit: int) -> Figure | None:
    """Per flagged image (worst first, at most `limit`): the image, the earlier and the later map
    overlaid, and where each reaches the threshold; None when no image is flagged."""
    from .cams import postprocess  # TensorFlow: imported only when there are maps to draw
    from .plots.cams import overlay, threshold_regions

    rows = review.head(limit)
    if rows.empty:
        return None
    stored = read_npz(Path(out) / "maps.npz")
    method, size = summary["settings"]["primary_method"], int(summary["image_size"])
    positions = pd.Index(stored["sample_id"].astype(str)).get_indexer(rows["sample_id"].astype(str))
    root = Path(summary["data_dir"])
    frame = pd.DataFrame({"path": [str(root / s) for s in rows["sample_id"]], "label_index": 0})
    pixels = data.load_images(frame, size)
    early = postprocess(stored[f"before.{method}"][positions], (size, size))
    late = postprocess(stored[f"after.{method}"][positions], (size, size))
    threshold = float(summary["settings"]["threshold"])
    fig, axes = plt.subplots(len(rows), 4, figsize=(8.4, 2.2 * len(rows)), squeeze=False)
    for i, row in enumerate(rows.itertuples(index=False)):
        overlay(axes[i][0], pixels[i], None)
        overlay(axes[i][1], pixels[i], early[i], threshold)
        overlay(axes[i][2], pixels[i], late[i], threshold)
        axes[i][3].imshow(threshold_regions(early[i], late[i], threshold))
        axes[i][3].set_xticks([]), axes[i][3].set_yticks([])
        axes[i][0].set_ylabel(f"{row.sample_id}\n{row.explained}", fontsize=7)
        axes[i][2].set_xlabel(f"IoU {row.overlap_iou:.2f} · r {row.pattern_correlation:.2f}", fontsize=8)
    for ax, title in zip(axes[0], ("image", "before", "after", f"regions ≥ {threshold:g}")):
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save(fig: Figure, out: str | Path, name: str) -> Path:
    """`fig` as `<out>/figures/<name>.png`, written atomically."""
    path = Path(out) / "figures" / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIGURE_DPI, facecolor="white", bbox_inches="tight")
    return path


# -- the page ----------------------------------------------------------------------------------------

def notebook_source() -> Path:
    """The audit notebook shipped in the package."""
    return Path(str(resources.files("cxrdrift") / "notebooks" / NOTEBOOK))


def _markdown(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(text)


def _output_html(output: Mapping[str, Any]) -> str:
    if output.get("output_type") == "stream":
        return ""  # progress and log lines are not part of the report
    if output.get("output_type") == "error":
        return f"<pre>{html.escape(output.get('ename', ''))}: {html.escape(output.get('evalue', ''))}</pre>"
    bundle = output.get("data", {})
    if "image/png" in bundle:
        return f'<img alt="figure" src="data:image/png;base64,{"".join(bundle["image/png"]).strip()}">'
    if "text/html" in bundle:
        return "".join(bundle["text/html"])
    if "text/markdown" in bundle:
        return _markdown("".join(bundle["text/markdown"]))
    if "text/plain" in bundle:
        return f"<pre>{html.escape(''.join(bundle['text/plain']))}</pre>"
    return ""


def render_html(notebook: Mapping[str, Any], title: str) -> str:
    """A self-contained page of the notebook's markdown cells and outputs (code is not shown)."""
    parts = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            parts.append(_markdown("".join(cell["source"])))
        elif cell["cell_type"] == "code":
            parts.extend(_output_html(output) for output in cell.get("outputs", []))
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def iframe(out: str | Path, height: str = "60rem") -> str:
    """The audit's report.html embedded whole in an <iframe srcdoc> (it loads nothing itself)."""
    page = (Path(out) / "report.html").read_text()
    return (f'<div class="audit-report"><iframe title="audit report" srcdoc="{html.escape(page, quote=True)}" '
            f'style="width:100%;height:{height};border:1px solid #ccc"></iframe></div>')


def write_report(out: str | Path) -> Path:
    """Execute the audit notebook on `out` with papermill and write `<out>/report.html`."""
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .book import KERNEL_ARGUMENTS, KERNEL_NAME, _kernel_environment, ensure_kernel, to_notebook

    out = Path(out).resolve()
    load_audit(out)
    ensure_kernel()
    executed = out / "report.ipynb"
    with atomic_path(executed, ".ipynb") as running, _kernel_environment():
        try:
            papermill.execute_notebook(to_notebook(notebook_source()), str(running),
                                       parameters={"audit_dir": str(out)}, kernel_name=KERNEL_NAME,
                                       language="python", cwd=str(out), progress_bar=False,
                                       extra_arguments=list(KERNEL_ARGUMENTS))
        except PapermillExecutionError as error:
            raise AuditReportError(f"the audit report notebook failed in cell {error.cell_index}: "
                                   f"{error.ename}: {error.evalue}") from None
    notebook = nbformat.read(executed, as_version=4)
    report = out / "report.html"
    write_text(report, render_html(notebook, f"cxrdrift audit: {Path(read_json(out / 'summary.json')['after']).name}"))
    report.chmod(0o644)  # a page to share, not a private temporary file
    return report


__all__ = ["AuditReportError", "load_audit", "mapping_table", "predictive_table", "groups_table", "drift_table",
           "review_table", "settings_table", "plot_scale", "plot_review", "save", "notebook_source",
           "render_html", "iframe", "write_report"]
