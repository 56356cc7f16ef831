"""A gradient-free attack: random corners of the L-infinity ball (the black-box check of :mod:`dd_hub.evaluation.sanity`)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .result import AttackResult, clip


@torch.no_grad()
def random_search(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None = None,
    *,
    eps: float,
    queries: int = 100,
    bounds: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> AttackResult:
    """Per sample, the first of ``queries`` random corners ``x + eps * s`` (``s`` uniform in {-1, 1}^d, clipped to
    ``bounds``) that changes the prediction from ``labels`` (``None``: the predictions), else the clean input.

    ``eps`` is an L-infinity budget in input units. Needs no gradient. ``iterations``: the queries each sample
    used (0 for samples misclassified to begin with). Stops early once every sample is fooled.
    """
    inputs = inputs.detach()
    prediction = model(inputs).argmax(1)
    labels = prediction if labels is None else labels
    best = inputs.clone()
    fooled = prediction != labels
    iterations = torch.zeros(len(inputs), dtype=torch.long, device=inputs.device)
    for _ in range(queries):
        signs = torch.randint(0, 2, inputs.shape, generator=generator).to(inputs) * 2 - 1
        candidate = clip(inputs + eps * signs, bounds)
        iterations += (~fooled).long()
        new = (model(candidate).argmax(1) != labels) & ~fooled
        best[new], fooled = candidate[new], fooled | new
        if fooled.all():
            break
    return AttackResult(inputs, best, fooled, iterations)
