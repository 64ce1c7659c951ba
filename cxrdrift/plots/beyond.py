"""Figures of chapter 08: evidence on the lesion per epoch, its change against the reference-free
drift, the randomization ceiling of each drift metric, and the same images' maps at each depth."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..drift import METHOD_LABELS, METRIC_LABELS

if TYPE_CHECKING:
    from ..cams import CamExamples


def plot_energy_on_lesion(summary: pd.DataFrame, epochs: tuple[int, int]) -> Figure:
    """Per method, the class-weighted share of map energy on the lesion at each compared epoch
    (one line per architecture), with the uniform-map chance level dashed."""
    chosen = summary[summary["epoch"].isin(epochs)]
    methods = list(dict.fromkeys(chosen["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), sharey=True,
                             squeeze=False, facecolor="white")
    for ax, method in zip(axes[0], methods):
        part = chosen[chosen["method"] == method]
        sns.pointplot(part, x="epoch", y="energy_inside", hue="arch", ax=ax, markers="o")
        ax.axhline(part["lesion_share"].mean(), color="gray", linestyle="--", linewidth=1,
                   label="uniform map (chance)")
        ax.set_title(METHOD_LABELS.get(method, method))
        ax.set_xlabel("epoch")
        ax.set_ylabel("share of map energy on the lesion")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_energy_change_vs_drift(frame: pd.DataFrame, drift: pd.DataFrame, epochs: tuple[int, int],
                                metric: str = "overlap_iou") -> Figure:
    """Per sample: change of the energy on the lesion between `epochs` against a drift metric,
    one panel per method, coloured by architecture."""
    early, late = (frame[frame["epoch"] == e].set_index(["method", "arch", "sample_id"])["energy_inside"]
                   for e in epochs)
    joined = (late - early).rename("energy_change").reset_index().merge(drift, on=["method", "arch", "sample_id"])
    methods = list(dict.fromkeys(joined["method"]))
    fig, axes = plt.subplots(1, max(len(methods), 1), figsize=(4.2 * max(len(methods), 1), 3.6), sharey=True,
                             squeeze=False, facecolor="white")
    for ax, method in zip(axes[0], methods):
        sns.scatterplot(joined[joined["method"] == method], x=metric, y="energy_change", hue="arch", ax=ax, s=20)
        ax.axhline(0, color="gray", linewidth=0.8)
        ax.set_title(METHOD_LABELS.get(method, method))
        ax.set_xlabel(METRIC_LABELS.get(metric, metric))
        ax.set_ylabel(f"energy on lesion, epoch {epochs[1]} − epoch {epochs[0]}")
    fig.tight_layout()
    return fig


def plot_ceiling(ceiling: pd.DataFrame) -> Figure:
    """Per drift metric (columns) and method (rows): each architecture's mean drift between the
    compared epochs beside the drift to its randomized copy."""
    long = ceiling.melt(id_vars=["method", "arch", "metric"], value_vars=["phase", "randomized"],
                        var_name="compared with", value_name="mean")
    long = long.assign(method=long["method"].map(lambda m: METHOD_LABELS.get(m, m)),
                       metric=long["metric"].map(lambda m: METRIC_LABELS.get(m, m)),
                       **{"compared with": long["compared with"].map(
                           {"phase": "earlier epoch (phase drift)", "randomized": "randomized copy (ceiling)"})})
    grid = sns.catplot(long, x="arch", y="mean", hue="compared with", col="metric", row="method", kind="point",
                       sharey=False, height=2.6, aspect=1.15, linestyle="none", markers=["o", "X"])
    grid.set_titles("{row_name} · {col_name}")
    grid.set_axis_labels("", "class-weighted mean")
    grid.figure.set_facecolor("white")
    for ax in grid.axes.flat:
        ax.tick_params(axis="x", labelrotation=30)
    return grid.figure


def plot_trajectory(summary: pd.DataFrame, metric: str, epochs_tl: int, compared: tuple[int, int]) -> Figure:
    """`metric` of every epoch against the early and the late compared epoch: one panel per
    method (rows) and architecture (columns), the switch to fine-tuning dashed."""
    shown = summary.assign(method=summary["method"].map(lambda m: METHOD_LABELS.get(m, m)),
                           reference=summary["reference"].map({"early": f"vs epoch {compared[0]}",
                                                               "late": f"vs epoch {compared[1]}"}))
    grid = sns.relplot(shown, x="epoch", y=metric, hue="reference", row="method", col="arch", kind="line",
                       marker="o", height=2.4, aspect=1.3, facet_kws={"sharey": True})
    for ax in grid.axes.flat:
        ax.axvline(epochs_tl + 0.5, color="gray", linestyle="--", linewidth=1)
    grid.set_titles("{row_name} · {col_name}")
    grid.set_axis_labels("epoch", METRIC_LABELS.get(metric, metric))
    grid.figure.set_facecolor("white")
    return grid.figure


def plot_depth_examples(examples: "Mapping[str, CamExamples]", threshold: float) -> Figure:
    """The same images' maps at several depths: one row per image, then for each depth (its key
    titles the columns) the map at the earlier and at the later compared epoch."""
    from .cams import overlay, show_image

    columns = list(examples.items())
    first = columns[0][1]
    n = len(first.sample_ids)
    fig, axes = plt.subplots(max(n, 1), 1 + 2 * len(columns), figsize=(2.1 * (1 + 2 * len(columns)), 2.15 * max(n, 1)),
                             squeeze=False, facecolor="white")
    axes[0, 0].set_title("image", fontsize=9)
    for k, (title, ex) in enumerate(columns):
        if list(ex.sample_ids) != list(first.sample_ids):
            raise ValueError("every depth must show the same images")
        axes[0, 1 + 2 * k].set_title(f"{title}\nepoch {ex.epochs[0]}", fontsize=8)
        axes[0, 2 + 2 * k].set_title(f"{title}\nepoch {ex.epochs[1]}", fontsize=8)
        for row in range(n):
            overlay(axes[row, 1 + 2 * k], ex.images[row], ex.early[row], threshold)
            overlay(axes[row, 2 + 2 * k], ex.images[row], ex.late[row], threshold)
    for row in range(n):
        show_image(axes[row, 0], first.images[row])
        axes[row, 0].set_ylabel(first.labels[row], fontsize=9)
    if n == 0:
        for ax in axes.ravel():
            ax.set_visible(False)
    fig.suptitle(f"{first.arch} · {METHOD_LABELS.get(first.method, first.method)}", fontsize=10)
    fig.tight_layout()
    return fig
