"""The fast unrolled DeepFool gives exactly the naive unrolling's gradients, and both match finite differences.

The naive reference (benchmarks/naive_unroll.py) keeps every candidate's input gradient in the graph with
``create_graph=True`` and computes the whole batch at every iteration; the fast one drops finished rows and rebuilds
only the chosen direction with a graph. Everything here runs in float64 so that 1e-5 is a real tolerance.
"""
from __future__ import annotations

from unittest import mock

import pytest
import torch
from torch import nn
from torch.func import functional_call

import dd_hub.training.deep_defense
from dd_hub.attacks import deepfool_unrolled
from dd_hub.training.deep_defense import DeepDefenseLoss


from naive_unroll import naive_deepfool_unrolled
from helpers import lenet, small_cnn




def _loss_grads(model: nn.Module, inputs, labels, unroll=None) -> dict[str, torch.Tensor]:
    loss_fn = DeepDefenseLoss()
    model.zero_grad(set_to_none=True)
    if unroll is None:
        loss = loss_fn(model, inputs, labels)
    else:
        with mock.patch.object(dd_hub.training.deep_defense, "deepfool_unrolled", unroll):
            loss = loss_fn(model, inputs, labels)
    loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("build, shape, candidates", [(lenet, (12, 1, 28, 28), 10), (small_cnn, (12, 3, 8, 8), 10)])
def test_fast_gradient_equals_naive_unrolling(build, shape, candidates):
    model = build()
    torch.manual_seed(2)
    inputs = torch.rand(shape, dtype=torch.float64)
    with torch.no_grad():
        predictions = model(inputs).argmax(1)
    # Half the labels agree with the model: both the untargeted and the towards-the-label branch are exercised.
    labels = torch.where(torch.arange(len(inputs)) % 2 == 0, predictions, (predictions + 1) % 10)
    fast = deepfool_unrolled(model, inputs, labels, candidates=candidates)
    naive = naive_deepfool_unrolled(model, inputs, labels, candidates=candidates)
    assert fast.correct.tolist() == naive.correct.tolist()
    assert fast.iterations.tolist() == naive.iterations.tolist()
    assert len(set(fast.iterations.tolist())) > 1, "rows must stop at different iterations to test the shrinking"
    torch.testing.assert_close(fast.perturbation, naive.perturbation, rtol=1e-10, atol=1e-12)

    fast_grads = _loss_grads(model, inputs, labels)
    naive_grads = _loss_grads(model, inputs, labels, unroll=naive_deepfool_unrolled)
    for name, expected in naive_grads.items():
        assert expected.abs().max() > 0, name
        error = (fast_grads[name] - expected).abs().max() / expected.abs().max()
        assert error < 1e-5, (name, error.item())


def test_regularizer_gradient_matches_finite_differences():
    """Double backprop through the whole unrolling (smooth activation: second-derivative terms are nonzero)."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4)).double()
    inputs = torch.rand(6, 6, dtype=torch.float64)
    with torch.no_grad():
        predictions = model(inputs).argmax(1)
    labels = torch.where(torch.arange(6) < 4, predictions, (predictions + 1) % 4)
    names = [name for name, _ in model.named_parameters()]
    loss_fn = DeepDefenseLoss(c=2.0, d=1.0, candidates=3)

    def regularizer(*params: torch.Tensor) -> torch.Tensor:
        functional = _Functional(model, dict(zip(names, params)))
        logits = functional(inputs)
        return loss_fn(functional, inputs, labels, logits=logits) - nn.functional.cross_entropy(logits, labels)

    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert regularizer(*params).item() > 0
    assert torch.autograd.gradcheck(regularizer, params, eps=1e-6, atol=1e-7, rtol=1e-4)


class _Functional(nn.Module):
    """``model`` evaluated with the given parameter tensors (so gradcheck can perturb them)."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.inner, self.params = model, params

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.inner, self.params, (x,))
