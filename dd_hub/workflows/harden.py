"""``harden``: recipe -> starting model and data -> (reference training) -> hardening -> evaluation -> export.

The CLI's ``dd-hub harden`` is a thin shell around :func:`harden`; Python users call it directly.
"""
from __future__ import annotations

import copy
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate.utils import set_seed

from ..evaluation.report import Report, format_comparison
from ..hub.card import render_card
from ..hub.figures import render_curve, render_training
from ..models import unwrap
from ..models.directory import architecture_name, save_model
from ..names import CARD_NAME, CHECKPOINTS_DIR, CURVE_NAME, METRICS_NAME, REFERENCE_DIR, TRAINING_NAME
from ..recipes import Recipe
from ..storage import run_dir
from ..storage.atomic_io import write_json_atomic, write_text_atomic
from ..training.loop import make_accelerator, train
from ..training.objectives import create_objective
from ..version import __version__
from .phases import check_finite_figures, evaluate_kept, kept_on_failure, phase
from .start import Start, preflight, prepare_start, train_reference


@dataclass
class HardenResult:
    """What :func:`harden` produced: the hardened model, both reports and the output directory."""

    model: torch.nn.Module
    hardened: Report | None     # None on the non-main processes of a multi-process run
    reference: Report | None
    out_dir: Path
    table: str


def harden(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    data_dir: str | Path | None = None,
    allow_random_init: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    resume: bool = False,
    overwrite: bool = False,
    mixed_precision: str = "no",
    checkpoint_every: int = 0,
    input_size: int | None = None,
    device: str | None = None,
) -> HardenResult:
    """Harden ``recipe.model`` on ``recipe.dataset`` and write model, config, metrics and card to ``out_dir``.

    Before any training the run proves it can finish (:func:`dd_hub.workflows.start.preflight`). Training
    checkpoints go to ``out_dir/checkpoints`` (every epoch and every ``checkpoint_every`` batches), and each
    finished evaluation's report beside them; ``resume=True`` continues a killed or failed run from there (with the
    same settings, more epochs allowed) without training or measuring again what finished; ``overwrite=True``
    replaces a previous run in ``out_dir``, which is otherwise refused. ``mixed_precision`` is 'no', 'bf16' or
    'fp16' (GPU). ``input_size`` resizes folder/timm datasets to that square size. ``device``: 'cpu', 'cuda',
    'cuda:N' (default: the GPU when there is one). ``echo`` gets one line when each phase starts and ends.
    """
    out_dir = Path(out_dir)
    run_dir.check(out_dir, resume=resume, overwrite=overwrite)  # before anything slow; again once locked
    set_seed(recipe.seed)
    with phase(echo, "Checking that the run can finish", f"{recipe.model} on {recipe.dataset}"):
        start = prepare_start(recipe, data_dir=data_dir, checkpoint=checkpoint, allow_random_init=allow_random_init,
                              input_size=input_size)
        preflight(start, recipe, device=device)
    settings = {**recipe.to_dict(), "run": {"start": start.provenance, "mixed_precision": mixed_precision,
                                            "input_size": input_size}}
    with run_dir.locked(out_dir):
        return _harden_in(out_dir, recipe, start, settings, progress=progress, echo=echo, resume=resume,
                          overwrite=overwrite, mixed_precision=mixed_precision, checkpoint_every=checkpoint_every,
                          device=device)


def _harden_in(out_dir: Path, recipe: Recipe, start: Start, settings: dict, *, progress: bool,
               echo: Callable[[str], None], resume: bool, overwrite: bool, mixed_precision: str,
               checkpoint_every: int, device: str | None) -> HardenResult:
    """The run itself, in a locked ``out_dir`` and with validated inputs."""
    accelerator = make_accelerator(mixed_precision, recipe.harden.grad_accumulation, log_dir=out_dir, device=device)
    changed: list[str] = []
    if accelerator.is_main_process:
        run_dir.prepare(out_dir, resume=resume, overwrite=overwrite)
        changed = run_dir.check_settings(out_dir, settings, resume=resume)
    accelerator.wait_for_everyone()
    kept = out_dir / CHECKPOINTS_DIR
    loop = dict(accelerator=accelerator, progress=progress, checkpoint_dir=kept, checkpoint_every=checkpoint_every,
                resume=resume, data=recipe.data)
    reference_history = train_reference(start, recipe, echo=echo, save_dir=out_dir / REFERENCE_DIR, **loop)
    reference = copy.deepcopy(start.model)
    with phase(echo, "Hardening", f"{recipe.method}, {recipe.harden.epochs} epochs"):
        history = train(start.model, start.train_set, recipe.harden, create_objective(recipe), center=start.center,
                        desc="harden", seed=recipe.seed, **loop)
    accelerator.end_training()

    with kept_on_failure(kept):  # the trained weights are in the last checkpoint: --resume finishes from there
        # every process evaluates its share of the batches; each report is kept for --resume as soon as it ends
        evaluation = dict(center=start.center, progress=progress and accelerator.is_main_process, data=recipe.data,
                          resume=resume, echo=echo, write=accelerator.is_main_process)
        with phase(echo, "Evaluating the hardened model"):
            hardened_report = evaluate_kept(start.model, start.test_set, recipe.evaluation,
                                            kept / "hardened-report.json", name="hardened", **evaluation)
        with phase(echo, "Evaluating the reference model"):
            reference_report = evaluate_kept(reference, start.test_set, recipe.evaluation,
                                             kept / "reference-report.json", name="reference",
                                             eps_ref=hardened_report.eps_ref, **evaluation)
        if not accelerator.is_main_process:  # export runs once, on the main process
            return HardenResult(start.model, None, None, out_dir, "")
        check_finite_figures({"hardened": hardened_report, "reference": reference_report})
        with phase(echo, "Writing the model folder"):
            table = format_comparison({"reference": reference_report, "hardened": hardened_report})
            metrics = run_metrics(recipe, start, hardened_report, reference_report, history)
            if reference_history:
                metrics["reference_training"] = reference_history
            if changed:
                metrics["resumed_with_changes"] = changed
            write_outputs(out_dir, start.model, metrics, label_names=start.spec.label_names, table=table)
    return HardenResult(start.model, hardened_report, reference_report, out_dir, table)


