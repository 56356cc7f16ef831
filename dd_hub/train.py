"""The training loop, on Accelerate: one loop for reference training and every hardening method.

Per step: one forward of the clean batch through the (possibly DDP-wrapped) model, the objective's extra passes
through the unwrapped module, one backward on the total loss. That is the pattern under which DDP reduces the
double-backprop gradients exactly (see docs/architecture.md). Mixed precision, gradient accumulation and logging
are Accelerate's; checkpoints and resume are :mod:`dd_hub.checkpoint`'s.
"""
from __future__ import annotations

import inspect
import json
import warnings
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import is_tensorboard_available
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .checkpoint import Position, latest_checkpoint, load_checkpoint, load_rng, save_checkpoint
from .defense import LossOutput
from .errors import DDHubError
from .methods import cross_entropy
from .recipes import TrainConfig

Objective = Callable[..., LossOutput]
MAX_CONSECUTIVE_NONFINITE = 10
MIXED_PRECISION = ("no", "bf16", "fp16")


class JSONLTracker(GeneralTracker):
    """An Accelerate tracker appending one JSON object per ``accelerator.log`` call to ``<dir>/train_log.jsonl``."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, logging_dir: str | Path) -> None:
        super().__init__()
        self.path = Path(logging_dir) / "train_log.jsonl"

    @property
    def tracker(self) -> Path:
        return self.path

    def store_init_configuration(self, values: dict) -> None:
        pass

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **values}) + "\n")


def make_accelerator(mixed_precision: str = "no", grad_accumulation: int = 1,
                     log_dir: str | Path | None = None) -> Accelerator:
    """The :class:`Accelerator` for a run: CPU when there is no GPU, JSONL (+ TensorBoard if installed) logging."""
    if mixed_precision not in MIXED_PRECISION:
        raise DDHubError(f"mixed precision must be one of {', '.join(MIXED_PRECISION)}, not '{mixed_precision}'")
    cpu = not torch.cuda.is_available()
    if mixed_precision == "fp16" and cpu:
        raise DDHubError("fp16 needs a CUDA GPU (Accelerate has no fp16 loss scaling on CPU); use bf16 on CPU")
    trackers: list = []
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        trackers = [JSONLTracker(log_dir)] + (["tensorboard"] if is_tensorboard_available() else [])
    accelerator = Accelerator(cpu=cpu, mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accumulation,
                              log_with=trackers or None, project_dir=str(log_dir) if log_dir else None)
    if trackers:
        accelerator.init_trackers("tensorboard")
    return accelerator


def freeze_batchnorm(model: nn.Module) -> int:
    """BatchNorm layers to eval mode with their affine parameters frozen; returns how many were frozen."""
    frozen = 0
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            for param in module.parameters():
                param.requires_grad_(False)
            frozen += 1
    return frozen


def _optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def epoch_loader(dataset: Dataset, batch_size: int, seed: int, epoch: int) -> DataLoader:
    """This epoch's shuffled batches: the order is a function of (seed, epoch) only, so a resumed run sees the
    same batches, and the loader draws nothing from the global RNG (dropout keeps the uninterrupted sequence)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return DataLoader(Subset(dataset, order.tolist()), batch_size=batch_size, shuffle=False,
                      generator=torch.Generator().manual_seed(seed))


def all_finite(accelerator: Accelerator, value: Tensor) -> bool:
    """Whether ``value`` is finite on every process (the same answer everywhere, so ranks skip together)."""
    flag = torch.tensor([float(torch.isfinite(value.detach()).all())], device=accelerator.device)
    return bool(accelerator.gather(flag).min().item() == 1.0)


def training_step(accelerator: Accelerator, wrapped: nn.Module, objective: Objective, inputs: Tensor,
                  labels: Tensor, center: Tensor | None = None) -> tuple[LossOutput, bool]:
    """Loss and backward of one batch; returns the objective's output and whether its loss was finite everywhere.

    The clean forward goes through ``wrapped`` (the DDP wrapper, whose backward hooks all-reduce), the objective's
    own passes through the unwrapped module (no collectives, so per-rank early exits cannot hang), and one
    ``accelerator.backward`` on the total loss (grad-accumulation division and fp16 loss scaling included).
    A non-finite loss is not back-propagated.
    """
    extra = {}
    if accelerator.scaler is not None and "loss_scale" in inspect.signature(objective).parameters:
        extra["loss_scale"] = accelerator.scaler.get_scale()
    out = objective(accelerator.unwrap_model(wrapped), inputs, labels, logits=wrapped(inputs), center=center,
                    **extra)
    finite = all_finite(accelerator, out.loss)
    if finite:
        accelerator.backward(out.loss)
    return out, finite


