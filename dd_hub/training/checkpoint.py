"""Atomic training checkpoints and resume.

A checkpoint is a directory ``<root>/<phase>-e<epoch>-s<step>/`` holding ``model.safetensors`` (the unwrapped
model's weights), ``state.pt`` (optimizer, scheduler, GradScaler, position in the run) and ``rng-<rank>.pt`` (each
process's Python/NumPy/torch RNG states). It is written under a ``.tmp`` name and renamed once complete, then
``<root>/latest`` (written atomically) is pointed at it, so a run killed at any moment leaves either the previous
checkpoint or the new one, never a partial file under a final name. ``state.pt`` and ``rng-*.pt`` are read with
``torch.load(weights_only=True)``; weights only ever come from safetensors.
"""
from __future__ import annotations

import collections
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import DDHubError
from ..storage.atomic_io import write_text_atomic
from ..storage.weights import load_weights_into

LATEST = "latest"


@dataclass
class Position:
    """Where a run stands: ``step`` batches of epoch ``epoch`` (0-based) of phase ``phase`` are done."""

    phase: str
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    sums: dict[str, float] = field(default_factory=dict)   # running sums of the epoch's logged statistics
    history: list[dict] = field(default_factory=list)       # records of the finished epochs


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: str | Path, accelerator, model: nn.Module, optimizer, scheduler, position: Position) -> Path:
    """Write a checkpoint of the current state (call on every process); returns its directory.

    Older checkpoints under ``root`` are removed once the new one is complete.
    """
    root = Path(root)
    name = f"{position.phase}-e{position.epoch}-s{position.step}"
    final, tmp = root / name, root / f".{name}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        weights = {k: v.detach().contiguous().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
        if not all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point()):
            raise DDHubError("refusing to checkpoint non-finite weights; lower the learning rate or use fp32")
        save_file(weights, str(tmp / "model.safetensors"))
        scaler = accelerator.scaler
        torch.save({"position": asdict(position), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                    "num_processes": accelerator.num_processes}, tmp / "state.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text_atomic(root / LATEST, name)
        for old in root.iterdir():
            if old.is_dir() and old != final:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    """The directory ``<root>/latest`` points at, or None when there is no complete checkpoint."""
    pointer = Path(root) / LATEST
    if not pointer.is_file():
        return None
    path = Path(root) / pointer.read_text().strip()
    if not (path / "state.pt").is_file() or not (path / "model.safetensors").is_file():
        raise DDHubError(f"checkpoint {path} named by {pointer} is incomplete; delete {root} to start over")
    return path


def load_checkpoint(path: str | Path, accelerator, model: nn.Module, optimizer, scheduler) -> Position:
    """Restore model, optimizer, scheduler and scaler from checkpoint ``path``; returns the saved position.

    RNG states are restored separately with :func:`load_rng`, at the point where the run saved them.
    """
    path = Path(path)
    with torch.serialization.safe_globals([collections.Counter]):  # MultiStepLR keeps milestones in a Counter
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    if state["num_processes"] != accelerator.num_processes:
        raise DDHubError(f"checkpoint {path} was written by {state['num_processes']} processes, this run has "
                         f"{accelerator.num_processes}; resume with the same number of processes")
    load_weights_into(accelerator.unwrap_model(model), load_file(str(path / "model.safetensors"), device="cpu"))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if accelerator.scaler is not None and state["scaler"]:
        accelerator.scaler.load_state_dict(state["scaler"])
    return Position(**state["position"])


def load_rng(path: str | Path, accelerator) -> None:
    set_rng_state(torch.load(Path(path) / f"rng-{accelerator.process_index}.pt", weights_only=True))

