"""The paper's reported numbers (`paper/REPORTED.md`), in the shapes this run's tables have.

One place for them: the training chapter sets Table 2 beside a run's, `drift` ranks Table 3 and
`findings` checks the headline findings on it.
"""
from __future__ import annotations

import pandas as pd

from .config import ARCHITECTURES
from .metrics import DRIFT_METRICS

# Table 2 (epoch 19, ImageNet weights, real radiographs).
PAPER_TABLE2 = pd.DataFrame(
    {"auc": [0.995, 0.998, 0.998], "accuracy": [0.936, 0.973, 0.973], "f1": [0.935, 0.959, 0.964]},
    index=pd.Index(list(ARCHITECTURES), name="arch"))

# Table 3: (mean, std) per metric in DRIFT_METRICS order. The paper's text lost the signs of the
# concentration changes except ResNet50V2 under Grad-CAM++ (negative); the others are magnitudes.
_TABLE3 = {
    ("layercam", "DenseNet201"): ((0.096, 0.074), (0.699, 0.171), (0.368, 0.337), (0.050, 0.136)),
    ("layercam", "ResNet50V2"): ((0.101, 0.062), (0.519, 0.154), (0.403, 0.285), (0.136, 0.130)),
    ("layercam", "InceptionV3"): ((0.090, 0.058), (0.777, 0.128), (0.220, 0.465), (0.024, 0.077)),
    ("gradcampp", "DenseNet201"): ((0.100, 0.073), (0.690, 0.169), (0.345, 0.350), (0.049, 0.172)),
    ("gradcampp", "ResNet50V2"): ((0.138, 0.085), (0.383, 0.174), (0.506, 0.246), (-0.516, 0.516)),
    ("gradcampp", "InceptionV3"): ((0.136, 0.073), (0.643, 0.172), (0.386, 0.423), (0.275, 0.303)),
}
_SIGN_KNOWN = ("gradcampp", "ResNet50V2")


def paper_table3() -> pd.DataFrame:
    """The paper's Table 3 in `drift.table3`'s long form (method, arch, metric, mean, std) with a
    `sign_known` column: False where only the concentration change's magnitude survived."""
    rows = [{"method": method, "arch": arch, "metric": metric, "mean": mean, "std": std,
             "sign_known": metric != "concentration_change" or (method, arch) == _SIGN_KNOWN}
            for (method, arch), cells in _TABLE3.items() for metric, (mean, std) in zip(DRIFT_METRICS, cells)]
    return pd.DataFrame(rows)
