"""Normalization inside the model: every attack, metric and loop in dd-hub speaks [0, 1] pixel space."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class NormalizedModel(nn.Module):
    """``model((x - mean) / std)``: a classifier that takes [0, 1] images. ``.model`` is the bare network;
    ``model_args`` are the constructor arguments it was built with (timm's ``model_args``, saved with it).

    With ``resize_to`` ``(H, W)`` (a network that cannot classify the data's images at their own size), images of
    another size are first resized to it, bilinearly (``align_corners=False``, no antialiasing), inside the model:
    attacks and their norms stay in the data's pixel space, and the resize is differentiable twice.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float],
                 model_args: dict | None = None, resize_to: Sequence[int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.model_args = dict(model_args or {})
        self.resize_to = None if resize_to is None else (int(resize_to[0]), int(resize_to[1]))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize_to is not None and tuple(x.shape[-2:]) != self.resize_to:
            x = F.interpolate(x, size=self.resize_to, mode="bilinear", align_corners=False)
        return self.model((x - self.mean) / self.std)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def pretrained_cfg(self) -> dict:
        return getattr(self.model, "pretrained_cfg", {})

    def normalization(self) -> tuple[list[float], list[float]]:
        """``(mean, std)`` as plain lists."""
        return self.mean.flatten().tolist(), self.std.flatten().tolist()


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


def normalized_of(model: nn.Module) -> NormalizedModel | None:
    """The outermost :class:`NormalizedModel` in ``model``'s wrappers (DDP, compile), if any."""
    while not isinstance(model, NormalizedModel):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return None
        model = inner
    return model


def normalization_of(model: nn.Module) -> tuple[list[float], list[float]] | None:
    """``(mean, std)`` of the outermost :class:`NormalizedModel` in ``model``'s wrappers, if any."""
    normalized = normalized_of(model)
    return None if normalized is None else normalized.normalization()


def model_args_of(model: nn.Module) -> dict:
    """The constructor arguments recorded on ``model``'s :class:`NormalizedModel` (empty when none)."""
    normalized = normalized_of(model)
    return {} if normalized is None else dict(normalized.model_args)


def resize_of(model: nn.Module) -> tuple[int, int] | None:
    """The ``(H, W)`` that ``model``'s :class:`NormalizedModel` resizes images to, if it does."""
    normalized = normalized_of(model)
    return None if normalized is None else normalized.resize_to
