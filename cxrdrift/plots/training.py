"""Figures of the training chapter: learning curves with the phase boundary, confusion matrices."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def learning_curves(history: pd.DataFrame, epochs_tl: int, compared: Sequence[int] = ()) -> Figure:
    """Loss and accuracy per epoch (train solid, validation dashed) for every architecture, the
    start of fine-tuning marked, and the compared epochs shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), facecolor="white")
    palette = dict(zip(history["arch"].unique(), sns.color_palette("colorblind")))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for arch, rows in history.groupby("arch", sort=False):
            ax.plot(rows["epoch"], rows[f"train_{metric}"], "-o", ms=3, color=palette[arch], label=f"{arch} train")
            ax.plot(rows["epoch"], rows[f"val_{metric}"], "--s", ms=3, color=palette[arch], label=f"{arch} val")
        ax.axvline(epochs_tl + 0.5, color="0.3", lw=1)
        ax.text(epochs_tl + 0.6, 0.97, "fine-tuning →", transform=ax.get_xaxis_transform(), va="top", fontsize=8)
        for epoch in compared:
            ax.axvspan(epoch - 0.15, epoch + 0.15, color="0.85", zorder=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_xticks(np.arange(1, int(history["epoch"].max()) + 1))
        ax.grid(alpha=0.3)
    # beside the panels, not on them: with few fine-tuning epochs the curves' last points end in
    # the corner a legend inside would take
    axes[1].legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.suptitle("Learning curves (grey bands: compared epochs)")
    fig.tight_layout()
    return fig


def confusion_matrices(matrices: dict[str, np.ndarray], class_names: Sequence[str], title: str) -> Figure:
    """One confusion matrix per architecture (rows: true class, columns: predicted), as counts."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.9), facecolor="white",
                             squeeze=False)
    short = [name.replace("Tuberculosis", "TB").replace("Lung Opacity", "Opacity") for name in class_names]
    for ax, (arch, matrix) in zip(axes[0], matrices.items()):
        sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax,
                    xticklabels=short, yticklabels=short)
        ax.set_title(arch)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
