"""The chance level of each drift metric: the same metric between maps of *different* images.

A drift value means little without its scale. Shuffled pairs give the lower end: for every image,
the earlier map of that image against the later map of another image of the same class, from the
same model and epochs, so everything but the image itself is shared. (The upper end, the same
model with its top re-initialized, is `cxrdrift.randomization`.)
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import metrics


def shuffled_partners(labels: Sequence[str], seed: int) -> np.ndarray:
    """For each image, the position of another image of the same class (-1 where its class has
    only one): a random cyclic shift within each class, so no image is its own partner and every
    image is some other image's partner exactly once."""
    labels = np.asarray(labels)
    partners = np.full(len(labels), -1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for label in dict.fromkeys(labels.tolist()):
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) > 1:
            partners[members] = np.roll(members, -1)
    return partners


def chance_metrics(early: np.ndarray, late: np.ndarray, labels: Sequence[str], threshold: float,
                   seed: int) -> dict[str, np.ndarray]:
    """The metric suite between image i's earlier map and its shuffled partner's later map, (N,)
    arrays by name; NaN where an image has no partner."""
    early, late = np.asarray(early), np.asarray(late)
    if early.shape != late.shape or early.ndim != 3 or len(early) != len(labels):
        raise metrics.MetricInputError(f"need (N, H, W) earlier and later maps and N labels; got "
                                       f"{early.shape}, {late.shape} and {len(labels)} labels")
    partners = shuffled_partners(labels, seed)
    paired = partners >= 0
    values = metrics.drift_metrics(early[paired], late[partners[paired]], threshold)
    out = {}
    for name, scored in values.items():
        out[name] = np.full(len(early), np.nan)
        out[name][paired] = scored
    return out


__all__ = ["shuffled_partners", "chance_metrics"]
