"""What every chapter notebook does first: resolve its configuration and show the run banner."""
from __future__ import annotations

import logging
import sys
from typing import Any, Mapping

from . import config as cfg
from . import provenance
from .artifacts import read_resolved, write_config

PAPER_COUNTS = {"train": 11733, "val": 1675, "test": 3354}
_WEIGHT_NAMES = {"imagenet": "ImageNet", "synthetic": "synthetic within-domain pre-training",
                 "none": "random initialization", "": "random initialization"}


def setup(namespace: Mapping[str, Any], banner: bool = True) -> cfg.RunConfig:
    """Build the RunConfig from a notebook's parameters (`profile` plus any RunConfig field
    papermill injected), record it and the environment (`provenance.environment`) in the run
    directory, show the run banner and return it."""
    overrides = {name: value for name, value in namespace.items()
                 if name in cfg.FIELDS and name != "profile"}
    config = cfg.profile(namespace.get("profile", "demo"), **overrides)
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _KernelLogOnly) for f in logger.filters):
        logger.addFilter(_KernelLogOnly())
    write_config(config, {"environment": provenance.environment()})
    if banner:
        from IPython.display import Markdown, display

        display(Markdown(banner_markdown(config, read_resolved(config.run_dir))))
    return config


class _KernelLogOnly(logging.Filter):
    """TensorFlow's Python log records (its tf.function retracing warnings: every model a chapter
    builds traces its own steps) go to the process's own stderr, which a chapter's kernel writes
    to `<chapter>.kernel.log` beside TensorFlow's native lines, not into the cell a reader sees."""

    _format = logging.Formatter(logging.BASIC_FORMAT)

    def filter(self, record: logging.LogRecord) -> bool:
        if sys.__stderr__ is not None:
            sys.__stderr__.write(self._format.format(record) + "\n")
        return False


def is_paper_run(config: cfg.RunConfig, resolved: Mapping[str, Any]) -> bool:
    """True only for the paper's protocol on real data with ImageNet weights for every backbone."""
    weights = _weights_used(config, resolved)
    return (config.profile == "paper" and not config.synthetic_data and not config.scaled
            and all(source == "imagenet" for source, _ in weights.values()))


def _weights_used(config: cfg.RunConfig, resolved: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """Per architecture: (weights source, whether training recorded it). Training records
    `resolved["weights"][arch] = {"kind": "imagenet" | "synthetic" | "file" | "none", "path": ...}`
    (`cxrdrift.weights.resolve_weights`); a file is named by its path."""
    recorded = resolved.get("weights") or {}
    used = {}
    for arch in config.architectures:
        value = recorded.get(arch)
        if isinstance(value, Mapping):
            used[arch] = (str(value["path"] if value.get("kind") == "file" else value.get("kind")), True)
        else:
            used[arch] = (config.weights, False)
    return used


def _describe_weights(source: str) -> str:
    return _WEIGHT_NAMES.get(source.lower(), f"weights file `{source}`")


def _describe_counts(counts: Mapping[str, Any]) -> str:
    parts = []
    for split in ("train", "val", "test"):
        value = counts.get(split)
        if value is None:
            continue
        total = sum(value.values()) if isinstance(value, Mapping) else int(value)
        parts.append(f"{split} {total:,}")
    return " · ".join(parts)


def banner_markdown(config: cfg.RunConfig, resolved: Mapping[str, Any]) -> str:
    """The MyST admonition that opens every chapter: what this run is, next to the paper.

    `resolved` is the `"resolved"` section of config.json (dataset counts, weights used, the
    environment the chapter runs in).
    """
    dataset = resolved.get("dataset") or {}
    counts = _describe_counts(dataset.get("counts") or {})
    if config.synthetic_data:
        data = "synthetic radiographs (built-in generator)"
        if not counts:
            counts = _describe_counts({"train": config.synth_train, "val": config.synth_val,
                                       "test": config.synth_test}) + " (configured)"
    else:
        data = f"real images from `{config.data_dir}`"
    data += f": {counts}" if counts else ": not yet scanned"
    weights = _weights_used(config, resolved)
    def describe(source: str, recorded: bool) -> str:
        return _describe_weights(source) + ("" if recorded else " (configured, not yet resolved)")

    if len(set(weights.values())) == 1:
        weight_text = "every backbone: " + describe(*next(iter(weights.values())))
    else:
        weight_text = "; ".join(f"{arch}: {describe(*used)}" for arch, used in weights.items())
    scaled = " (scaled down)" if config.scaled else ""
    protocol = (f"{config.epochs_tl} frozen + {config.epochs_ft} fine-tuning epochs, compared at epochs "
                f"{config.early_epoch} and {config.late_epoch}{scaled}")
    paper_run = is_paper_run(config, resolved)
    rows = [
        ("Profile", f"`{config.profile}`", "`paper`"),
        ("Data", data, "real chest X-rays: " + _describe_counts(PAPER_COUNTS)),
        ("Weights", weight_text, "ImageNet"),
        ("Protocol", protocol, "10 frozen + 10 fine-tuning epochs, compared at epochs 8 and 19"),
        ("Image size", f"{config.image_size} px", "not reported"),
        ("CAM methods", ", ".join(config.cam_methods), "layercam, gradcampp"),
        ("IoU threshold", f"{config.threshold:g}", "lost in extraction"),
        ("Seed", str(config.seed), "not reported"),
        ("Machine", provenance.machine_class(resolved["environment"]) if resolved.get("environment")
         else "not recorded yet", "not reported"),
        ("Run directory", f"`{config.run_dir}`", ""),
    ]
    lines = [
        # (no backticks in the title: a backtick fence's info string may not contain any)
        "````{admonition} " + (f"Run: the paper's protocol ({config.profile} profile)" if paper_run
                               else f"Run: {config.profile} profile, not the paper's setting"),
        ":class: " + ("note" if paper_run else "warning"),
        "",
        "| | this run | the paper |",
        "|---|---|---|",
        *(f"| {name} | {ours} | {paper} |" for name, ours, paper in rows),
        "",
    ]
    if not paper_run:
        lines.append("**" + _warning_line(config, weights) + "**")
        lines.append("")
    lines.append("````")
    return "\n".join(lines)


def _warning_line(config: cfg.RunConfig, weights: Mapping[str, tuple[str, bool]]) -> str:
    data = "synthetic radiographs" if config.synthetic_data else "real images"
    sources = {source.lower() for source, _ in weights.values()}
    if sources == {"synthetic"}:
        start = "after within-domain pre-training"
    elif sources == {"imagenet"}:
        start = "from ImageNet weights"
    elif sources <= {"none", ""}:
        start = "from random weights"
    else:
        start = "from " + ", ".join(sorted(_describe_weights(s) for s in sources))
    scaled = " with a scaled-down protocol" if config.scaled else ""
    return (f"This is a {config.profile} run on {data} {start}{scaled}; "
            f"its numbers are not the paper's.")
