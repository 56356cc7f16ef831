"""A run killed with SIGKILL (mid-epoch, and in the middle of writing a checkpoint) resumes to the same weights.

The worker (``__main__`` below) trains a small dropout MLP with Deep Defense for 2 epochs of 6 batches each,
checkpointing every 2 batches; ``--kill-at-step N`` SIGKILLs it inside the N-th training step, ``--kill-in-save N``
while the N-th checkpoint's weights file is half written. Dropout makes the comparison cover the RNG states.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

EPOCHS, BATCH, SAMPLES = 2, 8, 48


def _worker(out: Path, kill_at_step: int, kill_in_save: int, resume: bool) -> None:
    from torch import nn
    from torch.utils.data import Subset

    import dd_hub.training.checkpoint
    from dd_hub.data.datasets import create_dataset
    from dd_hub.training.deep_defense import DeepDefenseLoss
    from dd_hub.training.objectives import LossModuleObjective
    from dd_hub.models import NormalizedModel
    from dd_hub.training.loop import TrainConfig
    from dd_hub.training.loop import train

    torch.manual_seed(0)
    model = NormalizedModel(nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.3),
                                          nn.Linear(64, 10)), (0.1307,), (0.3081,))
    data = Subset(create_dataset("mnist-5k", "train"), range(SAMPLES))
    loss, calls, saves = LossModuleObjective(DeepDefenseLoss()), [0], [0]

    def objective(*args, **kwargs):
        calls[0] += 1
        if calls[0] == kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
        return loss(*args, **kwargs)

    def save_file(tensors, filename):  # writes half of the file, then dies
        saves[0] += 1
        if saves[0] == kill_in_save:
            Path(filename).write_bytes(b"\x00" * 1000)
            os.kill(os.getpid(), signal.SIGKILL)
        real_save_file(tensors, filename)

    real_save_file = dd_hub.training.checkpoint.save_file
    dd_hub.training.checkpoint.save_file = save_file
    # 2 of the 12 steps have a non-finite loss: skipped steps must resume exactly too, so the phase is not stopped
    config = TrainConfig(epochs=EPOCHS, batch_size=BATCH, lr=0.05, lr_milestones=[1], freeze_bn=False,
                         max_skipped_share=0.5)
    train(model, data, config, objective, progress=False, seed=5, checkpoint_dir=out / "checkpoints",
          checkpoint_every=2, resume=resume)
    real_save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "final.safetensors"))


def _run(out: Path, *, kill_at_step: int = 0, kill_in_save: int = 0, resume: bool = False) -> int:
    command = [sys.executable, __file__, str(out), str(kill_at_step), str(kill_in_save), str(int(resume))]
    return subprocess.run(command, capture_output=True, text=True, timeout=300).returncode


def _assert_checkpoints_complete(root: Path) -> None:
    """Every checkpoint under a final name loads; only hidden ``.tmp`` directories may hold partial files."""
    for directory in (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        load_file(str(directory / "model.safetensors"))
        torch.load(directory / "state.pt", weights_only=False)
        torch.load(directory / "rng-0.pt", weights_only=True)
    assert (root / (root / "latest").read_text()).is_dir()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert _run(out) == 0
    return load_file(str(out / "final.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("kill", [{"kill_at_step": 9}, {"kill_in_save": 5}], ids=["mid-epoch", "mid-checkpoint"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, uninterrupted, kill):
    assert _run(tmp_path, **kill) == -signal.SIGKILL
    assert not (tmp_path / "final.safetensors").exists()
    _assert_checkpoints_complete(tmp_path / "checkpoints")
    latest = (tmp_path / "checkpoints" / "latest").read_text()
    assert latest.startswith("train-e") and latest != f"train-e{EPOCHS}-s0"  # died before the end
    assert _run(tmp_path, resume=True) == 0
    resumed = load_file(str(tmp_path / "final.safetensors"))
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=f"{key} differs after resume")


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), bool(int(sys.argv[4])))
