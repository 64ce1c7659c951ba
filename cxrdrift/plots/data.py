"""Figures of the dataset: class distribution per split, and example images per class."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from ..data import CLASSES


def class_distribution(counts: pd.DataFrame) -> Figure:
    """Bars of images per class, one colour per split, from a split × class count table."""
    long = (counts.rename_axis(index="split", columns="class").stack().rename("images").reset_index())
    fig, ax = plt.subplots(figsize=(8, 3.8), facecolor="white")
    sns.barplot(data=long, x="class", y="images", hue="split", order=[c for c in CLASSES if c in counts.columns],
                palette="deep", ax=ax)
    for container in ax.containers:
        ax.bar_label(container, fontsize=7, padding=1)
    ax.set_xlabel("")
    ax.set_ylabel("images")
    ax.set_title("Images per class and split")
    sns.despine(ax=ax)
    fig.tight_layout()
    return fig


def image_grid(images: np.ndarray, labels: Sequence[str], masks: np.ndarray | None = None,
               per_row: int | None = None) -> Figure:
    """One row per class of uint8 images (N, S, S, 3), in the given order; lesion masks
    (N, S, S) bool, when given, are outlined in red."""
    labels = list(labels)
    rows = [c for c in CLASSES if c in labels] + sorted({l for l in labels if l not in CLASSES})
    columns = per_row or max(labels.count(c) for c in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns + 0.6, 1.6 * len(rows)),
                             squeeze=False, facecolor="white")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for r, label in enumerate(rows):
        members = [i for i, l in enumerate(labels) if l == label][:columns]
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        for c, i in enumerate(members):
            ax = axes[r, c]
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            if masks is not None and masks[i].any():
                ax.contour(masks[i].astype(float), levels=[0.5], colors="red", linewidths=0.8)
    fig.tight_layout(pad=0.3)
    return fig
