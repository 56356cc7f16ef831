"""DeepFool (Moosavi-Dezfooli et al., CVPR 2016), batched, as an attack and unrolled for Deep Defense.

Both public functions run one loop, :func:`_deepfool_loop`. Candidate classes are the top-``candidates`` classes
of the clean logits (the source class excluded) and stay fixed for the run; each iteration linearises the
classifier, steps to the nearest linearised boundary among the candidates and adds the step to ``r_tot``; a sample
stops as soon as the classifier at ``x0 + (1 + overshoot) * r_tot`` satisfies its goal, and is then dropped from the
computed batch. The perturbation returned is ``(1 + overshoot) * r_tot`` (clipped to ``bounds`` when given). Units
are those of the inputs: [0, 1] pixels with a :class:`~dd_hub.NormalizedModel`.

Two iteration rules (``iterate``), which differ only in where they linearise and in their numerical guards:

- ``'reference'`` (LTS4/DeepFool, foolbox; the attack always uses it): linearise at ``x0 + (1 + overshoot) *
  r_tot``, the point of the stopping test; step ``(|f| / (||w|| + 1e-8) + 1e-4) * w / (||w|| + 1e-8)`` (the 1e-4
  minimum step crosses exact ties).
- ``'authors'`` (the Deep Defense authors' released code): linearise at ``x0 + r_tot`` (``x_{i+1} = x_i + r_i``, no
  overshoot inside the loop); step ``|f| / ||w + eps|| * w / ||w + eps||`` with ``eps`` added to every element of
  ``w`` (5e-6 for MNIST, 1e-5 otherwise in that code), no minimum step; for misclassified samples the numerator
  ``f`` is measured against the previous iteration's source class while ``w`` uses the current one (the code's
  one-iteration lag; they differ only when the prediction switches to a third class).

Every iteration needs the input gradient of each candidate's margin, all taken from one shared forward;
``candidate_gradients`` says how (both give the same values, see tests/test_candidate_gradients.py):

- ``'loop'``: one ``autograd.grad`` per candidate through the retained graph;
- ``'batched'``: one ``autograd.grad(..., is_grads_batched=True)`` (vmap over the backward) for all candidates. If
  the backward has an op without a batching rule (vmap raises), the call warns once
  (:class:`CandidateGradientsWarning`) and uses the loop for the rest of the run;
- ``'auto'`` (default): batched on CUDA, the loop elsewhere (the loop measured as fast or faster on CPU,
  docs/performance.md).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import first_line
from ..settings import value_of
from .result import AttackResult, Norm, check_norm, clip, forward_reusable, norms

Iterate = Literal["reference", "authors"]
CandidateGradients = Literal["auto", "batched", "loop"]
MIN_STEP = 1e-4  # added to every step's length by the reference rule, as LTS4/DeepFool and foolbox do
REFERENCE_EPS = 1e-8
AUTHORS_EPS = 1e-5


class CandidateGradientsWarning(UserWarning):
    """The batched candidate gradients failed (an op without a batching rule); the per-candidate loop is used."""


def check_candidate_gradients(value: str, where: str = "candidate_gradients") -> None:
    """A one-line error unless ``value`` is a :data:`CandidateGradients`."""
    value_of(CandidateGradients, value, where, noun="")


@dataclass
class UnrolledResult:
    """Per-sample outcome of :func:`deepfool_unrolled`.

    ``perturbation``: ``(1 + overshoot) * r_tot``, a differentiable function of the model's parameters, in input
    units. ``iterations`` (long): steps taken. ``success`` (bool): the goal was reached within ``steps`` (label
    left for ``correct`` samples, label reached for the others); samples that did not succeed keep their partial
    perturbation. ``correct`` (bool): the model classified the clean input correctly.
    """

    perturbation: Tensor
    iterations: Tensor
    success: Tensor
    correct: Tensor

    def norms(self, p: str | float = "l2") -> Tensor:
        """Per-sample norm of the perturbation: ``'l2'``, ``'linf'`` or a number."""
        return norms(self.perturbation, p)


def deepfool(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None = None,
    *,
    steps: int = 50,
    candidates: int = 10,
    overshoot: float = 0.02,
    norm: Norm = "l2",
    bounds: tuple[float, float] | None = (0.0, 1.0),
    candidate_gradients: CandidateGradients = "auto",
    logits: Tensor | None = None,
) -> AttackResult:
    """Minimal perturbation that moves each input out of class ``labels`` (untargeted DeepFool).

    ``labels=None``: the model's predictions (samples already misclassified w.r.t. given labels succeed at once,
    with no perturbation). ``norm``: ``'l2'`` or ``'linf'``. Up to ``steps`` iterations over the top
    ``candidates`` classes; the result includes the ``overshoot``. ``bounds`` clips every iterate to the box;
    ``None`` (the paper's and LTS4's semantics, used for rho_2) leaves it unconstrained.
    ``candidate_gradients``: ``'auto'``, ``'batched'`` or ``'loop'`` (module docstring). ``logits``: the model's
    output at ``inputs`` computed with ``inputs`` requiring grad (its graph kept), to serve as the first iteration's
    forward instead of a new one (an evaluation shares its clean pass so). ``iterations``: steps taken per sample.
    """
    check_norm(norm, "DeepFool")
    check_candidate_gradients(candidate_gradients)
    first = _first_forward(model, inputs, logits, bounds, graph=steps > 0)
    x0, clean = inputs.detach(), first[1].detach()
    if labels is None:
        labels = clean.argmax(1)
        targets = _candidate_classes(clean, candidates)
    else:
        targets = _candidate_classes(clean, candidates, exclude=labels)
    towards = torch.zeros_like(labels, dtype=torch.bool)
    adversarial, iterations, success = _deepfool_loop(
        model, x0, labels, targets, towards, steps=steps, overshoot=overshoot, rule=_Rule.reference(norm),
        bounds=bounds, differentiable=False, gradients=_CandidateGradients(candidate_gradients), first=first)
    return AttackResult(x0, adversarial.detach(), success, iterations)


def deepfool_unrolled(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor | None = None,
    *,
    steps: int = 5,
    candidates: int = 10,
    overshoot: float = 0.02,
    iterate: Iterate = "reference",
    eps: float | None = None,
    bounds: tuple[float, float] | None = None,
    candidate_gradients: CandidateGradients = "auto",
    logits: Tensor | None = None,
) -> UnrolledResult:
    """L2 DeepFool whose perturbation is a differentiable function of the model's parameters (double backprop).

    Correctly classified samples get untargeted DeepFool away from their label over the top-``candidates``
    classes; misclassified ones get two-class DeepFool towards their label (``labels=None``: the predictions, all
    correct). ``iterate``: ``'reference'`` or ``'authors'`` (module docstring); ``eps``: that rule's numerical
    guard (default 1e-8 for ``'reference'``, added to ``||w||``; 1e-5 for ``'authors'``, added to every element of
    ``w``). ``bounds=None`` (Deep Defense's setting) leaves the iterates unconstrained. ``candidate_gradients``:
    how the candidates' gradients (used only to pick the class) are computed, ``'auto'``, ``'batched'`` or
    ``'loop'`` (module docstring); it does not change the result. ``logits``: the model's output at ``inputs``
    computed with ``inputs`` requiring grad (the training step's clean forward), reused as the first iterate's
    forward; without it that forward is made here. Either way ``x0`` is forwarded once.

    Gradient flows through every iterate, logit difference and chosen direction; only the class choices and the
    stopping masks are constants. The target class is picked from gradients computed without a graph, then only
    the chosen direction is rebuilt with ``create_graph=True``: the parameter gradient is exactly that of an
    unrolling that keeps every candidate's gradient in the graph, at a fraction of the memory.
    """
    value_of(Iterate, iterate, "iterate", noun="")
    check_candidate_gradients(candidate_gradients)
    first = _first_forward(model, inputs, logits, bounds, graph=steps > 0)
    x0, clean = inputs.detach(), first[1].detach()
    if labels is None:
        labels = clean.argmax(1)
    correct = clean.argmax(1) == labels
    targets = torch.where(correct[:, None], _candidate_classes(clean, candidates, exclude=labels), labels[:, None])
    rule = _Rule.reference("l2", eps) if iterate == "reference" else _Rule.authors(eps)
    adversarial, iterations, success = _deepfool_loop(
        model, x0, labels, targets, ~correct, steps=steps, overshoot=overshoot, rule=rule, bounds=bounds,
        differentiable=True, gradients=_CandidateGradients(candidate_gradients), first=first)
    return UnrolledResult(adversarial - x0, iterations, success, correct)


def _first_forward(model: nn.Module, inputs: Tensor, logits: Tensor | None, bounds: tuple[float, float] | None, *,
                   graph: bool) -> tuple[Tensor, Tensor]:
    """``(x, logits)`` of the first iterate, ``x0`` (clipped to ``bounds``): the given ``logits`` when they were
    computed at that very point with a graph to it, else one forward here (with a graph when ``graph``)."""
    x = clip(inputs.detach(), bounds)
    if forward_reusable(inputs, logits) and (bounds is None or torch.equal(x, inputs.detach())):
        return inputs, logits
    if not graph:
        with torch.no_grad():
            return x, model(x)
    x = x.requires_grad_(True)
    with torch.enable_grad():
        return x, model(x)


@dataclass(frozen=True)
class _Rule:
    """How an iteration measures distances and steps, and where it linearises (module docstring)."""

    norm: str
    eps: float
    eps_inside: bool      # ||w + eps|| (authors) rather than ||w|| + eps (reference)
    min_step: float
    at_overshoot: bool    # linearise at x0 + (1 + overshoot) r_tot (reference) or at x0 + r_tot (authors)
    lagged: bool          # towards rows: numerator against the previous iteration's source class (authors)

    @classmethod
    def reference(cls, norm: str, eps: float | None = None) -> "_Rule":
        return cls(norm, REFERENCE_EPS if eps is None else eps, False, MIN_STEP, True, False)

    @classmethod
    def authors(cls, eps: float | None = None) -> "_Rule":
        return cls("l2", AUTHORS_EPS if eps is None else eps, True, 0.0, False, True)

    def dual(self, w: Tensor) -> Tensor:
        """The guarded dual norm of the gradients ``w`` (last dimension): the denominator of the distance."""
        if self.norm == "linf":
            return w.abs().sum(-1) + self.eps
        return (w + self.eps).norm(dim=-1) if self.eps_inside else w.norm(dim=-1) + self.eps

    def step(self, margin: Tensor, w: Tensor) -> Tensor:
        """Move ``|margin|`` along ``w`` (n, D) to the linearised boundary, plus ``min_step``.

        L2: ``(|f| / |w| + min_step) * w / |w|``; Linf: ``(|f| / |w|_1 + min_step) * sign(w)`` (guarded norms).
        """
        dual = self.dual(w)
        if self.norm == "linf":
            return (margin.abs() / dual + self.min_step)[:, None] * w.sign()
        return ((margin.abs() / dual + self.min_step) / dual)[:, None] * w


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
    rule: _Rule,
    bounds: tuple[float, float] | None,
    differentiable: bool,
    gradients: "_CandidateGradients",
    first: tuple[Tensor, Tensor],
) -> tuple[Tensor, Tensor, Tensor]:
    """The shared DeepFool iteration; returns the final point ``x0 + (1 + overshoot) * r_tot``, iterations, success.

    Row ``i`` is done when ``argmax == labels[i]`` if ``towards[i]`` else when ``argmax != labels[i]``, tested at
    ``x0 + (1 + overshoot) * r_tot``; until then its source class is ``labels[i]`` (away) or the argmax at the
    linearisation point (towards) and its candidate classes are ``targets[i]``. Cost per iteration: one forward of
    the unfinished rows (two for the authors' rule, whose test and linearisation points differ) and one backward
    per candidate column (``gradients``: a loop of them, or one batched call); rows that finish are dropped before
    any backward is spent on them (one host synchronisation per iteration, to size the shrunk batch).
    """
    batch = x0.shape[0]
    r_tot = torch.zeros_like(x0)
    iterations = torch.zeros(batch, dtype=torch.long, device=x0.device)
    success = torch.zeros(batch, dtype=torch.bool, device=x0.device)
    active = torch.arange(batch, device=x0.device)
    scale = 1.0 + overshoot
    linearise = scale if rule.at_overshoot else 1.0
    x, logits = first  # the forward at x0 (r_tot = 0), where the test and linearisation points coincide
    tested = logits
    previous = torch.where(towards, logits.argmax(1), labels) if rule.lagged else None
    for step in range(steps + 1):
        pred = tested.argmax(1)
        done = torch.where(towards[active], pred == labels[active], pred != labels[active])
        success[active[done]] = True
        keep = (~done).nonzero().squeeze(1)
        if step == steps or len(keep) == 0:
            break
        current = pred[keep]
        if step > 0 and not rule.at_overshoot:
            active = active[keep]
            x, logits = _forward(model, x0, r_tot, active, linearise, bounds, graph=True)
            keep, current = None, logits.argmax(1)
        elif len(keep) < len(active):
            active = active[keep]
            # A backward pass per candidate on a finished row costs more than a fresh forward of the others.
            if len(active) < targets.shape[1] * (len(done) - len(active)):
                x, logits = _forward(model, x0, r_tot, active, linearise, bounds, graph=True)
                keep = None
        source = torch.where(towards[active], current, labels[active])
        numerator_source = None
        if previous is not None:
            numerator_source = previous[active]
            previous[active] = source
        step_r = _boundary_step(logits, x, keep, source, targets[active], rule=rule, differentiable=differentiable,
                                gradients=gradients, numerator_source=numerator_source)
        if differentiable:
            r_tot = r_tot.index_add(0, active, step_r)
        else:
            r_tot.index_add_(0, active, step_r.detach())
        iterations[active] += 1
        if rule.at_overshoot:
            x, logits = _forward(model, x0, r_tot, active, scale, bounds, graph=step + 1 < steps)
            tested = logits
        else:
            _, tested = _forward(model, x0, r_tot, active, scale, bounds, graph=False)
    return _iterate(x0, r_tot, scale, bounds), iterations, success


def _forward(
    model: nn.Module, x0: Tensor, r_tot: Tensor, rows: Tensor, scale: float, bounds: tuple[float, float] | None,
    *, graph: bool,
) -> tuple[Tensor, Tensor]:
    """The iterate of ``rows`` and its logits; without ``graph`` only the logits (for the stopping test)."""
    x = _iterate(x0[rows], r_tot[rows], scale, bounds)
    if not graph:
        with torch.no_grad():
            return x, model(x)
    if not x.requires_grad:
        x.requires_grad_(True)
    with torch.enable_grad():
        return x, model(x)


def _iterate(x0: Tensor, r_tot: Tensor, scale: float, bounds: tuple[float, float] | None) -> Tensor:
    return clip(x0 + scale * r_tot, bounds)


def _boundary_step(
    logits: Tensor,
    x: Tensor,
    keep: Tensor | None,
    source: Tensor,
    targets: Tensor,
    *,
    rule: _Rule,
    differentiable: bool,
    gradients: "_CandidateGradients",
    numerator_source: Tensor | None = None,
) -> Tensor:
    """Step of the rows ``keep`` (``None``: all) to their nearest linearised boundary from ``source`` to a target.

    The directions are the gradients of ``f_target - f_source``; the distances' numerators use
    ``f_target - f_numerator_source`` (``None``: ``source``).
    """
    if keep is not None:
        logits = logits[keep]
    shape = (len(source), *x.shape[1:])
    target_logits = logits.gather(1, targets)
    margins = target_logits - logits.gather(1, source[:, None])  # (n, m), all <= 0 for the reference rule
    numerators = margins if numerator_source is None else target_logits - logits.gather(1, numerator_source[:, None])
    if targets.shape[1] > 1 or not differentiable:
        grads = gradients(margins, x, keep)  # (n, m, D)
        best = (numerators.detach().abs() / rule.dual(grads)).argmin(1, keepdim=True)
        if not differentiable:
            w = grads.gather(1, best[:, :, None].expand(-1, -1, grads.shape[2])).squeeze(1)
            return rule.step(numerators.detach().gather(1, best).squeeze(1), w).view(shape)
        margins = margins.gather(1, best)
        numerators = margins if numerator_source is None else numerators.gather(1, best)
    # Only the chosen direction is rebuilt with a graph: the class choice is a constant of the unrolling.
    (grad,) = torch.autograd.grad(margins[:, 0].sum(), x, create_graph=True)
    w = grad if keep is None else grad[keep]
    return rule.step(numerators[:, 0], w.flatten(1)).view(shape)


class _CandidateGradients:
    """Input gradients of each column of ``margins`` (rows ``keep`` of the batch ``x``): shape (n, m, D), no graph.

    All columns share the forward that produced ``margins``. Samples are independent (BatchNorm in eval mode), so
    the gradient of a column's batch sum gives each sample's own gradient. One instance serves one DeepFool run:
    once the batched call has failed it warns and the loop serves the rest of the run.
    """

    def __init__(self, strategy: str = "auto") -> None:
        check_candidate_gradients(strategy)
        self.strategy = strategy
        self.failed = False

    def batched(self, x: Tensor) -> bool:
        """Whether the next call is batched: 'batched', or 'auto' on CUDA, until a batched call has failed."""
        wanted = self.strategy == "batched" or (self.strategy == "auto" and x.is_cuda)
        return wanted and not self.failed

    def __call__(self, margins: Tensor, x: Tensor, keep: Tensor | None) -> Tensor:
        if self.batched(x):
            try:
                return _batched_margin_gradients(margins, x, keep)
            except RuntimeError as exc:  # an op without a batching rule (or out of memory: the loop needs less)
                self.failed = True
                warnings.warn(f"batched candidate gradients failed ({first_line(exc)}); using one backward pass per "
                              "candidate for the rest of this DeepFool run (candidate_gradients='loop' skips "
                              "the attempt)", CandidateGradientsWarning, stacklevel=2)
        return _looped_margin_gradients(margins, x, keep)


def _batched_margin_gradients(margins: Tensor, x: Tensor, keep: Tensor | None) -> Tensor:
    """One backward for all columns: ``is_grads_batched`` (vmap over the backward) with one-hot cotangents."""
    eye = torch.eye(margins.shape[1], device=margins.device, dtype=margins.dtype)
    cotangents = eye[:, None, :].expand(-1, margins.shape[0], -1)  # (m, n, m): column j's cotangent is e_j
    (grads,) = torch.autograd.grad(margins, x, cotangents, retain_graph=True, is_grads_batched=True)  # (m, B, ...)
    grads = grads if keep is None else grads[:, keep]
    return grads.flatten(2).transpose(0, 1)


def _looped_margin_gradients(margins: Tensor, x: Tensor, keep: Tensor | None) -> Tensor:
    """One backward per column through the retained graph."""
    columns = []
    for column in margins.unbind(1):
        (grad,) = torch.autograd.grad(column.sum(), x, retain_graph=True)
        columns.append((grad if keep is None else grad[keep]).flatten(1))
    return torch.stack(columns, 1)
