"""Robustness metrics: clean accuracy, DeepFool rho_2, FGS accuracy and the paper's epsilon_ref protocol, PGD
robust accuracy, the gradient-masking sanity checks of :mod:`dd_hub.evaluation.sanity`, and the minimal L2
perturbation of every test image (DDN's, or DeepFool's point clipped to the box where that is closer): its rho_2
and the robust accuracy it implies at every L2 epsilon.

All perturbation sizes are in [0, 1] pixel space. rho_2 is ``mean ||r||_2 / ||x - center||_2`` over the whole
test set (misclassified and un-fooled samples included, as the paper's code does); ``rho_space='centered'``
measures it in the paper's mean-subtracted space (``center`` = mean training image), ``'pixel'`` in raw pixels.

DeepFool's rho_2 is the paper's metric, kept as the paper defines it: a linearised, unclipped estimate that can
overstate the true minimal distance. The minimal-norm figures count only valid adversarial examples (inside the box,
misclassified), so each norm is an upper bound on the true minimal distance of its image: they never overstate
robustness for the attack's lack of precision the way an unclipped estimate can.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Annotated, Iterator, Literal

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..attacks import THREAT_MODELS, ddn, deepfool, fgs_direction, pgd, threat_model
from ..attacks.autoattack import ATTACKS as AUTOATTACK_ATTACKS
from ..attacks.autoattack import autoattack
from ..attacks.deepfool import CandidateGradients
from ..attacks.result import Norm, ratio
from ..data.datasets import DataConfig
from ..data.loaders import EvalBatches, balanced_subset
from ..errors import DDHubError
from ..text import markdown_cell, markdown_table
from ..settings import (AT_LEAST_ONE, AT_LEAST_TWO, MAX_RESTARTS, MAX_STEPS, NON_NEGATIVE, POSITIVE, SEED, STEPS,
                        UNIT_INTERVAL, OneOf, Range, Settings)
from .sanity import SanityConfig, check_masking

REPORT_VERSION = 1


@dataclass
class EvalConfig(Settings):
    """Evaluation settings; the DeepFool defaults are the literature's (50 steps, 10 candidates, 0.02). Budgets have
    ceilings (:data:`MAX_STEPS`) so that no recorded setting can make an evaluation run for ever."""

    deepfool_steps: Annotated[int, STEPS] = 50
    candidates: Annotated[int, AT_LEAST_TWO] = 10
    overshoot: Annotated[float, NON_NEGATIVE] = 0.02
    clip: bool = False                      # clip DeepFool iterates to [0, 1] (the paper does not)
    fgs_eps: Annotated[list[float], UNIT_INTERVAL] = field(default_factory=lambda: [0.01, 0.02, 0.05, 0.1, 0.2, 0.3])
    fgs_fractions: Annotated[list[float], POSITIVE] = field(default_factory=lambda: [0.2, 0.5, 1.0])
    eps_ref_tolerance: Annotated[float, POSITIVE] = 1e-4
    batch_size: Annotated[int, AT_LEAST_ONE] = 250
    max_examples: Annotated[int, AT_LEAST_ONE] | None = None  # a class-balanced subset (None: the whole test split)
    subset_seed: Annotated[int, SEED] = 0  # seed of that subset, PGD's random starts and the sanity checks
    pgd_norm: Norm = "linf"                 # PGD at fgs_fractions x eps_ref (Linf, like FGS) and at pgd_eps
    pgd_steps: Annotated[int, Range(0, MAX_STEPS)] = 20  # 0 turns PGD off; step size 2.5 * eps / steps
    pgd_restarts: Annotated[int, Range(1, MAX_RESTARTS)] = 1
    pgd_eps: Annotated[list[float], NON_NEGATIVE] = field(default_factory=list)  # absolute budgets, e.g. 0.3
    sanity: bool = True                     # gradient-masking checks at eps_ref (dd_hub.evaluation.sanity)
    sanity_max_examples: Annotated[int, AT_LEAST_ONE] | None = 500
    autoattack: Annotated[list[str], OneOf(tuple(THREAT_MODELS))] | None = None  # None: the dataset's standard ones
    autoattack_version: Literal["auto", "custom", "standard"] = "auto"  # 'auto': standard on a GPU, else custom
    autoattack_attacks: Annotated[list[str], OneOf(AUTOATTACK_ATTACKS)] = field(
        default_factory=lambda: ["apgd-ce", "apgd-t"])  # the 'custom' set
    autoattack_max_examples: Annotated[int, AT_LEAST_ONE] | None = 1000  # a class-balanced subset of the test set
    candidate_gradients: CandidateGradients = "auto"  # DeepFool's candidate gradients: 'auto' (CUDA: batched)
    minimal_norm_steps: Annotated[int, Range(0, MAX_STEPS)] = 100  # DDN steps for the minimal L2 norms; 0: off
    minimal_norm_eps: Annotated[list[float], NON_NEGATIVE] = field(  # L2 budgets the card lists from that curve
        default_factory=lambda: [0.25, 0.5, 1.0, 1.5, 2.0, 3.0])


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
    subset_seed: int = 0                                        # the class-balanced subset's seed
    seconds: dict[str, float] = field(default_factory=dict)     # wall time of each stage (this process)
    minimal_norm: dict = field(default_factory=dict)            # minimal L2 perturbations (_minimal_norm)

    @property
    def sanity_passed(self) -> bool:
        return all(check["passed"] for check in self.sanity)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Report":
        return cls(**data)


class _Evaluation:
    """One pass over the data caches what every metric needs (clean correctness, FGS directions); every later
    metric runs over the same fixed batches, this process's share of them, and is summed over the processes."""

    def __init__(self, model: nn.Module, dataset: Dataset, config: EvalConfig, progress: bool,
                 data: DataConfig | None) -> None:
        self.model, self.config, self.progress = model, config, progress
        self.dataset = balanced_subset(dataset, config.max_examples, config.subset_seed)
        if len(self.dataset) == 0:
            raise DDHubError("the evaluation set is empty")
        self.batches = EvalBatches(self.dataset, config.batch_size, data)
        self.device = next(model.parameters()).device
        self.directions: dict[int, torch.Tensor] = {}
        self.deepfool_norms: dict[int, torch.Tensor] = {}  # DeepFool's valid (clipped) L2 norms, inf if none

    def each(self, desc: str):
        """(batch index, images, labels) of this process's batches, on the model's device."""
        bar = tqdm(self.batches, desc=desc, leave=False, disable=not self.progress, unit="batch")
        for index, (images, labels) in bar:
            yield index, images.to(self.device), labels.to(self.device)

    def deepfool_pass(self, center: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per example, in dataset order: clean correctness, DeepFool's rho, success and iterations; the FGS
        directions are cached on the way. One forward of each batch serves all three."""
        cfg = self.config
        columns: dict[str, list] = {"correct": [], "rho": [], "success": [], "iterations": []}
        for index, images, labels in self.each("DeepFool"):
            x = images.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = self.model(x)
            columns["correct"].append((index, logits.detach().argmax(1) == labels))
            self.directions[index] = fgs_direction(self.model, x, labels, logits=logits).to(torch.int8).cpu()
            result = deepfool(self.model, x, steps=cfg.deepfool_steps, candidates=cfg.candidates,
                              overshoot=cfg.overshoot, bounds=(0.0, 1.0) if cfg.clip else None,
                              candidate_gradients=cfg.candidate_gradients, logits=logits)
            columns["rho"].append((index, ratio(result.perturbation, images, center)))
            columns["success"].append((index, result.success))
            columns["iterations"].append((index, result.iterations))
            self.deepfool_norms[index] = self._valid_norm(images, result.perturbation, logits)
        return {name: self.batches.concat(pairs) for name, pairs in columns.items()}

    @torch.no_grad()
    def _valid_norm(self, images: torch.Tensor, perturbation: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """L2 norm of DeepFool's point clipped to [0, 1] where that still changes the prediction, else inf."""
        clipped = (images + perturbation).clamp(0.0, 1.0)
        changed = self.model(clipped).argmax(1) != logits.detach().argmax(1)
        norm = (clipped - images).flatten(1).norm(dim=1)
        return torch.where(changed, norm, torch.full_like(norm, float("inf")))

    def minimal_norm_pass(self, center: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Per example, in dataset order: the smallest valid L2 perturbation found that changes the prediction
        (DDN's or DeepFool's clipped point, whichever is smaller; inf when neither), its size relative to the image
        (as DeepFool's rho) and whether DDN found it. Runs after :meth:`deepfool_pass`."""
        columns: dict[str, list] = {"norm": [], "rho": [], "by_ddn": []}
        for index, images, _ in self.each("DDN"):
            result = ddn(self.model, images, steps=self.config.minimal_norm_steps,
                         generator=torch.Generator().manual_seed(index))
            found = torch.where(result.success, result.norms(), torch.full_like(result.norms(), float("inf")))
            previous = self.deepfool_norms[index].to(images.device)
            norm = torch.minimum(found, previous)
            reference = images if center is None else images - center
            columns["norm"].append((index, norm))
            columns["rho"].append((index, norm / reference.flatten(1).norm(dim=1).clamp_min(1e-12)))
            columns["by_ddn"].append((index, found <= previous))
        return {name: self.batches.concat(pairs) for name, pairs in columns.items()}

    @torch.no_grad()
    def fgs_accuracy(self, eps: float) -> float:
        hits = total = 0
        for index, images, labels in self.each(f"FGS eps={eps:.4g}"):
            adv = (images + eps * self.directions[index].to(self.device, images.dtype)).clamp(0.0, 1.0)
            hits += (self.model(adv).argmax(1) == labels).sum().item()
            total += len(labels)
        return self.batches.total(hits) / self.batches.total(total)

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
        """PGD accuracy; each batch's random starts come from a generator seeded by its batch index."""
        cfg = self.config
        hits = total = 0
        for index, images, labels in self.each(f"PGD eps={eps:.4g}"):
            result = pgd(self.model, images, labels, eps=eps, norm=cfg.pgd_norm, steps=cfg.pgd_steps,
                         restarts=cfg.pgd_restarts, generator=torch.Generator().manual_seed(index))
            hits += (~result.success).sum().item()
            total += len(labels)
        return self.batches.total(hits) / self.batches.total(total)


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    config: EvalConfig | None = None,
    *,
    center: torch.Tensor | None = None,
    eps_ref: float | None = None,
    progress: bool = True,
    data: DataConfig | None = None,
) -> Report:
    """Evaluate ``model`` (taking [0, 1] images) on ``dataset``.

    ``eps_ref=None`` finds epsilon_ref on this model (the paper takes it from the Deep Defense model and applies
    it to every model); pass a value to reuse another model's. ``center`` (the training set's mean image) measures
    rho_2 in the paper's mean-subtracted space ('centered'); ``None`` in [0, 1] pixels ('pixel').
    ``config.max_examples`` picks a class-balanced subset (seeded by ``config.subset_seed``, the same for every
    model). Launched on several processes (``accelerate launch``), each evaluates its share of the batches and
    every process returns the same report, equal to a one-process evaluation. ``data`` sets loader workers. The
    model is evaluated in eval mode and its previous mode is restored.
    """
    config = config or EvalConfig()
    was_training = model.training
    model.eval()
    seconds: dict[str, float] = {}
    try:
        with _timed(seconds, "deepfool"):
            run = _Evaluation(model, dataset, config, progress, data)
            stats = run.deepfool_pass(None if center is None else center.to(run.device))
        clean = stats["correct"].float().mean().item()
        with _timed(seconds, "fgs"):
            fgs = {_key(eps): run.fgs_accuracy(eps) for eps in config.fgs_eps}
            source = "given" if eps_ref is not None else "self"
            eps_ref = run.eps_ref(clean) if eps_ref is None else eps_ref
            at_ref = {_key(f): run.fgs_accuracy(f * eps_ref) for f in config.fgs_fractions}
        pgd_on = config.pgd_steps > 0
        with _timed(seconds, "pgd"):
            pgd_at_ref = {_key(f): run.pgd_accuracy(f * eps_ref) for f in config.fgs_fractions} if pgd_on else {}
            pgd_fixed = {_key(eps): run.pgd_accuracy(eps) for eps in config.pgd_eps} if pgd_on else {}
        with _timed(seconds, "sanity"):
            sanity = _sanity(run, clean, eps_ref, fgs, at_ref, pgd_fixed, pgd_at_ref, data) if config.sanity else []
        with _timed(seconds, "autoattack"):
            autoattack = _autoattack(run) if config.autoattack else {}
        with _timed(seconds, "minimal_norm"):
            minimal = _minimal_norm(run, center, stats["correct"]) if config.minimal_norm_steps > 0 else {}
    finally:
        model.train(was_training)
    return Report(
        n_examples=len(stats["rho"]),
        clean_accuracy=clean,
        rho2=stats["rho"].mean().item(),
        rho_space="pixel" if center is None else "centered",
        deepfool={
            "steps": config.deepfool_steps, "candidates": config.candidates, "overshoot": config.overshoot,
            "norm": "l2", "clip": config.clip, "source": "prediction",
            "success_rate": stats["success"].float().mean().item(),
            "mean_iterations": stats["iterations"].float().mean().item(),
        },
        fgs=fgs,
        eps_ref=eps_ref,
        eps_ref_source=source,
        fgs_at_ref=at_ref,
        pgd=pgd_fixed,
        pgd_at_ref=pgd_at_ref,
        pgd_settings={"norm": config.pgd_norm, "steps": config.pgd_steps, "restarts": config.pgd_restarts,
                      "step_size": "2.5 * eps / steps", "random_start": True,
                      "generator": "seeded by batch index"} if pgd_on else {},
        sanity=sanity,
        autoattack=autoattack,
        subset_seed=config.subset_seed,
        seconds=seconds,
        minimal_norm=minimal,
    )


@contextlib.contextmanager
def _timed(seconds: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = round(time.perf_counter() - start, 3)


def _sanity(run: _Evaluation, clean: float, eps_ref: float, fgs: dict, at_ref: dict, pgd_fixed: dict,
            pgd_at_ref: dict, data: DataConfig | None) -> list[dict]:
    """The gradient-masking checks at eps_ref, given the accuracy curves measured so far."""
    config = run.config
    curves = {"FGS": {**{float(e): a for e, a in fgs.items()}, **{float(f) * eps_ref: a for f, a in at_ref.items()}}}
    if config.pgd_steps > 0 and config.pgd_norm == "linf":
        curves["PGD"] = {**{float(e): a for e, a in pgd_fixed.items()},
                         **{float(f) * eps_ref: a for f, a in pgd_at_ref.items()}}
    checks = check_masking(run.model, run.dataset, SanityConfig(
        eps=eps_ref or max(config.fgs_eps, default=0.1), steps=max(config.pgd_steps, 1),
        max_examples=config.sanity_max_examples, batch_size=config.batch_size, seed=config.subset_seed),
        curves=curves, clean_accuracy=clean, data=data)
    return [check.to_dict() for check in checks]


def _autoattack(run: _Evaluation) -> dict[str, dict]:
    """Robust accuracy under the reference AutoAttack at each threat model, on a class-balanced subset, each batch
    attacked on its own process; the settings and AutoAttack's own check flags go with each figure."""
    config = run.config
    version = config.autoattack_version
    if version == "auto":
        version = "standard" if run.device.type == "cuda" else "custom"
    attacks = list(config.autoattack_attacks) if version == "custom" else None
    subset = balanced_subset(run.dataset, config.autoattack_max_examples, config.subset_seed)
    batches = EvalBatches(subset, config.batch_size)
    results = {}
    for name in config.autoattack:
        norm, eps = threat_model(name)
        robust = total = 0
        flags: list[str] = []
        metadata: dict = {}
        skipped: dict[str, str] = {}
        for _, (images, labels) in tqdm(batches, desc=f"AutoAttack {name}", leave=False, disable=not run.progress):
            result = autoattack(run.model, images.to(run.device), labels.to(run.device), norm=norm, eps=eps,
                                version=version, attacks=attacks, seed=config.subset_seed,
                                batch_size=config.batch_size)
            robust += int(result.robust.sum())
            total += len(labels)
            flags += [flag for flag in result.flags if flag not in flags]
            metadata = result.metadata
            skipped.update(metadata.get("skipped", {}))
        accuracy = batches.total(robust) / batches.total(total)
        results[name] = {"norm": norm, "eps": eps, "accuracy": accuracy, "n_examples": len(subset),
                         "version": version, "attacks": list(metadata.get("attacks", attacks or [])),
                         "implementation": f"{metadata.get('package', 'pyautoattack')} "
                                           f"{metadata.get('package_version', '')}".strip(),
                         "seed": config.subset_seed, "flags": sorted(set(batches.gather(flags))),
                         **({"skipped": skipped} if skipped else {})}
    return results


def _minimal_norm(run: _Evaluation, center: torch.Tensor | None, correct: torch.Tensor) -> dict:
    """The minimal-norm figures: rho_2 over the images where a valid perturbation was found (``found`` says how
    many; None when none was: metrics.json holds no NaN), robust accuracy at ``minimal_norm_eps`` and the whole curve: ``curve`` holds the sorted minimal norms of
    the correctly classified images, so the robust accuracy at any L2 epsilon e is (the number of them above e +
    ``never_broken``) / ``n_examples`` (:func:`minimal_norm_accuracy`)."""
    config = run.config
    columns = run.minimal_norm_pass(None if center is None else center.to(run.device))
    norm, rho, correct = columns["norm"].cpu(), columns["rho"].cpu(), correct.cpu()
    found = norm.isfinite()
    robust = norm[correct]
    minimal = {
        "attacks": ["ddn", "deepfool, clipped to [0, 1]"], "norm": "l2", "source": "prediction",
        "steps": config.minimal_norm_steps, "n_examples": len(norm),
        "rho2": rho[found].mean().item() if found.any() else None,
        "found": found.float().mean().item(),
        "ddn_share": columns["by_ddn"].cpu()[found].float().mean().item() if found.any() else 0.0,
        "mean_l2": norm[found].mean().item() if found.any() else None,
        "median_l2": norm[found].median().item() if found.any() else None,
        "curve": [round(v, 6) for v in robust[robust.isfinite()].sort().values.tolist()],
        "never_broken": int((~robust.isfinite()).sum()),
    }
    minimal["accuracy"] = {_key(eps): minimal_norm_accuracy(minimal, eps) for eps in config.minimal_norm_eps}
    return minimal


def minimal_norm_accuracy(minimal: dict, eps: float) -> float:
    """Robust accuracy at L2 ``eps`` from a report's ``minimal_norm`` figures (the share of test images classified
    correctly with no valid perturbation of norm <= eps found)."""
    return (sum(v > eps for v in minimal["curve"]) + minimal["never_broken"]) / minimal["n_examples"]


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
    if first.minimal_norm:
        rows.append(("minimal L2 rho_2 (DDN / DeepFool, valid points)",
                     [f"{r.minimal_norm['rho2']:.4g}" if r.minimal_norm.get("rho2") is not None else "–"
                      for r in reports.values()]))
        for eps in first.minimal_norm["accuracy"]:
            rows.append((f"minimal-norm acc @ L2 eps={eps}",
                         [f"{r.minimal_norm['accuracy'][eps]:.2%}" if eps in r.minimal_norm.get("accuracy", {})
                          else "–" for r in reports.values()]))
    for name, result in first.autoattack.items():
        rows.append((f"AutoAttack acc @ {name} ({result['norm']}, eps={result['eps']:.4g})",
                     [f"{r.autoattack[name]['accuracy']:.2%}" if name in r.autoattack else "–"
                      for r in reports.values()]))
    if first.sanity:
        rows.append(("gradient-masking checks", [_sanity_summary(r) for r in reports.values()]))
    return markdown_table(["metric", *(markdown_cell(name) for name in names)],
                          [[label, *values] for label, values in rows])


def _sanity_summary(report: Report) -> str:
    failed = [check["name"] for check in report.sanity if not check["passed"]]
    return "FAILED: " + ", ".join(failed) if failed else "passed"
