"""DDN, the minimal-norm L2 attack: against the exact minimal distance of linear models (an analytic oracle), and
against two public implementations (foolbox's and adv-lib's DDN) on a trained LeNet."""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from dd_hub import DDHubError
from dd_hub.attacks import AttackResult, ddn


def _linear(classes: int, features: int = 20, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Linear(features, classes)
    with torch.no_grad():
        model.weight.mul_(3)
    return model.eval()


def _exact_distance(model: nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
    """min over k != y of (z_y - z_k) / ||w_y - w_k||: the minimal L2 distance to another class's region."""
    with torch.no_grad():
        logits = model(inputs)
    labels = logits.argmax(1)
    w = model.weight
    gaps = logits.gather(1, labels[:, None]) - logits                   # z_y - z_k
    spans = (w[labels][:, None, :] - w[None, :, :]).norm(dim=2)        # ||w_y - w_k||
    distance = gaps / spans.clamp_min(1e-12)
    distance[torch.arange(len(labels)), labels] = float("inf")
    return distance.min(1).values


def test_finds_the_exact_minimal_distance_of_a_binary_linear_model():
    model = _linear(2)
    inputs = torch.randn(64, 20)
    exact = _exact_distance(model, inputs)
    result = ddn(model, inputs, steps=200, bounds=None)
    assert result.success.all()
    assert (result.norms() >= exact * (1 - 1e-4)).all()     # a valid point is never closer than the minimum
    assert (result.norms() <= exact * 1.01).all()           # and DDN gets within 1% of it


def test_is_an_upper_bound_on_a_multiclass_linear_model():
    """With ten classes the cross-entropy's gradient does not point at the nearest other class, so DDN's points are
    farther than the exact minimum (measured: 11% on average, 34% at worst here); never closer."""
    model = _linear(10)
    inputs = torch.randn(64, 20)
    exact = _exact_distance(model, inputs)
    result = ddn(model, inputs, steps=200, bounds=None)
    assert result.success.all()
    ratio = result.norms() / exact
    assert (ratio >= 1 - 1e-4).all() and ratio.mean() < 1.15 and ratio.max() < 1.4


def test_result_is_a_valid_adversarial_example_inside_the_box(trained_lenet, mnist_test):
    images, labels = mnist_test.tensors[0][:32], mnist_test.tensors[1][:32]
    result = ddn(trained_lenet, images, labels, steps=30)
    assert isinstance(result, AttackResult) and result.iterations is not None
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    with torch.no_grad():
        predictions = trained_lenet(result.adversarial).argmax(1)
    assert torch.equal(result.success, predictions != labels)
    assert (result.norms()[~result.success] == 0).all()                 # none found: the input itself


def test_bad_settings_are_one_line_errors():
    with pytest.raises(DDHubError, match="DDN needs"):
        ddn(_linear(2), torch.randn(2, 20), steps=0)


@pytest.fixture(scope="module")
def attacked(trained_lenet, mnist_test):
    images = mnist_test.tensors[0][:32]
    with torch.no_grad():
        predictions = trained_lenet(images).argmax(1)
    return images, predictions, ddn(trained_lenet, images, steps=50)


def _agree(ours: AttackResult, theirs: torch.Tensor, model, images, labels) -> None:
    """Same algorithm and settings: everything they break, we break, no farther (we also check the last point)."""
    with torch.no_grad():
        broken = model(theirs).argmax(1) != labels
    assert broken.float().mean() > 0.9
    assert (ours.success | ~broken).all()
    theirs_norm = (theirs - images).flatten(1).norm(dim=1)
    assert (ours.norms()[broken] <= theirs_norm[broken] + 1e-3).all()
    assert ours.norms()[broken].mean() >= 0.98 * theirs_norm[broken].mean()


def test_agrees_with_foolbox_ddn(trained_lenet, attacked):
    fb = pytest.importorskip("foolbox")
    images, predictions, ours = attacked
    raw, _, _ = fb.attacks.DDNAttack(init_epsilon=1.0, steps=50, gamma=0.05)(
        fb.PyTorchModel(trained_lenet, bounds=(0, 1)), images, predictions, epsilons=None)
    _agree(ours, raw, trained_lenet, images, predictions)


def test_agrees_with_adv_lib_ddn(trained_lenet, attacked, monkeypatch):
    adv_lib = pytest.importorskip("adv_lib", reason="adv-lib is an optional oracle: pip install --no-deps adv-lib")
    # adv-lib's DDN module imports its visdom logger (an optional dependency it only uses for a callback)
    logger = types.ModuleType("adv_lib.utils.visdom_logger")
    logger.VisdomLogger = None
    monkeypatch.setitem(sys.modules, "adv_lib.utils.visdom_logger", logger)
    spec = importlib.util.spec_from_file_location(
        "adv_lib_ddn", Path(adv_lib.__path__[0]) / "attacks" / "decoupled_direction_norm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    images, predictions, ours = attacked
    theirs = module.ddn(trained_lenet, images, predictions, steps=50, levels=None)
    _agree(ours, theirs, trained_lenet, images, predictions)


def test_the_evaluation_reports_minimal_norms_beside_deepfool(trained_lenet, mnist_test):
    from dd_hub import EvalConfig, evaluate
    from dd_hub.evaluation.report import minimal_norm_accuracy

    config = EvalConfig(max_examples=20, deepfool_steps=10, minimal_norm_steps=10, pgd_steps=0, sanity=False,
                        autoattack=[], fgs_eps=[0.1], minimal_norm_eps=[0.5, 1.0, 2.0])
    report = evaluate(trained_lenet, mnist_test, config, progress=False)
    minimal = report.minimal_norm
    assert minimal["n_examples"] == 20 and minimal["steps"] == 10 and 0 < minimal["found"] <= 1
    assert minimal_norm_accuracy(minimal, 0.0) == pytest.approx(report.clean_accuracy)
    accuracies = [minimal["accuracy"][key] for key in ("0.5", "1", "2")]
    assert accuracies == sorted(accuracies, reverse=True)
    assert accuracies == [minimal_norm_accuracy(minimal, eps) for eps in (0.5, 1.0, 2.0)]
    assert minimal["curve"] == sorted(minimal["curve"]) and minimal["rho2"] > 0
    # the card shows them beside DeepFool's rho_2
    metrics = {"model": {"repo_name": "x", "architecture": "dd_lenet_mnist", "dataset": "mnist-5k",
                         "dataset_hub_id": "mnist", "method": "deep_defense"},
               "recipe": {}, "hardened": report.to_dict(), "reference": report.to_dict()}
    from dd_hub.hub.card import _minimal_norm_section
    section = _minimal_norm_section(metrics)
    assert "## Minimal L2 perturbations" in section and f"{minimal['rho2']:.4g}" in section


def test_a_model_nothing_can_fool_reports_no_minimal_norm_not_nan(mnist_test):
    """A constant classifier: no valid perturbation exists; the figures are None (metrics.json holds no NaN)."""
    from dd_hub import EvalConfig, evaluate

    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.arange(10.0))

        def forward(self, x):
            return self.bias.expand(len(x), 10) + 0 * x.flatten(1).sum(1, keepdim=True)

    config = EvalConfig(max_examples=10, deepfool_steps=2, minimal_norm_steps=3, pgd_steps=0, sanity=False,
                        autoattack=[], fgs_eps=[0.1], fgs_fractions=[])
    minimal = evaluate(Constant(), mnist_test, config, eps_ref=0.1, progress=False).minimal_norm
    assert minimal["found"] == 0 and minimal["rho2"] is None and minimal["mean_l2"] is None
