"""``harden``: recipe -> model -> data -> (reference training) -> Deep Defense -> evaluation -> export.

The CLI's ``dd-hub harden`` is a thin shell around :func:`harden`; Python users call it directly.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from . import __version__
from .card import render_card
from .data import create_dataset, get_spec, mean_image
from .defense import DeepDefenseLoss
from .errors import DDHubError
from .evaluate import Report, evaluate, format_comparison, save_json
from .hub import save_model, write_text_atomic
from .models import create_model, unwrap
from .recipes import Recipe
from .train import cross_entropy, train


@dataclass
class HardenResult:
    """What :func:`harden` produced: the hardened model, both reports and the output directory."""

    model: torch.nn.Module
    hardened: Report
    reference: Report
    out_dir: Path
    table: str


def objective_for(recipe: Recipe) -> Callable:
    """The training objective a recipe's ``method`` names."""
    if recipe.method == "deep_defense":
        return DeepDefenseLoss(recipe.defense)
    if recipe.method == "clean":
        return cross_entropy
    raise DDHubError(f"unknown method '{recipe.method}'; available: deep_defense, clean")


def harden(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    checkpoint: str | Path | None = None,
    data_dir: str | Path | None = None,
    allow_random_init: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> HardenResult:
    """Harden ``recipe.model`` on ``recipe.dataset`` and write model, config, metrics and card to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(recipe.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              gradient_accumulation_steps=recipe.harden.grad_accumulation)
    spec = get_spec(recipe.dataset)
    train_set = create_dataset(recipe.dataset, "train", data_dir=data_dir)
    test_set = create_dataset(recipe.dataset, "test", data_dir=data_dir)
    center = mean_image(train_set) if recipe.rho_space == "centered" else None
    objective = objective_for(recipe)
    log_path = out_dir / "train_log.jsonl"
    log_path.write_text("")

    def log(record: dict) -> None:
        with log_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    model = create_model(recipe.model, num_classes=spec.num_classes, pretrained=recipe.pretrained,
                         checkpoint=checkpoint)
    base_model = None if checkpoint else (recipe.model if recipe.pretrained else None)
    if checkpoint is None and not recipe.pretrained:
        if recipe.reference is None and not allow_random_init:
            raise DDHubError(f"no starting weights for '{recipe.model}': pass --checkpoint FILE, use a recipe with "
                             "pretrained: true or a reference section, or --allow-random-init")
        if recipe.reference is not None:
            echo(f"Training the reference {recipe.model} on {recipe.dataset} ({recipe.reference.epochs} epochs)")
            train(model, train_set, recipe.reference, cross_entropy, accelerator=accelerator, desc="reference",
                  progress=progress, log=log)
            save_model(model, out_dir / "reference", label_names=spec.label_names)
    reference = copy.deepcopy(model)

    echo(f"Hardening with {recipe.method} ({recipe.harden.epochs} epochs)")
    history = train(model, train_set, recipe.harden, objective, accelerator=accelerator, center=center,
                    desc="harden", progress=progress, log=log)

    echo("Evaluating the hardened and the reference model")
    hardened_report = evaluate(model, test_set, recipe.evaluation, center=center, progress=progress)
    reference_report = evaluate(reference, test_set, recipe.evaluation, center=center,
                                eps_ref=hardened_report.eps_ref, progress=progress)
    table = format_comparison({"reference": reference_report, "hardened": hardened_report})

    architecture = unwrap(model).pretrained_cfg["architecture"]
    metrics = {
        "dd_hub_version": __version__,
        "seed": recipe.seed,
        "model": {"architecture": architecture, "repo_name": f"{architecture}-{recipe.dataset}-deepdefense",
                  "dataset": recipe.dataset, "dataset_hub_id": spec.hub_id, "base_model": base_model,
                  "num_classes": spec.num_classes},
        "recipe": recipe.to_dict(),
        "hardened": hardened_report.to_dict(),
        "reference": reference_report.to_dict(),
        "training": history,
    }
    save_model(model, out_dir, label_names=spec.label_names)
    save_json(metrics, out_dir / "metrics.json")
    write_text_atomic(out_dir / "README.md", render_card(metrics, table))
    return HardenResult(model, hardened_report, reference_report, out_dir, table)
