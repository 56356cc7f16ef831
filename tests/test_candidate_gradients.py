"""The candidates' input gradients: the batched backward (``is_grads_batched``) equals the per-candidate loop, and
falls back to the loop, with one warning, on an op without a batching rule.

Measured on CPU (torch 2.15, 2-core x86 machine), LeNet and a conv + frozen-BN net:
- float64: bit for bit equal (``torch.equal``) with 1 and 2 threads, attack and Deep Defense parameter gradients.
- float32: equal with 1 thread; with 2 threads the batched backward sums in another order on batches of 1 to 7
  rows (vmap's convolution backward is blocked differently across threads), and the candidate gradients differ by
  up to 4e-7 relative (a few float32 ulps); the attack's adversarial images (in [0, 1]) then differ by up to 3.0e-8.
  The float32 test allows 2 ulps at 1.0 (2.4e-7) there.
- Deep Defense's parameter gradients were equal in every case: the candidate gradients only pick the class, and
  the chosen direction is rebuilt with a graph by one ordinary backward, so rounding differences that do not
  change the choice do not reach them.
The summation order depends on the thread count, so these tests run with at most 2 threads, the counts measured.
"""
from __future__ import annotations


import importlib
import warnings
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from torch import nn

from dd_hub.attacks import deepfool, deepfool_unrolled
from dd_hub.attacks.deepfool import CandidateGradientsWarning, _CandidateGradients
from dd_hub.training.deep_defense import DeepDefenseConfig, DeepDefenseLoss
from dd_hub.errors import DDHubError

from helpers import lenet, small_cnn

deepfool_module = importlib.import_module("dd_hub.attacks.deepfool")  # the attribute of dd_hub.attacks is the function


@pytest.fixture(autouse=True)
def _measured_thread_counts():
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)




