"""Training methods: a registry of name -> objective, so that every baseline trains with the same loop.

Every objective has the signature ``objective(model, inputs, labels, logits=None, center=None) -> LossOutput``
that :func:`dd_hub.training.loop.train` calls with the unwrapped model and the clean logits of the (possibly
DDP-wrapped) model; an objective that also names ``loss_scale`` gets the fp16 scaler's scale (``deep_defense``,
which adapts the ``DeepDefenseLoss`` module with :class:`LossModuleObjective`). Methods, all fine-tuning with the
recipe's ``harden`` schedule and data:

- ``deep_defense``: the paper's objective (``defense`` section; ``regularize_layers`` for the Fig. 4 analysis;
  ``iterate`` for the unrolling's iteration rule).
- ``clean``: plain cross-entropy fine-tuning, the "Clean" curve of the paper's Fig. 2.
- ``deepfool_adv``: "Adv. Train I", fine-tuning on DeepFool-perturbed training images only, the perturbations
  computed once on the starting model (the DeepFool paper's fixed adversarial training set).
- ``fgs_adv``: "Adv. Train II", Goodfellow et al.'s ``w * CE(x) + (1 - w) * CE(x + eps * sign(grad))``.
- ``pgd_adv``: Madry et al., CE on PGD examples (beyond the paper).
- ``trades``: Zhang et al., ``CE(x) + beta * KL(p(x) || p(x_adv))`` with x_adv maximising the KL (beyond the paper).
- ``parseval``: "Par. Train", Cisse et al.'s Parseval networks: cross-entropy, and after every optimizer step a
  retraction of every weight matrix towards orthonormality.

An objective may define ``after_step(model)``; the training loop calls it after every optimizer step.
"""
from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Annotated, Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..attacks import deepfool, fgs, pgd
from ..attacks.result import Norm
from ..errors import DDHubError
from ..models import unwrap
from ..settings import FRACTION, NON_NEGATIVE, POSITIVE, STEPS, UNIT_INTERVAL, Settings
from .deep_defense import DeepDefenseConfig, DeepDefenseLoss, LossOutput, stochastic_layers_off

Objective = Callable[..., LossOutput]


class MethodSettings(Protocol):
    """What a method factory reads: the recipe's method name, seed and method sections (a ``Recipe`` has them)."""

    method: str
    seed: int
    defense: DeepDefenseConfig
    adversarial: "AdversarialConfig"
    parseval: "ParsevalConfig"


@dataclass
class AdversarialConfig(Settings):
    """Hyper-parameters of the adversarial-training baselines; sizes are in [0, 1] pixel units."""

    eps: Annotated[float, NON_NEGATIVE] = 0.1      # training budget of fgs_adv, pgd_adv and trades
    norm: Norm = "linf"                             # pgd_adv / trades threat model
    steps: Annotated[int, STEPS] = 7                # inner PGD steps of pgd_adv / trades
    step_size: Annotated[float, POSITIVE] | None = None  # None: 2.5 * eps / steps (Madry et al.'s rule)
    fgs_weight: Annotated[float, UNIT_INTERVAL] = 0.5    # Goodfellow et al.'s weight of the clean term
    trades_beta: Annotated[float, NON_NEGATIVE] = 6.0
    deepfool_steps: Annotated[int, STEPS] = 50      # Adv. Train I: DeepFool on the starting model
    deepfool_overshoot: Annotated[float, NON_NEGATIVE] = 0.02


@dataclass
class ParsevalConfig(Settings):
    """Parseval training (Cisse et al. 2017) as the Deep Defense paper ran it on MNIST/CIFAR-10.

    After each optimizer step, for each Linear/Conv weight reshaped to a matrix W (out x fan_in, transposed when
    out > fan_in so the target W W^T = I is reachable) and a uniformly sampled ``fraction`` of its rows S:
    ``W_S <- (1 + beta) W_S - beta W_S W_S^T W_S``. The paper: beta 1e-4 on MNIST, 3e-4 on CIFAR-10, 30% sampled.
    """

    beta: Annotated[float, NON_NEGATIVE] = 1e-4
    fraction: Annotated[float, FRACTION] = 0.3


