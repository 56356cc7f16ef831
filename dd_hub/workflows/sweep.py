"""The paper's analyses as tools for any model: sweeps over c, lambda and the regularized layers.

``sweep`` fine-tunes one copy of the reference model per (layers, lambda, c) point with Deep Defense and plots
clean accuracy against rho_2: the paper's Fig. 3 (how to pick c; larger c trades robustness for accuracy) and,
with ``layer_sets``, Fig. 4 (regularizing one layer at a time). FGS accuracies are measured at fractions of the
*reference* model's epsilon_ref so that all points share one budget. PGD and the masking checks are skipped to
keep sweeps affordable, and so is AutoAttack (the choice of c rests on clean accuracy); run ``dd-hub eval`` on the
chosen point.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from accelerate.utils import set_seed

from ..hub.figures import plot_sweep
from ..names import CHECKPOINTS_DIR, REFERENCE_DIR, SWEEP_NAME, SWEEP_PLOT_NAME, SWEEP_TABLE_NAME
from ..recipes import Recipe
from ..storage import run_dir
from ..storage.atomic_io import write_json_atomic, write_text_atomic
from ..text import markdown_table, unique_names
from ..training.loop import train
from ..training.objectives import create_objective
from .phases import REPORT_NAME, check_finite_figures, evaluate_kept, multi_phase_run, phase
from .start import Start, preflight, prepare_start, train_reference


@dataclass
class SweepResult:
    """One dict per point (c, lam, layers, accuracy, rho2, fgs_at_ref), the reference's, and the written files."""

    points: list[dict]
    reference: dict
    table: str
    out_dir: Path


def sweep(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    c_values: Sequence[float],
    lam_values: Sequence[float] | None = None,
    layer_sets: Sequence[Sequence[str]] | None = None,
    checkpoint: str | Path | None = None,
    data_dir: str | Path | None = None,
    allow_random_init: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    overwrite: bool = False,
    resume: bool = False,
    mixed_precision: str = "no",
    checkpoint_every: int = 0,
    input_size: int | None = None,
    device: str | None = None,
) -> SweepResult:
    """Deep Defense at every (layers, lambda, c); writes ``sweep.json``, ``sweep.md``, ``sweep.png`` and, when the
    recipe trained it, the reference model (``reference/``, for ``--checkpoint`` of later runs).

    ``lam_values`` defaults to the recipe's lambda; ``layer_sets`` to ``[[]]`` (all layers regularized). ``out_dir``
    is a unit like harden's (:mod:`dd_hub.storage.run_dir`): locked, a previous sweep refused unless ``overwrite``
    or ``resume`` (every point checkpoints under ``checkpoints/<point>/`` and keeps its report: a resumed sweep
    trains and measures only what did not finish), the results committed together. The other options are
    harden's (:func:`dd_hub.workflows.harden.harden`).
    """
    out_dir = Path(out_dir)
    outputs = (SWEEP_NAME, SWEEP_TABLE_NAME, SWEEP_PLOT_NAME, REFERENCE_DIR)
    run_dir.check(out_dir, resume=resume, overwrite=overwrite, outputs=outputs)  # before anything slow
    lam_values = list(lam_values or [recipe.defense.lam])
    layer_sets = [list(layers) for layers in (layer_sets or [[]])]
    grid = [(layers, float(lam), float(c)) for layers in layer_sets for lam in lam_values for c in c_values]
    recipes = [dataclasses.replace(recipe, method="deep_defense", defense=dataclasses.replace(
        recipe.defense, c=c, lam=lam, regularize_layers=layers)) for layers, lam, c in grid]
    set_seed(recipe.seed)
    options = dict(checkpoint=checkpoint, data_dir=data_dir, allow_random_init=allow_random_init,
                   input_size=input_size)
    with phase(echo, "Checking that the run can finish", f"{recipe.model} on {recipe.dataset}"):
        start = prepare_start(recipe, **options)
        preflight(start, recipes[0], device=device)
    settings = {**recipe.to_dict(), "run": {"grid": [list(point) for point in grid], "start": start.provenance,
                                            "mixed_precision": mixed_precision, "input_size": input_size}}
    with multi_phase_run(out_dir, settings, recipe, resume=resume, overwrite=overwrite, outputs=outputs,
                         mixed_precision=mixed_precision, device=device, progress=progress,
                         checkpoint_every=checkpoint_every) as loop:
        return _sweep_in(out_dir, recipe, start, grid, recipes, loop=loop, echo=echo)


