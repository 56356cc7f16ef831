"""timm's own families on the embedded MNIST-5k (grey 28x28 images), from the command line.

- Each family's recipe (ResNet, ConvNeXt, ViT, MobileNetV3) hardens end to end on a tiny budget with the default
  evaluation (AutoAttack at both threat models on a few images), and its export loads in
  plain timm, in a fresh interpreter that never imports dd_hub, giving ``dd_hub.load``'s logits on normalized
  inputs.
- Any timm name without a recipe of its own hardens with the generic MNIST recipe; a network that cannot take
  28x28 images is refused with one line before any work.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import dd_hub
from dd_hub.recipes import find_recipe

from helpers import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow
TINY = ["--set", "reference.epochs=1", "--epochs", "1", "--set", "max_train_examples=64",
        "--set", "harden.batch_size=32", "--set", "reference.batch_size=32", "--set", "evaluation.max_examples=20",
        "--set", "evaluation.deepfool_steps=5", "--set", "evaluation.minimal_norm_steps=10", "--set", "evaluation.pgd_steps=3",
        "--set", "evaluation.sanity_max_examples=20", "--set", "evaluation.autoattack_max_examples=5", "--quiet"]
#: each family's recipe, shallower for speed (the recipe's other model_args stay)
FAMILY_RECIPES = {"resnet18": [], "convnext_atto": ["--set", "model_args.depths=[1,1,1,1]"],
                  "vit_tiny_patch16_224": ["--set", "model_args.depth=2"], "mobilenetv3_small_050": []}

PLAIN_TIMM = """
import sys, timm, torch
from safetensors.torch import load_file, save_file
model = timm.create_model("local-dir:" + sys.argv[1], pretrained=True).eval()
cfg = model.pretrained_cfg
x = load_file(sys.argv[2])["x"]
mean, std = torch.tensor(cfg["mean"]).view(-1, 1, 1), torch.tensor(cfg["std"]).view(-1, 1, 1)
with torch.no_grad():
    logits = model((x - mean) / std)
assert "dd_hub" not in sys.modules
save_file({"logits": logits.contiguous()}, sys.argv[3])
"""


def _plain_timm_logits(model_dir: Path, x: torch.Tensor, tmp_path: Path) -> torch.Tensor:
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    done = subprocess.run([sys.executable, "-c", PLAIN_TIMM, str(model_dir), str(tmp_path / "x.safetensors"),
                           str(tmp_path / "logits.safetensors")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_file(str(tmp_path / "logits.safetensors"))["logits"]


@pytest.mark.parametrize("model", FAMILY_RECIPES)
def test_family_recipe_hardens_and_its_export_loads_in_plain_timm(model, tmp_path):
    recipe = find_recipe(model, "mnist-5k")
    assert not recipe.any_model and recipe.model == model  # the family's own recipe
    out = tmp_path / "out"
    result = run_cli("harden", model, "--dataset", "mnist-5k", "--out", str(out), *TINY, *FAMILY_RECIPES[model])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["hardened"]["autoattack"]) == {"mnist-linf", "mnist-l2"}
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == model and config["pretrained_cfg"]["input_size"] == [1, 28, 28]
    assert recipe.model_args.items() <= config.get("model_args", {}).items()  # rebuilt as it was trained
    x = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        expected = dd_hub.load(out)(x)
    # dd_hub.load swaps hard-sigmoid for relu6(x + 3) / 6 (a double backward): equal up to float rounding, which a
    # network whose BatchNorm statistics come from two batches can amplify to 1e-4
    torch.testing.assert_close(_plain_timm_logits(out, x, tmp_path), expected, rtol=1e-4, atol=1e-4)
    timm_snippet = (out / "README.md").read_text().split("## Usage")[1].split("```python")[1]
    assert "import timm" in timm_snippet and "dd_hub" not in timm_snippet  # plain timm needs nothing of dd-hub


@pytest.mark.parametrize("model, extra", [("resnet10t", []), ("deit_tiny_patch16_224", ["model_args.depth=2"])])
def test_any_timm_name_hardens_with_the_generic_mnist_recipe(model, extra, tmp_path):
    recipe = find_recipe(model, "mnist-5k")
    assert recipe.any_model and recipe.reference is not None and recipe.model == model  # the generic MNIST recipe
    out = tmp_path / "out"
    sets = [arg for value in extra for arg in ("--set", value)]
    result = run_cli("harden", model, "--dataset", "mnist-5k", "--allow-random-init", "--out", str(out), *TINY, *sets)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["pretrained_cfg"]["input_size"] == [1, 28, 28]


def test_a_hardening_that_diverges_stops_in_one_line_and_writes_no_model(tmp_path):
    # every Deep Defense step non-finite (the paper's unbounded exp(d * rho) at a huge d): the run used to go on and
    # evaluate the un-updated network
    out = tmp_path / "out"
    result = run_cli("harden", "lcnet_050", "--dataset", "mnist-5k", "--allow-random-init", "--out", str(out), *TINY,
                     "--set", "defense.max_exponent=null", "--set", "defense.d=1e6")
    assert_one_line_error(result, "the harden phase diverged: 2 of its 2 steps (100%)", "harden.max_grad_norm")
    assert (out / "reference" / "model.safetensors").is_file() and not (out / "metrics.json").exists()


def test_a_network_that_fits_no_image_size_is_refused_in_one_line(tmp_path):
    out = tmp_path / "out"
    result = run_cli("harden", "deit_tiny_patch16_224", "--dataset", "mnist-5k", "--allow-random-init", "--out",
                     str(out), "--set", "model_args.patch_size=512", "--set", "model_args.depth=1",
                     "--set", "model_args.embed_dim=8", "--set", "model_args.num_heads=1", *TINY)
    assert_one_line_error(result, "cannot classify 1x28x28 images", "nor resized to any side up to 320")
    assert not out.exists() or not any(out.iterdir())
    fitted = run_cli("harden", "convnext_femto", "--dataset", "mnist-5k", "--allow-random-init", "--out", str(out),
                     "--set", "model_args.output_stride=16", "--set", "model_args.depths=[1,1,1,1]",
                     *TINY)  # the last stage dilated instead of strided
    assert fitted.exit_code == 0, fitted.output