_METHODS: dict[str, tuple[Callable[[MethodSettings], Objective], str]] = {}


def register_method(name: str, description: str) -> Callable:
    """Decorator: register ``factory(recipe) -> objective`` under ``name``."""
    def decorate(factory: Callable[[MethodSettings], Objective]) -> Callable[[MethodSettings], Objective]:
        _METHODS[name] = (factory, description)
        return factory
    return decorate


def list_methods() -> dict[str, str]:
    """Name -> one-line description of every training method."""
    return {name: description for name, (_, description) in _METHODS.items()}


def create_objective(recipe: MethodSettings) -> Objective:
    """The training objective named by ``recipe.method``, configured from the recipe (a fresh one per call)."""
    try:
        factory, _ = _METHODS[recipe.method]
    except KeyError:
        raise DDHubError(f"unknown method '{recipe.method}'; available: {', '.join(_METHODS)}") from None
    return factory(recipe)


def _accuracy(logits: Tensor, labels: Tensor) -> dict[str, float]:
    return {"acc": (logits.argmax(1) == labels).float().mean().item()}


def cross_entropy(model: nn.Module, inputs: Tensor, labels: Tensor, logits: Tensor | None = None,
                  center: Tensor | None = None) -> LossOutput:
    """Plain cross-entropy: reference training and clean fine-tuning."""
    logits = model(inputs) if logits is None else logits
    loss = F.cross_entropy(logits, labels)
    return LossOutput(loss, {"ce": loss.item(), **_accuracy(logits, labels)})


class OnlyLayers(nn.Module):
    """``model`` with every parameter outside ``layers`` detached: gradients reach only the chosen layers."""

    def __init__(self, model: nn.Module, layers: list[str]) -> None:
        super().__init__()
        self.model = model
        modules = dict(unwrap(model).named_modules())
        unknown = [name for name in layers if name not in modules or name == ""]
        if unknown:
            names = [n for n, m in modules.items() if n and any(True for _ in m.parameters(recurse=False))]
            raise DDHubError(f"unknown layer '{unknown[0]}' in regularize_layers; layers with weights: "
                             f"{', '.join(names)}")
        self.chosen = {id(p) for name in layers for p in modules[name].parameters()}

    def forward(self, x: Tensor) -> Tensor:
        params = {n: p if id(p) in self.chosen else p.detach() for n, p in self.model.named_parameters()}
        return functional_call(self.model, params, (x,))


class LayerwiseDeepDefenseLoss(DeepDefenseLoss):
    """Deep Defense whose regularizer only trains ``config.regularize_layers`` (the paper's Fig. 4); CE trains all."""

    def shares_clean_forward(self, model: nn.Module) -> bool:
        return False  # the clean forward trains every layer; the unrolled DeepFool's must train the chosen ones only

    def forward(self, model: nn.Module, inputs: Tensor, labels: Tensor, logits: Tensor | None = None,
                center: Tensor | None = None, loss_scale: float | None = None) -> Tensor:
        logits = model(inputs) if logits is None else logits
        return super().forward(OnlyLayers(model, self.config.regularize_layers), inputs, labels, logits=logits,
                               center=center, loss_scale=loss_scale)


class LossModuleObjective:
    """A loss module (``forward`` returns the scalar loss, ``.stats`` its statistics) as a training objective.

    The objective protocol returns a ``LossOutput``; ``loss_scale`` (the fp16 scaler's scale, which the training
    loop passes to objectives that name it) is handed on to the module.
    """

    def __init__(self, loss: nn.Module) -> None:
        self.loss = loss

    def wants_input_graph(self, model: nn.Module) -> bool:
        """Whether the training step should forward the clean inputs with a graph to them, for the loss to reuse."""
        shares = getattr(self.loss, "shares_clean_forward", None)
        return bool(shares and shares(model))

    def __call__(self, model: nn.Module, inputs: Tensor, labels: Tensor, logits: Tensor | None = None,
                 center: Tensor | None = None, loss_scale: float | None = None) -> LossOutput:
        value = self.loss(model, inputs, labels, logits=logits, center=center, loss_scale=loss_scale)
        return LossOutput(value, dict(self.loss.stats))


