"""dd_hub.attacks.autoattack: Croce & Hein's reference AutoAttack (PyPI ``pyautoattack``) behind one function.

Small and fast: the first 8 embedded MNIST-5k test images, a randomly initialised linear classifier (AutoAttack's
fixed budgets, e.g. APGD-T's 9 targets x 100 iterations, cost seconds even on it) and a random LeNet. The labels
are the model's own clean predictions in most tests, so that every image starts correctly classified and the
attacks have something to do (a random model's accuracy on the true labels is near zero).
"""
from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

pytest.importorskip("pyautoattack")

from dd_hub import create_model
from dd_hub.attacks.autoattack import autoattack
from dd_hub.data.datasets import create_dataset
from dd_hub.errors import DDHubError


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Batches of 8 images: intra-op threads only add synchronisation (and thrash on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)).eval()
    data = create_dataset("mnist-5k", "test")
    images = torch.stack([data[i][0] for i in range(8)])
    labels = torch.tensor([int(data[i][1]) for i in range(8)])
    with torch.no_grad():
        predicted = model(images).argmax(1)
    return model, images, labels, predicted


def _check(result, model, images, labels, norm: str, eps: float) -> None:
    adv = result.adversarial
    assert adv.shape == images.shape and adv.dtype == images.dtype
    assert adv.min() >= 0 and adv.max() <= 1
    delta = (adv - images).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all(), size.max()
    with torch.no_grad():
        still = model(adv).argmax(1) == labels
        clean = (model(images).argmax(1) == labels).float().mean().item()
    assert torch.equal(result.robust, still)
    assert result.robust_accuracy == pytest.approx(still.float().mean().item())
    assert result.clean_accuracy == pytest.approx(clean)
    assert 0.0 <= result.robust_accuracy <= result.clean_accuracy


def test_linf_apgd_ce_and_apgd_t(setup):
    model, images, _, predicted = setup
    result = autoattack(model, images, predicted, norm="linf", eps=0.01)
    _check(result, model, images, predicted, "linf", 0.01)
    assert result.clean_accuracy == 1.0 and result.robust_accuracy < 1.0
    meta = result.metadata
    assert "running apgd-t" in meta["log"]                 # some images survived APGD-CE: APGD-T ran on them
    assert meta["package"] == "pyautoattack" and meta["package_version"]
    assert meta["version"] == "custom" and meta["attacks"] == ["apgd-ce", "apgd-t"]
    assert meta["norm"] == "linf" and meta["eps"] == 0.01 and meta["n_examples"] == 8 and meta["seed"] == 0
    assert meta["settings"]["apgd"]["n_iter"] == 100 and meta["settings"]["apgd-t"]["n_target_classes"] == 9
    assert "check_dynamic" in meta["checks"] and result.flags == []  # a plain static classifier: no flag


def test_random_lenet_on_true_labels():
    torch.manual_seed(1)
    lenet = create_model("dd_lenet_mnist").eval()
    data = create_dataset("mnist-5k", "test")
    images = torch.stack([data[i][0] for i in range(8)])
    labels = torch.tensor([int(data[i][1]) for i in range(8)])
    result = autoattack(lenet, images, labels, norm="linf", eps=0.3)
    _check(result, lenet, images, labels, "linf", 0.3)


def test_l2_and_same_seed_same_result(setup):
    model, images, _, predicted = setup
    first = autoattack(model, images, predicted, norm="l2", eps=0.3, attacks=("apgd-ce",), seed=3)
    _check(first, model, images, predicted, "l2", 0.3)
    assert first.metadata["attacks"] == ["apgd-ce"] and set(first.metadata["settings"]) == {"apgd"}
    again = autoattack(model, images, predicted, norm="l2", eps=0.3, attacks=("apgd-ce",), seed=3)
    assert torch.equal(first.adversarial, again.adversarial)


def test_restores_trace_function_model_state_and_rng(setup):
    model, images, _, predicted = setup

    def tracer(frame, event, arg):  # stands in for coverage.py or a debugger
        return None

    model.train()
    grad_flags = [p.requires_grad for p in model.parameters()]
    previous = sys.gettrace()
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    sys.settrace(tracer)
    try:
        autoattack(model, images, predicted, eps=0.01, attacks=("apgd-ce",))
        assert sys.gettrace() is tracer              # AutoAttack's check_dynamic ends with sys.settrace(None)
    finally:
        sys.settrace(previous)
        model.eval()
    assert torch.equal(torch.get_rng_state(), rng)
    assert [p.requires_grad for p in model.parameters()] == grad_flags
    assert all(p.grad is None for p in model.parameters())


def test_autoattack_flags_a_model_that_outputs_probabilities(setup):
    model, images, _, predicted = setup
    softmax = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    result = autoattack(softmax, images, predicted, eps=0.01, attacks=("apgd-ce",))
    assert any("probability distribution" in flag for flag in result.flags), result.flags


@pytest.mark.parametrize("kwargs, match", [
    ({"norm": "l1"}, "norm must be one of linf, l2"),
    ({"norm": "Linf"}, "norm must be"),
    ({"eps": 0.0}, "eps must be a positive number"),
    ({"eps": float("nan")}, "eps must be a positive number"),
    ({"version": "fast"}, "version must be one of"),
    ({"version": "standard", "attacks": ("apgd-ce",)}, "fixes its own attacks"),
    ({"attacks": ("pgd",)}, "unknown AutoAttack attack"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
])
def test_bad_arguments_are_one_line_errors(setup, kwargs, match):
    model, images, labels, _ = setup
    kwargs = {"eps": 0.1, **kwargs}
    with pytest.raises(DDHubError, match=match):
        autoattack(model, images, labels, **kwargs)


def test_inputs_outside_unit_range_are_refused(setup):
    model, images, labels, _ = setup
    with pytest.raises(DDHubError, match=r"\[0, 1\]"):
        autoattack(model, images * 2 - 1, labels, eps=0.1)
    with pytest.raises(DDHubError, match="N integer labels"):
        autoattack(model, images, labels[:3], eps=0.1)
