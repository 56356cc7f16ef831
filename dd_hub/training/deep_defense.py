"""The Deep Defense objective (Yan, Guo, Zhang, NeurIPS 2018, Eq. 6).

    loss = CE + lambda / N * ( sum_{correct} exp(-c * rho_k) + sum_{wrong} exp(d * rho_k) ),
    rho_k = ||r_k||_2 / ||x_k - center||_2,

with r_k the unrolled DeepFool perturbation of x_k (:func:`~dd_hub.attacks.deepfool_unrolled`), differentiable in
the weights. ``center`` is ``None`` for pixel space, or the training set's mean image to measure rho in the paper's
mean-subtracted space. ``iterate`` picks the unrolling's iteration rule: ``'reference'`` (LTS4's DeepFool) or
``'authors'`` (the paper's released code), see :mod:`dd_hub.attacks.deepfool`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import Annotated, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attacks.deepfool import CandidateGradients, Iterate, deepfool_unrolled
from ..attacks.result import ratio
from ..errors import DDHubError
from ..settings import AT_LEAST_ONE, AT_LEAST_TWO, NON_NEGATIVE, POSITIVE, Settings

_STOCHASTIC = ("Dropout", "DropPath", "DropBlock")


@dataclass
class DeepDefenseConfig(Settings):
    """Hyper-parameters of the regularizer; defaults are the paper's MNIST/CIFAR-10 values."""

    lam: Annotated[float, NON_NEGATIVE] = 15.0
    c: Annotated[float, POSITIVE] = 25.0
    d: Annotated[float, POSITIVE] = 5.0
    steps: Annotated[int, AT_LEAST_ONE] = 5
    candidates: Annotated[int, AT_LEAST_TWO] = 10
    overshoot: Annotated[float, NON_NEGATIVE] = 0.02
    regularize_layers: list[str] = field(default_factory=list)  # regularize only these layers (Fig. 4); [] = all
    iterate: Iterate = "reference"      # unrolled DeepFool: 'reference' (LTS4) or 'authors' (the paper's code)
    authors_eps: Annotated[float, POSITIVE] = 1e-5  # 'authors' only: added to every gradient element in the norms
    candidate_gradients: CandidateGradients = "auto"  # the candidates' input gradients: 'auto' (batched on CUDA)
    # exp(d * rho) of a misclassified image is unbounded in the paper: a weak network's rho of 20 gives exp(100),
    # past float32's range. The exponent is capped here (the term is constant, and the image left to the
    # cross-entropy, beyond it); 10 is never reached at the paper's settings (d = 5: rho > 2). None: unbounded.
    max_exponent: Annotated[float, POSITIVE] | None = 10.0


@dataclass
class LossOutput:
    """A training objective's scalar loss plus detached per-batch statistics for logging."""

    loss: Tensor
    stats: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def stochastic_layers_off(model: nn.Module) -> Iterator[None]:
    """Dropout/DropPath in eval mode for the perturbation passes, restored afterwards.

    The DeepFool iterations must see one deterministic function; a fresh dropout mask per pass would make each
    iterate attack a different network. BatchNorm is left as the caller set it (frozen during hardening).
    """
    switched = stochastic_layers(model)
    for module in switched:
        module.train(False)
    try:
        yield
    finally:
        for module in switched:
            module.train(True)


class ScaledLogits(nn.Module):
    """``scale * model(x)``: fp16 loss scaling for DeepFool's inner input-gradients.

    PyTorch's AMP recipe for gradient penalties scales the outputs given to ``autograd.grad`` so that fp16
    backward values do not underflow, then unscales the result. A DeepFool step ``|f| w / ||w||^2`` (and its choice
    of class, ``|f| / ||w||``) is invariant to scaling the logits, so running the unrolled DeepFool on scaled logits
    gives the same perturbation with the inner backward passes carried at ``scale``, and the unscaling is implicit.
    With ``scale = loss_scale / batch``, each sample's inner cotangent matches that of the scaled mean loss in the
    outer backward, a magnitude the GradScaler has already calibrated against overflow.
    """

    def __init__(self, model: nn.Module, scale: float) -> None:
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) * self.scale


