"""Figures of the CAM chapters (notebooks 04 and 05): overlays, per-class examples at both
compared epochs, the share of degenerate maps, and how two methods' maps of one image agree."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..cams import CamExamples
from ..drift import METHOD_LABELS

CAM_CMAP = "jet"
REGION_COLOURS = {"earlier only": (0.2, 0.4, 1.0), "later only": (1.0, 0.5, 0.1), "both": (0.2, 0.75, 0.3)}


def _bare(ax: Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def show_image(ax: Axes, image: np.ndarray) -> None:
    """A radiograph in grayscale (RGB copies are averaged)."""
    gray = np.asarray(image, dtype=float)
    ax.imshow(gray.mean(axis=-1) if gray.ndim == 3 else gray, cmap="gray")
    _bare(ax)


def overlay(ax: Axes, image: np.ndarray | None, cam: np.ndarray | None, threshold: float | None = None,
            alpha: float = 0.45) -> None:
    """A [0, 1] map over the image with transparency `alpha` (opaque without an image), and its
    `threshold` contour (white); either may be None; a degenerate (NaN) map is labelled as such."""
    if image is not None:
        show_image(ax, image)
    _bare(ax)
    if cam is None:
        return
    if not np.isfinite(cam).all():
        ax.text(0.5, 0.5, "degenerate", transform=ax.transAxes, ha="center", va="center", color="red")
        return
    ax.imshow(cam, cmap=CAM_CMAP, vmin=0.0, vmax=1.0, alpha=alpha if image is not None else 1.0)
    if threshold is not None and cam.min() < threshold <= cam.max():
        ax.contour(cam, levels=[threshold], colors="white", linewidths=1.0)


def threshold_regions(early: np.ndarray, late: np.ndarray, threshold: float) -> np.ndarray:
    """RGB image of where each map reaches `threshold`: earlier only, later only, both (white: neither)."""
    region_a, region_b = early >= threshold, late >= threshold  # NaN compares False: no region
    rgb = np.ones((*early.shape, 3))
    rgb[region_a & ~region_b] = REGION_COLOURS["earlier only"]
    rgb[region_b & ~region_a] = REGION_COLOURS["later only"]
    rgb[region_a & region_b] = REGION_COLOURS["both"]
    return rgb


def plot_compared_examples(examples: CamExamples, threshold: float) -> Figure:
    """One row per example: the image, the map at each compared epoch (contour at `threshold`),
    and the thresholded regions of both."""
    n = len(examples.sample_ids)
    fig, axes = plt.subplots(max(n, 1), 4, figsize=(8.4, 2.15 * max(n, 1)), squeeze=False, facecolor="white")
    early_epoch, late_epoch = examples.epochs
    titles = ["image", f"epoch {early_epoch} (earlier)", f"epoch {late_epoch} (later)",
              f"map ≥ {threshold:g}"]
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=9)
    for row in range(n):
        image = examples.images[row]
        show_image(axes[row, 0], image)
        axes[row, 0].set_ylabel(examples.labels[row], fontsize=9)
        overlay(axes[row, 1], image, examples.early[row], threshold)
        overlay(axes[row, 2], image, examples.late[row], threshold)
        axes[row, 3].imshow(threshold_regions(examples.early[row], examples.late[row], threshold))
        _bare(axes[row, 3])
    for ax in axes[n:].ravel():
        ax.set_visible(False)
    fig.legend(handles=[Patch(color=c, label=name) for name, c in REGION_COLOURS.items()],
               loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.suptitle(f"{examples.arch}: {METHOD_LABELS.get(examples.method, examples.method)}", fontsize=11)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_degenerate_share(table: pd.DataFrame) -> Figure:
    """Bars: share of degenerate maps per architecture, epoch and method (`cams.degenerate_table`)."""
    frame = table.assign(method=table["method"].map(lambda m: METHOD_LABELS.get(m, m)),
                         epoch=table["epoch"].map(lambda e: f"epoch {e}"))
    grid = sns.catplot(frame, x="arch", y="share", hue="epoch", col="method", kind="bar",
                       height=3.0, aspect=1.2, palette="Set2")
    grid.set_axis_labels("", "share of degenerate maps")
    grid.set_titles("{col_name}")
    top = max(0.05, float(frame["share"].max()) * 1.15)
    for (method, facet), ax in zip(frame.groupby("method", sort=False), grid.axes.ravel()):
        ax.set_ylim(0, top)
        if facet["degenerate"].sum() == 0:
            ax.text(0.5, 0.5, f"no degenerate maps\n(of {facet['maps'].sum()})" if facet["maps"].sum() else
                    "no maps: no test image\nwas mapped", transform=ax.transAxes,
                    ha="center", va="center", color="0.4")
    grid.figure.set_facecolor("white")
    return grid.figure


def plot_method_agreement(agreement: pd.DataFrame, metric: str = "pattern_correlation",
                          label: str = "Pearson r, LayerCAM vs Grad-CAM++") -> Figure:
    """Per-sample agreement of two methods on the same image (`cams.method_agreement`), by
    architecture and epoch."""
    frame = agreement.assign(epoch=agreement["epoch"].map(lambda e: f"epoch {e}"))
    fig, ax = plt.subplots(figsize=(7, 3.2), facecolor="white")
    sns.boxplot(frame, x="arch", y=metric, hue="epoch", ax=ax, palette="Set2", fliersize=2)
    ax.set_xlabel("")
    ax.set_ylabel(label)
    fig.tight_layout()
    return fig
