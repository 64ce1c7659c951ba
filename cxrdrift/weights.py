"""Which weights a run's backbones start from: `RunConfig.weights` resolved for one architecture.

`cxrdrift.models` builds models and loads files; this module decides what to load, including
the built-in pre-training (`weights="synthetic"`), which it runs or reads from its cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import RunConfig
from .models import KERAS_CACHE, WeightsError, weights_kind, weights_path_for
from .pretrain import PretrainSpec, synthetic_backbone_weights


def resolve_weights(config: RunConfig, arch: str) -> tuple[str | Path | None, dict[str, Any]]:
    """What `models.build_model` should load for `arch` under `config`, and a description for
    config.json. "synthetic" becomes the cached pre-trained backbone file (pre-trained now if needed)."""
    kind = weights_kind(config.weights)
    if kind == "none":
        return None, {"kind": "none"}
    if kind == "imagenet":
        return "imagenet", {"kind": "imagenet", "path": KERAS_CACHE}
    if kind == "file":
        path = weights_path_for(config.weights, arch)
        if not path.is_file():
            raise WeightsError(f"weights file {path} (for {arch}) does not exist")
        return path, {"kind": "file", "path": str(path)}
    result = synthetic_backbone_weights(arch, PretrainSpec.from_config(config, arch), verbose=0)
    return result.path, {"kind": "synthetic", **result.description}
