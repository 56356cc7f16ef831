"""`dd-hub reproduce` and `dd-hub sweep`: table formatting, argument errors, and tiny end-to-end runs."""
import json

import pytest
from click.testing import CliRunner

from dd_hub.cli import main
from dd_hub.workflows.reproduce import format_table

TINY = ["--dataset", "mnist-5k", "--set", "reference.epochs=1", "--epochs", "1", "--max-examples", "50",
        "--set", "harden.batch_size=200", "--set", "evaluation.pgd_steps=3", "--set", "evaluation.deepfool_steps=10", "--set", "evaluation.minimal_norm_steps=10",
        "--set", "evaluation.sanity_max_examples=30", "--set", "evaluation.autoattack_max_examples=10", "--quiet"]


def _report(acc, rho, fgs, pgd=(0.5,)):
    return {"clean_accuracy": acc, "rho2": rho, "rho_space": "centered", "n_examples": 1000,
            "fgs_at_ref": dict(zip(["0.2", "0.5", "1"], fgs)), "pgd_at_ref": {"1": pgd[0]},
            "pgd_settings": {"steps": 20, "restarts": 1, "norm": "linf"},
            "sanity": [{"name": "unbounded", "passed": acc < 0.99, "detail": ""}]}


def test_table_has_our_rows_with_spread_and_the_papers_rows():
    from dd_hub.workflows.reproduce import PAPER_TABLE1, _summary

    runs = [{"seed": s, "eps_ref": 0.1 + s / 100, "reports": {
        "reference": _report(0.98, 0.2, (0.9, 0.5, 0.2)),
        "deep_defense": _report(0.97 + s / 100, 0.3, (0.95, 0.8, 0.5))}} for s in (1, 2)]
    names = ["reference", "deep_defense"]
    results = {"methods": names, "seeds": [1, 2], "runs": runs, "summary": _summary(runs, names),
               "paper": PAPER_TABLE1["dd_lenet_mnist"], "eps_ref_from": "deep_defense"}
    table = format_table(results)
    lines = table.splitlines()
    assert lines[0].startswith("| Method | Acc. | rho_2 | FGS @0.2 eps_ref")
    assert "| Deep Defense | 98.50% ± 0.71 | 0.3 ± 0 | 95.00% ± 0.00 |" in table
    assert "| paper: Ours | 99.34% | 0.284 | 96.51% | 88.93% | 50.00% | – | – |" in table
    assert "| Reference | 98.00% ± 0.00 | 0.2 ± 0 |" in table and "FAILED in 1/2 seeds: unbounded" in table
    assert "0.11, 0.12 (seeds 1, 2)" in table


