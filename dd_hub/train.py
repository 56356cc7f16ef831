"""The training loop, on Accelerate: one loop for reference training and every hardening method.

Per step: one forward of the clean batch through the (possibly DDP-wrapped) model, the objective's extra passes
through the unwrapped module, one backward on the total loss. That is the pattern under which DDP reduces the
double-backprop gradients exactly (see docs/architecture.md).
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .defense import LossOutput
from .errors import DDHubError
from .recipes import TrainConfig

Objective = Callable[..., LossOutput]
MAX_CONSECUTIVE_NONFINITE = 10


def cross_entropy(model: nn.Module, inputs: Tensor, labels: Tensor, logits: Tensor | None = None,
                  center: Tensor | None = None) -> LossOutput:
    """Plain cross-entropy: reference training and clean fine-tuning."""
    logits = model(inputs) if logits is None else logits
    loss = F.cross_entropy(logits, labels)
    return LossOutput(loss, {"ce": loss.item(), "acc": (logits.argmax(1) == labels).float().mean().item()})


def freeze_batchnorm(model: nn.Module) -> int:
    """BatchNorm layers to eval mode with their affine parameters frozen; returns how many were frozen."""
    frozen = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)
            frozen += 1
    return frozen


def _optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def train(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    objective: Objective = cross_entropy,
    *,
    accelerator: Accelerator | None = None,
    center: Tensor | None = None,
    desc: str = "train",
    progress: bool = True,
    log: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``model`` in place with ``objective``; returns one dict of mean statistics per epoch."""
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    model.train()
    if config.freeze_bn:
        freeze_batchnorm(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(params, config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.lr_milestones,
                                                     gamma=config.lr_decay)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=False)
    wrapped, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    inner = accelerator.unwrap_model(wrapped)
    if center is not None:
        center = center.to(accelerator.device)
    history, nonfinite = [], 0
    for epoch in range(config.epochs):
        wrapped.train()
        if config.freeze_bn:
            freeze_batchnorm(inner)
        sums: dict[str, float] = {}
        steps = 0
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{config.epochs}", leave=False, disable=not progress,
                   unit="batch")
        for inputs, labels in bar:
            with accelerator.accumulate(wrapped):
                out = objective(inner, inputs, labels, logits=wrapped(inputs), center=center)
                finite = accelerator.gather(torch.tensor([math.isfinite(out.loss.item())],
                                                         device=accelerator.device)).all().item()
                if not finite:
                    nonfinite += 1
                    warnings.warn(f"non-finite loss at epoch {epoch + 1}, step {steps + 1}: step skipped")
                    optimizer.zero_grad()
                    if nonfinite >= MAX_CONSECUTIVE_NONFINITE:
                        raise DDHubError(f"{nonfinite} consecutive non-finite losses; lower the learning rate "
                                         "or lambda/d, or use fp32")
                    continue
                nonfinite = 0
                accelerator.backward(out.loss)
                optimizer.step()
                optimizer.zero_grad()
            steps += 1
            for key, value in out.stats.items():
                sums[key] = sums.get(key, 0.0) + value
            bar.set_postfix({k: f"{v / steps:.4g}" for k, v in sums.items()}, refresh=False)
        record = {"phase": desc, "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                  **{k: v / max(steps, 1) for k, v in sums.items()}}
        scheduler.step()
        history.append(record)
        if log is not None and accelerator.is_main_process:
            log(record)
    accelerator.wait_for_everyone()
    return history
