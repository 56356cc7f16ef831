"""Robustness metrics: clean accuracy, DeepFool rho_2, FGS accuracy and the paper's epsilon_ref protocol, PGD
robust accuracy and the gradient-masking sanity checks of :mod:`dd_hub.sanity`.

All perturbation sizes are in [0, 1] pixel space. rho_2 is ``mean ||r||_2 / ||x - center||_2`` over the whole
test set (misclassified and un-fooled samples included, as the paper's code does); ``rho_space='centered'``
measures it in the paper's mean-subtracted space (``center`` = mean training image), ``'pixel'`` in raw pixels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .attacks import budget, deepfool, fgs_direction, pgd
from .data import first_examples
from .defense import ratio
from .errors import DDHubError
from .sanity import SanityConfig, check_masking

REPORT_VERSION = 1


@dataclass
class EvalConfig:
    """Evaluation settings; the DeepFool defaults are the literature's (50 steps, 10 candidates, 0.02)."""

    deepfool_steps: int = 50
    candidates: int = 10
    overshoot: float = 0.02
    clip: bool = False                      # clip DeepFool iterates to [0, 1] (the paper does not)
    rho_space: str = "pixel"                # 'pixel' or 'centered' (the paper's mean-subtracted space)
    fgs_eps: list[float] = field(default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2, 0.3])
    fgs_fractions: list[float] = field(default_factory=lambda: [0.2, 0.5, 1.0])
    eps_ref_tolerance: float = 1e-4
    batch_size: int = 250
    max_examples: int | None = None
    pgd_norm: str = "linf"                  # PGD at fgs_fractions x eps_ref (Linf, like FGS) and at pgd_eps
    pgd_steps: int = 20                     # 0 turns PGD off; step size 2.5 * eps / steps
    pgd_restarts: int = 1
    pgd_eps: list[float] = field(default_factory=list)  # absolute budgets, e.g. 0.3 (attacks.BUDGETS)
    sanity: bool = True                     # gradient-masking checks at eps_ref (dd_hub.sanity)
    sanity_max_examples: int | None = 500
    autoattack: list[str] = field(default_factory=list)  # threat models of attacks.BUDGETS, e.g. ['mnist-linf']
    autoattack_max_examples: int | None = 1000          # AutoAttack is costly: Square alone is 5,000 queries

    def __post_init__(self) -> None:
        if self.rho_space not in ("pixel", "centered"):
            raise DDHubError(f"rho_space must be 'pixel' or 'centered', not '{self.rho_space}'")
        if self.pgd_norm not in ("linf", "l2"):
            raise DDHubError(f"pgd_norm must be 'linf' or 'l2', not '{self.pgd_norm}'")
        for name in self.autoattack:
            budget(name)  # a one-line error naming the valid threat models


@dataclass
class Report:
    """The figures of one evaluation, JSON-serialisable. Accuracies are fractions in [0, 1]."""

    n_examples: int
    clean_accuracy: float
    rho2: float
    rho_space: str
    deepfool: dict
    fgs: dict[str, float]                   # str(eps) -> accuracy
    eps_ref: float | None = None
    eps_ref_source: str | None = None       # 'self' (bisection on this model) or 'given'
    fgs_at_ref: dict[str, float] = field(default_factory=dict)  # str(fraction) -> accuracy at fraction * eps_ref
    version: int = REPORT_VERSION
    pgd: dict[str, float] = field(default_factory=dict)         # str(eps) -> PGD accuracy
    pgd_at_ref: dict[str, float] = field(default_factory=dict)  # str(fraction) -> PGD accuracy at fraction * eps_ref
    pgd_settings: dict = field(default_factory=dict)
    sanity: list[dict] = field(default_factory=list)            # SanityCheck dicts: name, passed, detail
    autoattack: dict[str, dict] = field(default_factory=dict)   # threat model -> norm, eps, accuracy, n_examples

    @property
    def sanity_passed(self) -> bool:
        return all(check["passed"] for check in self.sanity)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        return cls(**data)