@pytest.mark.parametrize("args,message", [
    (["--methods", "clean,parsevall"], "got 'parsevall' (did you mean parseval?)"),
    (["--eps-ref-from", "trades"], "--eps-ref-from must be"),
    (["--seeds", "1,x"], "expected comma-separated ints"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    result = CliRunner().invoke(main, ["reproduce", "mlp", *TINY, "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_reproduce_end_to_end(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "mlp", *TINY, "--out", str(tmp_path), "--methods",
                                       "clean,deep_defense", "--fractions", "0.5,1,2"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["seeds"] == [1234] and data["methods"] == ["reference", "clean", "deep_defense"]
    reports = data["runs"][0]["reports"]
    eps_ref = data["runs"][0]["eps_ref"]
    assert reports["deep_defense"]["eps_ref_source"] == "self" and reports["clean"]["eps_ref"] == eps_ref
    assert reports["deep_defense"]["fgs_at_ref"]["1"] <= 0.5  # the definition of epsilon_ref
    for report in reports.values():
        assert set(report["pgd_at_ref"]) == {"0.5", "1", "2"} and len(report["sanity"]) == 5
        assert all(report["pgd_at_ref"][f] <= report["fgs_at_ref"][f] + 0.1 for f in report["pgd_at_ref"])
    table = (tmp_path / "table.md").read_text()
    assert table in result.output and "| paper: Ours | 98.65% |" in table
    assert (tmp_path / "seed1234" / "deep_defense" / "model.safetensors").exists()
    # a baseline's card says whose epsilon_ref it is measured at, and `eval` measures it there again
    clean_card = (tmp_path / "seed1234" / "clean" / "README.md").read_text()
    assert "the Deep Defense model of the same `dd-hub reproduce` run falls to 50%" in clean_card
    assert "this model is at 50% there by construction" in (tmp_path / "seed1234" / "deep_defense" /
                                                            "README.md").read_text()
    again = CliRunner().invoke(main, ["eval", str(tmp_path / "seed1234" / "clean"), "--json", "--quiet"])
    assert again.exit_code == 0, again.output
    again = json.loads(again.output)
    assert again["eps_ref"] == eps_ref and again["fgs_at_ref"] == reports["clean"]["fgs_at_ref"]
    # the reference this run trained is a complete folder too: the catalogue's undefended entry
    reference = tmp_path / "seed1234" / "reference"
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["model"]["method"] == "reference" and metrics["model"]["start"] == "random"
    assert metrics["model"]["repo_name"].endswith("-reference") and metrics["hardened"] == reports["reference"]
    assert [r["phase"] for r in metrics["training"]] == ["reference"]
    card = (reference / "README.md").read_text()
    assert "trained with **standard training (the undefended reference)**" in card
    assert "Trained from random initialization (no pretrained weights) with cross-entropy alone" in card


@pytest.mark.slow
def test_sweep_end_to_end(tmp_path):
    # --epochs 0: the plumbing only (the layer-wise objective itself is tested in test_methods.py)
    result = CliRunner().invoke(main, ["sweep", "mlp", *TINY, "--epochs", "0", "--out", str(tmp_path),
                                       "--c", "5,45", "--regularize-layers", "fc1"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert [(p["c"], p["layers"]) for p in data["points"]] == [(5.0, ["fc1"]), (45.0, ["fc1"])]
    assert (tmp_path / "sweep.png").stat().st_size > 0 and "| fc1 | 15 | 5 |" in result.output


def test_each_seed_trains_the_reference_on_its_own_data_order():
    import torch
    from accelerate import Accelerator

    from dd_hub.recipes import find_recipe
    from dd_hub.workflows.start import prepare_start, train_reference

    recipe = find_recipe("mlp", "mnist-5k", {"reference.epochs": 1, "reference.batch_size": 10})
    data = torch.utils.data.TensorDataset(torch.rand(40, 1, 28, 28), torch.randint(0, 10, (40,)))

    def weights(seed):
        torch.manual_seed(0)  # same initialisation: only the data order can differ
        start = prepare_start(recipe)
        start.train_set = data
        train_reference(start, recipe, accelerator=Accelerator(cpu=True), progress=False, echo=lambda _: None,
                        seed=seed)
        return torch.cat([p.detach().flatten() for p in start.model.parameters()])

    assert torch.equal(weights(1), weights(1)) and not torch.equal(weights(1), weights(2))


def test_table_notes_say_when_pgd_was_off():
    from dd_hub.workflows.reproduce import _summary

    report = {**_report(0.98, 0.2, (0.9, 0.5, 0.2)), "pgd_at_ref": {}, "pgd_settings": {}}
    runs = [{"seed": 1, "eps_ref": 0.1, "reports": {"reference": report}}]
    results = {"methods": ["reference"], "seeds": [1], "runs": runs, "summary": _summary(runs, ["reference"]),
               "paper": None, "eps_ref_from": "reference"}
    notes = format_table(results).strip().splitlines()[-1]
    assert "PGD off" in notes and "0 steps" not in notes


@pytest.mark.slow
def test_a_failed_reproduce_resumes_without_redoing_what_finished(tmp_path, monkeypatch):
    from dd_hub.workflows import phases as workflow

    measured, fail_once = [], [True]
    real_evaluate = workflow.evaluate

    def evaluate(model, *args, **kwargs):  # the first run's second evaluation fails, as running out of memory would
        measured.append(kwargs.get("eps_ref"))
        if len(measured) == 2 and fail_once:
            fail_once.clear()
            raise RuntimeError("simulated failure\nsecond line")
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(workflow, "evaluate", evaluate)
    command = ["reproduce", "mlp", *TINY, "--out", str(tmp_path), "--methods", "clean,deep_defense"]
    failed = CliRunner().invoke(main, command)
    assert failed.exit_code == 2 and "Traceback" not in failed.output
    assert "RuntimeError: simulated failure (what finished is kept in" in failed.output
    assert "rerun the same command with --resume" in failed.output and not (tmp_path / "results.json").exists()
    phases = tmp_path / "checkpoints" / "seed1234"
    assert (phases / "deep_defense" / "report.json").is_file() and not (phases / "clean" / "report.json").exists()
    pointers = {p: p.stat().st_mtime_ns for p in phases.glob("*/latest")}
    assert {p.parent.name for p in pointers} == {"reference", "clean", "deep_defense"}
    assert not list(tmp_path.glob("seed*"))  # no model folder written before the seed's evaluations all ended

    refused = CliRunner().invoke(main, command)  # not cleared by a run without --resume
    assert refused.exit_code == 2 and "pass --resume to continue it" in refused.output
    changed = CliRunner().invoke(main, [*command, "--resume", "--set", "harden.lr=0.5"])
    assert changed.exit_code == 2 and "harden.lr changed" in changed.output

    measured.clear()
    resumed = CliRunner().invoke(main, [*(arg for arg in command if arg != "--quiet"), "--resume"])  # lines shown
    assert resumed.exit_code == 0, resumed.output
    # nothing trained again; the Deep Defense report reused, the two others measured at its epsilon_ref
    assert {p: p.stat().st_mtime_ns for p in pointers} == pointers
    assert "deep_defense: the report measured before on these weights is reused" in resumed.output
    assert "deep_defense finished before: reloaded from" in resumed.output
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["runs"][0]
    assert measured == [run["eps_ref"]] * 2 and run["eps_ref"] is not None
    assert all(len(run["training"][phase]) == 1 for phase in ("reference", "clean", "deep_defense"))
    assert (tmp_path / "seed1234" / "deep_defense" / "model.safetensors").is_file()


def test_a_kept_report_counts_only_for_the_weights_and_settings_it_measured(tmp_path):
    import torch

    from dd_hub.workflows.phases import _kept_report, weights_digest as _weights_digest

    model = torch.nn.Linear(3, 2)
    key = {"weights_sha256": _weights_digest(model), "evaluation": {"pgd_steps": 20}, "eps_ref": 0.1}
    report = {**_report(0.98, 0.2, (0.9, 0.5, 0.2)), "deepfool": {}, "fgs": {}}
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"key": key, "report": report}))
    assert _kept_report(path, key).clean_accuracy == 0.98
    with torch.no_grad():
        model.weight[0, 0] += 1e-6
    assert _kept_report(path, {**key, "weights_sha256": _weights_digest(model)}) is None
    assert _kept_report(path, {**key, "eps_ref": 0.2}) is None
    for garbage in ("[1]", "{", json.dumps({"key": key, "report": {"nonsense": 1}}), json.dumps({"key": key})):
        path.write_text(garbage)
        assert _kept_report(path, key) is None
    assert _kept_report(tmp_path / "absent.json", key) is None


def test_reports_are_kept_for_phases_that_were_not_trained_here(tmp_path, monkeypatch):
    # the reference of `--checkpoint` has no checkpoint folder: its report must still be kept
    import torch

    from dd_hub.evaluation.report import Report
    from dd_hub.recipes import find_recipe
    from dd_hub.workflows import phases
    from dd_hub.workflows import reproduce as workflow

    report = {**_report(0.98, 0.2, (0.9, 0.5, 0.2)), "deepfool": {}, "fgs": {}, "eps_ref": 0.1}
    monkeypatch.setattr(phases, "evaluate", lambda *args, **kwargs: Report.from_dict(report))
    models = {"reference": torch.nn.Linear(2, 2), "clean": torch.nn.Linear(2, 2)}
    start = type("Start", (), {"test_set": None, "center": None})()
    reports = workflow._evaluate_all(models, start, find_recipe("mlp", "mnist-5k", {}), "reference",
                                     tmp_path / "phases", progress=False, echo=lambda _: None, resume=False)
    assert set(reports) == {"reference", "clean"}
    assert all((tmp_path / "phases" / name / "report.json").is_file() for name in models)


def test_a_failed_write_names_the_cause_it_can_fix(tmp_path):
    from dd_hub.errors import DDHubError
    from dd_hub.storage.atomic_io import write_json_atomic

    with pytest.raises(DDHubError, match="check that its folder exists and can be written, or choose another"):
        write_json_atomic(tmp_path / "absent" / "x.json", {})