@contextlib.contextmanager
def batchnorm_frozen(model: nn.Module) -> Iterator[list[nn.Module]]:
    """BatchNorm layers in training mode switched to eval mode (their running statistics) for the duration, restored
    afterwards; yields the layers switched."""
    switched = [m for m in model.modules() if m.training and isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for module in switched:
        module.train(False)
    try:
        yield switched
    finally:
        for module in switched:
            module.train(True)


def stochastic_layers(model: nn.Module) -> list[nn.Module]:
    """The model's Dropout/DropPath/DropBlock layers that are active (in training mode)."""
    return [m for m in model.modules() if m.training and any(s in type(m).__name__ for s in _STOCHASTIC)]


class DeepDefenseLoss(nn.Module):
    """Cross-entropy plus the Deep Defense regularizer, as a loss module.

    ``loss_fn(model, inputs, labels)`` returns the scalar loss tensor; the last call's detached statistics are in
    ``loss_fn.stats`` (``ce``, ``reg``, ``rho`` (mean), ``acc``, ``df_iters`` (mean unrolled iterations)).
    ``model`` is used for the perturbation passes; pass the unwrapped module (not a DDP wrapper) there and the
    wrapped model's clean ``logits`` for the cross-entropy, so that exactly one forward per step goes through the
    wrapper. The training loop's objectives return a :class:`LossOutput`; :mod:`dd_hub.training.objectives` adapts this module.

    BatchNorm is frozen by default, as the recipes harden: layers in training mode run on their running statistics
    during the call (any batch size, the statistics unchanged). ``freeze_batchnorm=False`` leaves them as set
    (the training loop, which freezes them itself per ``harden.freeze_bn``).
    """

    def __init__(self, config: DeepDefenseConfig | None = None, *, freeze_batchnorm: bool = True,
                 **overrides: object) -> None:
        super().__init__()
        self.config = DeepDefenseConfig(**{**asdict(config or DeepDefenseConfig()), **overrides})
        self.freeze_batchnorm = freeze_batchnorm
        self.stats: dict[str, float] = {}

    def shares_clean_forward(self, model: nn.Module) -> bool:
        """Whether the clean forward can be the first DeepFool iterate's: the same function (no active dropout)."""
        return not stochastic_layers(model)

    def forward(
        self,
        model: nn.Module,
        inputs: Tensor,
        labels: Tensor,
        logits: Tensor | None = None,
        center: Tensor | None = None,
        loss_scale: float | None = None,
    ) -> Tensor:
        """``loss_scale``: the fp16 GradScaler's current scale (the training loop passes it), see ScaledLogits.

        One forward at the clean inputs serves both the cross-entropy and the first unrolled DeepFool iterate when
        it can: when ``logits`` are given with ``inputs`` requiring grad (the training loop's step), or when they
        are computed here, and the model has no active dropout (whose masks would make the two passes differ).
        """
        with batchnorm_frozen(model) if self.freeze_batchnorm else contextlib.nullcontext([]) as switched:
            try:
                # logits given from BatchNorm's batch statistics are another function than the frozen passes'
                shared = self.shares_clean_forward(model) and not (switched and logits is not None)
                return self._loss(model, inputs, labels, logits, center, loss_scale, shared)
            except ValueError as exc:
                if "Expected more than 1 value per channel" not in str(exc):
                    raise
                raise DDHubError("BatchNorm in training mode cannot normalize a batch of one image; keep "
                                 "DeepDefenseLoss(freeze_batchnorm=True), the default, or pass larger batches") from None

    def _loss(self, model: nn.Module, inputs: Tensor, labels: Tensor, logits: Tensor | None, center: Tensor | None,
              loss_scale: float | None, shared: bool) -> Tensor:
        cfg = self.config
        if logits is None:
            if shared:
                inputs = inputs.detach().requires_grad_(True)
            logits = model(inputs)
        ce = F.cross_entropy(logits, labels)
        scale = None if loss_scale is None else loss_scale / len(inputs)
        attacked = model if scale is None else ScaledLogits(model, scale)
        first = None if not shared else logits if scale is None else logits * scale
        # The authors' guard is added to the gradients, which the logit scale multiplies: scale it alike.
        eps = None if cfg.iterate == "reference" else cfg.authors_eps * (scale or 1.0)
        with stochastic_layers_off(model):
            result = deepfool_unrolled(attacked, inputs, labels, steps=cfg.steps, candidates=cfg.candidates,
                                       overshoot=cfg.overshoot, iterate=cfg.iterate, eps=eps,
                                       candidate_gradients=cfg.candidate_gradients, logits=first)
        inputs = inputs.detach()
        rho = ratio(result.perturbation, inputs, center)
        exponent = torch.where(result.correct, -cfg.c * rho, cfg.d * rho)
        limit = math.inf if cfg.max_exponent is None else cfg.max_exponent
        capped = exponent > limit
        regularizer = cfg.lam * torch.exp(exponent.clamp(max=limit)).sum() / len(inputs)
        self.stats = {
            "ce": ce.item(),
            "reg": regularizer.item(),
            "rho": rho.mean().item(),
            "acc": result.correct.float().mean().item(),
            "df_iters": result.iterations.float().mean().item(),
            "capped": capped.float().mean().item(),
        }
        return ce + regularizer