class AdversarialExampleLoss:
    """``w * CE(x) + (1 - w) * CE(x_adv)``, the shared form of Adv. Train I/II and PGD adversarial training.

    Subclasses say how ``x_adv`` is made (:meth:`adversarial`) and set ``clean_weight`` (``w``). At ``w = 0`` the
    clean term still keeps the wrapped forward in the graph, at zero weight, for DDP.
    """

    clean_weight: float = 0.0

    def adversarial(self, model: nn.Module, inputs: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, inputs: Tensor, labels: Tensor, logits: Tensor | None = None,
                 center: Tensor | None = None) -> LossOutput:
        logits = model(inputs) if logits is None else logits
        with stochastic_layers_off(model):
            adv = self.adversarial(model, inputs, labels)
        adv_logits = model(adv)
        clean_ce, adv_ce = F.cross_entropy(logits, labels), F.cross_entropy(adv_logits, labels)
        loss = self.clean_weight * clean_ce + (1 - self.clean_weight) * adv_ce
        return LossOutput(loss, {"ce": clean_ce.item(), "adv_ce": adv_ce.item(), **_accuracy(logits, labels),
                                 "adv_acc": (adv_logits.argmax(1) == labels).float().mean().item()})


class FGSAdversarialLoss(AdversarialExampleLoss):
    """Goodfellow et al.'s objective ``w * CE(x) + (1 - w) * CE(x + eps * sign(grad_x CE))``."""

    def __init__(self, config: AdversarialConfig) -> None:
        self.config = config
        self.clean_weight = config.fgs_weight

    def adversarial(self, model: nn.Module, inputs: Tensor, labels: Tensor) -> Tensor:
        return fgs(model, inputs, labels, eps=self.config.eps).adversarial


class PGDAdversarialLoss(AdversarialExampleLoss):
    """Madry et al.'s objective: cross-entropy on PGD examples (random start, ``steps`` steps)."""

    def __init__(self, config: AdversarialConfig) -> None:
        self.config = config

    def adversarial(self, model: nn.Module, inputs: Tensor, labels: Tensor) -> Tensor:
        cfg = self.config
        return pgd(model, inputs, labels, eps=cfg.eps, norm=cfg.norm, steps=cfg.steps,
                   step_size=cfg.step_size).adversarial


