"""Training methods: registry, every objective trains, and the method-specific semantics."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from dd_hub import DDHubError, create_model
from dd_hub.methods import AdversarialConfig, FGSAdversarialLoss, OnlyLayers, create_objective, list_methods
from dd_hub.recipes import find_recipe
from dd_hub.train import cross_entropy

ALL = ["deep_defense", "clean", "deepfool_adv", "fgs_adv", "pgd_adv", "trades"]


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))


def _model(name="dd_mlp_mnist"):
    torch.manual_seed(1)
    return create_model(name, num_classes=10)


def _recipe(**overrides):
    return find_recipe("mlp", "mnist-5k", {"adversarial.steps": 2, "adversarial.deepfool_steps": 5, **overrides})


def test_registry_lists_every_method():
    assert list(list_methods()) == ALL
    with pytest.raises(DDHubError, match="unknown method 'parseval'.*deep_defense"):
        _recipe(method="parseval")


@pytest.mark.parametrize("method", ALL)
def test_every_objective_gives_finite_loss_and_gradients(method, batch):
    model, (x, y) = _model(), batch
    out = create_objective(_recipe(method=method))(model, x, y, logits=model(x))
    out.loss.backward()
    assert math.isfinite(out.loss.item()) and 0 <= out.stats["acc"] <= 1
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_fgs_objective_weights_clean_and_adversarial_terms(batch):
    model, (x, y) = _model(), batch
    clean = cross_entropy(model, x, y).loss
    only_clean = FGSAdversarialLoss(AdversarialConfig(eps=0.1, fgs_weight=1.0))(model, x, y).loss
    only_adv = FGSAdversarialLoss(AdversarialConfig(eps=0.1, fgs_weight=0.0))(model, x, y).loss
    assert torch.allclose(only_clean, clean)
    assert only_adv > clean  # the FGS step increases the loss of a (locally) smooth model


def test_deepfool_training_set_is_fixed_by_the_starting_model(batch):
    model, (x, y) = _model(), batch
    objective = create_objective(_recipe(method="deepfool_adv"))
    objective(model, x, y)
    first = objective._perturbed(x).clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # a different model must not change the cached adversarial set
    objective(model, x, y)
    assert len(objective.cache) == len(x) and torch.equal(objective._perturbed(x), first)
    assert not torch.equal(first, x) and first.min() >= 0 and first.max() <= 1


def test_regularize_layers_restricts_the_regularizer_to_those_layers(batch):
    (x, y) = batch
    grads = {}
    for layers in ([], ["fc2"]):
        model = _model()
        recipe = _recipe()
        recipe = dataclasses.replace(recipe, defense=dataclasses.replace(recipe.defense, regularize_layers=layers))
        create_objective(recipe)(model, x, y, logits=model(x)).loss.backward()
        grads[tuple(layers)] = {n: p.grad.clone() for n, p in model.named_parameters()}
    model = _model()
    F.cross_entropy(model(x), y).backward()
    ce_only = {n: p.grad for n, p in model.named_parameters()}
    for name, grad in grads[("fc2",)].items():
        if ".fc2." in name:
            assert not torch.allclose(grad, ce_only[name]), name
        else:
            assert torch.allclose(grad, ce_only[name], atol=1e-7), name
            assert not torch.allclose(grads[()][name], ce_only[name]), name


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(DDHubError, match="unknown layer 'fc9'.*fc1, fc2, head"):
        OnlyLayers(_model(), ["fc9"])


def test_adversarial_config_validation():
    with pytest.raises(DDHubError, match="norm"):
        AdversarialConfig(norm="l1")
