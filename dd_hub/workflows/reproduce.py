"""``reproduce``: the paper's Table 1 protocol for one setting, every method side by side with the paper's row.

For each seed: train (or load) the reference model; fine-tune a copy of it with every method on the recipe's
``harden`` schedule; find epsilon_ref on one model (the paper: the Deep Defense model, ``eps_ref_from``) and
evaluate every model at ``fgs_fractions x epsilon_ref`` with FGS and PGD, plus clean accuracy and rho_2. Writes
``results.json`` and ``table.md``; with several seeds the table shows mean +- sample standard deviation.

Nothing finished is lost to a later failure: every training phase checkpoints under ``OUT/checkpoints/seed<S>/<phase>/``
(a finished phase keeps its last epoch) and every evaluation writes its report there as soon as it ends, tied to
the weights it measured. ``resume=True`` (``--resume``) reloads finished phases, continues an unfinished one and
reuses a report only for the very weights and evaluation settings it was measured with.
"""
from __future__ import annotations

import copy
import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from accelerate.utils import set_seed

from ..errors import DDHubError
from ..evaluation.report import Report, format_comparison
from ..models.directory import save_model
from ..names import CHECKPOINTS_DIR, REFERENCE_DIR, RESULTS_NAME, TABLE_NAME
from ..recipes import Recipe
from ..storage import run_dir
from ..storage.atomic_io import write_json_atomic, write_text_atomic
from ..text import markdown_table
from ..training.loop import train
from ..training.objectives import create_objective, list_methods
from ..version import __version__
from .harden import run_metrics, write_outputs
from .phases import REPORT_NAME, check_finite_figures, evaluate_kept, multi_phase_run, phase
from .start import Start, describe_start, preflight, prepare_start, train_reference

PAPER_METHODS = ("clean", "parseval", "deepfool_adv", "fgs_adv", "deep_defense")
LABELS = {
    "reference": "Reference",
    "clean": "Clean fine-tune",
    "parseval": "Par. Train (Parseval)",
    "deepfool_adv": "Adv. Train I (DeepFool)",
    "fgs_adv": "Adv. Train II (FGS)",
    "pgd_adv": "PGD adv. train",
    "trades": "TRADES",
    "deep_defense": "Deep Defense",
}

# Table 1 of the paper (NeurIPS 2018): accuracy, rho_2, FGS accuracy at 0.2/0.5/1.0 epsilon_ref; fractions.
_Row = tuple[float, float, float, float, float]
PAPER_TABLE1: dict[str, dict[str, _Row]] = {
    "dd_mlp_mnist": {
        "Reference": (0.9831, 0.111, 0.7276, 0.2908, 0.0331),
        "Par. Train": (0.9832, 0.111, 0.7744, 0.2895, 0.0296),
        "Adv. Train I": (0.9849, 0.162, 0.8770, 0.5969, 0.2255),
        "Ours": (0.9865, 0.225, 0.9504, 0.8893, 0.5000),
    },
    "dd_lenet_mnist": {
        "Reference": (0.9902, 0.205, 0.9095, 0.5388, 0.1975),
        "Par. Train": (0.9910, 0.203, 0.9168, 0.6648, 0.1964),
        "Adv. Train I": (0.9918, 0.263, 0.9520, 0.7482, 0.4140),
        "Ours": (0.9934, 0.284, 0.9651, 0.8893, 0.5000),
    },
}
PAPER_FRACTIONS = ("0.2", "0.5", "1")


@dataclass
class ReproduceResult:
    """The Markdown table, the JSON-serialisable results and where they were written."""

    table: str
    results: dict
    out_dir: Path


