"""AutoAttack as its authors wrote it: Croce & Hein's reference implementation, from the PyPI package
``pyautoattack`` (``from pyautoattack import AutoAttack``), behind one plain function.

The package's API differs from the GitHub ``autoattack`` package's: keyword-only constructor arguments
(``attacks=``, ``eps=``, ``norm='Linf'|'L2'|'L1'``, ``seed=``, ``version=``), ``run_standard_evaluation(x, y, /, *,
batch_size=...)`` returning ``(x_adv, y_adv)``, and its automatic checks (randomized defence, probabilities instead of
logits, dynamic defence, number of classes, zero gradients, Square more successful than the white-box attacks)
reported as warnings on the ``auto-attack`` logger. :func:`autoattack` collects those warnings as ``flags``.

Two side effects of the package are contained here: its dynamic-defence check calls ``sys.settrace(None)``, which
would switch off coverage tools and debuggers for the rest of the process (the previous trace function is put back),
and its attacks reseed torch's global random generator (the caller's generator state is forked and restored).
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from ..errors import DDHubError
from .result import AttackResult

NORMS = {"linf": "Linf", "l2": "L2"}
VERSIONS = ("custom", "standard", "plus", "rand")
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")
DEFAULT_CUSTOM_ATTACKS = ("apgd-ce", "apgd-t")
#: the checks the package runs; ``check_randomized`` is skipped by its ``rand`` version
CHECKS = ("check_randomized", "check_range_output", "check_dynamic", "check_n_classes", "check_zero_gradients",
          "check_square_sr")
LOGGER_NAME = "auto-attack"
#: the fewest classes each attack needs: DLR uses the third-largest logit, targeted DLR the fourth
MIN_CLASSES = {"apgd-ce": 2, "square": 2, "fab": 2, "fab-t": 2, "apgd-dlr": 3, "apgd-t": 4}
MAX_TARGET_CLASSES = 9
_SETTINGS_OF = {"apgd-ce": "apgd", "apgd-dlr": "apgd", "apgd-t": "apgd-t", "fab": "fab", "fab-t": "fab",
                "square": "square"}


@dataclass
class AutoAttackResult(AttackResult):
    """An :class:`~dd_hub.attacks.AttackResult` (``success``: the prediction on ``adversarial`` is not the label)
    plus what AutoAttack reports of its run: ``clean`` (bool per sample: classified correctly before the attack)
    and ``metadata`` (package, version, attacks, settings, checks, flags, skipped attacks)."""

    clean: torch.Tensor | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def robust(self) -> torch.Tensor:
        """bool per sample: still correctly classified on ``adversarial``."""
        return ~self.success

    @property
    def robust_accuracy(self) -> float:
        return self.robust.float().mean().item()

    @property
    def clean_accuracy(self) -> float:
        return self.clean.float().mean().item()

    @property
    def flags(self) -> list[str]:
        """AutoAttack's own warnings (its checks for randomness, gradient masking, ...); empty when none fired."""
        return self.metadata.get("flags", [])


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def autoattack(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor | None = None, *, eps: float,
               norm: str = "linf", version: str = "custom", attacks: Sequence[str] | None = None, seed: int = 0,
               batch_size: int = 250, bounds: tuple[float, float] | None = (0.0, 1.0)) -> AutoAttackResult:
    """Croce & Hein's AutoAttack (package ``pyautoattack``) on ``inputs`` (N images in [0, 1], the model
    normalizes inside) at ``labels`` (``None``: the predictions); ``norm`` 'linf' or 'l2', ``eps`` in [0, 1] pixel
    space. The convention's exception: ``bounds`` must be the [0, 1] box, the only one the package attacks in.

    ``version='custom'`` runs ``attacks`` (default APGD-CE then APGD-T, with the package's own settings for them);
    ``'standard'`` is the full AutoAttack of RobustBench (APGD-CE, APGD-T, FAB-T, Square; ``attacks`` must then be
    None), ``'plus'`` and ``'rand'`` the package's other presets. Targeted attacks aim at ``min(9, classes - 1)``
    classes; attacks that need more classes than the model has are skipped (``metadata['skipped']``). The model is
    evaluated in eval mode (its mode and its parameters' ``requires_grad`` are restored afterwards).
    """
    package = _package()
    attacks = _check_arguments(inputs, labels, eps=eps, norm=norm, version=version, attacks=attacks,
                               batch_size=batch_size, bounds=bounds)
    inputs = inputs.detach().float()
    with _contained(model, inputs.device) as records:
        if labels is None:
            labels = _predict(model, inputs, batch_size)
        labels = labels.detach().long().to(inputs.device)
        attack = package.AutoAttack(model, attacks=list(attacks) if version == "custom" else None,
                                    device=inputs.device, eps=float(eps), norm=NORMS[norm], seed=seed,
                                    version=version)
        skipped = _fit_to_classes(attack, _predict(model, inputs[:1], 1, logits=True).shape[1])
        adversarial = (attack.run_standard_evaluation(inputs, labels, batch_size=batch_size)[0]
                       if attack.attacks_to_run else inputs).detach()
        clean = _predict(model, inputs, batch_size) == labels
        success = _predict(model, adversarial, batch_size) != labels
    metadata = _metadata(package, attack, version, norm, eps, seed, len(inputs), records, skipped)
    return AutoAttackResult(inputs, adversarial, success, None, clean=clean, metadata=metadata)


def _package():
    try:
        import pyautoattack
        from pyautoattack import checks  # noqa: F401  (needed by _contained)
    except ImportError:
        raise DDHubError("AutoAttack needs the reference implementation: pip install pyautoattack") from None
    return pyautoattack