def _sweep_in(out_dir: Path, recipe: Recipe, start: Start, grid: list[tuple[list[str], float, float]],
              recipes: list[Recipe], *, loop: dict, echo: Callable[[str], None]) -> SweepResult:
    eval_config = dataclasses.replace(recipe.evaluation, pgd_steps=0, sanity=False, autoattack=[])
    kept = out_dir / CHECKPOINTS_DIR
    train_reference(start, recipe, echo=echo, save_dir=out_dir / REFERENCE_DIR, checkpoint_dir=kept / "reference",
                    **loop)
    evaluation = dict(center=start.center, progress=loop["progress"], data=recipe.data, resume=loop["resume"],
                      echo=echo)
    reference = start.model
    with phase(echo, "Evaluating the reference model"):
        ref_report = evaluate_kept(reference, start.test_set, eval_config, kept / "reference" / REPORT_NAME,
                                   name="reference", **evaluation)
    points = []
    labels = unique_names(f"c{c:g}-lam{lam:g}-{'+'.join(layers) or 'all'}" for layers, lam, c in grid)
    for (layers, lam, c), point_recipe, label in zip(grid, recipes, labels):
        with phase(echo, f"Deep Defense with c={c:g}, lambda={lam:g}, layers={','.join(layers) or 'all'}"):
            set_seed(recipe.seed)
            model = copy.deepcopy(reference)
            train(model, start.train_set, recipe.harden, create_objective(point_recipe), center=start.center,
                  desc=f"c={c:g}", seed=recipe.seed, checkpoint_dir=kept / label, **loop)
            report = evaluate_kept(model, start.test_set, eval_config, kept / label / REPORT_NAME, name=label,
                                   eps_ref=ref_report.eps_ref, **evaluation)
        check_finite_figures({f"c={c:g}, lambda={lam:g}": report})
        points.append({"c": c, "lam": lam, "layers": layers, "accuracy": report.clean_accuracy, "rho2": report.rho2,
                       "fgs_at_ref": report.fgs_at_ref})
    reference_point = {"accuracy": ref_report.clean_accuracy, "rho2": ref_report.rho2, "eps_ref": ref_report.eps_ref,
                       "fgs_at_ref": ref_report.fgs_at_ref}
    table = format_sweep(points, reference_point)
    staging = run_dir.staging_dir(out_dir)
    write_json_atomic(staging / SWEEP_NAME, {
        "model": recipe.model, "dataset": recipe.dataset, "seed": recipe.seed, "recipe": recipe.to_dict(),
        "reference": reference_point, "points": points, "rho_space": ref_report.rho_space,
        **({"smoke": True} if recipe.smoke else {})})
    write_text_atomic(staging / SWEEP_TABLE_NAME, table)
    plot_sweep(points, reference_point, staging / SWEEP_PLOT_NAME)
    run_dir.commit(out_dir, manifest=SWEEP_NAME)
    return SweepResult(points, reference_point, table, out_dir)


def format_sweep(points: list[dict], reference: dict) -> str:
    """Markdown table of the sweep, the reference first."""
    fractions = list(reference["fgs_at_ref"])
    header = ["layers", "lambda", "c", "Acc.", "rho_2"] + [f"FGS @{f} ref eps_ref" for f in fractions]
    rows = [["reference", "–", "–", f"{reference['accuracy']:.2%}", f"{reference['rho2']:.3g}"]
            + [f"{reference['fgs_at_ref'][f]:.2%}" for f in fractions]]
    rows += [[",".join(p["layers"]) or "all", f"{p['lam']:g}", f"{p['c']:g}", f"{p['accuracy']:.2%}",
              f"{p['rho2']:.3g}"] + [f"{p['fgs_at_ref'][f]:.2%}" for f in fractions] for p in points]
    return markdown_table(header, rows) + f"\nreference epsilon_ref = {reference['eps_ref']:.4g}\n"
