"""Figures of the true-positive filter and the drift study (notebooks 03 and 06, the explorer)."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..drift import METHOD_LABELS, METRIC_LABELS, correctness_columns
from ..metrics import DRIFT_METRICS
from .cams import overlay, threshold_regions


def _method_names(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(method=frame["method"].map(lambda m: METHOD_LABELS.get(m, m)))


# -- notebook 03: the true-positive filter ------------------------------------------------------

def plot_correctness_overlap(true_positives: pd.DataFrame, top: int = 12) -> Figure:
    """UpSet-style: bars count the samples of each correctness pattern (most common first);
    the dot matrix below marks the models that get those samples wrong."""
    from ..drift import failure_patterns

    patterns = failure_patterns(true_positives).head(top)
    columns = correctness_columns(true_positives)
    fig, (bars, dots) = plt.subplots(2, 1, figsize=(max(6, 0.6 * len(patterns) + 3), 2 + 0.35 * len(columns) + 2.5),
                                     sharex=True, gridspec_kw={"height_ratios": [3, 0.35 * len(columns) + 0.5]},
                                     facecolor="white")
    x = np.arange(len(patterns))
    kept = patterns[columns].all(axis=1).to_numpy()
    bars.bar(x, patterns["samples"], color=np.where(kept, "tab:green", "tab:gray"))
    for xi, n in zip(x, patterns["samples"]):
        bars.text(xi, n, str(n), ha="center", va="bottom", fontsize=8)
    bars.set_ylabel("test samples")
    bars.set_title("Correctness patterns (green: kept)")
    wrong = ~patterns[columns].to_numpy()
    for row in range(len(columns)):
        dots.scatter(x, np.full(len(x), row), s=40, c=np.where(wrong[:, row], "tab:red", "lightgray"))
    dots.set_yticks(range(len(columns)), [c.removeprefix("correct_").replace("_ep", " epoch ") for c in columns])
    dots.set_ylim(-0.5, len(columns) - 0.5)
    dots.invert_yaxis()
    dots.set_xticks([])
    dots.set_xlabel("pattern (red dot: that model is wrong on these samples)")
    fig.tight_layout()
    return fig


def plot_error_heatmap(true_positives: pd.DataFrame) -> Figure:
    """Share of each class's test samples that each (architecture, epoch) model gets wrong."""
    columns = correctness_columns(true_positives)
    errors = 1 - true_positives.groupby("label", sort=False)[columns].mean()
    errors.columns = [c.removeprefix("correct_").replace("_ep", " ep ") for c in columns]
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 3, 0.5 * len(errors) + 1.5), facecolor="white")
    sns.heatmap(errors, annot=True, fmt=".2f", cmap="Reds", vmin=0, vmax=max(0.05, errors.to_numpy().max()),
                cbar_kws={"label": "error rate"}, ax=ax)
    ax.set_xlabel("model (architecture, epoch)")
    ax.set_ylabel("")
    ax.set_title("Where the filter loses samples")
    fig.tight_layout()
    return fig


# -- notebook 06: Table 3, ranking, distributions -----------------------------------------------

def plot_table3_comparison(run: pd.DataFrame, paper: pd.DataFrame) -> Figure:
    """Each metric's weighted mean per architecture and method: this run (filled, with bootstrap
    interval) beside the paper (hollow; concentration changes of unknown sign at |value|)."""
    fig, axes = plt.subplots(1, len(DRIFT_METRICS), figsize=(4 * len(DRIFT_METRICS), 3.6), facecolor="white")
    archs = list(dict.fromkeys(list(run["arch"]) + list(paper["arch"])))
    methods = list(dict.fromkeys(list(run["method"]) + list(paper["method"])))
    colors = dict(zip(methods, sns.color_palette("deep", len(methods))))
    for ax, metric in zip(axes, DRIFT_METRICS):
        for m_i, method in enumerate(methods):
            offset = (m_i - (len(methods) - 1) / 2) * 0.25
            for source, frame, filled in (("run", run, True), ("paper", paper, False)):
                rows = frame[(frame["metric"] == metric) & (frame["method"] == method)].set_index("arch")
                rows = rows.reindex([a for a in archs if a in rows.index])
                if rows.empty:  # e.g. Grad-CAM, which the paper did not compute
                    continue
                x = np.array([archs.index(a) for a in rows.index]) + offset + (0.06 if not filled else -0.06)
                mean = rows["mean"].to_numpy(dtype=float)
                if filled and "ci_low" in rows:
                    err = np.abs(np.vstack([mean - rows["ci_low"], rows["ci_high"] - mean]))
                    ax.errorbar(x, mean, yerr=np.nan_to_num(err), fmt="o", color=colors[method],
                                label=f"{METHOD_LABELS.get(method, method)} (this run)")
                elif not filled:
                    ax.scatter(x, mean, facecolors="none", edgecolors=colors[method], marker="s",
                               label=f"{METHOD_LABELS.get(method, method)} (paper)")
        ax.set_xticks(range(len(archs)), archs, rotation=20)
        ax.set_title(METRIC_LABELS[metric])
        ax.axhline(0, color="lightgray", lw=0.8, zorder=0)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("Table 3: weighted means (this run: 95% bootstrap interval; paper: hollow squares)")
    fig.tight_layout()
    return fig