def train(
    model: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    objective: Objective = cross_entropy,
    *,
    accelerator: Accelerator | None = None,
    center: Tensor | None = None,
    desc: str = "train",
    progress: bool = True,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
) -> list[dict]:
    """Train ``model`` in place with ``objective``; returns one dict of mean statistics per epoch.

    With ``checkpoint_dir``, a checkpoint is written at the end of every epoch and every ``checkpoint_every``
    batches (when that batch ends an optimizer step); ``resume=True`` continues from the latest checkpoint of this
    phase (``desc``) there. Epoch records (main process statistics) go to the accelerator's trackers.
    """
    accelerator = accelerator or make_accelerator(grad_accumulation=config.grad_accumulation)
    model.train()
    if config.freeze_bn:
        freeze_batchnorm(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = _optimizer(params, config)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.lr_milestones,
                                                     gamma=config.lr_decay)
    wrapped, optimizer = accelerator.prepare(model, optimizer)
    if center is not None:
        center = center.to(accelerator.device)
    position = Position(desc)
    found = latest_checkpoint(checkpoint_dir) if resume and checkpoint_dir else None
    if found is not None and found.name.startswith(f"{desc}-"):
        position = load_checkpoint(found, accelerator, wrapped, optimizer, scheduler)
        load_rng(found, accelerator)
        accelerator.print(f"resumed {desc} from {found} (epoch {position.epoch + 1}, batch {position.step})")
    nonfinite = 0
    after_step = getattr(objective, "after_step", None)  # e.g. Parseval's retraction

    def checkpoint() -> None:
        if checkpoint_dir is not None:
            save_checkpoint(checkpoint_dir, accelerator, wrapped, optimizer, scheduler, position)

    for epoch in range(position.epoch, config.epochs):
        wrapped.train()
        if config.freeze_bn:
            freeze_batchnorm(accelerator.unwrap_model(wrapped))
        loader = accelerator.prepare_data_loader(epoch_loader(dataset, config.batch_size, seed, epoch))
        batches = len(loader)
        if position.step:
            loader = accelerator.skip_first_batches(loader, position.step)
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{config.epochs}", leave=False, unit="batch",
                   disable=not progress or not accelerator.is_local_main_process)
        for inputs, labels in bar:
            with accelerator.accumulate(wrapped):
                out, ok = training_step(accelerator, wrapped, objective, inputs, labels, center)
                if ok and accelerator.sync_gradients and accelerator.scaler is None:
                    ok = all_finite(accelerator, torch.stack([p.grad.norm() for p in params if p.grad is not None]))
                if ok:
                    optimizer.step()
                    optimizer.zero_grad()
                    if after_step is not None and accelerator.sync_gradients:
                        after_step(accelerator.unwrap_model(wrapped))
                    nonfinite = 0
                else:
                    nonfinite = _skip_step(accelerator, params, nonfinite, epoch, position.step)
            position.step += 1
            position.global_step += 1
            if ok:
                for key, value in {"steps": 1.0, **out.stats}.items():
                    position.sums[key] = position.sums.get(key, 0.0) + value
                bar.set_postfix({k: f"{v / position.sums['steps']:.4g}" for k, v in position.sums.items()
                                 if k != "steps"}, refresh=False)
            at_interval = checkpoint_every and position.global_step % checkpoint_every == 0
            if ok and at_interval and accelerator.sync_gradients and position.step < batches:  # last: below
                checkpoint()
        counted = max(position.sums.pop("steps", 0.0), 1.0)
        record = {"phase": desc, "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                  **{k: v / counted for k, v in position.sums.items()}}
        scheduler.step()
        position.history.append(record)
        accelerator.log(record, step=position.global_step)
        position.epoch, position.step, position.sums = epoch + 1, 0, {}
        checkpoint()
    accelerator.wait_for_everyone()
    return position.history


def _skip_step(accelerator: Accelerator, params: list[nn.Parameter], nonfinite: int, epoch: int, step: int) -> int:
    """Drop this accumulation window's gradients after a non-finite loss or gradient; abort after too many."""
    nonfinite += 1
    for param in params:
        param.grad = None
    if accelerator.scaler is not None:  # an fp16 overflow in the inner input-gradients: lower the scale
        scaler = accelerator.scaler
        scaler.scale(torch.ones((), device=accelerator.device))  # initialises the scale tensor if still lazy
        scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
    if nonfinite >= MAX_CONSECUTIVE_NONFINITE:
        raise DDHubError(f"{nonfinite} consecutive non-finite losses or gradients (epoch {epoch + 1}, batch "
                         f"{step + 1}); lower the learning rate or lambda/d, or train in fp32")
    warnings.warn(f"non-finite loss or gradient at epoch {epoch + 1}, batch {step + 1}: step skipped")
    return nonfinite
