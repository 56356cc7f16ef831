"""``create_model``: a timm or torchvision name -> a classifier that takes images in [0, 1] pixel space.

Like ``timm.create_model`` (same ``pretrained``, ``num_classes`` and ``checkpoint_path`` arguments), except that the
input normalization lives inside the returned :class:`NormalizedModel`, and weights that were asked for and cannot
be had raise a one-line :class:`DDHubError` instead of leaving random weights behind.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Sequence

import timm
from torch import nn

from ..errors import DDHubError
from ..weights import load_state_dict
from .normalized import NormalizedModel
from .torchvision_compat import (IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_PREFIX, build_torchvision, first_line,
                                 split_prefix, torchvision_names)


def resolve_name(name: str) -> tuple[str, str]:
    """``('timm' | 'torchvision', name)``: ``tv:NAME`` is torchvision's; prefixed names (``hf-hub:``,
    ``local-dir:``) and registry names are timm's (timm's registry wins where both libraries know a name)."""
    torchvision_name = split_prefix(name)
    if torchvision_name is not None:
        if torchvision_name not in torchvision_names():
            raise DDHubError(f"unknown torchvision model '{torchvision_name}'"
                             f"{_suggest(torchvision_name, torchvision_names())}")
        return "torchvision", torchvision_name
    try:
        source, bare = timm.models.parse_model_name(name.removeprefix("timm/"))
    except ValueError as exc:
        raise DDHubError(f"{first_line(exc)}") from None
    if source is not None:
        return "timm", f"{source}:{bare}"
    if timm.is_model(bare):
        return "timm", bare
    if bare in torchvision_names():
        return "torchvision", bare
    known = list(timm.list_models()) + torchvision_names()
    raise DDHubError(f"unknown model '{name}'{_suggest(bare, known)}; use a timm name (timm.list_models()), a "
                     f"torchvision name ({TORCHVISION_PREFIX}NAME), hf-hub:ORG/NAME or local-dir:PATH")


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    num_classes: int | None = None,
    checkpoint_path: str | Path | None = None,
    **kwargs,
) -> NormalizedModel:
    """A timm or torchvision classifier taking [0, 1] images (normalization inside), in training mode.

    ``checkpoint_path`` is a ``.safetensors`` file or a model directory (``config.json`` + ``model.safetensors``)
    whose weights replace the initial ones; pretrained weights are then not fetched at all.
    """
    library, bare = resolve_name(name)
    pretrained = pretrained and checkpoint_path is None
    if library == "timm":
        model = _build_timm(name, bare, pretrained, num_classes, kwargs)
        config = timm.data.resolve_model_data_config(model)
        mean, std = config["mean"], config["std"]
    else:
        model = build_torchvision(bare, num_classes=num_classes, pretrained=pretrained)
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if checkpoint_path is not None:
        try:
            model.load_state_dict(load_state_dict(checkpoint_path))
        except RuntimeError as exc:
            raise DDHubError(f"checkpoint {checkpoint_path} does not fit '{name}': {first_line(exc)}") from None
    return NormalizedModel(model, mean, std)


def _build_timm(name: str, bare: str, pretrained: bool, num_classes: int | None, kwargs: dict) -> nn.Module:
    wants_weights = pretrained or ":" in bare  # hf-hub:/local-dir: names exist for their weights
    extra = dict(kwargs) if num_classes is None else {**kwargs, "num_classes": num_classes}
    try:
        return timm.create_model(bare, pretrained=wants_weights, **extra)
    except (OSError, RuntimeError, ValueError) as exc:
        raise DDHubError(f"could not get the pretrained weights of '{name}' ({first_line(exc)}); pass --checkpoint "
                         "FILE, use a name whose weights are in the local cache, or --allow-random-init") from None
