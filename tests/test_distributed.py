"""Two CPU processes (gloo) give exactly the gradients of one process on the union of their batches.

The pytest side launches this file under torchrun with ACCELERATE_USE_CPU=1 (without it,
torchrun on a CPU machine silently starts two independent non-distributed processes); the ``__main__`` side is the
worker. Each rank runs one Deep Defense step of :func:`dd_hub.training.loop.training_step` on its half of a batch, whose
samples stop DeepFool at a different iteration than the other rank's; rank 0 also computes the single-process
gradients on the whole batch. A second part runs the full :func:`dd_hub.training.loop.train` loop for a few steps.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import free_port

BATCH_PER_RANK = 4
TIMEOUT_S = 300  # a hang is a failure, not a stuck CI job


def _model():
    from dd_hub import create_model

    torch.manual_seed(0)
    return create_model("dd_mlp_mnist", num_classes=10)


def _batch():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.rand(2 * BATCH_PER_RANK, 1, 28, 28, generator=generator)
    inputs[BATCH_PER_RANK:] *= 0.05  # near-constant images: DeepFool needs a different number of steps on rank 1
    return inputs, torch.randint(0, 10, (2 * BATCH_PER_RANK,), generator=generator)


def _worker(out: Path) -> None:
    from torch.utils.data import TensorDataset

    from dd_hub.attacks import deepfool_unrolled
    from dd_hub.training.deep_defense import DeepDefenseLoss
    from dd_hub.training.objectives import LossModuleObjective
    from dd_hub.training.loop import TrainConfig
    from dd_hub.training.loop import make_accelerator, train, training_step

    accelerator = make_accelerator()
    rank = accelerator.process_index
    assert accelerator.num_processes == 2 and accelerator.distributed_type.value == "MULTI_CPU"
    model, (inputs, labels) = _model(), _batch()
    single = copy.deepcopy(model)
    objective = LossModuleObjective(DeepDefenseLoss(lam=15.0, c=25.0, d=5.0, steps=5))
    mine = slice(rank * BATCH_PER_RANK, (rank + 1) * BATCH_PER_RANK)

    wrapped = accelerator.prepare(model)
    out_, finite = training_step(accelerator, wrapped, objective, inputs[mine], labels[mine])
    inner = accelerator.unwrap_model(wrapped)
    iterations = deepfool_unrolled(inner, inputs[mine], labels[mine], steps=5).iterations
    torch.save({"grads": {n: None if p.grad is None else p.grad.clone() for n, p in inner.named_parameters()},
                "df_iterations": iterations, "finite": finite}, out / f"step-{rank}.pt")
    local = copy.deepcopy(single)
    objective(local, inputs[mine], labels[mine]).loss.backward()
    torch.save({n: p.grad.clone() for n, p in local.named_parameters()}, out / f"local-{rank}.pt")
    if rank == 0:
        objective(single, inputs, labels).loss.backward()
        torch.save({n: p.grad.clone() for n, p in single.named_parameters()}, out / "single.pt")

    # The whole loop: a few optimizer steps with gradient accumulation, then identical weights on both ranks.
    model = _model()
    data = TensorDataset(*_batch())
    config = TrainConfig(epochs=1, batch_size=2, lr=0.01, lr_milestones=[], grad_accumulation=2)
    train(model, data, config, objective, accelerator=accelerator, progress=False, seed=3)
    torch.save(model.state_dict(), out / f"trained-{rank}.pt")
    accelerator.wait_for_everyone()
    accelerator.end_training()




@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), __file__, str(out)]
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"two-process Deep Defense run hung for more than {TIMEOUT_S} s")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.mark.slow
def test_ranks_stop_deepfool_at_different_iterations(two_process_run):
    per_rank = [torch.load(two_process_run / f"step-{r}.pt")["df_iterations"].max().item() for r in range(2)]
    assert per_rank[0] != per_rank[1], per_rank  # the case that would hang if the attack ran through DDP


@pytest.mark.slow
def test_two_process_gradients_equal_single_process_on_union(two_process_run):
    single = torch.load(two_process_run / "single.pt")
    ranks = [torch.load(two_process_run / f"step-{r}.pt") for r in range(2)]
    assert all(r["finite"] for r in ranks)
    for name, reference in single.items():
        for rank, result in enumerate(ranks):
            grad = result["grads"][name]
            assert grad is not None, f"{name} got no gradient on rank {rank}"
            error = (grad - reference).norm() / reference.norm().clamp_min(1e-12)
            assert error < 1e-5, f"{name} on rank {rank}: relative error {error:.2e}"


@pytest.mark.slow
def test_gradients_are_reduced_not_local(two_process_run):
    """Every parameter's gradient is the all-reduced one (identical on both ranks), not the rank's own."""
    ranks = [torch.load(two_process_run / f"step-{r}.pt")["grads"] for r in range(2)]
    for rank in range(2):
        local = torch.load(two_process_run / f"local-{rank}.pt")
        for name in local:
            assert not torch.allclose(local[name], ranks[rank][name]), f"{name} was not reduced on rank {rank}"
    for name in ranks[0]:
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)


@pytest.mark.slow
def test_train_loop_keeps_ranks_in_sync(two_process_run):
    first, second = (torch.load(two_process_run / f"trained-{r}.pt") for r in range(2))
    initial = _model().state_dict()
    assert any(not torch.equal(first[k], initial[k]) for k in first), "training did not change the weights"
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
