"""Sanity checks that flag gradient masking (Athalye et al. 2018; Carlini et al. 2019, "On evaluating adversarial
robustness", section 5), run with every evaluation.

A model whose gradients are useless (rounded inputs, saturated softmax, shattered gradients) looks robust to
gradient attacks without being robust. Five checks, each a :class:`SanityCheck` that says what was measured:

1. ``robust_le_clean``: no robust accuracy above clean accuracy.
2. ``monotone_in_eps``: accuracy does not increase with epsilon (per attack curve).
3. ``more_iterations``: PGD with 5x the steps and extra restarts is not weaker than PGD.
4. ``unbounded``: PGD with the whole [0, 1] box as budget, started at the clean input, reaches (near) 0%.
5. ``black_box``: a gradient-free random search (:func:`dd_hub.attacks.random_search`) is not much stronger than
   PGD at the same budget.

Accuracies are fractions; ``tolerance`` absorbs the sampling noise of finite test sets.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

from ..attacks import pgd, random_search
from ..data.datasets import DataConfig
from ..data.loaders import EvalBatches, balanced_subset


@dataclass
class SanityCheck:
    """One check: its name, whether it passed and the figures behind the verdict."""

    name: str
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SanityConfig:
    """Attack budgets of the checks. ``eps`` is an L-infinity budget in [0, 1] pixel units."""

    eps: float
    steps: int = 10
    more_steps_factor: int = 5
    more_restarts: int = 2
    unbounded_steps: int = 100
    unbounded_max_accuracy: float = 0.05
    black_box_queries: int = 100
    tolerance: float = 0.02
    max_examples: int | None = 500
    batch_size: int = 250
    seed: int = 0


def _accuracy(model: nn.Module, batches: EvalBatches, attack=None, seed: int = 0) -> float:
    """Accuracy over every process's batches; ``attack(x, y, generator)`` gets a generator seeded per batch."""
    device = next(model.parameters()).device
    hits = total = 0
    for index, (images, labels) in batches:
        images, labels = images.to(device), labels.to(device)
        adv = images if attack is None else attack(images, labels, torch.Generator().manual_seed(seed + index))
        with torch.no_grad():
            hits += (model(adv).argmax(1) == labels).sum().item()
        total += len(labels)
    return batches.total(hits) / batches.total(total)


def check_masking(
    model: nn.Module,
    dataset: Dataset,
    config: SanityConfig,
    *,
    curves: dict[str, dict[float, float]] | None = None,
    clean_accuracy: float | None = None,
    data: DataConfig | None = None,
) -> list[SanityCheck]:
    """Run the five checks on ``model`` (call ``model.eval()`` first).

    ``curves`` are accuracy-vs-epsilon curves already measured on ``dataset`` (e.g. ``{'fgs': {0.1: 0.8}}``) and
    ``clean_accuracy`` the clean accuracy they go with; both are checked too. The attacks of the checks run on a
    class-balanced subset of ``config.max_examples`` examples, sharded across processes like the evaluation.
    """
    batches = EvalBatches(balanced_subset(dataset, config.max_examples, config.seed), config.batch_size, data)
    eps, tol = config.eps, config.tolerance

    def run_pgd(budget: float, steps: int, restarts: int = 1, random_start: bool = True):
        return lambda x, y, generator: pgd(model, x, y, eps=budget, steps=steps, restarts=restarts,
                                           random_start=random_start, generator=generator).adversarial

    clean = _accuracy(model, batches)
    base = _accuracy(model, batches, run_pgd(eps, config.steps), config.seed)
    more_steps = config.steps * config.more_steps_factor
    stronger = _accuracy(model, batches, run_pgd(eps, more_steps, config.more_restarts), config.seed)
    unbounded = _accuracy(model, batches, run_pgd(1.0, config.unbounded_steps, random_start=False), config.seed)
    black_box = _accuracy(model, batches, lambda x, y, generator: random_search(
        model, x, y, eps=eps, queries=config.black_box_queries, generator=generator).adversarial, config.seed)

    measured = {f"PGD-{config.steps} @ {eps:.4g}": base, f"PGD-{more_steps}x{config.more_restarts} @ {eps:.4g}":
                stronger, "PGD unbounded": unbounded, f"random search @ {eps:.4g}": black_box}
    above = [f"{name} {acc:.2%} > clean {clean:.2%}" for name, acc in measured.items() if acc > clean]
    for name, curve in (curves or {}).items():
        if clean_accuracy is not None:
            above += [f"{name} @ {e:.4g}: {acc:.2%} > clean {clean_accuracy:.2%}"
                      for e, acc in curve.items() if acc > clean_accuracy]
    rises = []
    for name, curve in (curves or {}).items():
        points = sorted(curve.items())
        rises += [f"{name}: {a:.2%} @ {e0:.4g} -> {b:.2%} @ {e1:.4g}"
                  for (e0, a), (e1, b) in zip(points, points[1:]) if b > a + tol]
    return [
        SanityCheck("robust_le_clean", not above, "; ".join(above) or f"all robust accuracies <= clean ({clean:.2%})"),
        SanityCheck("monotone_in_eps", not rises,
                    "; ".join(rises) or f"accuracy non-increasing in eps for {', '.join(curves or {}) or 'no curve'}"),
        SanityCheck("more_iterations", stronger <= base + tol,
                    f"PGD-{config.steps} {base:.2%}, PGD-{more_steps} x {config.more_restarts} restarts {stronger:.2%}"),
        SanityCheck("unbounded", unbounded <= config.unbounded_max_accuracy,
                    f"PGD-{config.unbounded_steps} with eps=1 (whole box): {unbounded:.2%} "
                    f"(must be <= {config.unbounded_max_accuracy:.0%})"),
        SanityCheck("black_box", black_box >= min(base, stronger) - tol,
                    f"random search ({config.black_box_queries} queries) {black_box:.2%} vs PGD "
                    f"{min(base, stronger):.2%} @ eps={eps:.4g}"),
    ]