class _Evaluation:
    """One pass over the data caches what every metric needs: labels, FGS directions, clean correctness."""

    def __init__(self, model: nn.Module, dataset: Dataset, config: EvalConfig, progress: bool) -> None:
        self.model, self.config, self.progress = model, config, progress
        dataset = first_examples(dataset, config.max_examples)
        if len(dataset) == 0:
            raise DDHubError("the evaluation set is empty")
        self.loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=False)
        self.device = next(model.parameters()).device
        self.directions: list[torch.Tensor] = []

    def batches(self, desc: str):
        return tqdm(self.loader, desc=desc, leave=False, disable=not self.progress, unit="batch")

    def deepfool_pass(self, center: torch.Tensor | None) -> dict:
        cfg = self.config
        correct, rhos, success, iterations = [], [], [], []
        for images, labels in self.batches("DeepFool"):
            images, labels = images.to(self.device), labels.to(self.device)
            with torch.no_grad():
                correct.append((self.model(images).argmax(1) == labels).cpu())
            result = deepfool(self.model, images, steps=cfg.deepfool_steps, candidates=cfg.candidates,
                              overshoot=cfg.overshoot, bounds=(0.0, 1.0) if cfg.clip else None)
            rhos.append(ratio(result.perturbation, images, center).cpu())
            success.append(result.success.cpu())
            iterations.append(result.iterations.cpu())
            self.directions.append(fgs_direction(self.model, images, labels).to(torch.int8).cpu())
        return {
            "correct": torch.cat(correct), "rho": torch.cat(rhos),
            "success": torch.cat(success), "iterations": torch.cat(iterations),
        }

    @torch.no_grad()
    def fgs_accuracy(self, eps: float) -> float:
        hits, total = 0, 0
        for (images, labels), direction in zip(self.loader, self.directions):
            images, labels = images.to(self.device), labels.to(self.device)
            adv = (images + eps * direction.to(self.device, images.dtype)).clamp(0.0, 1.0)
            hits += (self.model(adv).argmax(1) == labels).sum().item()
            total += len(labels)
        return hits / total

    def eps_ref(self, clean_accuracy: float, target: float = 0.5) -> float:
        """Smallest eps (to ``eps_ref_tolerance``) at which FGS accuracy is at most ``target``, by bisection."""
        if clean_accuracy <= target:
            return 0.0
        lo, hi = 0.0, 0.05
        while self.fgs_accuracy(hi) > target:
            lo, hi = hi, hi * 2
            if hi > 1.0:
                raise DDHubError("FGS accuracy stays above 50% up to eps=1; epsilon_ref does not exist for this model")
        while hi - lo > self.config.eps_ref_tolerance:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self.fgs_accuracy(mid) <= target else (mid, hi)
        return hi

    def pgd_accuracy(self, eps: float) -> float:
        cfg = self.config
        generator = torch.Generator().manual_seed(0)
        hits, total = 0, 0
        for images, labels in self.batches(f"PGD eps={eps:.4g}"):
            images, labels = images.to(self.device), labels.to(self.device)
            result = pgd(self.model, images, labels, eps=eps, norm=cfg.pgd_norm, steps=cfg.pgd_steps,
                         restarts=cfg.pgd_restarts, generator=generator)
            hits += (~result.success).sum().item()
            total += len(labels)
        return hits / total


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    config: EvalConfig | None = None,
    *,
    center: torch.Tensor | None = None,
    eps_ref: float | None = None,
    progress: bool = True,
) -> Report:
    """Evaluate ``model`` (taking [0, 1] images) on ``dataset``.

    ``eps_ref=None`` finds epsilon_ref on this model (the paper takes it from the Deep Defense model and applies
    it to every model); pass a value to reuse another model's. ``center`` is required for ``rho_space='centered'``.
    The model is evaluated in eval mode and its previous mode is restored.
    """
    config = config or EvalConfig()
    if config.rho_space == "centered" and center is None:
        raise DDHubError("rho_space='centered' needs the training set's mean image (center)")
    was_training = model.training
    model.eval()
    try:
        run = _Evaluation(model, dataset, config, progress)
        stats = run.deepfool_pass(center.to(run.device) if config.rho_space == "centered" else None)
        clean = stats["correct"].sum().item() / len(stats["correct"])
        fgs = {_key(eps): run.fgs_accuracy(eps) for eps in config.fgs_eps}
        source = "given" if eps_ref is not None else "self"
        if eps_ref is None:
            eps_ref = run.eps_ref(clean)
        at_ref = {_key(f): run.fgs_accuracy(f * eps_ref) for f in config.fgs_fractions}
        pgd_on = config.pgd_steps > 0
        pgd_at_ref = {_key(f): run.pgd_accuracy(f * eps_ref) for f in config.fgs_fractions} if pgd_on else {}
        pgd_fixed = {_key(eps): run.pgd_accuracy(eps) for eps in config.pgd_eps} if pgd_on else {}
        sanity = []
        if config.sanity:
            sanity_eps = eps_ref or max(config.fgs_eps, default=0.1)
            curves = {"FGS": {**{float(e): a for e, a in fgs.items()},
                              **{float(f) * eps_ref: a for f, a in at_ref.items()}}}
            if pgd_on and config.pgd_norm == "linf":
                curves["PGD"] = {**{float(e): a for e, a in pgd_fixed.items()},
                                 **{float(f) * eps_ref: a for f, a in pgd_at_ref.items()}}
            checks = check_masking(model, run.loader.dataset, SanityConfig(
                eps=sanity_eps, steps=max(config.pgd_steps, 1), max_examples=config.sanity_max_examples,
                batch_size=config.batch_size), curves=curves, clean_accuracy=clean)
            sanity = [check.to_dict() for check in checks]
        autoattack = {}
        for name in config.autoattack:
            norm, eps = budget(name)
            subset = first_examples(run.loader.dataset, config.autoattack_max_examples)
            accuracy = autoattack_accuracy(model, subset, norm=norm, eps=eps, batch_size=config.batch_size)
            autoattack[name] = {"norm": norm, "eps": eps, "accuracy": accuracy, "n_examples": len(subset),
                                "implementation": "torchattacks AutoAttack standard"}
    finally:
        model.train(was_training)
    return Report(
        n_examples=len(stats["rho"]),
        clean_accuracy=clean,
        rho2=stats["rho"].mean().item(),
        rho_space=config.rho_space,
        deepfool={
            "steps": config.deepfool_steps, "candidates": config.candidates, "overshoot": config.overshoot,
            "norm": "l2", "clip": config.clip, "source": "prediction",
            "success_rate": stats["success"].sum().item() / len(stats["success"]),
            "mean_iterations": stats["iterations"].float().mean().item(),
        },
        fgs=fgs,
        eps_ref=eps_ref,
        eps_ref_source=source,
        fgs_at_ref=at_ref,
        pgd=pgd_fixed,
        pgd_at_ref=pgd_at_ref,
        pgd_settings={"norm": config.pgd_norm, "steps": config.pgd_steps, "restarts": config.pgd_restarts,
                      "step_size": "2.5 * eps / steps", "random_start": True} if pgd_on else {},
        sanity=sanity,
        autoattack=autoattack,
    )