PAPER_METHODS = ("layercam", "gradcampp")


def plot_ranking_slopes(tables: Mapping[str, pd.DataFrame], metric: str = "overlap_iou",
                        own_panel: str | None = "gradcam") -> Figure:
    """One slope chart per table (e.g. this run and the paper): each architecture's `metric`
    mean under the paper's two methods, with its interval where the table has one (`ci_low`,
    `ci_high`), lines joining an architecture across the methods; crossing lines mean the point
    ranking reverses, and overlapping intervals that the crossing may be noise. `own_panel`, a
    method beyond the paper, gets a panel of its own after each table that has it, so that it is
    never read as part of the paper's comparison."""
    panels = []
    for title, table in tables.items():
        rows = table[(table["metric"] == metric) & table["mean"].notna()]
        panels.append((title, rows[rows["method"].isin(PAPER_METHODS)], list(PAPER_METHODS)))
        if own_panel and (rows["method"] == own_panel).any():
            panels.append((f"{title}: {METHOD_LABELS.get(own_panel, own_panel)} (beyond the paper)",
                           rows[rows["method"] == own_panel], [own_panel]))
    widths = [len(methods) + 1.2 for _, _, methods in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(1.6 * sum(widths), 4.2), squeeze=False, facecolor="white",
                             sharey=True, gridspec_kw={"width_ratios": widths})
    archs = sorted(set().union(*(set(t["arch"]) for t in tables.values())))
    palette = dict(zip(archs, sns.color_palette("deep")))
    for ax, (title, rows, methods) in zip(axes[0], panels):
        for offset, (arch, group) in enumerate(rows.groupby("arch")):
            group = group.set_index("method").reindex([m for m in methods if m in set(group["method"])])
            position = np.array([methods.index(m) for m in group.index]) + 0.06 * (offset - 1)
            ax.plot(position, group["mean"], "o-", color=palette[arch], lw=2, label=arch)
            if "ci_low" in group and group["ci_low"].notna().any():
                ax.errorbar(position, group["mean"], yerr=[group["mean"] - group["ci_low"], group["ci_high"] - group["mean"]],
                            fmt="none", ecolor=palette[arch], elinewidth=1.2, capsize=3)
        if rows.empty:
            ax.text(0.5, 0.5, "no scored map:\nnothing to rank", transform=ax.transAxes, ha="center",
                    va="center", color="0.4")
        ax.set_xticks(range(len(methods)), [METHOD_LABELS.get(m, m) for m in methods])
        ax.set_xlim(-0.5, len(methods) - 0.5)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(METRIC_LABELS[metric])
    handles = [plt.Line2D([], [], color=palette[a], marker="o", lw=2) for a in archs]
    fig.legend(handles, archs, loc="lower center", ncol=len(archs), frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def plot_baselines(table: pd.DataFrame, metrics: Sequence[str] = ("overlap_iou", "adjusted_iou", "spatial_displacement",
                                                                  "pattern_correlation", "rank_correlation")) -> Figure:
    """Per metric, each cell's phase drift (dot, paired 95 % interval) beside its chance level
    (shuffled pairs, cross) and its ceiling (the randomized model, triangle): where between
    "the same image" and "another image" or "a broken model" the drift of fine-tuning sits.
    Three panels a row; the last free panel holds the legend."""
    shown = [m for m in metrics if m in set(table["metric"])]
    cells = list(dict.fromkeys(zip(table["method"], table["arch"])))
    columns = min(3, len(shown))
    rows = -(-(len(shown) + 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(11, rows * (0.32 * len(cells) + 1.3)), squeeze=False,
                             facecolor="white")
    labels = [f"{METHOD_LABELS.get(m, m)} · {a}" for m, a in cells]
    y = np.arange(len(cells))
    for ax, metric in zip(axes.flat, shown):
        values = table[table["metric"] == metric].set_index(["method", "arch"]).reindex(cells)
        ax.errorbar(values["phase"], y, xerr=[values["phase"] - values["ci_low"], values["ci_high"] - values["phase"]],
                    fmt="o", color="C0", capsize=2, label="fine-tuning drift (95 % interval)")
        ax.plot(values["chance"], y, "x", color="C3", ms=7, label="chance (shuffled pairs)")
        if values["ceiling"].notna().any():
            ax.plot(values["ceiling"], y, "^", color="0.35", ms=6, label="ceiling (randomized model)")
        ax.set_title(METRIC_LABELS.get(metric, metric), fontsize=10)
        ax.set_yticks(y, labels if ax in axes[:, 0] else [""] * len(y), fontsize=8)
        ax.set_ylim(len(cells) - 0.5, -0.5)
        ax.grid(axis="x", alpha=0.3)
    handles, names = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    list(axes.flat)[len(shown)].legend(handles, names, loc="center", frameon=False)
    fig.tight_layout()
    return fig


def plot_distributions(drift: pd.DataFrame) -> Figure:
    """Per-sample distribution of each metric by architecture and method (box plots)."""
    data = _method_names(drift)
    fig, axes = plt.subplots(1, len(DRIFT_METRICS), figsize=(4 * len(DRIFT_METRICS), 3.6), facecolor="white")
    for ax, metric in zip(axes, DRIFT_METRICS):
        sns.boxplot(data=data, x="arch", y=metric, hue="method", ax=ax, fliersize=1.5)
        ax.set_title(METRIC_LABELS[metric])
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", rotation=20)
        if ax is not axes[0] and ax.get_legend():
            ax.get_legend().remove()
    fig.suptitle("Per-sample drift (unweighted; each box is one architecture under one method)")
    fig.tight_layout()
    return fig


def plot_per_class(per_class: pd.DataFrame, metric: str = "overlap_iou") -> Figure:
    """Mean `metric` per class, architecture and method (one panel per method)."""
    rows = _method_names(per_class[per_class["metric"] == metric])
    methods = list(dict.fromkeys(rows["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(5.5 * len(methods), 3.6), squeeze=False,
                             sharey=True, facecolor="white")
    for ax, method in zip(axes[0], methods):
        sns.barplot(data=rows[rows["method"] == method], x="label", y="mean", hue="arch", ax=ax)
        ax.set_title(method)
        ax.set_xlabel("")
        ax.set_ylabel(f"mean {METRIC_LABELS[metric]}")
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def plot_dissociation(drift: pd.DataFrame) -> Figure:
    """Spatial displacement against overlap IoU per sample: small displacement with low IoU is
    evidence that reorganized without moving."""
    data = _method_names(drift)
    methods = list(dict.fromkeys(data["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), squeeze=False,
                             sharex=True, sharey=True, facecolor="white")
    for ax, method in zip(axes[0], methods):
        sns.scatterplot(data=data[data["method"] == method], x="spatial_displacement", y="overlap_iou",
                        hue="arch", s=12, alpha=0.6, ax=ax, legend=ax is axes[0][0])
        ax.set_title(method)
        ax.set_xlabel(METRIC_LABELS["spatial_displacement"])
        ax.set_ylabel(METRIC_LABELS["overlap_iou"])
    fig.tight_layout()
    return fig


# -- overlays ------------------------------------------------------------------------------------

def plot_qualitative(images: np.ndarray, maps: Mapping[tuple[str, int], np.ndarray],
                     labels: Sequence[str]) -> Figure:
    """Rows: samples; columns: the image, then each (method, epoch) map over it."""
    keys = list(maps)
    fig, axes = plt.subplots(len(images), len(keys) + 1, figsize=(1.9 * (len(keys) + 1), 1.9 * len(images)),
                             squeeze=False, facecolor="white")
    for row, (image, label) in enumerate(zip(images, labels)):
        overlay(axes[row, 0], image, None)
        axes[row, 0].set_ylabel(label, fontsize=8)
        for col, key in enumerate(keys, start=1):
            overlay(axes[row, col], image, maps[key][row])
    axes[0, 0].set_title("image", fontsize=9)
    for col, (method, epoch) in enumerate(keys, start=1):
        axes[0, col].set_title(f"{METHOD_LABELS.get(method, method)}\nepoch {epoch}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_pair(image: np.ndarray | None, early: np.ndarray, late: np.ndarray, threshold: float,
              epochs: tuple[int, int], title: str = "") -> Figure:
    """One map pair: the image, both overlays, and the thresholded regions (earlier only, later
    only, both), as the explorer shows them."""
    fig, axes = plt.subplots(1, 4 if image is not None else 3, figsize=(11, 3), facecolor="white")
    axes = list(axes)
    if image is not None:
        overlay(axes[0], image, None)
        axes[0].set_title("image")
        axes = axes[1:]
    overlay(axes[0], image, early)
    axes[0].set_title(f"epoch {epochs[0]}")
    overlay(axes[1], image, late)
    axes[1].set_title(f"epoch {epochs[1]}")
    axes[2].imshow(threshold_regions(early, late, threshold))
    axes[2].set_title(f"map >= {threshold:.2f}: earlier / later / both", fontsize=8)
    axes[2].set_xticks([])
    axes[2].set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_toy_maps(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], values: pd.DataFrame) -> Figure:
    """Each toy pair (earlier, later) with its four metric values written beside it."""
    fig, axes = plt.subplots(len(pairs), 3, figsize=(9, 2.3 * len(pairs)), squeeze=False, facecolor="white",
                             gridspec_kw={"width_ratios": [1, 1, 1.1]})
    for row, (name, (a, b)) in enumerate(pairs.items()):
        overlay(axes[row, 0], None, a)
        overlay(axes[row, 1], None, b)
        axes[row, 0].set_ylabel(name, fontsize=9)
        text = "\n".join(f"{col}: {values.loc[name, col]:+.3f}" for col in values.columns)
        axes[row, 2].text(0.02, 0.5, text, va="center", family="monospace", fontsize=9)
        axes[row, 2].axis("off")
    axes[0, 0].set_title("earlier map")
    axes[0, 1].set_title("later map")
    fig.tight_layout()
    return fig
