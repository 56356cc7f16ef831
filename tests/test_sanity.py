"""The gradient-masking checks stay quiet on a normal model and fire on deliberately masked ones."""
import pytest
import torch
from torch import nn

from dd_hub import create_model
from dd_hub.data.datasets import create_dataset
from dd_hub.training.loop import TrainConfig
from dd_hub.attacks import random_search
from dd_hub.evaluation.sanity import SanityConfig, check_masking
from dd_hub.training.loop import train

CONFIG = SanityConfig(eps=0.2, steps=10, more_steps_factor=3, unbounded_steps=40, black_box_queries=30,
                      max_examples=60, tolerance=0.04)


@pytest.fixture(scope="module")
def trained_mlp():
    torch.manual_seed(0)
    model = create_model("dd_mlp_mnist", num_classes=10)
    train(model, create_dataset("mnist-5k", "train"), TrainConfig(epochs=2, lr=0.05, batch_size=64,
          lr_milestones=[]), progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def test_set():
    return create_dataset("mnist-5k", "test")


class RoundedInputs(nn.Module):
    """Binarises its inputs: gradients are zero almost everywhere (shattered gradients)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x))


class SaturatedLogits(nn.Module):
    """Scales logits so that softmax saturates in float32: cross-entropy gradients vanish."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) * 1e4


def _failed(checks):
    return {check.name for check in checks if not check.passed}


def test_quiet_on_normal_model(trained_mlp, test_set):
    checks = check_masking(trained_mlp, test_set, CONFIG, curves={"FGS": {0.05: 0.6, 0.1: 0.3, 0.2: 0.05}},
                           clean_accuracy=0.9)
    assert [c.name for c in checks] == ["robust_le_clean", "monotone_in_eps", "more_iterations", "unbounded",
                                        "black_box"]
    assert _failed(checks) == set(), [c.detail for c in checks]


@pytest.mark.parametrize("mask", [RoundedInputs, SaturatedLogits])
def test_fires_on_masked_model(trained_mlp, test_set, mask):
    failed = _failed(check_masking(mask(trained_mlp).eval(), test_set, CONFIG))
    assert "unbounded" in failed


def test_curve_checks_fire_on_inconsistent_numbers(trained_mlp, test_set):
    checks = check_masking(trained_mlp, test_set, CONFIG, curves={"FGS": {0.1: 0.4, 0.2: 0.7, 0.3: 0.95}},
                           clean_accuracy=0.9)
    assert {"robust_le_clean", "monotone_in_eps"} <= _failed(checks)


def test_random_search_stays_in_budget(trained_mlp, test_set):
    images = torch.stack([test_set[i][0] for i in range(20)])
    labels = torch.tensor([test_set[i][1] for i in range(20)])
    result = random_search(trained_mlp, images, labels, eps=0.1, queries=5)
    adv = result.adversarial
    assert (adv - images).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        fooled = trained_mlp(adv).argmax(1) != labels
        wrong = trained_mlp(images).argmax(1) != labels
    assert result.success.tolist() == fooled.tolist()
    assert (result.iterations[wrong] == 0).all() and (result.iterations <= 5).all()
    assert torch.equal(adv[~result.success], images[~result.success])  # unfooled samples keep the clean input
