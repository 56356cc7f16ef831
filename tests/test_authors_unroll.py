"""``defense.iterate: authors``: the unrolled DeepFool of the Deep Defense authors' released code, checked against an
independent oracle written from that code's description.

The oracle follows the released ``DeepFool`` class line by line: correctly classified and misclassified samples in
two separate routines, every candidate's input gradient built with ``create_graph=True`` on the whole sub-batch at
every iteration, finished samples masked (their step multiplied by 0) instead of dropped. Everything runs in
float64 so that 1e-5 is a real tolerance.
"""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dd_hub import DDHubError
from dd_hub.attacks import deepfool_unrolled
from dd_hub.training.deep_defense import DeepDefenseConfig, DeepDefenseLoss

from helpers import lenet, small_cnn

OVERSHOOT = 0.02


def _logits_and_directions(model, x, classes, source):
    """Logits at ``x`` and the input gradients of ``f_k - f_source`` for each column ``k`` of ``classes``, in the
    graph: shape (B, D, m), the released code's ``w = ww - ww[:, :, 0]`` layout."""
    logits = model(x)
    grads = [torch.autograd.grad(logits.gather(1, classes[:, j:j + 1]).sum(), x, create_graph=True)[0].flatten(1)
             for j in range(classes.shape[1])]
    (source_grad,) = torch.autograd.grad(logits.gather(1, source[:, None]).sum(), x, create_graph=True)
    return logits, torch.stack(grads, 2) - source_grad.flatten(1)[:, :, None]


def _project(w, output, eps):
    """``project_boundary_polyhedron``: the nearest linearised boundary, eps added elementwise inside both norms."""
    res = output.abs() / torch.norm(w + eps, p=2, dim=1)
    best = res.argmin(1, keepdim=True)
    dist = res.gather(1, best)
    chosen = w.gather(2, best[:, None, :].expand(-1, w.shape[1], 1)).squeeze(2)
    return dist * chosen / torch.norm(chosen + eps, p=2, dim=1, keepdim=True)


def _forward_correct(model, x0, label, *, steps, candidates, eps):
    """Untargeted DeepFool away from ``label`` (= the prediction); returns 1.02 * r_tot."""
    x0 = x0.detach().requires_grad_(True)
    with torch.no_grad():
        clean = model(x0)
    output = clean - clean.gather(1, label[:, None])
    targets = torch.sort(-output, dim=1).indices[:, :candidates]  # entry 0 is the label itself
    logits, w = _logits_and_directions(model, x0, targets[:, 1:], label)
    output = logits - logits.gather(1, label[:, None])
    x, r_tot = x0, torch.zeros_like(x0.flatten(1))
    fooled = torch.zeros(len(x0), dtype=torch.bool)
    for iteration in range(1, steps + 1):
        step = _project(w, output.gather(1, targets[:, 1:]), eps) * (~fooled).to(x0.dtype)[:, None]
        x, r_tot = x + step.view_as(x0), r_tot + step
        with torch.no_grad():
            fooled |= model(x0 + (1 + OVERSHOOT) * r_tot.view_as(x0)).argmax(1) != label
        if fooled.all() or iteration == steps:
            break
        logits, w = _logits_and_directions(model, x, targets[:, 1:], label)
        output = logits - logits.gather(1, label[:, None])
    return (1 + OVERSHOOT) * r_tot


def _forward_wrong(model, x0, label, *, steps, eps, switches):
    """Two-class DeepFool from the current prediction towards ``label``, with the released code's source update:
    the numerator's source class lags the direction's by one iteration. Counts in ``switches`` the steps where the
    two differ (the prediction moved to a third class)."""
    x0 = x0.detach().requires_grad_(True)
    with torch.no_grad():
        source = model(x0).argmax(1)
    logits, w = _logits_and_directions(model, x0, label[:, None], source)
    output = logits - logits.gather(1, source[:, None])
    x, r_tot = x0, torch.zeros_like(x0.flatten(1))
    fooled = torch.zeros(len(x0), dtype=torch.bool)
    for iteration in range(1, steps + 1):
        step = _project(w, output.gather(1, label[:, None]), eps) * (~fooled).to(x0.dtype)[:, None]
        x, r_tot = x + step.view_as(x0), r_tot + step
        with torch.no_grad():
            fooled |= model(x0 + (1 + OVERSHOOT) * r_tot.view_as(x0)).argmax(1) == label
        if fooled.all() or iteration == steps:
            break
        logits = model(x)
        output = logits - logits.gather(1, source[:, None])  # the previous iteration's source
        new_source = logits.detach().argmax(1)
        switches[0] += int(((new_source != source) & (new_source != label) & ~fooled).sum())
        source = new_source
        _, w = _logits_and_directions(model, x, label[:, None], source)
    return (1 + OVERSHOOT) * r_tot