def autoattack_accuracy(model: nn.Module, dataset: Dataset, *, norm: str = "linf", eps: float,
                        n_classes: int | None = None, max_examples: int | None = None, batch_size: int = 250,
                        seed: int = 0) -> float:
    """Robust accuracy under torchattacks' AutoAttack ``standard`` (APGD-CE, APGD-T, FAB-T, Square), an optional
    extra (``pip install torchattacks``). Not the reference fra31/auto-attack: do not report it as RobustBench.
    ``n_classes`` defaults to the width of the model's logits."""
    try:
        import torchattacks
    except ImportError:
        raise DDHubError("AutoAttack needs torchattacks: pip install 'torchattacks>=3.5'") from None
    if norm not in ("linf", "l2"):
        raise DDHubError(f"AutoAttack norm must be 'linf' or 'l2', not '{norm}'")
    dataset = first_examples(dataset, max_examples)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if n_classes is None:
        with torch.no_grad():
            n_classes = model(dataset[0][0].unsqueeze(0).to(device)).shape[1]
    attack = torchattacks.AutoAttack(model, norm="Linf" if norm == "linf" else "L2", eps=eps, version="standard",
                                     n_classes=n_classes, seed=seed)
    hits = total = 0
    try:
        for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            images, labels = images.to(device), labels.to(device)
            with torch.no_grad():
                hits += (model(attack(images, labels)).argmax(1) == labels).sum().item()
            total += len(labels)
    finally:
        model.train(was_training)
    return hits / total


def _key(value: float) -> str:
    return f"{value:.6g}"


def format_comparison(reports: dict[str, Report]) -> str:
    """Side-by-side Markdown table of several reports (columns = report names)."""
    names = list(reports)
    first = reports[names[0]]
    rows = [("clean accuracy", [f"{r.clean_accuracy:.2%}" for r in reports.values()]),
            (f"rho_2 ({first.rho_space})", [f"{r.rho2:.4g}" for r in reports.values()]),
            ("DeepFool success", [f"{r.deepfool['success_rate']:.2%}" for r in reports.values()])]
    for fraction in first.fgs_at_ref:
        eps = float(fraction) * (first.eps_ref or 0.0)
        rows.append((f"FGS acc @ {fraction} eps_ref (eps={eps:.4g})",
                     [f"{r.fgs_at_ref.get(fraction, float('nan')):.2%}" for r in reports.values()]))
    for eps in first.fgs:
        rows.append((f"FGS acc @ eps={eps}", [f"{r.fgs.get(eps, float('nan')):.2%}" for r in reports.values()]))
    for fraction in first.pgd_at_ref:
        rows.append((f"PGD acc @ {fraction} eps_ref", [f"{r.pgd_at_ref.get(fraction, float('nan')):.2%}"
                                                       for r in reports.values()]))
    for eps in first.pgd:
        rows.append((f"PGD acc @ eps={eps}", [f"{r.pgd.get(eps, float('nan')):.2%}" for r in reports.values()]))
    for name, result in first.autoattack.items():
        rows.append((f"AutoAttack acc @ {name} ({result['norm']}, eps={result['eps']:.4g})",
                     [f"{r.autoattack[name]['accuracy']:.2%}" if name in r.autoattack else "–"
                      for r in reports.values()]))
    if first.sanity:
        rows.append(("gradient-masking checks", [_sanity_summary(r) for r in reports.values()]))
    header = "| metric | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    return header + "\n".join(f"| {label} | " + " | ".join(values) + " |" for label, values in rows) + "\n"


def _sanity_summary(report: Report) -> str:
    failed = [check["name"] for check in report.sanity if not check["passed"]]
    return "FAILED: " + ", ".join(failed) if failed else "passed"
