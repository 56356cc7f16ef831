"""Mixed precision: bf16 Deep Defense steps match fp32, fp16 loss scaling of the inner input-gradients, and
non-finite losses are skipped, then abort, never reach the weights or a checkpoint."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from accelerate.state import AcceleratorState
from torch import nn
from torch.utils.data import TensorDataset

from dd_hub.training.checkpoint import Position, save_checkpoint
from dd_hub.data.datasets import create_dataset
from dd_hub.training.deep_defense import DeepDefenseLoss, LossOutput
from dd_hub.training.objectives import LossModuleObjective, create_objective
from dd_hub.errors import DDHubError
from dd_hub.models import create_model
from dd_hub.training.loop import TrainConfig
from dd_hub.training.loop import make_accelerator, train, training_step

BF16_MAX_RELATIVE_ERROR = 0.15   # measured 0.061 (LeNet, 16 MNIST images, seed 0); cosine measured 0.998
BF16_MIN_COSINE = 0.99


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    AcceleratorState._reset_state(True)  # each test picks its own mixed precision
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="module")
def batch():
    data = create_dataset("mnist-5k", "train")
    return torch.stack([data[i][0] for i in range(16)]), torch.stack([data[i][1] for i in range(16)])


def _step_gradient(mixed_precision: str, model: nn.Module, inputs, labels) -> torch.Tensor:
    AcceleratorState._reset_state(True)
    accelerator = make_accelerator(mixed_precision)
    wrapped = accelerator.prepare(copy.deepcopy(model))
    _, finite = training_step(accelerator, wrapped, LossModuleObjective(DeepDefenseLoss()), inputs, labels)
    assert finite
    return torch.cat([p.grad.flatten() for p in accelerator.unwrap_model(wrapped).parameters()])


def test_bf16_deep_defense_step_is_finite_and_close_to_fp32(batch):
    torch.manual_seed(0)
    model = create_model("dd_lenet_mnist")
    fp32, bf16 = (_step_gradient(mp, model, *batch) for mp in ("no", "bf16"))
    assert torch.isfinite(bf16).all()
    assert (bf16 - fp32).norm() / fp32.norm() < BF16_MAX_RELATIVE_ERROR
    assert F.cosine_similarity(bf16, fp32, dim=0) > BF16_MIN_COSINE


@pytest.mark.parametrize("iterate", ["reference", "authors"])
def test_loss_scale_does_not_change_the_objective(batch, iterate):
    torch.manual_seed(0)
    plain = create_model("dd_lenet_mnist")
    scaled = copy.deepcopy(plain)
    # The authors' rule adds its eps to the (scaled) gradients: DeepDefenseLoss scales the eps alike.
    plain_loss, scaled_loss = (DeepDefenseLoss(iterate=iterate, authors_eps=5e-6) for _ in range(2))
    a = plain_loss(plain, *batch)
    b = scaled_loss(scaled, *batch, loss_scale=3000.0)  # not a power of two: rounding differs slightly
    a.backward(), b.backward()
    torch.testing.assert_close(b, a, rtol=1e-5, atol=0)
    assert abs(scaled_loss.stats["rho"] - plain_loss.stats["rho"]) < 1e-5 * plain_loss.stats["rho"]
    grad_plain = torch.cat([p.grad.flatten() for p in plain.parameters()])
    grad_scaled = torch.cat([p.grad.flatten() for p in scaled.parameters()])
    assert (grad_scaled - grad_plain).norm() / grad_plain.norm() < 1e-5


class _Fp16Autocast(nn.Module):
    """What Accelerate's fp16 wrapper does to a forward: autocast, fp32 outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.float16):
            return self.model(x).float()