def oracle_loss(model, inputs, labels, *, lam=15.0, c=25.0, d=5.0, steps=5, candidates=10, eps=1e-5,
                switches=None):
    """CE + lam / N * (sum_correct exp(-c rho) + sum_wrong exp(d rho)), rho = ||r|| / ||x||, as the released code."""
    switches = [0] if switches is None else switches
    logits = model(inputs)
    predictions = logits.detach().argmax(1)
    correct = predictions == labels
    regularizer = inputs.new_zeros(())
    if correct.any():
        r = _forward_correct(model, inputs[correct], labels[correct], steps=steps, candidates=candidates, eps=eps)
        regularizer = regularizer + torch.exp(-c * r.norm(dim=1) / inputs[correct].flatten(1).norm(dim=1)).sum()
    if (~correct).any():
        r = _forward_wrong(model, inputs[~correct], labels[~correct], steps=steps, eps=eps, switches=switches)
        regularizer = regularizer + torch.exp(d * r.norm(dim=1) / inputs[~correct].flatten(1).norm(dim=1)).sum()
    return F.cross_entropy(logits, labels) + lam * regularizer / len(inputs)




def _batch(model, shape, classes):
    torch.manual_seed(2)
    inputs = torch.rand(shape, dtype=torch.float64)
    with torch.no_grad():
        predictions = model(inputs).argmax(1)
    # Two labels in three agree with the model: both the away and the towards-the-label routines run.
    labels = torch.where(torch.arange(len(inputs)) % 3 != 2, predictions, (predictions + 3) % classes)
    return inputs, labels


def _gradients(model, loss) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


CASES = [(lenet, (18, 1, 28, 28), 10, 5e-6), (small_cnn, (18, 3, 8, 8), 12, 1e-5)]


@pytest.mark.parametrize("build, shape, classes, eps", CASES)
def test_authors_gradient_equals_the_released_code_oracle(build, shape, classes, eps):
    model = build()
    inputs, labels = _batch(model, shape, classes)
    switches = [0]
    expected = _gradients(model, oracle_loss(model, inputs, labels, c=15.0, eps=eps, switches=switches))
    loss_fn = DeepDefenseLoss(c=15.0, iterate="authors", authors_eps=eps)
    ours = _gradients(model, loss_fn(model, inputs, labels))
    error = (ours - expected).abs().max() / expected.abs().max()
    assert error < 1e-5, error.item()
    torch.testing.assert_close(loss_fn(model, inputs, labels),
                               oracle_loss(model, inputs, labels, c=15.0, eps=eps), rtol=1e-10, atol=0)
    # The batch exercises what makes the rule differ: samples stop at different iterations, and a misclassified
    # sample's prediction moves to a third class, where the numerator's source class lags the direction's.
    result = deepfool_unrolled(model, inputs, labels, iterate="authors", eps=eps)
    assert len(set(result.iterations.tolist())) > 1 and not result.correct.all()
    assert switches[0] > 0


@pytest.mark.parametrize("build, shape, classes, eps", CASES)
def test_authors_and_reference_rules_give_different_gradients(build, shape, classes, eps):
    model = build()
    inputs, labels = _batch(model, shape, classes)
    authors = _gradients(model, DeepDefenseLoss(iterate="authors", authors_eps=eps)(model, inputs, labels))
    reference = _gradients(model, DeepDefenseLoss()(model, inputs, labels))
    relative = ((authors - reference).norm() / reference.norm()).item()
    print(f"{build.__name__}: relative gradient difference authors vs reference {relative:.2e}")
    assert relative > 1e-3


def test_iterate_is_validated():
    with pytest.raises(DDHubError, match="DeepDefenseConfig.iterate' must be one of 'reference', 'authors', got 'lts4'"):
        DeepDefenseConfig(iterate="lts4")
    with pytest.raises(DDHubError, match="authors_eps"):
        DeepDefenseConfig(authors_eps=0.0)
    with pytest.raises(DDHubError, match="iterate"):
        deepfool_unrolled(nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), iterate="lts4")