def _check_arguments(inputs, labels, *, eps, norm, version, attacks, batch_size, bounds) -> tuple | None:
    """One-line errors for arguments the package would misread or fail on deep inside; the attacks to run."""
    if norm not in NORMS:
        raise DDHubError(f"AutoAttack norm must be one of {', '.join(NORMS)}, not '{norm}'")
    if version not in VERSIONS:
        raise DDHubError(f"AutoAttack version must be one of {', '.join(VERSIONS)}, not '{version}'")
    if not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise DDHubError(f"AutoAttack eps must be a positive number, not {eps!r}")
    if bounds is None or tuple(bounds) != (0.0, 1.0):
        raise DDHubError("AutoAttack attacks in the [0, 1] box only: pass bounds=(0.0, 1.0)")
    if version == "custom":
        attacks = tuple(attacks) if attacks is not None else DEFAULT_CUSTOM_ATTACKS
        unknown = [a for a in attacks if a not in ATTACKS]
        if unknown or not attacks:
            raise DDHubError(f"unknown AutoAttack attack(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                             f"choose from {', '.join(ATTACKS)}")
    elif attacks is not None:
        raise DDHubError(f"version='{version}' fixes its own attacks; pass attacks only with version='custom'")
    if batch_size < 1:
        raise DDHubError(f"batch_size must be at least 1, not {batch_size}")
    if not torch.is_tensor(inputs) or inputs.ndim < 2 or len(inputs) == 0 or (labels is not None and (
            not torch.is_tensor(labels) or labels.ndim != 1 or len(labels) != len(inputs))):
        raise DDHubError("AutoAttack needs a non-empty batch of inputs (N, ...) and N integer labels")
    if inputs.min().item() < 0.0 or inputs.max().item() > 1.0:
        raise DDHubError("AutoAttack inputs must be images in [0, 1] (the model normalizes them itself)")
    return attacks


@contextlib.contextmanager
def _contained(model: nn.Module, device: torch.device):
    """The package's side effects contained (module docstring): trace function, global RNG, the dynamic-defence
    counters; the model in eval mode without parameter gradients; its log records collected."""
    from pyautoattack import checks

    logger = logging.getLogger(LOGGER_NAME)
    records = _Records()
    previous_level, previous_trace = logger.level, sys.gettrace()
    was_training = model.training
    grad_flags = [(p, p.requires_grad) for p in model.parameters()]
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        model.eval()
        for parameter, _ in grad_flags:
            parameter.requires_grad_(False)  # attacks need input gradients only
        # the dynamic-defence check counts calls of grad/backward during one forward pass in a module-global dict
        # it never resets: start from zero so another model's earlier run cannot flag this one
        for name in checks.funcs:
            checks.funcs[name] = 0
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            yield records
    finally:
        sys.settrace(previous_trace)  # checks.check_dynamic ends with sys.settrace(None)
        logger.removeHandler(records)
        logger.setLevel(previous_level)
        for parameter, flag in grad_flags:
            parameter.requires_grad_(flag)
        model.train(was_training)


@torch.no_grad()
def _predict(model: nn.Module, inputs: torch.Tensor, batch_size: int, logits: bool = False) -> torch.Tensor:
    outputs = torch.cat([model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])
    return outputs if logits else outputs.argmax(1)


def _fit_to_classes(attack, num_classes: int) -> dict[str, str]:
    """Targeted attacks aim at ``min(9, classes - 1)`` classes (the package's 9 assume at least ten); attacks
    that cannot run with this few classes are left out. Returns attack -> why it was skipped."""
    targets = min(MAX_TARGET_CLASSES, num_classes - 1)
    attack.apgd_targeted.n_target_classes = min(attack.apgd_targeted.n_target_classes, targets)
    attack.fab.n_target_classes = min(attack.fab.n_target_classes, targets)
    skipped = {name: f"needs at least {MIN_CLASSES[name]} classes, the model has {num_classes}"
               for name in attack.attacks_to_run if num_classes < MIN_CLASSES.get(name, 2)}
    attack.attacks_to_run = [name for name in attack.attacks_to_run if name not in skipped]
    return skipped


def _metadata(package, attack, version: str, norm: str, eps: float, seed: int, n: int, records: _Records,
              skipped: dict[str, str]) -> dict:
    """What was run, with which settings, and what the package's checks said."""
    settings = {
        "apgd": {"n_iter": attack.apgd.n_iter, "n_restarts": attack.apgd.n_restarts, "eot_iter": attack.apgd.eot_iter,
                 "rho": attack.apgd.thr_decr},
        "apgd-t": {"n_iter": attack.apgd_targeted.n_iter, "n_restarts": attack.apgd_targeted.n_restarts,
                   "n_target_classes": attack.apgd_targeted.n_target_classes},
        "fab": {"n_iter": attack.fab.n_iter, "n_restarts": attack.fab.n_restarts,
                "n_target_classes": attack.fab.n_target_classes},
        "square": {"n_queries": attack.square.n_queries, "p_init": attack.square.p_init},
    }
    used = list(attack.attacks_to_run)
    settings = {key: value for key, value in settings.items() if key in {_SETTINGS_OF[a] for a in used}}
    checks_run = [c for c in CHECKS if not (c == "check_randomized" and version == "rand")
                  and not (c == "check_zero_gradients" and not any(a.startswith("apgd") for a in used))]
    return {
        "skipped": skipped,
        "package": "pyautoattack",
        "package_version": getattr(package, "__version__", "unknown"),
        "version": version,
        "attacks": used,
        "norm": norm,
        "eps": float(eps),
        "seed": seed,
        "n_examples": n,
        "settings": settings,
        "checks": checks_run,
        "flags": [r.getMessage() for r in records.records if r.levelno >= logging.WARNING],
        "log": [r.getMessage() for r in records.records if r.levelno < logging.WARNING],
    }
