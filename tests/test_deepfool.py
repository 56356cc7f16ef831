"""DeepFool as an attack: agreement with foolbox (an independent implementation), semantics and units."""
from __future__ import annotations

import foolbox as fb
import pytest
import torch

from dd_hub import DDHubError, deepfool
from dd_hub.attacks import AttackResult
from dd_hub.training.deep_defense import ratio


@pytest.fixture(scope="module")
def batch(mnist_test):
    images, labels = mnist_test.tensors
    return images[:100], labels[:100]


def _predict(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def test_agrees_with_foolbox_l2(trained_lenet, batch):
    images, _ = batch
    predictions = _predict(trained_lenet, images)
    ours = deepfool(trained_lenet, images, steps=50, candidates=10, overshoot=0.02, bounds=(0.0, 1.0))
    attack = fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02, loss="logits")
    raw, _, success = attack(fb.PyTorchModel(trained_lenet, bounds=(0, 1)), images, predictions, epsilons=None)
    theirs_rho = ratio(raw - images, images).mean().item()
    ours_rho = ratio(ours.perturbation, images).mean().item()
    assert ours.success.tolist() == success.tolist()
    assert abs(ours_rho - theirs_rho) / theirs_rho < 0.01, (ours_rho, theirs_rho)


def test_result_fields_overshoot_and_default_box(trained_lenet, batch):
    images, _ = batch
    result = deepfool(trained_lenet, images)
    assert isinstance(result, AttackResult) and result.inputs is not None
    assert result.adversarial.shape == images.shape and result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    assert torch.equal(result.perturbation, result.adversarial - images)
    assert result.success.all()
    assert (_predict(trained_lenet, result.adversarial) != _predict(trained_lenet, images)).all()
    assert (result.iterations >= 1).all() and (result.iterations <= 50).all()
    torch.testing.assert_close(result.norms(), result.perturbation.flatten(1).norm(dim=1))
    assert torch.equal(result.norms("l2"), result.norms(2))
    # Without overshoot the same attack lands (almost) on the boundary, so its perturbation is smaller.
    exact = deepfool(trained_lenet, images, overshoot=0.0)
    assert exact.norms().mean() < result.norms().mean()


def test_unbounded_is_the_papers_semantics(trained_lenet, batch):
    images, _ = batch
    free = deepfool(trained_lenet, images, bounds=None)
    assert free.adversarial.min() < 0 or free.adversarial.max() > 1  # some step leaves the box
    assert free.success.all()


def test_labels_default_to_the_predictions(trained_lenet, batch):
    images, labels = batch
    predictions = _predict(trained_lenet, images)
    assert torch.equal(deepfool(trained_lenet, images, predictions).adversarial,
                       deepfool(trained_lenet, images).adversarial)
    # Misclassified with respect to the given labels: already successful, no perturbation, no iteration.
    given = deepfool(trained_lenet, images, labels)
    wrong = predictions != labels
    assert wrong.any() and given.success[wrong].all() and (given.iterations[wrong] == 0).all()
    assert (given.norms()[wrong] == 0).all()


def test_linf_and_bounds(trained_lenet, batch):
    images, _ = batch
    result = deepfool(trained_lenet, images[:50], norm="linf", bounds=(0.0, 1.0))
    assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 1.0
    assert result.success.float().mean() > 0.9
    l2 = deepfool(trained_lenet, images[:50])
    # An Linf attack spends its budget evenly: its Linf norm is smaller than that of the L2 attack.
    assert result.norms("linf").median() < l2.norms("linf").median()
    with pytest.raises(DDHubError, match="DeepFool norm must be one of 'l2', 'linf', got 'inf'"):
        deepfool(trained_lenet, images[:2], norm="inf")


def test_step_budget_is_respected(trained_lenet, batch):
    images, _ = batch
    result = deepfool(trained_lenet, images, steps=1)
    assert (result.iterations <= 1).all()
    fooled = _predict(trained_lenet, result.adversarial) != _predict(trained_lenet, images)
    assert fooled.tolist() == result.success.tolist()


def test_does_not_change_model_mode(trained_lenet, batch):
    trained_lenet.train()
    try:
        deepfool(trained_lenet, batch[0][:8])
        assert trained_lenet.training
    finally:
        trained_lenet.eval()