class _ItemInBackward(torch.autograd.Function):
    """Identity whose backward reads a Python number (``.item()``): vmap has no batching rule for that."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        grad.abs().max().item()
        return grad


class _Unbatchable(nn.Module):
    def forward(self, x):
        return _ItemInBackward.apply(x)


def _unbatchable_cnn(dtype=torch.float64) -> nn.Module:
    model = small_cnn(dtype)
    return nn.Sequential(model[:3], _Unbatchable(), model[3:]).eval()


def _data(model: nn.Module, shape, dtype=torch.float64):
    torch.manual_seed(2)
    inputs = torch.rand(shape, dtype=dtype)
    with torch.no_grad():
        predictions = model(inputs).argmax(1)
    # Half the labels agree with the model: Deep Defense's untargeted and towards-the-label rows are both exercised.
    labels = torch.where(torch.arange(len(inputs)) % 2 == 0, predictions, (predictions + 1) % 10)
    return inputs, labels


MODELS = [(lenet, (12, 1, 28, 28)), (small_cnn, (12, 3, 8, 8))]


def _attack(model, inputs, strategy, **kwargs):
    return deepfool(model, inputs, steps=50, candidate_gradients=strategy, **kwargs)


def _defense_grads(model, inputs, labels, strategy) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    DeepDefenseLoss(candidate_gradients=strategy)(model, inputs, labels).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("build, shape", MODELS)
def test_batched_attack_equals_loop(build, shape, dtype):
    model = build(dtype)
    inputs, _ = _data(model, shape, dtype)
    loop = _attack(model, inputs, "loop", bounds=(0.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CandidateGradientsWarning)  # a fallback would not test the batched path
        batched = _attack(model, inputs, "batched", bounds=(0.0, 1.0))
    assert len(set(loop.iterations.tolist())) > 1, "rows must stop at different iterations to test the shrinking"
    assert torch.equal(batched.iterations, loop.iterations)
    assert torch.equal(batched.success, loop.success)
    if dtype == torch.float64:
        assert torch.equal(batched.adversarial, loop.adversarial)
    else:  # the measured float32 difference is 3.0e-8 (module docstring): allow 2 ulps at 1.0
        torch.testing.assert_close(batched.adversarial, loop.adversarial, rtol=0, atol=2 * 2**-23)


@pytest.mark.parametrize("build, shape", MODELS)
def test_batched_unrolling_and_defense_gradients_equal_loop(build, shape):
    model = build()
    inputs, labels = _data(model, shape)
    loop = deepfool_unrolled(model, inputs, labels, candidate_gradients="loop")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CandidateGradientsWarning)
        batched = deepfool_unrolled(model, inputs, labels, candidate_gradients="batched")
        batched_grads = _defense_grads(model, inputs, labels, "batched")
    assert torch.equal(batched.iterations, loop.iterations)
    assert torch.equal(batched.perturbation, loop.perturbation)
    loop_grads = _defense_grads(model, inputs, labels, "loop")
    for name, expected in loop_grads.items():
        assert expected.abs().max() > 0, name
        assert torch.equal(batched_grads[name], expected), name


def test_batched_falls_back_to_loop_once_with_a_warning():
    model = _unbatchable_cnn()
    inputs, labels = _data(model, (12, 3, 8, 8))
    with pytest.raises(RuntimeError, match="item"):  # the op really has no batching rule
        x = inputs.clone().requires_grad_(True)
        margins = model(x)[:, :3]
        torch.autograd.grad(margins, x, torch.eye(3, dtype=x.dtype)[:, None, :].expand(-1, len(x), -1),
                            is_grads_batched=True)

    loop = _attack(model, inputs, "loop")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batched = _attack(model, inputs, "batched")
    fallbacks = [w for w in caught if issubclass(w.category, CandidateGradientsWarning)]
    assert len(fallbacks) == 1, [str(w.message) for w in caught]  # one per run, not one per iteration
    assert "item" in str(fallbacks[0].message)
    assert loop.iterations.max() > 1
    assert torch.equal(batched.adversarial, loop.adversarial)
    assert torch.equal(batched.iterations, loop.iterations)

    loop_grads = _defense_grads(model, inputs, labels, "loop")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batched_grads = _defense_grads(model, inputs, labels, "batched")
    assert sum(issubclass(w.category, CandidateGradientsWarning) for w in caught) == 1
    for name, expected in loop_grads.items():
        assert torch.equal(batched_grads[name], expected), name


def test_auto_is_the_loop_on_cpu_and_batched_on_cuda():
    model = lenet()
    inputs, labels = _data(model, (6, 1, 28, 28))
    with mock.patch.object(deepfool_module, "_batched_margin_gradients", side_effect=AssertionError("batched")):
        deepfool(model, inputs, steps=3)
        DeepDefenseLoss()(model, inputs, labels)
    assert _CandidateGradients("auto").batched(SimpleNamespace(is_cuda=True))
    assert not _CandidateGradients("auto").batched(SimpleNamespace(is_cuda=False))
    assert _CandidateGradients("batched").batched(SimpleNamespace(is_cuda=False))
    assert not _CandidateGradients("loop").batched(SimpleNamespace(is_cuda=True))


def test_invalid_strategy_is_refused():
    model = lenet()
    inputs = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    with pytest.raises(DDHubError, match="candidate_gradients"):
        deepfool(model, inputs, candidate_gradients="vmap")
    with pytest.raises(DDHubError, match="candidate_gradients"):
        deepfool_unrolled(model, inputs, candidate_gradients="vmap")
    with pytest.raises(DDHubError, match="DeepDefenseConfig.candidate_gradients. must be one of"):
        DeepDefenseConfig(candidate_gradients="vmap")


def test_recipe_selects_the_strategy():
    from dd_hub.recipes import builtin_recipes, load_recipe

    path = builtin_recipes()["mnist_lenet"]
    assert load_recipe(path).defense.candidate_gradients == "auto"
    assert load_recipe(path, {"defense.candidate_gradients": "batched"}).defense.candidate_gradients == "batched"
    with pytest.raises(DDHubError, match="candidate_gradients"):
        load_recipe(path, {"defense.candidate_gradients": "vmap"})


def test_evaluation_selects_the_strategy():
    from torch.utils.data import TensorDataset

    import dd_hub.evaluation.report
    from dd_hub.evaluation.report import EvalConfig, evaluate
    from dd_hub.recipes import builtin_recipes, load_recipe

    path = builtin_recipes()["mnist_lenet"]
    assert load_recipe(path, {"evaluation.candidate_gradients": "loop"}).evaluation.candidate_gradients == "loop"
    with pytest.raises(DDHubError, match="candidate_gradients"):
        EvalConfig(candidate_gradients="vmap")
    model = lenet(torch.float32)
    dataset = TensorDataset(torch.rand(4, 1, 28, 28), torch.arange(4))
    config = EvalConfig(deepfool_steps=2, fgs_eps=[0.01], fgs_fractions=[1.0], pgd_steps=0, sanity=False,
                        autoattack=[], candidate_gradients="batched")
    with mock.patch.object(dd_hub.evaluation.report, "deepfool", wraps=dd_hub.evaluation.report.deepfool) as spy:
        evaluate(model, dataset, config, eps_ref=0.01, progress=False)
    assert spy.call_args.kwargs["candidate_gradients"] == "batched"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("build, shape", MODELS)
def test_batched_equals_loop_on_cuda(build, shape):
    """Not run in the session that wrote it (no GPU): cuDNN may pick other kernels for the batched backward, so the
    attack is compared to a float64 tolerance chosen, not measured; Deep Defense's gradients must be equal."""
    model = build().cuda()
    inputs, labels = (t.cuda() for t in _data(model, shape))
    loop = _attack(model, inputs, "loop")
    with warnings.catch_warnings():
        warnings.simplefilter("error", CandidateGradientsWarning)
        batched = _attack(model, inputs, "auto")
        batched_grads = _defense_grads(model, inputs, labels, "auto")
    assert torch.equal(batched.iterations, loop.iterations)
    torch.testing.assert_close(batched.adversarial, loop.adversarial, rtol=1e-9, atol=1e-12)
    loop_grads = _defense_grads(model, inputs, labels, "loop")
    for name, expected in loop_grads.items():
        assert torch.equal(batched_grads[name], expected), name
