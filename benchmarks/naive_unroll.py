"""The naive unrolled DeepFool: the reference that :func:`dd_hub.deepfool_unrolled` must match exactly.

Written for clarity, not speed: the whole batch is computed at every iteration (finished rows are masked, not
dropped), and every candidate's input gradient is built with ``create_graph=True``, so the graph holds all of them,
as a direct reading of the paper's unrolling would. Same semantics as ``deepfool_unrolled`` (see the module
docstring of :mod:`dd_hub.attacks.deepfool`): the parameter gradient of anything computed from its perturbation
equals the fast one's. Imported by ``tests/test_unrolled_gradient.py`` and ``benchmarks/bench.py``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dd_hub.attacks import UnrolledResult
from dd_hub.attacks.deepfool import MIN_STEP


def naive_deepfool_unrolled(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    steps: int = 5,
    candidates: int = 10,
    overshoot: float = 0.02,
    iterate: str = "reference",
    eps: float | None = None,
    bounds: tuple[float, float] | None = None,
    candidate_gradients: str = "auto",
    logits: Tensor | None = None,
) -> UnrolledResult:
    """Unrolled L2 DeepFool, every candidate gradient in the graph; drop-in for ``deepfool_unrolled``.

    ``candidate_gradients`` and ``logits`` are accepted for the drop-in and ignored: every candidate gets its own
    create-graph backward here, and every iterate its own forward."""
    if bounds is not None or iterate != "reference":
        raise NotImplementedError("the naive reference covers the Deep Defense setting (bounds=None) with the "
                                  "reference iteration only (tests/test_authors_unroll.py has the authors' rule)")
    eps = 1e-8 if eps is None else eps
    x0 = inputs.detach()
    with torch.no_grad():
        clean = model(x0)
    correct = clean.argmax(1) == labels
    top = clean.topk(max(2, min(candidates, clean.shape[1])), dim=1).indices
    # Correct rows: the top classes other than the label, in logit order. Wrong rows: the label in every column.
    others = torch.stack([row[row != label][: top.shape[1] - 1] for row, label in zip(top, labels)])
    targets = torch.where(correct[:, None], others, labels[:, None])
    batch = len(x0)
    rows = torch.arange(batch)
    active = torch.ones(batch, dtype=torch.bool)
    success = torch.zeros(batch, dtype=torch.bool)
    iterations = torch.zeros(batch, dtype=torch.long)
    r_tot = torch.zeros_like(x0)
    scale = 1.0 + overshoot
    for step in range(steps + 1):
        x = x0 + scale * r_tot
        if not x.requires_grad:
            x.requires_grad_(True)
        logits = model(x)
        pred = logits.argmax(1)
        done = torch.where(correct, pred != labels, pred == labels) & active
        success |= done
        active &= ~done
        if step == steps or not active.any():
            break
        margins, directions = [], []
        for column in targets.T:
            margin = logits[rows, column] - logits[rows, pred]
            (grad,) = torch.autograd.grad(margin.sum(), x, create_graph=True)
            margins.append(margin)
            directions.append(grad.flatten(1))
        margins, directions = torch.stack(margins, 1), torch.stack(directions, 1)  # (B, m), (B, m, D)
        best = (margins.abs() / (directions.norm(dim=2) + eps)).argmin(1).detach()
        margin, w = margins[rows, best], directions[rows, best]
        w_norm = w.norm(dim=1) + eps
        step_r = ((margin.abs() / w_norm + MIN_STEP) / w_norm)[:, None] * w
        r_tot = r_tot + active[:, None, None, None].to(x0.dtype) * step_r.view_as(x0)
        iterations += active.long()
    return UnrolledResult(x0 + scale * r_tot - x0, iterations, success, correct)
