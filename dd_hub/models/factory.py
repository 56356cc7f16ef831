"""``create_model``: a timm or torchvision name -> a classifier that takes images in [0, 1] pixel space.

Like ``timm.create_model`` (same ``pretrained``, ``num_classes`` and ``checkpoint_path`` arguments), except that the
input normalization lives inside the returned :class:`NormalizedModel`, and weights that were asked for and cannot
be had raise a one-line :class:`DDHubError` instead of leaving random weights behind.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import timm
import torch
from torch import nn

from ..errors import DDHubError, did_you_mean, first_line
from ..storage.weights import load_state_dict, load_weights_into
from .normalized import NormalizedModel
from .twice_differentiable import make_twice_differentiable
from .torchvision_compat import (IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_PREFIX, build_torchvision,
                                 split_prefix, torchvision_names)


def resolve_name(name: str) -> tuple[str, str]:
    """``('timm' | 'torchvision', name)``: ``tv:NAME`` is torchvision's; prefixed names (``hf-hub:``,
    ``local-dir:``) and registry names are timm's (timm's registry wins where both libraries know a name)."""
    torchvision_name = split_prefix(name)
    if torchvision_name is not None:
        if torchvision_name not in torchvision_names():
            raise DDHubError(f"unknown torchvision model '{torchvision_name}'"
                             f"{did_you_mean(torchvision_name, torchvision_names())}")
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
    raise DDHubError(f"unknown model '{name}'{did_you_mean(bare, known)}; use a timm name (timm.list_models()), a "
                     f"torchvision name ({TORCHVISION_PREFIX}NAME), hf-hub:ORG/NAME or local-dir:PATH")


#: image sides tried, smallest first, for a network that cannot classify the data's images at their own size
RESIZE_SIDES = (32, 48, 64, 96, 128, 160, 192, 224, 256, 320)


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    num_classes: int | None = None,
    checkpoint_path: str | Path | None = None,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    resize_to: int | None = None,
    **model_args,
) -> NormalizedModel:
    """A timm or torchvision classifier taking [0, 1] images (normalization inside), in training mode.

    ``checkpoint_path`` is a ``.safetensors`` file or a model directory (``config.json`` + ``model.safetensors``)
    whose weights replace the initial ones; pretrained weights are then not fetched at all.

    ``input_size`` ``(C, H, W)``: the images a timm model will see, set as its pretrained config's input size, from
    which timm derives ``in_chans`` and, for fixed-size models such as ViTs, ``img_size`` (so the export's
    config.json rebuilds the same network). When the model's own normalization has another number of channels
    (an ImageNet model built for grey images), ``mean``/``std`` (the data's statistics) replace it for a model
    without pretrained weights; pretrained weights keep theirs, averaged over the channels (as timm sums their
    first convolution's weights). A torchvision network keeps its 3 channels (grey images enter as three equal
    channels) and its fixed-size arguments (``image_size``) follow ``input_size``. ``model_args`` go to the model's
    constructor (timm's ``model_args``) and are recorded for the export.

    A network that cannot classify ``input_size`` images (too small for its downsampling, or a size its patches,
    windows or attention grids do not fit) is built for the smallest square side of :data:`RESIZE_SIDES` it
    classifies, and the returned model resizes the images to it (``NormalizedModel.resize_to``, recorded by the
    export); ``resize_to`` forces that side. Where no side fits, the model is built for ``input_size`` and
    :func:`check_input_size` refuses it.
    """
    library, bare = resolve_name(name)
    pretrained = pretrained and checkpoint_path is None

    def build(size: Sequence[int] | None, with_weights: bool) -> NormalizedModel:
        return _build(name, library, bare, with_weights, num_classes, size, mean, std, model_args)

    side = resize_to
    if side is None and input_size is not None and ":" not in bare:  # hf-hub:/local-dir: configs fix their size
        try:
            model: NormalizedModel | None = build(input_size, pretrained)
        except DDHubError as exc:
            if pretrained and _fits(build, input_size, check=False):
                raise  # the weights failed, not the size
            model, failure = None, exc
        if model is not None and _classify_error(model, input_size) is None:
            return _finish(model, name, checkpoint_path)
        side = next((s for s in RESIZE_SIDES if s > max(input_size[1:])
                     and _fits(build, (input_size[0], s, s))), None)
        if side is None:
            if model is None:
                raise failure
            return _finish(model, name, checkpoint_path)
    if side is None or input_size is None:
        return _finish(build(input_size, pretrained), name, checkpoint_path)
    model = build((input_size[0], side, side), pretrained)
    model.resize_to = (side, side)
    return _finish(model, name, checkpoint_path)


def _build(name: str, library: str, bare: str, pretrained: bool, num_classes: int | None,
           input_size: Sequence[int] | None, mean: Sequence[float] | None, std: Sequence[float] | None,
           model_args: dict) -> NormalizedModel:
    if library == "timm":
        overlay = _input_overlay(bare, pretrained, input_size, mean, std)
        model = _build_timm(name, bare, pretrained, num_classes, {**model_args, **overlay})
        config = timm.data.resolve_model_data_config(model)
        return NormalizedModel(model, config["mean"], config["std"], model_args=model_args)
    model = build_torchvision(bare, num_classes=num_classes, pretrained=pretrained, input_size=input_size,
                              **model_args)
    return NormalizedModel(model, *_torchvision_normalization(pretrained, mean, std), model_args=model_args)


def _fits(build, input_size: Sequence[int], check: bool = True) -> bool:
    """Whether the network can be built without weights for ``input_size`` images (and, with ``check``,
    classifies them)."""
    try:
        model = build(input_size, False)
    except DDHubError:
        return False
    return not check or _classify_error(model, input_size) is None


def _finish(model: NormalizedModel, name: str, checkpoint_path: str | Path | None) -> NormalizedModel:
    if checkpoint_path is not None:
        try:
            load_weights_into(model.model, load_state_dict(checkpoint_path))
        except RuntimeError as exc:
            raise DDHubError(f"checkpoint {checkpoint_path} does not fit '{name}': {first_line(exc)}") from None
    make_twice_differentiable(model.model)
    return model.train()


def _torchvision_normalization(pretrained: bool, mean: Sequence[float] | None,
                                std: Sequence[float] | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A torchvision network keeps its 3 input channels and ImageNet's statistics, except that one trained from
    scratch on grey images takes the data's grey statistics on each channel. Since the normalization inside
    :class:`NormalizedModel` broadcasts, a grey image enters as three equal channels: the same function as a
    one-channel first convolution whose kernel is the sum of the three (timm's ``in_chans=1``), with the stock
    architecture kept, so the export loads in plain torchvision."""
    if pretrained or mean is None or std is None or len(mean) != 1 or len(std) != 1:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(mean) * 3, tuple(std) * 3


def _input_overlay(bare: str, pretrained: bool, input_size: Sequence[int] | None, mean: Sequence[float] | None,
                   std: Sequence[float] | None) -> dict:
    """``pretrained_cfg_overlay`` for images of ``input_size`` (nothing for hf-hub:/local-dir: names, whose
    config.json decides, or when the model's defaults already fit)."""
    cfg = timm.models.get_pretrained_cfg(bare) if ":" not in bare else None
    if input_size is None or cfg is None:
        return {}
    cfg = cfg.to_dict()
    overlay: dict = {}
    channels = input_size[0]
    if tuple(cfg.get("input_size") or ()) != tuple(input_size):
        # the default weights' test-time size and pooled grid describe another input size: None drops them
        overlay.update(input_size=tuple(input_size), test_input_size=None, test_crop_pct=None, pool_size=None)
    if not pretrained:  # no weights were loaded: the default weights' tag and paper do not describe this model
        overlay.update(tag=None, origin_url=None, paper_ids=None)
    own_mean, own_std = tuple(cfg.get("mean") or IMAGENET_MEAN), tuple(cfg.get("std") or IMAGENET_STD)
    if len(own_mean) != channels:
        if not pretrained and mean is not None and std is not None and len(mean) == channels:
            overlay.update(mean=tuple(mean), std=tuple(std))
        else:
            overlay.update(mean=(sum(own_mean) / len(own_mean),) * channels,
                           std=(sum(own_std) / len(own_std),) * channels)
    return {"pretrained_cfg_overlay": overlay} if overlay else {}


def check_input_size(model: nn.Module, input_size: Sequence[int], name: str) -> None:
    """A one-line error unless ``model`` classifies images of ``input_size`` (C, H, W): too small an image for a
    network's downsampling, or a fixed input size, fail here instead of deep inside the first training step."""
    error = _classify_error(model, input_size)
    if error is not None:
        size = "x".join(str(v) for v in input_size)
        raise DDHubError(f"'{name}' cannot classify {size} images ({error}), nor resized to any side up to "
                         f"{RESIZE_SIDES[-1]}; choose another model, or constructor arguments that fit the images "
                         "with --set model_args.KEY=VALUE (e.g. patch_size, output_stride, window_size)")


def _classify_error(model: nn.Module, input_size: Sequence[int]) -> str | None:
    """Why ``model`` cannot classify two images of ``input_size`` (eval mode, no gradient), or None if it can."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(2, *input_size, device=next(model.parameters()).device))
    except (RuntimeError, ValueError, AssertionError, IndexError, TypeError, ArithmeticError) as exc:
        return first_line(exc) or type(exc).__name__
    finally:
        model.train(was_training)
    return None


def _build_timm(name: str, bare: str, pretrained: bool, num_classes: int | None, kwargs: dict) -> nn.Module:
    wants_weights = pretrained or ":" in bare  # hf-hub:/local-dir: names exist for their weights
    extra = dict(kwargs) if num_classes is None else {**kwargs, "num_classes": num_classes}
    try:
        return timm.create_model(bare, pretrained=wants_weights, **extra)
    except TypeError as exc:
        raise DDHubError(f"'{name}' does not take these model_args ({first_line(exc)}); see the signature of "
                         "its timm class") from None
    except (OSError, RuntimeError, ValueError, AssertionError, ArithmeticError, IndexError, KeyError) as exc:
        if not wants_weights:
            raise DDHubError(f"cannot build '{name}' ({first_line(exc)}); check its model_args") from None
        raise DDHubError(f"could not get the pretrained weights of '{name}' ({first_line(exc)}); pass --checkpoint "
                         "FILE, use a name whose weights are in the local cache, or --allow-random-init") from None
