"""What the paper's networks share: timm's classifier interface and the pretrained_cfg fields of the paper."""
from __future__ import annotations

import torch
from torch import nn

PAPER_CFG = {
    "license": "apache-2.0",
    "paper_ids": "arXiv:1803.00404",
    "paper_name": "Deep Defense: Training DNNs with Improved Adversarial Robustness",
}


def paper_cfg(*, input_size: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...],
              **kwargs) -> dict:
    """A timm ``pretrained_cfg`` for one of the paper's fixed-size, 10-class networks."""
    return {"num_classes": 10, "input_size": input_size, "fixed_input_size": True, "mean": mean, "std": std,
            "interpolation": "bilinear", "crop_pct": 1.0, "classifier": "head", **PAPER_CFG, **kwargs}


class Classifier(nn.Module):
    """A feature trunk (``forward_features``) and a linear ``head``, with timm's classifier interface
    (``get_classifier``/``reset_classifier``/``forward_head``), so timm's Hub format works unchanged."""

    num_classes: int
    num_features: int
    head: nn.Module

    def make_head(self, num_classes: int) -> nn.Module:
        self.num_classes = num_classes
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.head = self.make_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.flatten(1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
