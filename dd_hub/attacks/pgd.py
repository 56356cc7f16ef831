"""Projected gradient descent (Madry et al., ICLR 2018), L-infinity and L2, batched, with random restarts.

Step-size rule (Madry et al.'s, also MadryLab/robustness'): ``step_size = 2.5 * eps / steps`` unless given, so
that the iterates can cross the whole ball and back within the step budget, whatever ``steps`` is.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DDHubError
from .result import AttackResult, check_norm, predictions

Loss = Callable[[Tensor, Tensor], Tensor]  # (logits, targets) -> per-sample loss

def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


def _project(delta: Tensor, eps: float, norm: str) -> Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (delta.dim() - 1))
    return delta * (eps / norms).clamp(max=1.0)


def _ascent_direction(grad: Tensor, norm: str) -> Tensor:
    if norm == "linf":
        return grad.sign()
    norms = grad.flatten(1).norm(dim=1).view(-1, *[1] * (grad.dim() - 1))
    return grad / (norms + 1e-10)


def _random_start(inputs: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """Linf: uniform in the cube; L2: a uniformly random direction at a uniform random radius in [0, eps]."""
    shape = (len(inputs), *[1] * (inputs.dim() - 1))
    if norm == "linf":
        noise = torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype).to(inputs.device)
        return (2 * noise - 1) * eps
    direction = torch.randn(inputs.shape, generator=generator, dtype=inputs.dtype).to(inputs.device)
    radius = torch.rand(shape, generator=generator, dtype=inputs.dtype).to(inputs.device) * eps
    return direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(shape) * radius


def pgd(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None = None,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 40,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    loss: Loss | None = None,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """Adversarial inputs within ``||x_adv - x|| <= eps`` that maximise ``loss`` (default: cross-entropy).

    ``norm`` is ``'linf'`` (signed-gradient steps) or ``'l2'`` (normalised-gradient steps); ``eps`` and
    ``step_size`` are in input units; ``step_size=None`` means ``2.5 * eps / steps``. ``labels=None``: the
    predictions. Each restart starts from a uniform random point of the ball (``random_start``; the first restart
    starts at ``inputs`` when ``random_start=False``). Per sample the result is the final iterate of the restart
    with the highest loss among those that misclassify it, or among all restarts when none does.
    ``loss(logits, labels)`` must return per-sample values; ``labels`` are passed to it unchanged (e.g. soft
    targets for TRADES, whose ``success`` is then measured against their argmax). ``iterations`` is ``None``.
    """
    check_norm(norm, "PGD")
    if eps < 0 or steps < 0 or restarts < 1:
        raise DDHubError("PGD needs eps >= 0, steps >= 0 and restarts >= 1")
    loss = loss or _cross_entropy
    alpha = 2.5 * eps / max(steps, 1) if step_size is None else step_size
    inputs = inputs.detach()
    if labels is None:
        labels = predictions(model, inputs)
    best = inputs.clone()
    best_loss = torch.full((len(inputs),), -float("inf"), device=inputs.device)
    best_fooled = torch.zeros(len(inputs), dtype=torch.bool, device=inputs.device)
    best_pred = torch.zeros(len(inputs), dtype=torch.long, device=inputs.device)
    for restart in range(restarts):
        delta = (_random_start(inputs, eps, norm, generator) if random_start or restart > 0
                 else torch.zeros_like(inputs))
        adv = _clip(inputs + delta, bounds)
        for _ in range(steps):
            adv.requires_grad_(True)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(loss(model(adv), labels).sum(), adv)
            adv = adv.detach() + alpha * _ascent_direction(grad, norm)
            adv = _clip(inputs + _project(adv - inputs, eps, norm), bounds)
        with torch.no_grad():
            logits = model(adv)
            values = loss(logits, labels)
        pred = logits.argmax(1)
        fooled = (pred != labels) if labels.dim() == 1 else torch.zeros_like(best_fooled)
        better = (fooled & ~best_fooled) | ((fooled == best_fooled) & (values > best_loss))
        best[better], best_loss[better], best_pred[better] = adv[better], values[better], pred[better]
        best_fooled |= fooled
    return AttackResult(inputs, best, best_pred != (labels if labels.dim() == 1 else labels.argmax(1)))


def _clip(x: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    return x.detach() if bounds is None else x.detach().clamp(*bounds)
