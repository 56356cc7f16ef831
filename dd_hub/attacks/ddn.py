"""Decoupled Direction and Norm attack (Rony, Hafemann, Oliveira, Ben Ayed, Sabourin, Granger, CVPR 2019): the
smallest L2 perturbation found that changes each prediction, by gradient steps on the cross-entropy whose length is
decoupled from the perturbation's norm.

Per sample and step k: ``delta <- delta + alpha_k g / ||g||`` (g the input gradient of the cross-entropy, alpha_k
decaying from ``step_size`` to ``final_step_size`` on a cosine schedule), then the norm eps shrinks by
``(1 - gamma)`` when the current point is adversarial and grows by ``(1 + gamma)`` when it is not, ``delta`` is
rescaled to norm eps and the point clipped to the box. The smallest adversarial point seen is returned: a valid
adversarial example (inside the box, misclassified), so its norm is an upper bound on the true minimal L2
distance, unlike DeepFool's linearised, unclipped estimate.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DDHubError
from .result import AttackResult, predictions


def ddn(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None = None,
    *,
    steps: int = 100,
    init_norm: float = 1.0,
    gamma: float = 0.05,
    step_size: float = 1.0,
    final_step_size: float = 0.01,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> AttackResult:
    """Minimal L2 adversarial perturbations of ``inputs`` (``labels=None``: the model's predictions).

    ``steps`` gradient steps of L2 length ``step_size`` decaying to ``final_step_size`` (cosine schedule), in
    input units; ``init_norm`` is the starting radius and ``gamma`` its relative change per step. ``bounds`` is the
    valid box (``None``: unconstrained). A zero gradient is replaced by a random direction (from ``generator``).
    Returns the smallest-norm misclassified point seen per sample (``success``); a sample never misclassified keeps
    ``inputs`` (perturbation 0, ``success`` False). ``iterations`` is the step at which the returned point was seen
    (``steps`` when none was).
    """
    if steps < 1 or init_norm <= 0 or not 0 < gamma < 1 or step_size <= 0 or final_step_size < 0:
        raise DDHubError("DDN needs steps >= 1, init_norm > 0, 0 < gamma < 1, step_size > 0, final_step_size >= 0")
    inputs = inputs.detach()
    if labels is None:
        labels = predictions(model, inputs)
    n = len(inputs)
    view = (n, *[1] * (inputs.dim() - 1))
    delta = torch.zeros_like(inputs)
    # no point of the box is farther than this: the radius never needs to exceed it
    farthest = (torch.maximum(inputs - bounds[0], bounds[1] - inputs).flatten(1).norm(dim=1) if bounds is not None
                else torch.full((n,), float("inf"), device=inputs.device, dtype=inputs.dtype))
    eps = torch.full_like(farthest, float(init_norm)).minimum(farthest)
    best = inputs.clone()
    best_norm = torch.full((n,), float("inf"), device=inputs.device, dtype=inputs.dtype)
    found_at = torch.full((n,), steps, dtype=torch.long, device=inputs.device)
    for step in range(steps + 1):
        delta.requires_grad_(True)
        with torch.enable_grad():
            logits = model(inputs + delta)
            loss = F.cross_entropy(logits, labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, delta) if step < steps else (None,)
        delta = delta.detach()
        norm = delta.flatten(1).norm(dim=1)
        adversarial = logits.detach().argmax(1) != labels
        better = adversarial & (norm < best_norm)
        best = torch.where(better.view(view), inputs + delta, best)
        best_norm = torch.where(better, norm, best_norm)
        found_at = torch.where(better, step, found_at)
        if step == steps:  # the last point is only checked
            break
        grad_norm = grad.flatten(1).norm(dim=1)
        if (grad_norm == 0).any():
            random = torch.randn(grad.shape, generator=generator, dtype=grad.dtype).to(grad.device)
            grad = torch.where((grad_norm == 0).view(view), random, grad)
            grad_norm = grad.flatten(1).norm(dim=1)
        alpha = final_step_size + (step_size - final_step_size) * (1 + math.cos(math.pi * step / steps)) / 2
        delta = delta + alpha * grad / grad_norm.view(view)
        eps = torch.minimum(torch.where(adversarial, (1 - gamma) * eps, (1 + gamma) * eps), farthest)
        delta = delta * (eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).view(view)
        if bounds is not None:
            delta = (inputs + delta).clamp(*bounds) - inputs
    return AttackResult(inputs, best, best_norm.isfinite(), found_at)
