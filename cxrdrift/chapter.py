"""What every chapter notebook does first: resolve its configuration and show the run banner."""
from __future__ import annotations

from typing import Any, Mapping

from . import config as cfg
from .artifacts import write_config


def setup(namespace: Mapping[str, Any]) -> cfg.RunConfig:
    """Build the RunConfig from a notebook's parameters (`profile` plus any RunConfig field
    papermill injected), record it in the run directory and return it."""
    overrides = {name: value for name, value in namespace.items()
                 if name in cfg.FIELDS and name != "profile"}
    config = cfg.profile(namespace.get("profile", "demo"), **overrides)
    write_config(config)
    return config