def reproduce(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    methods: Sequence[str] = PAPER_METHODS,
    seeds: Sequence[int] | None = None,
    eps_ref_from: str = "deep_defense",
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
) -> ReproduceResult:
    """Run the paper's comparison for ``recipe``'s model and dataset; see the module docstring. ``out_dir`` is a
    unit like harden's (:mod:`dd_hub.storage.run_dir`): locked while the run writes it, a previous run refused
    unless ``overwrite`` (start over) or ``resume`` (continue it, with the same settings but harden.epochs and
    evaluation.*), results.json and table.md committed together at the end. The other options are harden's
    (:func:`dd_hub.workflows.harden.harden`)."""
    unknown = [m for m in methods if m not in list_methods()]
    if unknown:
        raise DDHubError(f"unknown method '{unknown[0]}'; available: {', '.join(list_methods())}")
    if eps_ref_from not in ("reference", *methods):
        raise DDHubError(f"--eps-ref-from must be 'reference' or one of the methods run ({', '.join(methods)})")
    seeds = list(seeds or [recipe.seed])
    out_dir = Path(out_dir)
    outputs = (RESULTS_NAME, TABLE_NAME, *(f"seed{seed}" for seed in seeds))
    run_dir.check(out_dir, resume=resume, overwrite=overwrite, outputs=outputs)  # before anything slow
    settings = {**recipe.to_dict(), "run": {"methods": list(methods), "seeds": seeds, "eps_ref_from": eps_ref_from,
                                            "checkpoint": None if checkpoint is None else str(checkpoint),
                                            "mixed_precision": mixed_precision, "input_size": input_size}}
    options = dict(checkpoint=checkpoint, data_dir=data_dir, allow_random_init=allow_random_init,
                   input_size=input_size)
    with phase(echo, "Checking that the run can finish", f"{recipe.model} on {recipe.dataset}"):
        set_seed(seeds[0])
        preflight(prepare_start(recipe, **options), recipe, methods, device=device)
    with multi_phase_run(out_dir, settings, recipe, resume=resume, overwrite=overwrite, outputs=outputs,
                         mixed_precision=mixed_precision, device=device, progress=progress,
                         checkpoint_every=checkpoint_every) as loop:
        return _reproduce_in(out_dir, recipe, methods, seeds, eps_ref_from, options=options, loop=loop,
                             echo=echo)


def _reproduce_in(out_dir: Path, recipe: Recipe, methods: Sequence[str], seeds: list[int], eps_ref_from: str, *,
                  options: dict, loop: dict, echo: Callable[[str], None]) -> ReproduceResult:
    names = ["reference", *methods]
    runs = []
    for seed in seeds:
        echo(f"== seed {seed}")
        set_seed(seed)
        start = prepare_start(recipe, **options)
        phases = out_dir / CHECKPOINTS_DIR / f"seed{seed}"
        reference_history = train_reference(start, recipe, echo=echo, seed=seed,
                                            checkpoint_dir=phases / "reference", **loop)
        models, history = _fine_tune_all(start, recipe, methods, seed, phases, echo, **loop)
        reports = _evaluate_all(models, start, recipe, eps_ref_from, phases, progress=loop["progress"], echo=echo,
                                resume=loop["resume"])
        check_finite_figures(reports)
        training = {"reference": reference_history, **history}
        _write_models(out_dir / f"seed{seed}", models, reports, training, recipe, start, eps_ref_from)
        runs.append({"seed": seed, "eps_ref": reports[eps_ref_from].eps_ref, "training": training,
                     "reports": {name: reports[name].to_dict() for name in names}})
    results = {
        "dd_hub_version": __version__, "model": recipe.model, "dataset": recipe.dataset, "seeds": seeds,
        "methods": names, "eps_ref_from": eps_ref_from, "recipe": recipe.to_dict(), "runs": runs,
        "summary": _summary(runs, names), "paper": PAPER_TABLE1.get(recipe.model),
        **({"smoke": True} if recipe.smoke else {}),
    }
    table = format_table(results)
    staging = run_dir.staging_dir(out_dir)
    write_json_atomic(staging / RESULTS_NAME, results)
    write_text_atomic(staging / TABLE_NAME, table)
    run_dir.commit(out_dir, manifest=RESULTS_NAME)
    return ReproduceResult(table, results, out_dir)


