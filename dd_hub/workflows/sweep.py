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

from ..evaluation.report import evaluate
from ..hub.figures import plot_sweep
from ..names import REFERENCE_DIR, SWEEP_NAME, SWEEP_PLOT_NAME, SWEEP_TABLE_NAME
from ..recipes import Recipe
from ..storage import run_dir
from ..storage.atomic_io import write_json_atomic, write_text_atomic
from ..text import markdown_table
from ..training.loop import make_accelerator, train
from ..training.objectives import create_objective
from .start import prepare_start, train_reference


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
) -> SweepResult:
    """Deep Defense at every (layers, lambda, c); writes ``sweep.json``, ``sweep.md``, ``sweep.png`` and, when the
    recipe trained it, the reference model (``reference/``, for ``--checkpoint`` of later runs).

    ``lam_values`` defaults to the recipe's lambda; ``layer_sets`` to ``[[]]`` (all layers regularized). ``out_dir``
    is a unit like harden's (:mod:`dd_hub.storage.run_dir`): locked, a previous sweep refused unless ``overwrite``,
    the results committed together.
    """
    out_dir = Path(out_dir)
    with run_dir.locked(out_dir):
        run_dir.prepare(out_dir, overwrite=overwrite, resumable=False,
                        outputs=(SWEEP_NAME, SWEEP_TABLE_NAME, SWEEP_PLOT_NAME, REFERENCE_DIR))
        return _sweep_in(out_dir, recipe, c_values, lam_values, layer_sets, checkpoint=checkpoint, data_dir=data_dir,
                         allow_random_init=allow_random_init, progress=progress, echo=echo)


def _sweep_in(out_dir: Path, recipe: Recipe, c_values: Sequence[float], lam_values: Sequence[float] | None,
              layer_sets: Sequence[Sequence[str]] | None, *, checkpoint: str | Path | None,
              data_dir: str | Path | None, allow_random_init: bool, progress: bool,
              echo: Callable[[str], None]) -> SweepResult:
    lam_values = list(lam_values or [recipe.defense.lam])
    layer_sets = [list(layers) for layers in (layer_sets or [[]])]
    eval_config = dataclasses.replace(recipe.evaluation, pgd_steps=0, sanity=False, autoattack=[])
    set_seed(recipe.seed)
    start = prepare_start(recipe, data_dir=data_dir, checkpoint=checkpoint, allow_random_init=allow_random_init)
    accelerator = make_accelerator()
    train_reference(start, recipe, accelerator=accelerator, echo=echo, progress=progress, data=recipe.data,
                    save_dir=out_dir / REFERENCE_DIR)
    train_set, test_set, center, reference = start.train_set, start.test_set, start.center, start.model
    ref_report = evaluate(reference, test_set, eval_config, center=center, progress=progress, data=recipe.data)
    points = []
    for layers in layer_sets:
        for lam in lam_values:
            for c in c_values:
                echo(f"Deep Defense with c={c:g}, lambda={lam:g}, layers={','.join(layers) or 'all'}")
                point_recipe = dataclasses.replace(recipe, method="deep_defense", defense=dataclasses.replace(
                    recipe.defense, c=float(c), lam=float(lam), regularize_layers=layers))
                set_seed(recipe.seed)
                model = copy.deepcopy(reference)
                train(model, train_set, recipe.harden, create_objective(point_recipe), accelerator=accelerator,
                      center=center, desc=f"c={c:g}", progress=progress, seed=recipe.seed, data=recipe.data)
                report = evaluate(model, test_set, eval_config, center=center, eps_ref=ref_report.eps_ref,
                                  progress=progress, data=recipe.data)
                points.append({"c": float(c), "lam": float(lam), "layers": layers,
                               "accuracy": report.clean_accuracy, "rho2": report.rho2,
                               "fgs_at_ref": report.fgs_at_ref})
    reference_point = {"accuracy": ref_report.clean_accuracy, "rho2": ref_report.rho2, "eps_ref": ref_report.eps_ref,
                       "fgs_at_ref": ref_report.fgs_at_ref}
    table = format_sweep(points, reference_point)
    staging = run_dir.staging_dir(out_dir)
    write_json_atomic(staging / SWEEP_NAME, {
        "model": recipe.model, "dataset": recipe.dataset, "seed": recipe.seed, "recipe": recipe.to_dict(),
        "reference": reference_point, "points": points, "rho_space": ref_report.rho_space})
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
