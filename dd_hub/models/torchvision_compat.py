"""torchvision networks in dd-hub: the ``tv:NAME`` prefix, building them, and mapping them onto timm.

Where timm has a network of the same name whose pretrained weights *are* torchvision's (ResNets, DenseNets, VGGs,
...), a torchvision network is converted to that timm network through timm's own pretrained-weight loading (which
applies timm's key filter for that family), so the export is an ordinary timm checkpoint. The others are exported
with ``"architecture": "tv:NAME"`` and rebuilt by torchvision.
"""
from __future__ import annotations

import inspect
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import save_file
from torch import nn

from ..errors import DDHubError, first_line

TORCHVISION_PREFIX = "tv:"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: torchvision's own ImageNet preprocessing (resize 256 / center crop 224, bilinear): ``tv_in1k`` in timm's terms
TORCHVISION_DATA_CFG = {"input_size": [3, 224, 224], "interpolation": "bilinear", "crop_pct": 0.875,
                        "crop_mode": "center"}
#: torchvision builders whose weights load strictly into the timm network of the same name
TIMM_TWINS = frozenset({
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "densenet121", "densenet161", "densenet169",
    "densenet201", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
})


def torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def split_prefix(name: str) -> str | None:
    """The torchvision builder name of ``tv:NAME``, or None when ``name`` has no ``tv:`` prefix."""
    return name[len(TORCHVISION_PREFIX):] if name.startswith(TORCHVISION_PREFIX) else None


@dataclass(frozen=True)
class TorchvisionBuild:
    """How :func:`build_torchvision` made a network, kept on it as ``network.torchvision_build``: the export writes
    this down (``architecture``, ``num_classes``, ``model_args``) instead of guessing the builder from shapes."""

    name: str
    num_classes: int
    model_args: dict = field(default_factory=dict)   # every builder keyword but num_classes and weights
    data_config: dict = field(default_factory=lambda: dict(TORCHVISION_DATA_CFG))  # preprocessing, for the export


def build_torchvision(name: str, *, num_classes: int | None = None, pretrained: bool = False,
                      input_size: Sequence[int] | None = None, **model_args) -> nn.Module:
    """torchvision's ``name`` (its DEFAULT weights when ``pretrained``); ``model_args`` go to its builder.

    The stock architecture is kept: 3 input channels (grey images enter as three equal channels, see
    :func:`dd_hub.models.create_model`). Two keywords are filled in from what the builder's network takes, when
    ``model_args`` do not set them: ``aux_logits=False`` for networks with auxiliary heads (GoogLeNet, Inception
    v3: their training-mode output is a tuple, not logits), and the image side (``image_size`` of ViTs,
    ``input_size`` of MaxViT) from ``input_size`` ``(C, H, W)``. The network records how it was built
    (:class:`TorchvisionBuild`).
    """
    import torchvision

    try:
        with warnings.catch_warnings():  # GoogLeNet's and Inception's notice about a future default initialization
            warnings.simplefilter("ignore", FutureWarning)
            args = {**_fitted_args(name, input_size, model_args), **model_args}
            extra = dict(args) if num_classes is None else {**args, "num_classes": num_classes}
            model = torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **extra)
    except (OSError, RuntimeError, ValueError, TypeError, AssertionError, ArithmeticError, IndexError) as exc:
        raise DDHubError(f"could not build torchvision '{name}': {first_line(exc)}") from None
    model.torchvision_build = TorchvisionBuild(name, output_size(model), args, _data_config(input_size))
    return model


def _data_config(input_size: Sequence[int] | None) -> dict:
    """torchvision's ImageNet preprocessing, or whole images of ``input_size`` (on 3 channels)."""
    if input_size is None:
        return dict(TORCHVISION_DATA_CFG)
    return {**TORCHVISION_DATA_CFG, "input_size": [3, int(input_size[-2]), int(input_size[-1])], "crop_pct": 1.0}


def _fitted_args(name: str, input_size: Sequence[int] | None, model_args: dict) -> dict:
    """The builder keywords that fit ``name``'s network to training and to ``input_size``, read from the
    constructor of its network class (built on the meta device: no memory, no weights)."""
    import torchvision

    args = {k: v for k, v in model_args.items() if k not in ("image_size", "input_size")}
    try:
        with torch.device("meta"):
            probe = torchvision.models.get_model(name, weights=None, **args)
    except (RuntimeError, NotImplementedError):  # a builder that reads tensor values (RegNet): built for real
        probe = torchvision.models.get_model(name, weights=None, **args)
    takes = inspect.signature(type(probe).__init__).parameters
    args: dict = {}
    if getattr(probe, "aux_logits", False) is True:
        args["aux_logits"] = False
    if input_size is not None:
        height, width = int(input_size[-2]), int(input_size[-1])
        if "image_size" in takes and height == width:
            args["image_size"] = height
        elif "input_size" in takes:
            args["input_size"] = (height, width)
    return args


def is_torchvision(model: nn.Module) -> bool:
    return type(model).__module__.startswith("torchvision.models")


def output_size(model: nn.Module) -> int:
    """Number of classes of a torchvision classifier: the last weight or bias (the head's) gives it."""
    last = [v for k, v in model.state_dict().items() if k.endswith(("weight", "bias"))][-1]
    return last.shape[0]


def build_of(model: nn.Module) -> TorchvisionBuild:
    """How torchvision network ``model`` was built; a one-line error for one that :func:`build_torchvision` did
    not make (its builder and arguments cannot be told from its weights)."""
    build = getattr(model, "torchvision_build", None)
    if not isinstance(build, TorchvisionBuild):
        raise DDHubError(f"this {type(model).__name__} was not built by dd-hub, so its torchvision builder is "
                         "unknown; build it with dd_hub.create_model('tv:NAME', ...)")
    return build


def exported_architecture(model: nn.Module) -> str:
    """What a checkpoint of torchvision ``model`` is called: its timm twin's name when it has one and was built
    with the builder's own arguments, else ``tv:NAME``."""
    build = build_of(model)
    return build.name if build.name in TIMM_TWINS and not build.model_args else TORCHVISION_PREFIX + build.name


def timm_twin(model: nn.Module, name: str, normalization: tuple | None = None) -> nn.Module:
    """The timm network ``name`` carrying torchvision ``model``'s weights, loaded by timm's pretrained-weight
    loader from a temporary safetensors file (so timm's own key mapping for the family applies; strict)."""
    import timm

    num_classes = build_of(model).num_classes
    with tempfile.TemporaryDirectory(prefix="dd-hub-twin-") as tmp:
        weights = Path(tmp) / "model.safetensors"
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
        try:
            twin = timm.create_model(name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay={
                "file": str(weights), "num_classes": num_classes, "hf_hub_id": None, "url": None})
        except (RuntimeError, KeyError) as exc:
            raise DDHubError(f"torchvision {name} does not map onto timm's {name}: {first_line(exc)}") from None
    mean, std = normalization or (IMAGENET_MEAN, IMAGENET_STD)
    cfg = build_of(model).data_config
    # timm's own weights' test-time size, pooled grid and paper do not describe torchvision's network
    twin.pretrained_cfg = {**twin.pretrained_cfg, **cfg, "input_size": tuple(cfg["input_size"]), "tag": "tv_in1k",
                           "mean": tuple(mean), "std": tuple(std), "test_input_size": None, "test_crop_pct": None,
                           "pool_size": None, "origin_url": None, "paper_ids": None}
    return twin.eval()

