"""DeepFool (Moosavi-Dezfooli et al., CVPR 2016), batched, as an attack and unrolled for Deep Defense.

Both public functions run one loop, :func:`_deepfool_loop`. Semantics follow the reference implementation
(LTS4/DeepFool): candidate classes are the top-``candidates`` classes of the clean logits (the source class first)
and stay fixed for the run; each iteration linearises the classifier at ``x0 + (1 + overshoot) * r_tot``, steps to
the nearest linearised boundary among the candidates, and adds the step to ``r_tot``; a sample stops as soon as
the classifier at that point satisfies its goal, and is then dropped from the computed batch. The perturbation
returned is ``(1 + overshoot) * r_tot`` (clipped to ``bounds`` when given). Units are those of the inputs: with a
:class:`~dd_hub.models.NormalizedModel` that is [0, 1] pixel space.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class DeepFoolResult:
    """Per-sample outcome of DeepFool.

    ``perturbation`` has the inputs' shape and includes the overshoot; ``iterations`` counts the steps taken;
    ``success`` says whether the goal was reached (for the attack: the prediction changed) within the budget.
    Samples that did not succeed keep their partial perturbation, as in the paper's evaluation.
    """

    perturbation: Tensor
    iterations: Tensor
    success: Tensor
    correct: Tensor | None = None  # unrolled only: which samples were classified correctly at the clean input

    def norms(self, p: float = 2) -> Tensor:
        return self.perturbation.flatten(1).norm(p=p, dim=1)


def deepfool(
    model: nn.Module,
    inputs: Tensor,
    *,
    steps: int = 50,
    candidates: int = 10,
    overshoot: float = 0.02,
    norm: float = 2,
    bounds: tuple[float, float] | None = None,
) -> DeepFoolResult:
    """Minimal perturbation that changes ``model``'s prediction on each input (untargeted DeepFool).

    The source class of each sample is the model's own prediction. ``norm`` is 2 (L2) or ``float('inf')``
    (Linf). ``bounds=(0, 1)`` clips every iterate to the valid pixel box; ``None`` (the paper's and reference
    semantics) leaves it unconstrained. Does not change the model's mode: call ``model.eval()`` first for models
    with BatchNorm or dropout. Returns a :class:`DeepFoolResult`.
    """
    inputs = inputs.detach()
    with torch.no_grad():
        logits = model(inputs)
    labels = logits.argmax(1)
    targets = _candidate_classes(logits, candidates)
    towards = torch.zeros_like(labels, dtype=torch.bool)
    return _deepfool_loop(model, inputs, labels, targets, towards, steps=steps, overshoot=overshoot,
                          norm=norm, bounds=bounds, differentiable=False)


def deepfool_unrolled(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    steps: int = 5,
    candidates: int = 10,
    overshoot: float = 0.02,
    bounds: tuple[float, float] | None = None,
) -> DeepFoolResult:
    """DeepFool whose L2 perturbation is a differentiable function of the model's parameters (double backprop).

    Correctly classified samples get untargeted DeepFool away from their label over the top-``candidates``
    classes; misclassified ones get two-class DeepFool towards their label (``result.correct`` says which).
    Gradient flows through every iterate, logit difference and chosen direction; only the class choices and the
    stopping masks are constants. The target class is picked from gradients computed without a graph, then only
    the chosen direction is rebuilt with ``create_graph=True``: the parameter gradient is exactly that of an
    unrolling that keeps every candidate's gradient in the graph, at a fraction of the memory.
    """
    with torch.no_grad():
        logits = model(inputs)
    correct = logits.argmax(1) == labels
    targets = torch.where(correct[:, None], _candidate_classes(logits, candidates, exclude=labels), labels[:, None])
    result = _deepfool_loop(model, inputs.detach(), labels, targets, ~correct, steps=steps, overshoot=overshoot,
                            norm=2, bounds=bounds, differentiable=True)
    result.correct = correct
    return result


def _candidate_classes(logits: Tensor, candidates: int, exclude: Tensor | None = None) -> Tensor:
    """Top-``candidates`` classes of ``logits`` minus the source class: shape (B, candidates - 1)."""
    k = max(2, min(candidates, logits.shape[1]))
    top = logits.topk(k, dim=1).indices
    if exclude is None:
        return top[:, 1:]
    # Drop the label from the top-k (it is there for correctly classified samples), keep k - 1 others.
    keep = top != exclude[:, None]
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    return top.gather(1, order)[:, : k - 1]


def _deepfool_loop(
    model: nn.Module,
    x0: Tensor,
    labels: Tensor,
    targets: Tensor,
    towards: Tensor,
    *,
    steps: int,
    overshoot: float,
    norm: float,
    bounds: tuple[float, float] | None,
    differentiable: bool,
    eps: float = 1e-8,
) -> DeepFoolResult:
    """The shared DeepFool iteration.

    Row ``i`` is done when ``argmax == labels[i]`` if ``towards[i]`` else when ``argmax != labels[i]``; until then
    its source class is the current argmax and its candidate classes are ``targets[i]``. Cost per iteration: one
    forward of the unfinished rows and one backward per candidate column; rows that finish are dropped before any
    backward is spent on them (one host synchronisation per iteration, to size the shrunk batch).
    """
    batch = x0.shape[0]
    r_tot = torch.zeros_like(x0)
    iterations = torch.zeros(batch, dtype=torch.long, device=x0.device)
    success = torch.zeros(batch, dtype=torch.bool, device=x0.device)
    active = torch.arange(batch, device=x0.device)
    scale = 1.0 + overshoot
    x, logits = _forward(model, x0, r_tot, active, scale, bounds, graph=steps > 0)
    for step in range(steps + 1):
        pred = logits.argmax(1)
        done = torch.where(towards[active], pred == labels[active], pred != labels[active])
        success[active[done]] = True
        keep = (~done).nonzero().squeeze(1)
        if step == steps or len(keep) == 0:
            break
        if len(keep) < len(active):
            active, pred = active[keep], pred[keep]
            # A backward pass per candidate on a finished row costs more than a fresh forward of the others.
            if len(active) < targets.shape[1] * (len(done) - len(active)):
                x, logits = _forward(model, x0, r_tot, active, scale, bounds, graph=True)
                keep = None
        step_r = _boundary_step(logits, x, keep, pred, targets[active], norm=norm, eps=eps,
                                differentiable=differentiable)
        if differentiable:
            r_tot = r_tot.index_add(0, active, step_r)
        else:
            r_tot.index_add_(0, active, step_r.detach())
        iterations[active] += 1
        x, logits = _forward(model, x0, r_tot, active, scale, bounds, graph=step + 1 < steps)
    perturbation = _iterate(x0, r_tot, scale, bounds) - x0
    if not differentiable:
        perturbation = perturbation.detach()
    return DeepFoolResult(perturbation, iterations, success)


def _forward(
    model: nn.Module, x0: Tensor, r_tot: Tensor, rows: Tensor, scale: float, bounds: tuple[float, float] | None,
    *, graph: bool,
) -> tuple[Tensor, Tensor]:
    """The iterate of ``rows`` and its logits; without ``graph`` only the logits (for the final stopping test)."""
    x = _iterate(x0[rows], r_tot[rows], scale, bounds)
    if not graph:
        with torch.no_grad():
            return x, model(x)
    if not x.requires_grad:
        x.requires_grad_(True)
    with torch.enable_grad():
        return x, model(x)


def _iterate(x0: Tensor, r_tot: Tensor, scale: float, bounds: tuple[float, float] | None) -> Tensor:
    x = x0 + scale * r_tot
    return x if bounds is None else x.clamp(*bounds)


def _boundary_step(
    logits: Tensor,
    x: Tensor,
    keep: Tensor | None,
    source: Tensor,
    targets: Tensor,
    *,
    norm: float,
    eps: float,
    differentiable: bool,
) -> Tensor:
    """Step of the rows ``keep`` (``None``: all) to their nearest linearised boundary from ``source`` to a target."""
    if keep is not None:
        logits = logits[keep]
    shape = (len(source), *x.shape[1:])
    margins = logits.gather(1, targets) - logits.gather(1, source[:, None])  # (n, m), all <= 0
    if targets.shape[1] > 1 or not differentiable:
        grads = _margin_gradients(margins, x, keep)  # (n, m, D)
        dual = grads.abs().sum(-1) if norm == float("inf") else grads.norm(dim=-1)
        best = (margins.detach().abs() / (dual + eps)).argmin(1, keepdim=True)
        if not differentiable:
            w = grads.gather(1, best[:, :, None].expand(-1, -1, grads.shape[2])).squeeze(1)
            return _step(margins.detach().gather(1, best).squeeze(1), w, norm, eps).view(shape)
        margins = margins.gather(1, best)
    # Only the chosen direction is rebuilt with a graph: the class choice is a constant of the unrolling.
    margin = margins[:, 0]
    (grad,) = torch.autograd.grad(margin.sum(), x, create_graph=True)
    w = grad if keep is None else grad[keep]
    return _step(margin, w.flatten(1), norm, eps).view(shape)


MIN_STEP = 1e-4  # added to every step's length, as LTS4/DeepFool and foolbox do: it crosses exact ties


def _step(margin: Tensor, w: Tensor, norm: float, eps: float) -> Tensor:
    """Move ``|margin|`` along ``w`` to the linearised boundary, plus ``MIN_STEP``.

    L2: ``(|f| / |w|_2 + MIN_STEP) * w / |w|_2``; Linf: ``(|f| / |w|_1 + MIN_STEP) * sign(w)``.
    """
    if norm == float("inf"):
        return (margin.abs() / (w.abs().sum(1) + eps) + MIN_STEP)[:, None] * w.sign()
    w_norm = w.norm(dim=1) + eps
    return ((margin.abs() / w_norm + MIN_STEP) / w_norm)[:, None] * w


def _margin_gradients(margins: Tensor, x: Tensor, keep: Tensor | None) -> Tensor:
    """Input gradients of each column of ``margins`` (rows ``keep`` of the batch ``x``): shape (n, m, D), no graph.

    All columns share the forward that produced ``margins``; their backward passes run one after another through the
    retained graph, which measures faster on CPU than batching them with ``is_grads_batched`` (vmap over
    ``convolution_backward``) or than an expanded batch (one forward per candidate). Samples are independent
    (BatchNorm in eval mode), so the gradient of a column's batch sum gives each sample's own gradient.
    """
    if x.is_cuda:  # one batched backward: fewer, larger kernels (not measured in this repository: no GPU here)
        eye = torch.eye(margins.shape[1], device=x.device, dtype=margins.dtype)
        cotangents = eye[:, None, :].expand(-1, margins.shape[0], -1)
        try:
            (grads,) = torch.autograd.grad(margins, x, cotangents, retain_graph=True, is_grads_batched=True)
            grads = grads if keep is None else grads[:, keep]
            return grads.flatten(2).transpose(0, 1)
        except RuntimeError:  # an op without a batching rule: one backward per candidate below
            pass
    columns = []
    for column in margins.unbind(1):
        (grad,) = torch.autograd.grad(column.sum(), x, retain_graph=True)
        columns.append((grad if keep is None else grad[keep]).flatten(1))
    return torch.stack(columns, 1)