def run_metrics(recipe: Recipe, start: Start, hardened: Report, reference: Report, history: list[dict], *,
                method: str | None = None) -> dict:
    """The content of metrics.json: what was trained, from where, how, and both evaluations. ``method`` (default
    the recipe's) may also be 'reference': the reference model described as a model of its own."""
    architecture = architecture_name(start.model)
    method = method or recipe.method
    suffix = "deepdefense" if method == "deep_defense" else method.replace("_", "-")
    if recipe.smoke:
        suffix += "-smoke"
    return {
        "dd_hub_version": __version__,
        "seed": recipe.seed,
        **({"smoke": True} if recipe.smoke else {}),
        "model": {"architecture": architecture, "repo_name": f"{architecture}-{recipe.dataset}-{suffix}",
                  "dataset": recipe.dataset, "dataset_hub_id": start.spec.hub_id, "base_model": start.base_model,
                  "dataset_card_name": start.spec.card_name or recipe.dataset, "dataset_split": start.spec.hub_split,
                  "start": start.weights, "provenance": start.provenance, "num_classes": start.spec.num_classes,
                  "license": recipe.license or _pretrained_cfg(start.model).get("license") or "other",
                  "method": method, "input": start.input,
                  "skipped_images": start.skipped},
        "recipe": {**recipe.to_dict(), "method": method},
        "hardened": hardened.to_dict(),
        "reference": reference.to_dict(),
        "training": history,
        "run": invocation(),
    }


# options that say how a run writes or shows its output, not what it computes
_NOT_REBUILDING = {"--resume", "--overwrite", "--quiet"}


def invocation() -> dict:
    """How this process was started, for the card's rebuild command: the ``dd-hub`` command line (None when dd-hub
    was called from Python), the threads torch computed with, the torch version and the operating system."""
    import platform

    program = Path(sys.argv[0])
    from_cli = program.name == "dd-hub" or (program.name in ("cli.py", "__main__.py")
                                             and program.parent.name == "dd_hub")
    args = [arg for arg in sys.argv[1:] if arg not in _NOT_REBUILDING]
    return {"command": f"dd-hub {shlex.join(args)}" if from_cli else None, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "platform": f"{platform.system()} {platform.machine()}",
            **({"source": source} if (source := source_commit()) else {})}


def source_commit() -> str | None:
    """The git commit dd-hub's code was run from, when it runs from a git checkout (an editable install), with
    ``-modified`` when the checkout had uncommitted changes; None for an installed package. The version number
    alone does not say which code trained a model."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                "dd_hub"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = head.stdout.strip()
    return None if head.returncode or not commit else commit + ("-modified" if dirty.stdout.strip() else "")


def _pretrained_cfg(model: torch.nn.Module) -> dict:
    """timm's ``pretrained_cfg`` of the network (a torchvision network has none)."""
    return getattr(unwrap(model), "pretrained_cfg", None) or {}


def write_outputs(out_dir: str | Path, model: torch.nn.Module, metrics: dict, *,
                  label_names: list[str] | None = None, table: str | None = None) -> None:
    """The model directory's final files, committed as a whole (:mod:`dd_hub.storage.run_dir`): weights and config,
    metrics.json (with the files' hashes), the robustness curve and the card."""
    out_dir = Path(out_dir)
    staging = run_dir.staging_dir(out_dir)
    save_model(model, staging, label_names=label_names)
    write_json_atomic(staging / METRICS_NAME, metrics)
    render_curve(metrics, staging / CURVE_NAME)
    training = TRAINING_NAME if render_training(metrics, staging / TRAINING_NAME) else None
    write_text_atomic(staging / CARD_NAME, render_card(metrics, table, curve_file=CURVE_NAME,
                                                       training_file=training))
    run_dir.commit(out_dir)
