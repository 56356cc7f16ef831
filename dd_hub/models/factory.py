"""Model names -> ``nn.Module`` that takes images in [0, 1] pixel space.

Every attack, metric and training loop in dd-hub works in pixel space, so the input normalization of a timm or
torchvision network lives inside the model, in :class:`NormalizedModel`. Export unwraps it again: the Hub gets the
plain timm network and its ``pretrained_cfg`` mean/std, exactly like any other timm checkpoint.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Sequence

import timm
import torch
from torch import nn

from ..errors import DDHubError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_PREFIXES = ("tv:", "torchvision:", "tv/")
TIMM_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


class NormalizedModel(nn.Module):
    """``model((x - mean) / std)``: a classifier that takes [0, 1] images. ``.model`` is the bare network."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def pretrained_cfg(self) -> dict:
        return getattr(self.model, "pretrained_cfg", {})


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network: strips DDP/compile wrappers and :class:`NormalizedModel`."""
    while True:
        if isinstance(model, NormalizedModel):
            model = model.model
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def resolve_name(name: str) -> tuple[str, str]:
    """``('timm' | 'torchvision', bare_name)``; timm's registry wins where both libraries know a name."""
    for prefix in TORCHVISION_PREFIXES:
        if name.startswith(prefix):
            bare = name[len(prefix):]
            if bare not in _torchvision_names():
                raise DDHubError(f"unknown torchvision model '{bare}'{_suggest(bare, _torchvision_names())}")
            return "torchvision", bare
    if name.startswith(TIMM_PREFIXES):
        return "timm", name
    bare = name.removeprefix("timm/")
    if timm.is_model(bare):
        return "timm", bare
    if bare in _torchvision_names():
        return "torchvision", bare
    known = list(timm.list_models()) + _torchvision_names()
    raise DDHubError(
        f"unknown model '{name}'{_suggest(bare, known)}; use a timm name (timm.list_models()), "
        "a torchvision name (tv:NAME), hf-hub:ORG/NAME or local-dir:PATH"
    )


def _suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    pretrained: bool = False,
    checkpoint: str | Path | None = None,
    **kwargs,
) -> NormalizedModel:
    """Build a timm or torchvision classifier that takes [0, 1] images (normalization inside).

    ``checkpoint`` is a ``.safetensors`` file or a directory in timm's Hub format (``config.json`` +
    ``model.safetensors``); its weights replace the initial ones. Pretrained weights that cannot be fetched raise a
    :class:`DDHubError` instead of silently falling back to random weights.
    """
    library, bare = resolve_name(name)
    extra = dict(kwargs)
    if num_classes is not None:
        extra["num_classes"] = num_classes
    if library == "timm":
        wants_weights = pretrained or bare.startswith(TIMM_PREFIXES)
        try:
            model = timm.create_model(bare, pretrained=wants_weights, **extra)
        except (OSError, RuntimeError, ValueError) as exc:
            raise DDHubError(f"could not build '{name}' with pretrained weights: {_first_line(exc)}; "
                             "pass --checkpoint FILE or check the network/Hub cache") from exc
        config = timm.data.resolve_model_data_config(model)
        mean, std = config["mean"], config["std"]
    else:
        import torchvision

        weights = "DEFAULT" if pretrained else None
        try:
            model = torchvision.models.get_model(bare, weights=weights, **extra)
        except (OSError, RuntimeError, ValueError) as exc:
            raise DDHubError(f"could not build torchvision '{bare}': {_first_line(exc)}") from exc
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    if checkpoint is not None:
        from ..hub import load_state_dict

        state = load_state_dict(checkpoint)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise DDHubError(f"checkpoint {checkpoint} does not fit '{name}': {_first_line(exc)}") from exc
    return NormalizedModel(model, mean, std)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
