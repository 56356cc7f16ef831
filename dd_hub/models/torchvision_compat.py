"""torchvision networks in dd-hub: the ``tv:NAME`` prefix, building them, and mapping them onto timm.

Where timm has a network of the same name whose pretrained weights *are* torchvision's (ResNets, DenseNets, VGGs,
...), a torchvision network is converted to that timm network through timm's own pretrained-weight loading (which
applies timm's key filter for that family), so the export is an ordinary timm checkpoint. The others are exported
with ``"architecture": "tv:NAME"`` and rebuilt by torchvision.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

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


def build_torchvision(name: str, *, num_classes: int | None = None, pretrained: bool = False,
                      **model_args) -> nn.Module:
    """torchvision's ``name`` (its DEFAULT weights when ``pretrained``); ``model_args`` go to its builder."""
    import torchvision

    extra = dict(model_args) if num_classes is None else {**model_args, "num_classes": num_classes}
    try:
        return torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **extra)
    except (OSError, RuntimeError, ValueError, TypeError) as exc:
        raise DDHubError(f"could not build torchvision '{name}': {first_line(exc)}") from None


def is_torchvision(model: nn.Module) -> bool:
    return type(model).__module__.startswith("torchvision.models")


def output_size(model: nn.Module) -> int:
    """Number of classes of a torchvision classifier: the last weight or bias (the head's) gives it."""
    last = [v for k, v in model.state_dict().items() if k.endswith(("weight", "bias"))][-1]
    return last.shape[0]


def torchvision_name(model: nn.Module) -> str:
    """The torchvision builder name (``resnet50``) of a torchvision network, found by its parameter shapes.

    Candidates are the builders of the network's own module, built on the meta device (no memory, no weights).
    """
    import torchvision

    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    num_classes = output_size(model)
    for name in torchvision_names():
        builder = torchvision.models.get_model_builder(name)
        if builder.__module__ != type(model).__module__:
            continue
        with torch.device("meta"):
            candidate = builder(weights=None, num_classes=num_classes)
        if type(candidate) is type(model) and shapes == {k: tuple(v.shape) for k, v in candidate.state_dict().items()}:
            return name
    raise DDHubError(f"cannot tell which torchvision builder made this {type(model).__name__}")


def exported_architecture(model: nn.Module) -> str:
    """What a checkpoint of torchvision ``model`` is called: its timm twin's name, else ``tv:NAME``."""
    name = torchvision_name(model)
    return name if name in TIMM_TWINS else TORCHVISION_PREFIX + name


def timm_twin(model: nn.Module, name: str, normalization: tuple | None = None) -> nn.Module:
    """The timm network ``name`` carrying torchvision ``model``'s weights, loaded by timm's pretrained-weight
    loader from a temporary safetensors file (so timm's own key mapping for the family applies; strict)."""
    import timm

    num_classes = output_size(model)
    with tempfile.TemporaryDirectory(prefix="dd-hub-twin-") as tmp:
        weights = Path(tmp) / "model.safetensors"
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(weights))
        try:
            twin = timm.create_model(name, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay={
                "file": str(weights), "num_classes": num_classes, "hf_hub_id": None, "url": None})
        except (RuntimeError, KeyError) as exc:
            raise DDHubError(f"torchvision {name} does not map onto timm's {name}: {first_line(exc)}") from None
    mean, std = normalization or (IMAGENET_MEAN, IMAGENET_STD)
    twin.pretrained_cfg = {**twin.pretrained_cfg, **TORCHVISION_DATA_CFG, "input_size": (3, 224, 224),
                           "tag": "tv_in1k", "mean": tuple(mean), "std": tuple(std)}
    return twin.eval()

