"""Explorers of one run's drift: pick an architecture, a CAM method and a kept image; see the
image, both epochs' maps, the thresholded regions and the four metric values.

`StaticExplorer(config)` is what the book shows: every view is drawn when the chapter runs (the
same `plot_pair` figure, as a PNG inside the page) and plain HTML <select> controls switch between
them in the browser, so it works in the static book without a kernel or a network. It covers up to
`max_images` kept images, spread over the classes, at the run's IoU threshold.

`DriftExplorer(config)` needs a kernel (ipywidgets): it also moves the IoU threshold and offers
every kept image. `.widget` is what Jupyter shows; `values` (the current metrics) and `figure` (the
last drawn figure) let code and tests drive it without a browser."""
from __future__ import annotations

import base64
import hashlib
import html
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

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
        return cls(RunConfig.load(RunPaths(Path(run_dir)).config), **kwargs)

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


# -- the static explorer (no kernel) --------------------------------------------------------

EXPLORER_DPI = 60
MAX_IMAGES = 8
# JPEG keeps a view near 25 kB (a PNG of the same heat-map figure is ~100 kB): 3 architectures ×
# 3 methods × 8 images stay near 2 MB inside the page.
EXPLORER_FORMAT, EXPLORER_QUALITY = "jpeg", 80

_EXPLORER_CSS = """
.cxrdrift-explorer { border: 1px solid #d0d7de; border-radius: 6px; padding: 0.6em 0.8em; margin: 1em 0; }
.cxrdrift-explorer-controls { display: flex; flex-wrap: wrap; gap: 0.4em 1.5em; margin-bottom: 0.5em; }
.cxrdrift-explorer-controls label { font-weight: 600; }
.cxrdrift-explorer-controls select { margin-left: 0.4em; font-weight: normal; max-width: 24em; }
.cxrdrift-explorer [data-view][hidden] { display: none !important; }
.cxrdrift-explorer [data-view] img { max-width: 100%; height: auto; display: block; }
.cxrdrift-explorer table { margin: 0.3em 0 0 0; border-collapse: collapse; }
.cxrdrift-explorer th, .cxrdrift-explorer td { padding: 0.15em 0.9em; text-align: center; }
"""

# Show the view whose key is the controls' values joined by "|"; hide the others.
_EXPLORER_SCRIPT = """
(function () {
  var root = document.getElementById("%(id)s");
  var controls = Array.prototype.slice.call(root.querySelectorAll("select"));
  var views = Array.prototype.slice.call(root.querySelectorAll("[data-view]"));
  function show() {
    var key = controls.map(function (c) { return c.value; }).join("|");
    views.forEach(function (v) { v.hidden = v.getAttribute("data-view") !== key; });
  }
  controls.forEach(function (c) { c.addEventListener("change", show); });
  show();
})();
"""


@dataclass(frozen=True)
class ExplorerView:
    """One drawn state of the static explorer: a selection, its figure (`image`, of type `mime`) and
    its metric values."""

    arch: str
    method: str
    sample_id: str
    label: str
    image: bytes
    values: Mapping[str, float] = field(default_factory=dict)
    mime: str = "image/jpeg"

    @property
    def key(self) -> str:
        return f"{self.arch}|{self.method}|{self.sample_id}"


