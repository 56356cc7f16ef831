"""A run proves it can finish before it trains, never diverges silently, keeps what it trained when it fails late,
and takes one option set on harden, reproduce and sweep (issue 24 items 1, 2, 4, 5; issue 28 items 4, 5).

Everything here is cheap: the MLP recipe on a few MNIST-5k images with a minimal evaluation; the one end-to-end
smoke run (AutoAttack and the masking checks kept, as every end-to-end test) is marked slow.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from dd_hub.errors import DDHubError
from dd_hub.models import directory
from dd_hub.recipes import find_recipe
from dd_hub.storage import run_dir
from dd_hub.training.deep_defense import LossOutput
from dd_hub.training.loop import TrainConfig, train

from helpers import assert_one_line_error, run_cli

TINY = ["--set", "reference.epochs=1", "--epochs", "1", "--set", "max_train_examples=40",
        "--set", "evaluation.max_examples=20", "--set", "evaluation.deepfool_steps=3", "--set", "evaluation.minimal_norm_steps=10", "--set",
        "evaluation.pgd_steps=0", "--set", "evaluation.sanity=false", "--set", "evaluation.fgs_eps=[0.05]",
        "--set", "evaluation.autoattack=[]"]


# --- names, options, help ------------------------------------------------------------------------------------------
def test_dataset_and_recipe_names_match_without_regard_to_case():
    upper, lower = find_recipe("LeNet", "MNIST-5k"), find_recipe("lenet", "mnist-5k")
    assert upper.name == lower.name == "mnist_lenet" and upper.dataset == "mnist-5k"
    assert find_recipe("resnet10t", "MNIST-5K").name == "resnet10t-mnist-5k"  # the any-model recipe, same spelling


def test_smoke_shrinks_every_phase_and_the_users_own_settings_win():
    smoke = find_recipe("lenet", "mnist-5k", {"evaluation.max_examples": 30}, smoke=True)
    full = find_recipe("lenet", "mnist-5k")
    assert smoke.smoke and not full.smoke
    assert smoke.max_train_examples == 500 and smoke.harden.epochs == 1
    assert smoke.reference.epochs == min(full.reference.epochs, 20)
    assert smoke.evaluation.max_examples == 30 and smoke.evaluation.autoattack_max_examples == 40
    # every evaluation kind stays on: AutoAttack with its default attacks, PGD, the masking checks
    assert smoke.evaluation.autoattack == full.evaluation.autoattack != []
    assert smoke.evaluation.autoattack_attacks == full.evaluation.autoattack_attacks
    assert smoke.evaluation.sanity and smoke.evaluation.pgd_steps == full.evaluation.pgd_steps
    assert find_recipe("vit_tiny_patch16_224", "imagenet", smoke=True).reference is None  # none added


def test_show_recipe_prints_the_recipe_with_the_options_applied_and_stops(tmp_path):
    result = run_cli("harden", "resnet10t", "--dataset", "MNIST-5k", "--smoke", "--epochs", "3", "--show-recipe",
                     "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "smoke: true" in result.output and "model: resnet10t" in result.output and "epochs: 3" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["harden", "lenet", "--method", "deepdefense"], "--method must be one of"),
    (["harden", "lenet", "--set", "method=deepdefense"], "(did you mean deep_defense?)"),
    (["harden", "lenet", "--set", "harden.lrr=0.1"], "unknown recipe key 'harden.lrr' (did you mean lr?)"),
    (["reproduce", "lenet", "--method", "clean"], "--method does not apply to `dd-hub reproduce`: it compares"),
    (["sweep", "lenet", "--method", "clean"], "--method does not apply to `dd-hub sweep`"),
    (["reproduce", "lenet", "--methods", "clean,deepfol_adv"], "--methods must be one of"),
    (["harden", "lenet", "--input-size", "224"], "--input-size does not apply to mnist-5k"),
    (["sweep", "lenet", "--input-size", "32"], "--input-size does not apply to mnist-5k"),
    (["harden", "lenet", "--device", "tpu"], "--device"),
    (["harden", "resnet_18"], "did you mean resnet18"),
])
def test_options_and_names_get_one_line_errors_with_their_command_line_names(tmp_path, args, message):
    result = run_cli(*args, "--dataset", "mnist-5k", "--out", str(tmp_path / "run"), *TINY)
    assert_one_line_error(result, message)
    assert "Recipe.method" not in result.output and not (tmp_path / "run" / "checkpoints").exists()


def test_a_misspelt_model_gets_distinct_suggestions(tmp_path):
    result = run_cli("harden", "resnet18x", "--dataset", "mnist-5k", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "did you mean resnet18,")
    suggested = result.output.split("did you mean ")[1].split("?")[0].split(", ")
    assert len(suggested) == len(set(suggested)) > 1


def test_harden_reproduce_and_sweep_share_one_option_set_and_the_help_shows_whole_summaries():
    from dd_hub.cli import main

    shared = {"--smoke", "--method", "--resume", "--mixed-precision", "--checkpoint-every", "--input-size",
              "--device", "--show-recipe", "--quiet", "--overwrite", "--set", "--data-dir", "--checkpoint"}
    for name in ("harden", "reproduce", "sweep"):
        options = {opt for param in main.commands[name].params for opt in param.opts}
        assert shared <= options, (name, shared - options)
    assert {opt for param in main.commands["eval"].params for opt in param.opts} >= {"--device"}
    top = run_cli("--help").output
    commands = top.split("Commands:")[1]
    assert "..." not in commands and "(the paper's figures 3 and 4)" in " ".join(commands.split())


def test_a_folder_that_holds_something_else_is_refused_like_a_previous_run(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"not ours")
    result = run_cli("harden", "mlp", "--dataset", "mnist-5k", "--out", str(folder), *TINY)
    assert_one_line_error(result, "is not empty and holds no dd-hub run (holiday.jpg)", "--overwrite")
    assert sorted(p.name for p in folder.iterdir()) == ["holiday.jpg"]
    run_dir.check(folder, overwrite=True)      # told to: it may write beside them
    run_dir.check(tmp_path / "absent")         # a new folder is fine
    (tmp_path / "empty").mkdir()
    run_dir.check(tmp_path / "empty")


def test_missing_data_is_refused_before_any_weights_are_fetched(tmp_path, monkeypatch):
    import dd_hub.workflows.start as start

    def no_weights(*args, **kwargs):
        raise AssertionError("the model was built before the data was checked")

    monkeypatch.setattr(start, "create_model", no_weights)
    result = run_cli("harden", "resnet18", "--dataset", "cifar10", "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(result, "dataset 'cifar10' needs --data-dir")


# --- before training: the run proves it can finish -----------------------------------------------------------------
def _start(model="mlp", **overrides):
    from dd_hub.workflows.start import prepare_start

    recipe = find_recipe(model, "mnist-5k", {"max_train_examples": 40, **overrides})
    return recipe, prepare_start(recipe)


def test_preflight_runs_every_phase_on_one_batch_and_checks_the_export(monkeypatch):
    import dd_hub.workflows.start as start

    recipe, begun = _start()
    before = {k: v.clone() for k, v in begun.model.state_dict().items()}
    start.preflight(begun, recipe, ["clean", "deep_defense"])
    assert all(torch.equal(before[k], v) for k, v in begun.model.state_dict().items())  # a copy was used

    class Broken(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(len(x), 3)

    monkeypatch.setattr(directory, "load_directory", lambda folder: Broken())
    with pytest.raises(DDHubError, match="the export of 'dd_mlp_mnist' does not reload as the same network"):
        start.preflight(begun, recipe)


def test_preflight_refuses_an_objective_that_cannot_run(monkeypatch):
    import dd_hub.workflows.start as start

    recipe, begun = _start()

    def broken(model, inputs, labels, **kwargs):
        raise RuntimeError("derivative for aten::something is not implemented")

    monkeypatch.setattr(start, "create_objective", lambda recipe: broken)
    with pytest.raises(DDHubError, match="cannot run the hardening with deep_defense .*not implemented.*--set "
                                         "model_args.KEY=VALUE"):
        start.preflight(begun, recipe)


# --- divergence is never silent ------------------------------------------------------------------------------------
def _nan_every(period: int):
    calls = {"n": 0}

    def objective(model, inputs, labels, *, logits, center=None):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(logits, labels)
        if calls["n"] % period == 0:
            loss = loss * float("nan")
        return LossOutput(loss, {"ce": float(loss)})

    return objective


def _data(n=200):
    torch.manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 4, 4), torch.randint(0, 3, (n,)))


def _model():
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))


def test_a_phase_whose_steps_are_all_skipped_stops_naming_it_without_the_schedulers_warning():
    config = TrainConfig(epochs=2, batch_size=50, lr=0.1, lr_milestones=[1], freeze_bn=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DDHubError, match=r"the harden phase diverged: 4 of its 4 steps \(100%\).*harden.lr.*"
                                             r"defense.lam.*harden.max_grad_norm"):
            train(_model(), _data(), config, _nan_every(1), desc="harden", progress=False)
    assert not [w for w in caught if "lr_scheduler" in str(w.message)]


def test_a_few_skipped_steps_are_counted_in_the_records_and_too_many_stop_the_phase():
    config = TrainConfig(epochs=2, batch_size=10, lr=0.1, lr_milestones=[1], freeze_bn=False, max_grad_norm=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = train(_model(), _data(), config, _nan_every(20), desc="harden", progress=False)
        assert [(r["steps"], r["skipped_steps"], r["clipped_steps"]) for r in history] == [(19, 1, 19), (19, 1, 19)]
        with pytest.raises(DDHubError, match=r"the reference phase diverged: 4 of its 20 steps \(20%\).*"
                                             r"reference.max_skipped_share = 0.1.*reference.lr"):
            train(_model(), _data(), TrainConfig(epochs=1, batch_size=10, lr_milestones=[1], freeze_bn=False),
                  _nan_every(5), desc="reference", progress=False)


def test_a_non_finite_figure_is_named_with_its_model():
    from dd_hub.evaluation.report import Report
    from dd_hub.workflows.phases import check_finite_figures

    good = Report(n_examples=1, clean_accuracy=1.0, rho2=0.2, rho_space="pixel", deepfool={}, fgs={"0.1": 1.0})
    bad = Report(n_examples=1, clean_accuracy=1.0, rho2=float("nan"), rho_space="pixel", deepfool={}, fgs={})
    check_finite_figures({"hardened": good})
    with pytest.raises(DDHubError, match="the reference model's figure 'rho2' is not a finite number"):
        check_finite_figures({"hardened": good, "reference": bad})


# --- nothing is lost late -------------------------------------------------------------------------------------------
def test_a_failure_after_training_keeps_the_weights_and_resume_finishes_without_training(tmp_path, monkeypatch):
    import dd_hub.workflows.harden as harden

    out = tmp_path / "run"
    real = harden.write_outputs

    def failing(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(harden, "write_outputs", failing)
    first = run_cli("harden", "mlp", "--dataset", "mnist-5k", "--out", str(out), *TINY)
    assert_one_line_error(first, "disk on fire", f"kept in {out / 'checkpoints'}", "--resume")
    assert (out / "reference" / "model.safetensors").is_file() and (out / "checkpoints" / "latest").is_file()
    monkeypatch.setattr(harden, "write_outputs", real)
    again = run_cli("harden", "mlp", "--dataset", "mnist-5k", "--out", str(out), *TINY, "--resume")
    assert again.exit_code == 0, again.output
    assert "Reference training: finished before" in again.output and "harden finished before" in again.output
    assert again.output.count("report measured before on these weights is reused") == 2
    assert "Hardening" in again.output and "done in" in again.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"][0]["steps"] >= 1 and metrics["training"][0]["skipped_steps"] == 0


def test_a_failed_sweep_resumes_without_training_or_measuring_again(tmp_path, monkeypatch):
    import dd_hub.workflows.sweep as sweep

    out = tmp_path / "sweep"
    command = ["sweep", "mlp", "--dataset", "mnist-5k", "--out", str(out), *TINY, "--c", "5,45"]
    real = sweep.plot_sweep

    def failing(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(sweep, "plot_sweep", failing)
    assert_one_line_error(run_cli(*command), "no display", "--resume")
    monkeypatch.setattr(sweep, "plot_sweep", real)
    again = run_cli(*command, "--resume")
    assert again.exit_code == 0, again.output
    assert again.output.count("report measured before on these weights is reused") == 3  # reference and 2 points
    assert again.output.count("finished before: reloaded from") == 2 and "Reference training: finished" in again.output
    assert len(json.loads((out / "sweep.json").read_text())["points"]) == 2


def test_quiet_keeps_only_the_final_table(tmp_path):
    result = run_cli("harden", "mlp", "--dataset", "mnist-5k", "--out", str(tmp_path / "run"), *TINY, "--quiet")
    assert result.exit_code == 0, result.output
    assert "done in" not in result.output and result.output.lstrip().startswith("| ")


# --- smoke runs are never published or listed -----------------------------------------------------------------------
def test_a_smoke_card_is_left_off_the_boards_with_one_notice(tmp_path):
    from dd_hub.hub.collection import load_local_cards

    folder = tmp_path / "cards" / "lenet-smoke"
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("---\nlibrary_name: timm\ntags: [dd-hub]\ndd_hub:\n  architecture: x\n  "
                                      "dataset: mnist-5k\n  smoke: true\n---\n# lenet (smoke run)\n")
    cards, notices = load_local_cards(tmp_path / "cards")
    assert cards == [] and len(notices) == 1 and "not listed, a smoke run" in notices[0]


@pytest.mark.slow
def test_a_smoke_run_runs_every_phase_says_smoke_and_is_never_published(tmp_path):
    out = tmp_path / "smoke"
    result = run_cli("harden", "lenet", "--dataset", "MNIST-5k", "--smoke", "--out", str(out))
    assert result.exit_code == 0, result.output
    for line in ("Checking that the run can finish", "Reference training", "Hardening", "Evaluating the hardened",
                 "Writing the model folder"):
        assert line in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["smoke"] is True and metrics["model"]["repo_name"].endswith("-smoke")
    hardened = metrics["hardened"]
    assert hardened["n_examples"] == 40 and hardened["autoattack"] and hardened["sanity"] and hardened["pgd_at_ref"]
    card = (out / "README.md").read_text()
    assert "smoke: true" in card.split("---")[1] and "(smoke run)" in card and "| training steps |" in card
    assert_one_line_error(run_cli("publish", str(out), "--dry-run"), "is a smoke run")
    assert_one_line_error(run_cli("cards", str(tmp_path / "cards"), "--add", str(out)), "is a smoke run")