def test_fp16_loss_scaling_keeps_inner_input_gradients_from_underflowing():
    """A network whose input-gradients (~1e-8) underflow in an fp16 backward pass while its logits do not."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, 16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():
        net[1].weight.uniform_(0, 6e-4), net[1].bias.zero_()
        net[3].weight.normal_(0, 5e-6), net[3].bias.zero_()
    inputs, labels = torch.rand(8, 3, 64, 64), torch.randint(0, 10, (8,))
    loss = DeepDefenseLoss()

    def rho(model, **kwargs):
        loss(model, inputs, labels, **kwargs)
        return loss.stats["rho"]

    reference = rho(net)
    unscaled = rho(_Fp16Autocast(net))
    scaled = rho(_Fp16Autocast(net), loss_scale=65536.0)
    print(f"rho fp32 {reference:.4f}, fp16 {unscaled:.4f}, fp16 scaled {scaled:.4f}")
    assert unscaled < 0.5 * reference                    # the input-gradients underflow: DeepFool steps vanish
    assert abs(scaled - reference) / reference < 0.06


class _RecordingScaler:
    """Stands in for the fp16 GradScaler (CPU has none): a fixed scale, and a backward that does not scale."""

    def get_scale(self) -> float:
        return 1024.0

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss


@pytest.mark.parametrize("layers", [[], ["fc1"]])
def test_training_loop_hands_the_scalers_scale_to_the_deep_defense_loss(batch, layers, monkeypatch):
    """The objective of ``--method deep_defense`` (plain and layer-wise) receives ``loss_scale`` from
    ``training_step`` and hands it to ``DeepDefenseLoss``, which runs the unrolled DeepFool on scaled logits."""
    from dd_hub.recipes import find_recipe

    seen = []
    original = DeepDefenseLoss.forward

    def forward(self, *args, loss_scale=None, **kwargs):
        seen.append(loss_scale)
        return original(self, *args, loss_scale=loss_scale, **kwargs)

    monkeypatch.setattr(DeepDefenseLoss, "forward", forward)
    torch.manual_seed(0)
    model = create_model("dd_lenet_mnist")
    objective = create_objective(find_recipe("lenet", "mnist-5k", {"defense.regularize_layers": layers}))
    accelerator = make_accelerator()
    accelerator.scaler = _RecordingScaler()
    wrapped = accelerator.prepare(model)
    out, finite = training_step(accelerator, wrapped, objective, *batch)
    assert finite and seen == [1024.0] and set(out.stats) >= {"ce", "reg", "rho", "acc", "df_iters"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is allowed on a GPU")
def test_fp16_on_cpu_is_a_clear_error():
    with pytest.raises(DDHubError, match="fp16 needs a CUDA GPU.*use bf16 on CPU"):
        make_accelerator("fp16")


def _tiny(samples: int = 24):
    torch.manual_seed(0)
    data = TensorDataset(torch.rand(samples, 1, 4, 4), torch.randint(0, 3, (samples,)))
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), data


def _nan_for_first(calls: int):
    seen = [0]

    def objective(model, inputs, labels, logits=None, center=None) -> LossOutput:
        seen[0] += 1
        loss = F.cross_entropy(logits, labels)
        return LossOutput(loss * math.nan if seen[0] <= calls else loss, {"ce": loss.item()})
    return objective


def test_nonfinite_losses_are_skipped_with_a_warning():
    model, data = _tiny()
    with pytest.warns(UserWarning, match="non-finite loss or gradient at epoch 1, batch 2"):
        train(model, data, TrainConfig(epochs=1, batch_size=4, lr=0.1, lr_milestones=[], max_skipped_share=0.5),
              _nan_for_first(2),
              progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_repeated_nonfinite_losses_abort_without_touching_the_weights(tmp_path):
    model, data = _tiny(samples=48)
    before = copy.deepcopy(model.state_dict())
    with pytest.warns(UserWarning), pytest.raises(DDHubError, match="10 consecutive non-finite"):
        train(model, data, TrainConfig(epochs=1, batch_size=4, lr=0.1, lr_milestones=[]), _nan_for_first(100),
              progress=False, checkpoint_dir=tmp_path, checkpoint_every=1)
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)
    assert not any(tmp_path.iterdir())  # no step succeeded, so nothing was checkpointed


def test_checkpoint_refuses_nonfinite_weights(tmp_path):
    model, _ = _tiny()
    with torch.no_grad():
        model[1].weight[0, 0] = math.inf
    accelerator = make_accelerator()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[])
    with pytest.raises(DDHubError, match="refusing to checkpoint non-finite weights"):
        save_checkpoint(tmp_path, accelerator, model, optimizer, scheduler, Position("harden"))
    assert not any(p.name == "latest" or not p.name.startswith(".") for p in tmp_path.iterdir())


def test_max_grad_norm_bounds_each_update_and_is_logged():
    def huge(model, inputs, labels, logits=None, center=None) -> LossOutput:
        loss = F.cross_entropy(logits, labels)
        return LossOutput(1e6 * loss, {"ce": loss.item()})

    updates = {}
    for clip in (None, 0.5):
        model, data = _tiny(samples=4)
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        config = TrainConfig(epochs=1, batch_size=4, lr=0.1, momentum=0.0, weight_decay=0.0, lr_milestones=[],
                             freeze_bn=False, max_grad_norm=clip)
        history = train(model, data, config, huge, progress=False)
        updates[clip] = (torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm().item()
        if clip is not None:
            assert history[0]["clipped"] == 1.0 and history[0]["grad_norm"] > 1e3
        else:
            assert "grad_norm" not in history[0]
    assert updates[0.5] == pytest.approx(0.1 * 0.5, rel=1e-4) and updates[None] > 100 * updates[0.5]
