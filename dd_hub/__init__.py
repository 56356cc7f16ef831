"""dd-hub: harden image classifiers with Deep Defense, measure their robustness, publish them to the Hub.

The public API is re-exported here lazily (PEP 562): ``import dd_hub`` costs nothing until a name is used, so the
command line answers ``--help`` without importing torch. dd-hub's own architectures join timm's registry as soon
as timm is imported too (:mod:`dd_hub.registration`).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .registration import register_with_timm
from .version import __version__

register_with_timm()

_EXPORTS = {
    "deepfool": "attacks", "deepfool_unrolled": "attacks", "fgs": "attacks", "pgd": "attacks",
    "autoattack": "attacks", "ddn": "attacks", "AttackResult": "attacks",
    "DeepDefenseConfig": "training.deep_defense", "DeepDefenseLoss": "training.deep_defense",
    "DDHubError": "errors",
    "create_dataset": "data.datasets",
    "EvalConfig": "evaluation.report", "Report": "evaluation.report", "evaluate": "evaluation.report",
    "load": "hub.loading", "save_model": "models.directory",
    "NormalizedModel": "models", "create_model": "models", "unwrap": "models",
    "harden": "workflows.harden",
    "publish": "hub.upload",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time names are resolved by __getattr__
    from .attacks import AttackResult, autoattack, ddn, deepfool, deepfool_unrolled, fgs, pgd
    from .data.datasets import create_dataset
    from .errors import DDHubError
    from .evaluation.report import EvalConfig, Report, evaluate
    from .hub.upload import publish
    from .models import NormalizedModel, create_model, unwrap
    from .hub.loading import load
    from .models.directory import save_model
    from .training.deep_defense import DeepDefenseConfig, DeepDefenseLoss
    from .workflows.harden import harden


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dd_hub' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
