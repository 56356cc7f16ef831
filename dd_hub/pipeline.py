"""``harden``: recipe -> model -> data -> (reference training) -> Deep Defense -> evaluation -> export.

The CLI's ``dd-hub harden`` is a thin shell around :func:`harden`; Python users call it directly.
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import timm
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

from . import __version__
from .card import CURVE_NAME, render_card, render_curve
from .data import create_dataset, first_examples, get_spec, mean_image
from .errors import DDHubError
from .evaluate import Report, evaluate, format_comparison, save_json
from .hub import architecture_name, save_model, write_text_atomic
from .methods import create_objective
from .models import create_model, unwrap
from .recipes import Recipe
from .train import cross_entropy, make_accelerator, train


@dataclass
class HardenResult:
    """What :func:`harden` produced: the hardened model, both reports and the output directory."""

    model: torch.nn.Module
    hardened: Report | None     # None on the non-main processes of a multi-process run
    reference: Report | None
    out_dir: Path
    table: str


def objective_for(recipe: Recipe) -> Callable:
    """The training objective a recipe's ``method`` names (see :mod:`dd_hub.methods`)."""
    return create_objective(recipe)


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
    mixed_precision: str = "no",
    checkpoint_every: int = 0,
    input_size: int | None = None,
) -> HardenResult:
    """Harden ``recipe.model`` on ``recipe.dataset`` and write model, config, metrics and card to ``out_dir``.

    Training checkpoints go to ``out_dir/checkpoints`` (every epoch and every ``checkpoint_every`` batches);
    ``resume=True`` continues a killed run from there. ``mixed_precision`` is 'no', 'bf16' or 'fp16' (GPU).
    ``input_size`` resizes folder/timm datasets to that square size instead of the model's default.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    set_seed(recipe.seed)
    if not resume:
        (out_dir / "train_log.jsonl").unlink(missing_ok=True)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    accelerator = make_accelerator(mixed_precision, recipe.harden.grad_accumulation, log_dir=out_dir)
    spec = get_spec(recipe.dataset, data_dir)
    objective = objective_for(recipe)
    # Double backward needs the math attention kernel: timm attention layers pick theirs at construction.
    timm.layers.set_fused_attn(False)
    model = create_model(recipe.model, num_classes=spec.num_classes, pretrained=recipe.pretrained,
                         checkpoint=checkpoint)
    data_config = timm.data.resolve_model_data_config(unwrap(model))
    if input_size is not None:
        data_config.update(input_size=(data_config["input_size"][0], input_size, input_size), crop_pct=1.0)
    train_set = create_dataset(recipe.dataset, "train", data_dir=data_dir, data_config=data_config)
    train_set = first_examples(train_set, recipe.max_train_examples)
    test_set = create_dataset(recipe.dataset, "test", data_dir=data_dir, data_config=data_config)
    center = mean_image(train_set) if recipe.rho_space == "centered" else None
    loop = dict(accelerator=accelerator, progress=progress, seed=recipe.seed, checkpoint_dir=out_dir / "checkpoints",
                checkpoint_every=checkpoint_every, resume=resume)
    base_model = None if checkpoint else (recipe.model if recipe.pretrained else None)
    if checkpoint is None and not recipe.pretrained:
        if recipe.reference is None and not allow_random_init:
            raise DDHubError(f"no starting weights for '{recipe.model}': pass --checkpoint FILE, use a recipe with "
                             "pretrained: true or a reference section, or --allow-random-init")
        trained_reference = out_dir / "reference" / "model.safetensors"
        if recipe.reference is not None and resume and trained_reference.is_file():
            echo(f"Resuming with the reference model trained before ({trained_reference})")
            unwrap(model).load_state_dict(load_file(str(trained_reference)))
        elif recipe.reference is not None:
            echo(f"Training the reference {recipe.model} on {recipe.dataset} ({recipe.reference.epochs} epochs)")
            train(model, train_set, recipe.reference, cross_entropy, desc="reference", **loop)
            if accelerator.is_main_process:
                save_model(model, out_dir / "reference", label_names=spec.label_names)
            accelerator.wait_for_everyone()
    reference = copy.deepcopy(model)

    echo(f"Hardening with {recipe.method} ({recipe.harden.epochs} epochs)")
    history = train(model, train_set, recipe.harden, objective, center=center, desc="harden", **loop)
    accelerator.end_training()
    if not accelerator.is_main_process:  # evaluation and export run once, on the main process
        return HardenResult(model, None, None, out_dir, "")

    echo("Evaluating the hardened and the reference model")
    hardened_report = evaluate(model, test_set, recipe.evaluation, center=center, progress=progress)
    reference_report = evaluate(reference, test_set, recipe.evaluation, center=center,
                                eps_ref=hardened_report.eps_ref, progress=progress)
    table = format_comparison({"reference": reference_report, "hardened": hardened_report})

    architecture = architecture_name(model)
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
    render_curve(metrics, out_dir / CURVE_NAME)
    write_text_atomic(out_dir / "README.md", render_card(metrics, table, curve_file=CURVE_NAME))
    return HardenResult(model, hardened_report, reference_report, out_dir, table)
