"""An ipywidgets explorer of one run's drift: pick an architecture, a CAM method, a sample and an
IoU threshold; see both epochs' maps over the image and the four metric values.

`DriftExplorer(config).widget` is what Jupyter shows; `values` (the current metrics) and
`figure` (the last drawn figure) let code and tests drive it without a browser."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import clear_output, display

from . import metrics
from .artifacts import RunPaths
from .config import RunConfig
from .drift import METHOD_LABELS, METRIC_LABELS, DriftError, compared_maps, load_drift, load_test_images
from .plots.drift import plot_pair


class DriftExplorer:
    """Widgets over a finished run directory; `widget` is what Jupyter displays and `values`
    holds the metrics of the current selection."""

    def __init__(self, config: RunConfig, show_images: bool = True) -> None:
        self.config = config
        samples = load_drift(config).drop_duplicates("sample_id").sort_values(["label", "sample_id"])
        if samples.empty:
            raise DriftError(f"{RunPaths.of(config).drift} has no samples to explore")
        self.show_images = show_images
        self._images: dict[str, np.ndarray] = {}
        self.arch = widgets.Dropdown(options=list(config.architectures), description="architecture")
        self.method = widgets.Dropdown(options=[(METHOD_LABELS.get(m, m), m) for m in config.cam_methods],
                                       description="method")
        self.sample = widgets.Dropdown(options=[(f"{label} | {sid}", sid) for sid, label
                                                in zip(samples["sample_id"], samples["label"])],
                                       description="sample")
        self.threshold = widgets.FloatSlider(value=config.threshold, min=0.05, max=1.0, step=0.05,
                                             description="IoU threshold", continuous_update=False)
        self.table = widgets.HTML()
        self.output = widgets.Output()
        for control in (self.arch, self.method, self.sample, self.threshold):
            control.observe(self.update, names="value")
        self.widget = widgets.VBox([widgets.HBox([self.arch, self.method]),
                                    widgets.HBox([self.sample, self.threshold]), self.table, self.output])
        self.values: dict[str, float] = {}
        self.update()

    @classmethod
    def from_run(cls, run_dir: str | Path, **kwargs: Any) -> "DriftExplorer":
        """An explorer of the run whose `config.json` lies in `run_dir`."""
        return cls(RunConfig.load(Path(run_dir) / "config.json"), **kwargs)

    def _image(self, sample_id: str) -> np.ndarray | None:
        if not self.show_images:
            return None
        if sample_id not in self._images:
            self._images[sample_id] = load_test_images(self.config, [sample_id])[0]
        return self._images[sample_id]

    def update(self, change: Any = None) -> None:
        """Recompute the selected pair's metrics and redraw."""
        early, late = compared_maps(self.config, self.arch.value, self.method.value, [self.sample.value])
        self.values = {name: float(v[0]) for name, v in
                       metrics.drift_metrics(early, late, self.threshold.value).items()}
        cells = "".join(f"<td style='padding:0 12px'><b>{METRIC_LABELS[k]}</b><br>{v:.3f}</td>"
                        for k, v in self.values.items())
        self.table.value = f"<table><tr>{cells}</tr></table>"
        with self.output:
            clear_output(wait=True)
            self.figure = plot_pair(self._image(self.sample.value), early[0], late[0], self.threshold.value,
                            self.config.compared_epochs,
                            f"{self.arch.value}, {METHOD_LABELS.get(self.method.value)}: {self.sample.value}")
            display(self.figure)
            plt.close(self.figure)

    def _ipython_display_(self) -> None:
        display(self.widget)