def _format_value(value: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else "n/a (flat map)"


def explorer_html(views: Sequence[ExplorerView], threshold: float, element_id: str | None = None) -> str:
    """The page fragment: three <select> controls (architecture, method, kept image), one hidden
    <div data-view> per view (image + values table) and a script that shows the selected one. The
    first view is visible without JavaScript too."""
    if not views:
        raise DriftError("the explorer needs at least one view")
    # the same views give the same id, so a re-executed chapter's page does not change for nothing
    digest = hashlib.sha1(f"{threshold}|{'/'.join(v.key for v in views)}".encode()).hexdigest()[:10]
    element_id = element_id or f"cxrdrift-explorer-{digest}"
    esc = lambda text: html.escape(str(text), quote=True)

    def select(name: str, label: str, options: Sequence[tuple[str, str]]) -> str:
        items = "".join(f'<option value="{esc(value)}">{esc(text)}</option>' for value, text in options)
        return f'<label>{esc(label)}<select name="{name}">{items}</select></label>'

    archs = list(dict.fromkeys(v.arch for v in views))
    methods = list(dict.fromkeys(v.method for v in views))
    samples = list(dict.fromkeys((v.sample_id, v.label) for v in views))
    parts = [f'<div class="cxrdrift-explorer" id="{element_id}" data-explorer>',
             f"<style>{_EXPLORER_CSS}</style>",
             '<div class="cxrdrift-explorer-controls">',
             select("arch", "Architecture", [(a, a) for a in archs]),
             select("method", "Method", [(m, METHOD_LABELS.get(m, m)) for m in methods]),
             select("sample", "Kept image", [(sid, f"{label} | {sid}") for sid, label in samples]),
             "</div>"]
    for index, view in enumerate(views):
        heads = "".join(f"<th>{esc(METRIC_LABELS.get(k, k))}</th>" for k in view.values)
        cells = "".join(f"<td>{esc(_format_value(v))}</td>" for v in view.values.values())
        alt = (f"{view.arch}, {METHOD_LABELS.get(view.method, view.method)}, {view.label} image {view.sample_id}: "
               f"image, both epochs' maps and the regions at or above {threshold:g}")
        data = base64.b64encode(view.image).decode("ascii")
        parts.append(f'<div data-view="{esc(view.key)}"{"" if index == 0 else " hidden"}>'
                     f'<img src="data:{view.mime};base64,{data}" alt="{esc(alt)}">'
                     f"<table><tr>{heads}</tr><tr>{cells}</tr></table></div>")
    parts.append(f"<script>{_EXPLORER_SCRIPT % {'id': element_id}}</script></div>")
    return "".join(parts)


def spread_samples(samples: "Any", max_images: int) -> list[tuple[str, str]]:
    """Up to `max_images` (sample_id, label) pairs taken in turn from each class, in class order."""
    by_class = [list(zip(group["sample_id"], group["label"])) for _, group in samples.groupby("label", sort=True)]
    interleaved = [pair for row in itertools.zip_longest(*by_class) for pair in row if pair is not None]
    chosen = interleaved[:max_images]
    order = {label: i for i, label in enumerate(sorted(samples["label"].unique()))}
    return sorted(chosen, key=lambda pair: (order[pair[1]], pair[0]))


class StaticExplorer:
    """The explorer of the static book: every architecture × method × up to `max_images` kept
    images, drawn now at the run's threshold and switched in the browser. Jupyter and the book
    show `html` (`_repr_html_`); `views` holds what was drawn."""

    def __init__(self, config: RunConfig, max_images: int = MAX_IMAGES, dpi: int = EXPLORER_DPI,
                 show_images: bool = True) -> None:
        self.config = config
        kept = load_drift(config).drop_duplicates("sample_id")
        if kept.empty:
            raise DriftError(f"{RunPaths.of(config).drift} has no samples to explore")
        chosen = spread_samples(kept, max_images)
        ids = [sid for sid, _ in chosen]
        images = load_test_images(config, ids) if show_images else [None] * len(ids)
        views = []
        for arch in config.architectures:
            for method in config.cam_methods:
                early, late = compared_maps(config, arch, method, ids)
                values = metrics.drift_metrics(early, late, config.threshold)
                for i, (sid, label) in enumerate(chosen):
                    figure = plot_pair(images[i], early[i], late[i], config.threshold, config.compared_epochs,
                                       f"{arch}, {METHOD_LABELS.get(method, method)}: {label} | {sid}")
                    buffer = io.BytesIO()
                    figure.savefig(buffer, format=EXPLORER_FORMAT, dpi=dpi, facecolor="white",
                                   pil_kwargs={"quality": EXPLORER_QUALITY})
                    plt.close(figure)
                    views.append(ExplorerView(arch, method, sid, label, buffer.getvalue(),
                                              {name: float(v[i]) for name, v in values.items()},
                                              f"image/{EXPLORER_FORMAT}"))
        self.views = views
        self.n_kept, self.n_images = len(kept), len(ids)
        self.html = explorer_html(views, config.threshold)

    def _repr_html_(self) -> str:
        return self.html