def _fine_tune_all(start: Start, recipe: Recipe, methods: Sequence[str], seed: int, phases: Path,
                   echo: Callable[[str], None], **loop) -> tuple[dict[str, torch.nn.Module], dict[str, list[dict]]]:
    """A copy of the starting model fine-tuned with each method, every one on the same data order, each phase
    checkpointed in ``phases/<method>`` (``loop`` goes to :func:`dd_hub.training.loop.train`, ``resume`` included)."""
    models, history = {"reference": start.model}, {}
    for method in methods:
        with phase(echo, f"Fine-tuning with {method}", f"{recipe.harden.epochs} epochs"):
            set_seed(seed)
            model = copy.deepcopy(start.model)
            history[method] = train(model, start.train_set, recipe.harden,
                                    create_objective(dataclasses.replace(recipe, method=method)),
                                    center=start.center, desc=method, seed=seed, checkpoint_dir=phases / method,
                                    **loop)
        models[method] = model
    return models, history


def _evaluate_all(models: dict[str, torch.nn.Module], start: Start, recipe: Recipe, eps_ref_from: str, phases: Path,
                  *, progress: bool, echo: Callable[[str], None], resume: bool) -> dict[str, Report]:
    """Every model evaluated at the epsilon_ref of ``models[eps_ref_from]`` (the paper: the Deep Defense model).

    Each report is written to ``phases/<name>/report.json`` as soon as it is measured; with ``resume`` one found
    there is used instead of measuring again when it was measured on the same weights, evaluation settings and
    epsilon_ref (:func:`dd_hub.workflows.phases.evaluate_kept`).
    """
    def measure(name: str, eps_ref: float | None = None) -> Report:
        with phase(echo, f"Evaluating {name}", f"epsilon_ref from {eps_ref_from}" if eps_ref is not None else ""):
            return evaluate_kept(models[name], start.test_set, recipe.evaluation, phases / name / REPORT_NAME,
                                 resume=resume, echo=echo, name=name, eps_ref=eps_ref, center=start.center,
                                 progress=progress, data=recipe.data)

    reports = {eps_ref_from: measure(eps_ref_from)}
    for name in models:
        if name not in reports:
            reports[name] = measure(name, reports[eps_ref_from].eps_ref)
    return {name: reports[name] for name in models}


def _write_models(seed_dir: Path, models: dict, reports: dict[str, Report], history: dict, recipe: Recipe,
                  start: Start, eps_ref_from: str) -> None:
    """For every method a complete model directory (weights, metrics.json with the reference's figures beside its
    own, card, figures), like `dd-hub harden` writes; one for the reference too when this run trained it (a
    catalogue's undefended entry), else its weights."""
    for method in history:
        method_start = start
        if method == "reference":
            if start.weights != "reference":  # given (a checkpoint or pretrained weights), not trained here
                save_model(models[method], seed_dir / REFERENCE_DIR, label_names=start.spec.label_names)
                continue
            method_start = dataclasses.replace(start, weights="random", provenance=describe_start("random"))
        metrics = run_metrics(recipe, method_start, reports[method], reports["reference"], history[method],
                              method=method)
        if method != eps_ref_from:
            metrics["eps_ref_from"] = eps_ref_from
        write_outputs(seed_dir / method, models[method], metrics, label_names=start.spec.label_names,
                      table=format_comparison({"reference": reports["reference"], method: reports[method]}))


def _metrics(report: dict) -> dict[str, float]:
    row = {"accuracy": report["clean_accuracy"], "rho2": report["rho2"]}
    row.update({f"autoattack@{name}": figure["accuracy"] for name, figure in report.get("autoattack", {}).items()})
    row.update({f"fgs@{f}": acc for f, acc in report["fgs_at_ref"].items()})
    row.update({f"pgd@{f}": acc for f, acc in report["pgd_at_ref"].items()})
    row["sanity_failed"] = float(any(not check["passed"] for check in report["sanity"]))
    return row


