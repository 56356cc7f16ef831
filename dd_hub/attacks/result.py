"""What every attack returns, and the conventions they share.

Convention (adv-lib style): ``attack(model, inputs, labels=None, *, ..., norm=..., bounds=(0.0, 1.0)) ->
AttackResult``, fully batched. ``inputs`` are in the model's input units: [0, 1] pixels for every dd-hub model,
whose normalization lives inside it (:class:`~dd_hub.NormalizedModel`). ``labels=None`` means the model's own
predictions on ``inputs``. ``norm`` is ``'l2'`` or ``'linf'``. ``bounds`` clips the adversarial inputs to the valid
box; ``None`` leaves them unconstrained. Attacks never change the model's mode: call ``model.eval()`` first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import DDHubError
from ..settings import value_of

Norm = Literal["l2", "linf"]


@dataclass
class AttackResult:
    """Per-sample outcome of an attack; every tensor has the batch as its first dimension.

    ``inputs``: the clean inputs. ``adversarial``: the adversarial inputs, same shape and units, inside ``bounds``
    when the attack clipped. ``success`` (bool): the model's prediction on ``adversarial`` differs from ``labels``.
    ``iterations`` (long): the steps (DeepFool) or queries (random search) each sample used; ``None`` for attacks
    with a fixed budget (FGS, PGD). Samples that did not succeed keep the attack's last (partial) point.
    """

    inputs: Tensor
    adversarial: Tensor
    success: Tensor
    iterations: Tensor | None = None

    @property
    def perturbation(self) -> Tensor:
        """``adversarial - inputs``, in input units."""
        return self.adversarial - self.inputs

    def norms(self, p: str | float = "l2") -> Tensor:
        """Per-sample norm of the perturbation: ``p`` is ``'l2'``, ``'linf'`` or a number (``torch.norm``'s p)."""
        return norms(self.perturbation, p)


def norms(perturbation: Tensor, p: str | float = "l2") -> Tensor:
    """Per-sample ``p``-norm of a batch (``'l2'``, ``'linf'`` or a number)."""
    order = {"l2": 2, "linf": float("inf")}.get(p, p) if isinstance(p, str) else p
    if isinstance(order, str):
        raise DDHubError(f"norm must be 'l2', 'linf' or a number, not '{p}'")
    return perturbation.flatten(1).norm(p=order, dim=1)


def check_norm(norm: str, attack: str) -> None:
    """A one-line error unless ``norm`` is a :data:`Norm`."""
    value_of(Norm, norm, f"{attack} norm", noun="")


def ratio(perturbation: Tensor, inputs: Tensor, center: Tensor | None = None) -> Tensor:
    """Per-sample ``||r||_2 / ||x - center||_2`` (``center=None``: pixel space): DeepFool's rho, the paper's
    measure of robustness."""
    reference = inputs if center is None else inputs - center
    return perturbation.flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1).clamp_min(1e-12)


def predictions(model: nn.Module, inputs: Tensor) -> Tensor:
    """The model's predicted classes (no graph)."""
    with torch.no_grad():
        return model(inputs).argmax(1)


def forward_reusable(inputs: Tensor, logits: Tensor | None) -> bool:
    """Whether ``logits`` can stand for a new forward at ``inputs``: given, and computed from ``inputs`` with a graph
    to them (the caller vouches that they were computed at ``inputs``)."""
    return logits is not None and inputs.requires_grad and logits.requires_grad


def clip(x: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    return x if bounds is None else x.clamp(*bounds)
