"""Training methods: registry, every objective trains, and the method-specific semantics."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from dd_hub import DDHubError, create_model
from dd_hub.training.objectives import (AdversarialConfig, FGSAdversarialLoss, OnlyLayers, ParsevalConfig, ParsevalLoss,
                            create_objective, list_methods)
from dd_hub.recipes import find_recipe
from dd_hub.training.loop import TrainConfig
from dd_hub.training.loop import cross_entropy, train

ALL = ["deep_defense", "clean", "deepfool_adv", "fgs_adv", "pgd_adv", "trades", "parseval"]


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
    with pytest.raises(DDHubError, match="'method' must be one of deep_defense.*got 'parsevall'"):
        _recipe(method="parsevall")


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


def _orthonormality_gap(weight):
    matrix = weight.reshape(weight.shape[0], -1)
    matrix = matrix.t() if matrix.shape[0] > matrix.shape[1] else matrix
    return (matrix @ matrix.t() - torch.eye(matrix.shape[0])).norm().item()


def test_parseval_retraction_moves_every_weight_matrix_towards_orthonormality():
    model = _model("dd_lenet_mnist")
    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    before = [_orthonormality_gap(w) for w in weights]
    retraction = ParsevalLoss(ParsevalConfig(beta=0.1, fraction=1.0))
    for _ in range(200):
        retraction.after_step(model)
    after = [_orthonormality_gap(w) for w in weights]
    assert all(a < 0.5 * b for a, b in zip(after, before)), (before, after)
    assert all(a < 0.1 for a in after), after  # converged: W W^T = I on every layer, conv included


def test_parseval_samples_a_fraction_of_rows_reproducibly():
    first, second = _model(), _model()
    start = [p.clone() for p in first.parameters()]
    ParsevalLoss(ParsevalConfig(beta=0.01, fraction=0.3), seed=5).after_step(first)
    ParsevalLoss(ParsevalConfig(beta=0.01, fraction=0.3), seed=5).after_step(second)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    fc1 = next(m for m in first.modules() if isinstance(m, torch.nn.Linear))
    start_fc1 = next(s for s in start if s.shape == fc1.weight.shape)
    changed = (fc1.weight != start_fc1).any(1).float().mean().item()
    assert abs(changed - 0.3) < 0.01  # 30% of fc1's 500 rows, the rest untouched


def test_training_loop_applies_the_objectives_after_step_hook():
    calls = []

    class Counting(ParsevalLoss):
        def after_step(self, model):
            calls.append(model)
            super().after_step(model)

    x, y = torch.rand(40, 1, 28, 28), torch.randint(0, 10, (40,))
    model = _model()
    train(model, torch.utils.data.TensorDataset(x, y), TrainConfig(epochs=2, batch_size=10, lr_milestones=[]),
          Counting(ParsevalConfig()), progress=False)
    assert len(calls) == 8 and all(m is model for m in calls)


def test_parseval_config_validation():
    with pytest.raises(DDHubError, match="parseval"):
        _recipe(**{"parseval.fraction": 0})