def _kl(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Per-sample ``KL(target || softmax(logits))``."""
    return F.kl_div(F.log_softmax(logits, dim=1), target_probs, reduction="none").sum(1)


class TradesLoss:
    """TRADES (Zhang et al., 2019): ``CE(x) + beta * KL(p(x) || p(x_adv))``, x_adv maximising the KL by PGD."""

    def __init__(self, config: AdversarialConfig) -> None:
        self.config = config

    def __call__(self, model: nn.Module, inputs: Tensor, labels: Tensor, logits: Tensor | None = None,
                 center: Tensor | None = None) -> LossOutput:
        cfg = self.config
        logits = model(inputs) if logits is None else logits
        with stochastic_layers_off(model):
            adv = pgd(model, inputs, F.softmax(logits.detach(), dim=1), eps=cfg.eps, norm=cfg.norm,
                      steps=cfg.steps, step_size=cfg.step_size, loss=_kl).adversarial
        ce = F.cross_entropy(logits, labels)
        kl = _kl(model(adv), F.softmax(logits, dim=1)).mean()
        return LossOutput(ce + cfg.trades_beta * kl, {"ce": ce.item(), "kl": kl.item(), **_accuracy(logits, labels)})


class DeepFoolAdversarialLoss(AdversarialExampleLoss):
    """"Adv. Train I": cross-entropy on DeepFool-perturbed training images only.

    The perturbations come from a frozen copy of the model taken at the first call (before the first optimizer
    step, i.e. the starting model), so the adversarial training set is fixed, as in the DeepFool paper; each
    image's perturbed version is computed once and cached by content. Use a fresh instance per training run.
    """

    def __init__(self, config: AdversarialConfig) -> None:
        self.config = config
        self.source: nn.Module | None = None
        self.cache: dict[bytes, Tensor] = {}

    def _perturbed(self, inputs: Tensor) -> Tensor:
        keys = [hashlib.sha1(x.detach().cpu().numpy().tobytes()).digest() for x in inputs]
        missing = [i for i, key in enumerate(keys) if key not in self.cache]
        if missing:
            batch = inputs[missing].detach()
            result = deepfool(self.source, batch, steps=self.config.deepfool_steps,
                              overshoot=self.config.deepfool_overshoot, bounds=(0.0, 1.0))
            for i, adv in zip(missing, result.adversarial.cpu()):
                self.cache[keys[i]] = adv
        return torch.stack([self.cache[key] for key in keys]).to(inputs.device)

    def adversarial(self, model: nn.Module, inputs: Tensor, labels: Tensor) -> Tensor:
        if self.source is None:
            self.source = copy.deepcopy(model).eval().requires_grad_(False)
        return self._perturbed(inputs)


class ParsevalLoss:
    """Cross-entropy, plus the Parseval retraction of every weight matrix after each optimizer step.

    Rows are sampled from a generator seeded by ``seed``, so every process of a distributed run retracts the same
    rows and the replicas stay identical.
    """

    def __init__(self, config: ParsevalConfig, seed: int = 0) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, model: nn.Module, inputs: Tensor, labels: Tensor, logits: Tensor | None = None,
                 center: Tensor | None = None) -> LossOutput:
        return cross_entropy(model, inputs, labels, logits=logits, center=center)

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        beta = self.config.beta
        for module in model.modules():
            if not isinstance(module, (nn.Linear, nn.Conv2d)) or not module.weight.requires_grad:
                continue
            matrix = module.weight.view(module.weight.shape[0], -1)
            if matrix.shape[0] > matrix.shape[1]:
                matrix = matrix.t()
            count = max(1, round(self.config.fraction * matrix.shape[0]))
            rows = torch.randperm(matrix.shape[0], generator=self.generator)[:count].to(matrix.device)
            sub = matrix[rows]
            matrix[rows] = (1 + beta) * sub - beta * (sub @ sub.t()) @ sub


def _deep_defense(recipe: MethodSettings) -> Objective:
    loss = LayerwiseDeepDefenseLoss if recipe.defense.regularize_layers else DeepDefenseLoss
    return LossModuleObjective(loss(recipe.defense, freeze_batchnorm=False))  # the loop freezes per harden.freeze_bn


for _name, _description, _factory in (
    ("deep_defense", "Deep Defense (the paper): CE + exp regularizer on the unrolled DeepFool distance", _deep_defense),
    ("clean", "clean fine-tuning: cross-entropy only, same schedule", lambda recipe: cross_entropy),
    ("deepfool_adv", "Adv. Train I: fine-tuning on DeepFool examples of the starting model",
     lambda recipe: DeepFoolAdversarialLoss(recipe.adversarial)),
    ("fgs_adv", "Adv. Train II: Goodfellow et al.'s FGS adversarial objective",
     lambda recipe: FGSAdversarialLoss(recipe.adversarial)),
    ("pgd_adv", "PGD adversarial training (Madry et al.)", lambda recipe: PGDAdversarialLoss(recipe.adversarial)),
    ("trades", "TRADES (Zhang et al.)", lambda recipe: TradesLoss(recipe.adversarial)),
    ("parseval", "Par. Train: Parseval networks (Cisse et al.), orthonormality retraction after each step",
     lambda recipe: ParsevalLoss(recipe.parseval, seed=recipe.seed)),
):
    register_method(_name, _description)(_factory)
