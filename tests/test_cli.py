"""`dd-hub harden` and `dd-hub eval` end to end, and the one-line errors every bad input must get."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

import dd_hub
from helpers import assert_one_line_error, run_cli

TINY = ["--set", "reference.epochs=1", "--epochs", "1", "--set", "max_train_examples=300",
        "--set", "evaluation.max_examples=60", "--set", "evaluation.deepfool_steps=10", "--set", "evaluation.minimal_norm_steps=10",
        "--set", "evaluation.pgd_steps=5", "--set", "evaluation.sanity=false",
        "--set", "evaluation.autoattack=[mnist-linf,mnist-l2]", "--set", "evaluation.autoattack_max_examples=10", "--quiet"]




@pytest.fixture(scope="module")
def hardened_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "lenet"
    result = run_cli("harden", "lenet", "--dataset", "mnist-5k", "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    assert "| clean accuracy |" in result.output
    return out


@pytest.mark.slow
def test_harden_writes_a_complete_loadable_directory(hardened_dir):
    for name in ("model.safetensors", "config.json", "metrics.json", "README.md", "reference/model.safetensors",
                 "reference/config.json"):
        assert (hardened_dir / name).is_file(), name
    assert not [p for p in hardened_dir.rglob("*") if p.name.startswith(".")]  # no temp files left behind
    metrics = json.loads((hardened_dir / "metrics.json").read_text())
    assert metrics["hardened"]["n_examples"] == 60
    assert metrics["recipe"]["defense"]["lam"] == 15.0
    # timm loads it directly once dd_hub registered the architecture; logits match dd_hub.load bit for bit.
    bare = timm.create_model(f"local-dir:{hardened_dir}", pretrained=True).eval()
    wrapped = dd_hub.load(hardened_dir)
    x = torch.rand(4, 1, 28, 28)
    mean, std = bare.pretrained_cfg["mean"][0], bare.pretrained_cfg["std"][0]
    assert torch.equal(bare((x - mean) / std), wrapped(x))


@pytest.mark.slow
def test_eval_of_a_saved_directory(hardened_dir):
    result = run_cli("eval", str(hardened_dir), "--dataset", "mnist-5k", "--max-examples", "40", "--steps", "5",
                 "--eps-ref", "0.1", "--set", "pgd_steps=3", "--set", "sanity=false", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["n_examples"] == 40 and report["eps_ref_source"] == "given"
    bad = run_cli("eval", str(hardened_dir), "--dataset", "mnist-5k", "--set", "pgd_stepz=3")
    assert_one_line_error(bad, "unknown recipe key 'evaluation.pgd_stepz'")


@pytest.mark.slow
def test_eval_of_a_dd_hub_directory_gives_the_cards_figures_back(hardened_dir):
    result = run_cli("eval", str(hardened_dir), "--json", "--quiet")  # dataset and settings from its metrics.json
    assert result.exit_code == 0, result.output
    measured = json.loads((hardened_dir / "metrics.json").read_text())["hardened"]
    again = json.loads(result.output)
    for key in ("n_examples", "clean_accuracy", "rho2", "eps_ref", "fgs", "fgs_at_ref", "pgd_at_ref", "autoattack"):
        assert again[key] == measured[key], key
    assert set(again["autoattack"]) == {"mnist-linf", "mnist-l2"}


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "dd_hub", "--help"], capture_output=True, text=True, check=True)
    assert "harden" in out.stdout




def test_unknown_model(tmp_path):
    assert_one_line_error(run_cli("harden", "resnet_19", "--dataset", "mnist-5k", "--recipe", "recipes/mnist_lenet.yaml",
                            "--set", "model=resnet_19", "--out", str(tmp_path)), "unknown model", "did you mean")


def test_unknown_dataset(tmp_path):
    assert_one_line_error(run_cli("harden", "lenet", "--dataset", "mnist-6k", "--recipe", "recipes/mnist_lenet.yaml",
                            "--set", "dataset=mnist-6k", "--out", str(tmp_path)), "unknown dataset")


def test_missing_data_dir(tmp_path):
    assert_one_line_error(run_cli("harden", "lenet", "--dataset", "mnist", "--recipe", "recipes/mnist_lenet.yaml",
                            "--set", "dataset=mnist", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path)),
                        "does not exist")


def test_invalid_recipe_override(tmp_path):
    assert_one_line_error(run_cli("harden", "lenet", "--dataset", "mnist-5k", "--set", "harden.lrr=1",
                            "--out", str(tmp_path)), "unknown recipe key 'harden.lrr'")
    assert_one_line_error(run_cli("harden", "lenet", "--dataset", "mnist-5k", "--set", "harden.epochs=many",
                            "--out", str(tmp_path)), "must be int")


def test_truncated_checkpoint(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    assert_one_line_error(run_cli("harden", "lenet", "--dataset", "mnist-5k", "--checkpoint", str(bad),
                            "--out", str(tmp_path / "o")), "not a readable safetensors file")


def test_pickle_checkpoint_is_refused(tmp_path):
    pickle = tmp_path / "model.pth"
    torch.save({"w": torch.zeros(1)}, pickle)
    assert_one_line_error(run_cli("harden", "lenet", "--dataset", "mnist-5k", "--checkpoint", str(pickle),
                            "--out", str(tmp_path / "o")), "pickle")


def test_checkpoint_of_another_architecture(tmp_path):
    other = tmp_path / "mlp.safetensors"
    save_file(dd_hub.create_model("dd_mlp_mnist").model.state_dict(), str(other))
    assert_one_line_error(run_cli("harden", "lenet", "--dataset", "mnist-5k", "--checkpoint", str(other),
                            "--out", str(tmp_path / "o")), "does not fit")


def test_non_finite_loss_aborts_without_writing_a_model(tmp_path):
    out = tmp_path / "o"
    # An untrained LeNet misclassifies most images, and the paper's unbounded exp(d * rho) overflows for them at d.
    result = run_cli("harden", "lenet", "--dataset", "mnist-5k", "--out", str(out), "--set", "reference.epochs=0",
                 "--allow-random-init", "--set", "defense.d=1e6", "--set", "defense.max_exponent=null",
                 "--set", "harden.batch_size=10",
                 "--set", "max_train_examples=200", "--quiet")
    assert_one_line_error(result, "non-finite")
    assert not (out / "model.safetensors").exists()
