"""Named threat models: (norm, eps) in [0, 1] pixel units, and the standard ones of each dataset.

RobustBench's leaderboards: CIFAR-10 Linf 8/255 and L2 0.5, ImageNet Linf 4/255. The literature's MNIST budgets:
Linf 0.3 (Madry et al.) and L2 2.0 (Croce & Hein's MNIST evaluations). ImageNet L2 3.0 is the common L2 budget of
robust ImageNet models (e.g. Salman et al.'s transfer study). Every evaluation of a dataset below measures its
standard threat models with AutoAttack unless its recipe says otherwise.
"""
from __future__ import annotations

from .errors import DDHubError

THREAT_MODELS: dict[str, tuple[str, float]] = {
    "mnist-linf": ("linf", 0.3),
    "mnist-l2": ("l2", 2.0),
    "cifar10-linf": ("linf", 8 / 255),
    "cifar10-l2": ("l2", 0.5),
    "imagenet-linf": ("linf", 4 / 255),
    "imagenet-l2": ("l2", 3.0),
}
STANDARD: dict[str, list[str]] = {
    "mnist-5k": ["mnist-linf", "mnist-l2"],
    "mnist": ["mnist-linf", "mnist-l2"],
    "cifar10": ["cifar10-linf", "cifar10-l2"],
    "imagenet": ["imagenet-linf", "imagenet-l2"],
}


def threat_model(name: str) -> tuple[str, float]:
    """``(norm, eps)`` of a named threat model, e.g. ``threat_model('cifar10-linf') == ('linf', 8/255)``."""
    try:
        return THREAT_MODELS[name]
    except KeyError:
        raise DDHubError(f"unknown threat model '{name}'; choose one of: {', '.join(THREAT_MODELS)}") from None


def standard_threat_models(dataset: str) -> list[str]:
    """The threat models a dataset is evaluated under by default (none for folders of unknown images)."""
    return list(STANDARD.get(dataset.lower(), []))