def _summary(runs: list[dict], names: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Method -> metric -> {'mean', 'std'} over seeds (std 0 for one seed)."""
    summary = {}
    for name in names:
        per_seed = [_metrics(run["reports"][name]) for run in runs]
        summary[name] = {key: {"mean": statistics.fmean(r[key] for r in per_seed),
                               "std": statistics.stdev([r[key] for r in per_seed]) if len(per_seed) > 1 else 0.0}
                         for key in per_seed[0]}
    return summary


def format_table(results: dict) -> str:
    """Markdown Table-1-style comparison: our rows (mean +- std over seeds), then the paper's rows."""
    first = results["runs"][0]["reports"][results["methods"][0]]
    fractions = list(first["fgs_at_ref"])
    pgd_fractions = list(first["pgd_at_ref"])
    threat_models = list(first.get("autoattack", {}))
    several = len(results["seeds"]) > 1

    def cell(stat: dict[str, float] | None, percent: bool = True) -> str:
        if stat is None:
            return "–"
        mean, std = stat["mean"], stat["std"]
        text = f"{100 * mean:.2f}%" if percent else f"{mean:.3g}"
        return text + (f" ± {100 * std:.2f}" if percent else f" ± {std:.2g}") if several else text

    header = (["Method", "Acc.", "rho_2"] + [f"AutoAttack @{name}" for name in threat_models]
              + [f"FGS @{f} eps_ref" for f in fractions] + [f"PGD @{f} eps_ref" for f in pgd_fractions]
              + ["masking checks"])
    rows = []
    for name in results["methods"]:
        stats = results["summary"][name]
        failed = sorted({c["name"] for run in results["runs"] for c in run["reports"][name]["sanity"]
                         if not c["passed"]})
        seeds_failed = round(stats["sanity_failed"]["mean"] * len(results["runs"]))
        rows.append([LABELS.get(name, name), cell(stats["accuracy"]), cell(stats["rho2"], percent=False)]
                    + [cell(stats.get(f"autoattack@{t}")) for t in threat_models]
                    + [cell(stats[f"fgs@{f}"]) for f in fractions] + [cell(stats[f"pgd@{f}"]) for f in pgd_fractions]
                    + ["passed" if not failed else f"FAILED in {seeds_failed}/{len(results['runs'])} seeds: "
                       + ", ".join(failed)])
    for label, row in (results.get("paper") or {}).items():
        by_fraction = dict(zip(PAPER_FRACTIONS, row[2:]))
        rows.append([f"paper: {label}", f"{100 * row[0]:.2f}%", f"{row[1]:.3g}"] + ["–"] * len(threat_models)
                    + [f"{100 * by_fraction[f]:.2f}%" if f in by_fraction else "–" for f in fractions]
                    + ["–"] * len(pgd_fractions) + ["–"])
    eps_refs = [run["eps_ref"] for run in results["runs"]]
    seeds = ", ".join(str(s) for s in results["seeds"])
    pgd_settings = first["pgd_settings"]
    pgd_note = (f"FGS/PGD accuracies at fractions of epsilon_ref; PGD: {pgd_settings['steps']} steps, "
                f"{pgd_settings['restarts']} restart(s), {pgd_settings['norm']}" if pgd_settings
                else "FGS accuracies at fractions of epsilon_ref; PGD off")
    autoattack = next(iter(first.get("autoattack", {}).values()), None)
    aa_note = (f" AutoAttack ({autoattack.get('version')}: {', '.join(autoattack.get('attacks', []))}) on "
               f"{autoattack['n_examples']} class-balanced test images." if autoattack else "")
    notes = (f"\nepsilon_ref (L-infinity, [0, 1] pixels) from the {LABELS.get(results['eps_ref_from'])} model: "
             + ", ".join(f"{e:.4g}" for e in eps_refs) + f" (seeds {seeds}). rho_2 in "
             f"{first['rho_space']} space; {pgd_note}. {first['n_examples']} test images"
             + (", mean ± sample std over seeds." if several else ".") + aa_note + "\n")
    return markdown_table(header, rows) + notes
