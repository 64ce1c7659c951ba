"""Figure functions the notebooks call, one module per topic, and the shared `save_figure`."""
from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from ..artifacts import RunPaths, atomic_path
from ..config import RunConfig

FIGURE_DPI = 110


def save_figure(fig: Figure, config: RunConfig, name: str) -> Path:
    """Write `fig` to `<run_dir>/figures/<name>.png` (white background) atomically; return the path."""
    path = RunPaths.of(config).figures / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=FIGURE_DPI, facecolor="white", bbox_inches="tight")
    return path
