"""DeepFool as an attack: agreement with foolbox (an independent implementation), semantics and units."""
from __future__ import annotations

import foolbox as fb
import pytest
import torch

from dd_hub import deepfool
from dd_hub.defense import ratio


@pytest.fixture(scope="module")
def batch(mnist_test):
    images, labels = mnist_test.tensors
    return images[:100], labels[:100]


def test_agrees_with_foolbox_l2(trained_lenet, batch):
    images, _ = batch
    with torch.no_grad():
        predictions = trained_lenet(images).argmax(1)
    ours = deepfool(trained_lenet, images, steps=50, candidates=10, overshoot=0.02, bounds=(0.0, 1.0))
    attack = fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02, loss="logits")
    raw, _, success = attack(fb.PyTorchModel(trained_lenet, bounds=(0, 1)), images, predictions, epsilons=None)
    theirs_rho = ratio(raw - images, images).mean().item()
    ours_rho = ratio(ours.perturbation, images).mean().item()
    assert ours.success.tolist() == success.tolist()
    assert abs(ours_rho - theirs_rho) / theirs_rho < 0.01, (ours_rho, theirs_rho)


def test_perturbation_fools_and_includes_overshoot(trained_lenet, batch):
    images, _ = batch
    result = deepfool(trained_lenet, images)
    with torch.no_grad():
        clean = trained_lenet(images).argmax(1)
        adv = trained_lenet(images + result.perturbation).argmax(1)
    assert result.success.all()
    assert (adv != clean).all()
    assert result.perturbation.shape == images.shape
    assert (result.iterations >= 1).all() and (result.iterations <= 50).all()
    # Without overshoot the same attack lands (almost) on the boundary, so its perturbation is smaller.
    exact = deepfool(trained_lenet, images, overshoot=0.0)
    assert exact.norms().mean() < result.norms().mean()


def test_linf_and_bounds(trained_lenet, batch):
    images, _ = batch
    result = deepfool(trained_lenet, images[:50], norm=float("inf"), bounds=(0.0, 1.0))
    adv = images[:50] + result.perturbation
    assert adv.min() >= 0.0 and adv.max() <= 1.0
    assert result.success.float().mean() > 0.9
    l2 = deepfool(trained_lenet, images[:50])
    # An Linf attack spends its budget evenly: its Linf norm is smaller than that of the L2 attack.
    assert result.norms(float("inf")).median() < l2.norms(float("inf")).median()


def test_step_budget_is_respected(trained_lenet, batch):
    images, _ = batch
    result = deepfool(trained_lenet, images, steps=1)
    assert (result.iterations <= 1).all()
    with torch.no_grad():
        fooled = trained_lenet(images + result.perturbation).argmax(1) != trained_lenet(images).argmax(1)
    assert fooled.tolist() == result.success.tolist()


def test_does_not_change_model_mode(trained_lenet, batch):
    trained_lenet.train()
    try:
        deepfool(trained_lenet, batch[0][:8])
        assert trained_lenet.training
    finally:
        trained_lenet.eval()
