"""The Deep Defense objective: its two branches, its gradient path, and BatchNorm/dropout handling."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dd_hub.training.deep_defense import DeepDefenseLoss, ratio, stochastic_layers_off
from dd_hub.models import NormalizedModel
from dd_hub.training.loop import freeze_batchnorm


def _linear_model(weight: torch.Tensor) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model


@pytest.mark.parametrize("iterate", ["reference", "authors"])
def test_branches_follow_the_paper(iterate):
    """A linear 2-class model: DeepFool is exact, so rho is known in closed form for both branches and rules."""
    torch.manual_seed(0)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    model = _linear_model(weight)
    inputs = torch.tensor([[2.0, 1.0], [1.0, 3.0]])        # both predicted by their larger coordinate
    labels = torch.tensor([0, 0])                           # first correct, second misclassified
    loss_fn = DeepDefenseLoss(lam=2.0, c=3.0, d=0.5, steps=5, candidates=2, overshoot=0.02, iterate=iterate)
    loss = loss_fn(model, inputs, labels)
    # Distance to the boundary x0 = x1 is |x0 - x1| / sqrt(2); the attack overshoots it by 2% (the reference rule
    # adds its 1e-4 minimum step, the authors' rule its 1e-5 guard inside the norms: both below the tolerance).
    expected_r = torch.tensor([1.0, 2.0]) / math.sqrt(2) * 1.02
    rho = expected_r / inputs.norm(dim=1)
    ce = nn.functional.cross_entropy(model(inputs), labels)
    expected = ce + 2.0 * (torch.exp(-3.0 * rho[0]) + torch.exp(0.5 * rho[1])) / 2
    assert isinstance(loss_fn, nn.Module) and loss.dim() == 0
    assert loss.item() == pytest.approx(expected.item(), rel=1e-3)
    assert loss_fn.stats["acc"] == 0.5 and set(loss_fn.stats) == {"ce", "reg", "rho", "acc", "df_iters", "capped"}
    assert loss_fn.stats["df_iters"] == 1.0  # one exact step crosses a linear boundary
    assert loss_fn.stats["rho"] == pytest.approx(rho.mean().item(), rel=1e-3)


def test_misclassified_term_is_capped_not_infinite():
    """A misclassified image whose d * rho is past float32's exp range (rho 0.72, d 500: exp(360)) gives a finite
    loss and gradient with the default cap, the capped share in the statistics, and inf with the paper's unbounded
    term."""
    model = _linear_model(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    inputs, labels = torch.tensor([[0.0, 100.0]]), torch.tensor([0])  # rho = 100 / sqrt(2) * 1.02 / 100
    capped = DeepDefenseLoss(lam=1.0, c=1.0, d=500.0, candidates=2)
    loss = capped(model, inputs, labels)
    loss.backward()
    assert torch.isfinite(loss) and capped.stats["capped"] == 1.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert loss.item() == pytest.approx(capped.stats["ce"] + math.exp(10.0), rel=1e-4)  # lambda * exp(cap) / N
    unbounded = DeepDefenseLoss(lam=1.0, c=1.0, d=500.0, candidates=2, max_exponent=None)
    assert torch.isinf(unbounded(model, inputs, labels)) and unbounded.stats["capped"] == 0.0


def test_regularizer_pushes_boundary_away_from_correct_samples():
    """One gradient step on the regularizer alone must increase rho of correctly classified samples."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    inputs = torch.randn(32, 8)
    with torch.no_grad():
        labels = model(inputs).argmax(1)  # all correct
    loss_fn = DeepDefenseLoss(lam=1.0, c=5.0, d=5.0, candidates=3)
    loss_fn(model, inputs, labels)
    before = loss_fn.stats["rho"]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(10):
        loss = loss_fn(model, inputs, labels)
        optimizer.zero_grad()
        (loss - nn.functional.cross_entropy(model(inputs), labels)).backward()  # the regularizer only
        optimizer.step()
    loss_fn(model, inputs, labels)
    assert loss_fn.stats["rho"] > before * 1.05


def test_misclassified_branch_shrinks_distance_to_true_class():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    inputs = torch.randn(32, 8)
    with torch.no_grad():
        labels = (model(inputs).argmax(1) + 1) % 3  # all wrong
    loss_fn = DeepDefenseLoss(lam=1.0, c=5.0, d=5.0, candidates=3)
    loss = loss_fn(model, inputs, labels)
    assert loss_fn.stats["acc"] == 0.0
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_regularizer_gradient_reaches_every_weight_through_double_backprop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    inputs = torch.rand(6, 1, 8, 8)
    labels = torch.randint(0, 5, (6,))
    loss = DeepDefenseLoss(candidates=5)(model, inputs, labels)
    ce = nn.functional.cross_entropy(model(inputs), labels)
    grads = torch.autograd.grad(loss - ce, list(model.parameters()))
    assert all(g.abs().sum() > 0 for g in grads)


def test_ratio_in_centered_space():
    x = torch.ones(2, 1, 2, 2)
    r = torch.full_like(x, 0.5)
    assert ratio(r, x).tolist() == pytest.approx([0.5, 0.5])
    assert ratio(r, x, center=torch.full((1, 2, 2), 0.5)).tolist() == pytest.approx([1.0, 1.0])


def test_batchnorm_frozen_and_dropout_off_during_perturbation_passes():
    model = NormalizedModel(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                                          nn.Flatten(), nn.Linear(4 * 6 * 6, 3)), (0.5,), (0.5,))
    model.train()
    assert freeze_batchnorm(model) == 1
    bn = model.model[1]
    assert not bn.training and not any(p.requires_grad for p in bn.parameters())
    running = bn.running_mean.clone()
    dropout = model.model[3]
    with stochastic_layers_off(model):
        assert not dropout.training
        x = torch.rand(4, 1, 8, 8)
        assert torch.equal(model(x), model(x))  # deterministic while the perturbation passes run
    assert dropout.training
    DeepDefenseLoss(candidates=3)(model, torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0]))
    assert torch.equal(bn.running_mean, running)


def test_channels_last_changes_the_layout_not_the_values():
    from dd_hub import create_model
    from dd_hub.workflows.start import use_channels_last

    torch.manual_seed(0)
    model = create_model("test_resnet", num_classes=3).eval()
    x = torch.rand(2, 3, 64, 64)
    before = model(x)
    assert use_channels_last(model, None) == torch.cuda.is_available()  # auto: only on a GPU
    assert use_channels_last(model, True)
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def _bn_after_pooling() -> nn.Module:
    """A network whose BatchNorm sees one value per channel and image (after global pooling), like a timm head's."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.BatchNorm1d(4), nn.ReLU(),
                         nn.Linear(4, 3))


def test_loss_freezes_batchnorm_by_default_on_any_batch_size():
    model = _bn_after_pooling().train()
    bn = model[3]
    running = bn.running_mean.clone()
    loss = DeepDefenseLoss(candidates=3, d=0.5)(model, torch.rand(1, 1, 8, 8), torch.tensor([1]))
    loss.backward()
    assert torch.isfinite(loss) and model[0].weight.grad is not None
    assert bn.training and torch.equal(bn.running_mean, running)  # restored to training mode, statistics unchanged


def test_loss_on_batch_statistics_says_why_a_batch_of_one_cannot_run():
    from dd_hub import DDHubError

    with pytest.raises(DDHubError, match="freeze_batchnorm=True"):
        DeepDefenseLoss(candidates=3, freeze_batchnorm=False)(_bn_after_pooling().train(), torch.rand(1, 1, 8, 8),
                                                              torch.tensor([1]))
