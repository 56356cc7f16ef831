"""Small networks shared by the gradient tests."""
from __future__ import annotations

import torch
from torch import nn


def small_cnn(dtype: torch.dtype = torch.float64) -> nn.Module:
    """Conv + frozen BatchNorm + ReLU + max/avg pooling (the layer kinds of timm/torchvision CNNs), 12 classes (so
    10 candidates are a strict subset), in eval mode."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 12),
    )
    with torch.no_grad():  # non-trivial frozen statistics
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.to(dtype).eval()
