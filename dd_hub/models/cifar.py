"""The paper's CIFAR-10 networks, registered in timm's registry.

``timm.create_model('dd_convnet_cifar10')`` and ``timm.create_model('dd_nin_cifar10')`` build them once ``dd_hub``
is imported, with timm's classifier interface (``head``), so timm's Hub format works for them unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .classifier import Classifier, paper_cfg

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _conv(in_chans: int, out_chans: int, kernel: int) -> nn.Conv2d:
    return nn.Conv2d(in_chans, out_chans, kernel, padding=kernel // 2)


class _ConvClassifier(Classifier):
    """A convolutional trunk ``features`` ending in a 1x1 map (or globally pooled), then the linear ``head``."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ConvNetCIFAR10(_ConvClassifier):
    """The ConvNet of the Deep Defense code (models/cifar10.py), after Hinton et al. 2012.

    conv5x5x32 -> maxpool2 -> ReLU -> conv5x5x32 -> ReLU -> avgpool2 -> conv5x5x64 -> ReLU -> avgpool2 ->
    conv4x4x64 -> ReLU -> conv1x1x10. The final 1x1 convolution on the 1x1 map is ``head``, a Linear(64, 10).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, **_: object) -> None:
        super().__init__()
        self.num_features = 64
        self.features = nn.Sequential(
            _conv(in_chans, 32, 5), nn.MaxPool2d(2), nn.ReLU(),
            _conv(32, 32, 5), nn.ReLU(), nn.AvgPool2d(2),
            _conv(32, 64, 5), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(64, 64, 4), nn.ReLU(),
        )
        self.head = self.make_head(num_classes)


class NINCIFAR10(_ConvClassifier):
    """Network in Network for CIFAR-10 as listed in the Deep Defense code (models/cifar10.py).

    conv5x5x192-1x1x160-1x1x96 -> maxpool2 -> dropout -> conv5x5x192-1x1x192-1x1x192 -> avgpool2 -> dropout ->
    conv3x3x192-1x1x192 -> global avgpool -> ``head``. The original's last 1x1x10 convolution followed by global
    average pooling equals global pooling followed by a Linear(192, 10) (both are linear), which is timm's head.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 3, drop_rate: float = 0.5, **_: object) -> None:
        super().__init__()
        self.num_features = 192
        self.features = nn.Sequential(
            _conv(in_chans, 192, 5), nn.ReLU(), _conv(192, 160, 1), nn.ReLU(), _conv(160, 96, 1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(drop_rate),
            _conv(96, 192, 5), nn.ReLU(), _conv(192, 192, 1), nn.ReLU(), _conv(192, 192, 1), nn.ReLU(),
            nn.AvgPool2d(2), nn.Dropout(drop_rate),
            _conv(192, 192, 3), nn.ReLU(), _conv(192, 192, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = self.make_head(num_classes)


def _cifar_cfg() -> dict:
    return paper_cfg(input_size=(3, 32, 32), mean=CIFAR10_MEAN, std=CIFAR10_STD, first_conv="features.0")


default_cfgs = generate_default_cfgs({
    "dd_convnet_cifar10.untrained": _cifar_cfg(),
    "dd_nin_cifar10.untrained": _cifar_cfg(),
})


@register_model
def dd_convnet_cifar10(pretrained: bool = False, **kwargs) -> ConvNetCIFAR10:
    """The Deep Defense paper's CIFAR-10 ConvNet (32x32 RGB input)."""
    return build_model_with_cfg(ConvNetCIFAR10, "dd_convnet_cifar10", pretrained, **kwargs)


@register_model
def dd_nin_cifar10(pretrained: bool = False, **kwargs) -> NINCIFAR10:
    """The Deep Defense paper's CIFAR-10 Network in Network (32x32 RGB input)."""
    return build_model_with_cfg(NINCIFAR10, "dd_nin_cifar10", pretrained, **kwargs)
