"""`dd-hub reproduce` and `dd-hub sweep`: table formatting, argument errors, and tiny end-to-end runs."""
import json

import pytest
from click.testing import CliRunner

from dd_hub.cli import main
from dd_hub.workflows.reproduce import format_table

TINY = ["--dataset", "mnist-5k", "--set", "reference.epochs=1", "--epochs", "1", "--max-examples", "50",
        "--set", "harden.batch_size=200", "--set", "evaluation.pgd_steps=3", "--set", "evaluation.deepfool_steps=10",
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
    (["--methods", "clean,parsevall"], "unknown method 'parsevall'"),
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
