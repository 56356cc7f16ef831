"""The paper's MNIST networks, registered in timm's registry.

``timm.create_model('dd_lenet_mnist')`` and ``timm.create_model('dd_mlp_mnist')`` build them once ``dd_hub`` is
imported. They are plain ``nn.Module``s with timm's classifier interface, so timm's Hub format (``save_for_hf``,
``hf-hub:``, ``local-dir:``) works for them unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .classifier import Classifier, paper_cfg

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


class LeNetMNIST(Classifier):
    """LeNet as in the DeepFool/Deep Defense reference (MatConvNet ``net.mat``).

    conv5x5x20 -> maxpool2 -> conv5x5x50 -> maxpool2 -> fc 800->500 -> ReLU -> fc 500->10.
    There is deliberately no ReLU after the two convolutions: the reference network has none.
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1, **_: object) -> None:
        super().__init__()
        self.num_features = 500
        self.conv1 = nn.Conv2d(in_chans, 20, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(800, 500)
        self.act = nn.ReLU()
        self.head = self.make_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool2(self.conv2(self.pool1(self.conv1(x))))
        return self.act(self.fc1(x.flatten(1)))


class MLPMNIST(Classifier):
    """The paper's four-layer MLP: 784 -> 500 -> 150 -> 10 with ReLU."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, **_: object) -> None:
        super().__init__()
        self.num_features = 150
        self.fc1 = nn.Linear(in_chans * 28 * 28, 500)
        self.fc2 = nn.Linear(500, 150)
        self.act = nn.ReLU()
        self.head = self.make_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc2(self.act(self.fc1(x.flatten(1)))))


def _mnist_cfg(**kwargs) -> dict:
    return paper_cfg(input_size=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD, **kwargs)


default_cfgs = generate_default_cfgs({
    "dd_lenet_mnist.untrained": _mnist_cfg(first_conv="conv1"),
    "dd_mlp_mnist.untrained": _mnist_cfg(first_conv="fc1"),
})


@register_model
def dd_lenet_mnist(pretrained: bool = False, **kwargs) -> LeNetMNIST:
    """The Deep Defense paper's MNIST LeNet (28x28 grey input)."""
    return build_model_with_cfg(LeNetMNIST, "dd_lenet_mnist", pretrained, **kwargs)


@register_model
def dd_mlp_mnist(pretrained: bool = False, **kwargs) -> MLPMNIST:
    """The Deep Defense paper's MNIST MLP (784-500-150-10)."""
    return build_model_with_cfg(MLPMNIST, "dd_mlp_mnist", pretrained, **kwargs)
