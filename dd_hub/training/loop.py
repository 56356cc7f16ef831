"""The training loop, on Accelerate: one loop for reference training and every hardening method.

Per step: one forward of the clean batch through the (possibly DDP-wrapped) model, the objective's extra passes
through the unwrapped module, one backward on the total loss. That is the pattern under which DDP reduces the
double-backprop gradients exactly (see docs/architecture.md). Mixed precision, gradient accumulation and logging
are Accelerate's; checkpoints and resume are :mod:`dd_hub.training.checkpoint`'s.
"""
from __future__ import annotations

import inspect
import itertools
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from accelerate.utils import is_tensorboard_available
from timm.layers import FrozenBatchNormAct2d, freeze_batch_norm_2d
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn
from torch.utils.data import DataLoader, Dataset
from torchvision.ops import FrozenBatchNorm2d
from tqdm.auto import tqdm

from ..settings import (AT_LEAST_ONE, BELOW_ONE, FRACTION, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, Settings,
                        value_of)
from .checkpoint import Position, latest_checkpoint, load_checkpoint, load_rng, save_checkpoint
from ..data.datasets import DataConfig
from .deep_defense import LossOutput
from ..errors import DDHubError
from ..data.loaders import training_loader
from .objectives import Objective, cross_entropy

MAX_CONSECUTIVE_NONFINITE = 10
MixedPrecision = Literal["no", "bf16", "fp16"]


@dataclass
class TrainConfig(Settings):
    """One training phase (reference training or hardening)."""

    epochs: Annotated[int, NON_NEGATIVE] = 5
    batch_size: Annotated[int, AT_LEAST_ONE] = 100
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: Annotated[float, POSITIVE] = 5e-4
    momentum: Annotated[float, BELOW_ONE] = 0.9
    weight_decay: Annotated[float, NON_NEGATIVE] = 5e-4
    lr_milestones: Annotated[list[int], AT_LEAST_ONE] = field(default_factory=lambda: [4])  # lr *= lr_decay after
    lr_decay: Annotated[float, FRACTION] = 0.5
    freeze_bn: bool = True                  # BatchNorm in eval mode and out of the optimizer
    # freeze_bn false: at the phase's end, BatchNorm's running statistics are recomputed as plain averages over this
    # many training batches; momentum averages lag a short run (torchvision's MobileNetV3 uses momentum 0.01: a
    # 50-step reference then predicts 4% in eval mode). 0: keep the momentum averages
    recalibrate_bn_batches: Annotated[int, NON_NEGATIVE] = 100
    grad_accumulation: Annotated[int, AT_LEAST_ONE] = 1
    max_grad_norm: Annotated[float, POSITIVE] | None = None  # clip the gradients' global L2 norm; None: off (paper)
    max_skipped_share: Annotated[float, UNIT_INTERVAL] = 0.1  # stop when more of the phase's steps are skipped


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
                     log_dir: str | Path | None = None, device: str | None = None) -> Accelerator:
    """The :class:`Accelerator` of every run: on ``device`` (:func:`training_device`), JSONL (+ TensorBoard if
    installed) logging into ``log_dir`` when given."""
    value_of(MixedPrecision, mixed_precision, "--mixed-precision", noun="")
    cpu = training_device(device).type == "cpu"
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


def training_device(device: str | None = None) -> torch.device:
    """The device a run trains on: ``device`` ('cpu', 'cuda', 'cuda:1'; checked, and made the current CUDA device)
    or, by default, the GPU when there is one. Under ``accelerate launch`` each process has its own GPU: no
    ``device`` but 'cpu' then."""
    if device is None:  # a launched process's own GPU, as Accelerate will pick it
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise DDHubError(f"--device must be cpu, cuda or cuda:N, got '{device}'") from None
    if chosen.type == "cpu":
        return chosen
    if chosen.type != "cuda" or not torch.cuda.is_available():
        why = "no CUDA GPU here" if chosen.type == "cuda" else "only cpu and cuda are supported"
        raise DDHubError(f"cannot use --device {device}: {why}; use --device cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise DDHubError("--device does not apply under `accelerate launch` (each process gets its own GPU)")
    if chosen.index is not None:
        if chosen.index >= torch.cuda.device_count():
            raise DDHubError(f"cannot use --device {device}: there are {torch.cuda.device_count()} GPUs (cuda:0 "
                             f"to cuda:{torch.cuda.device_count() - 1})")
        torch.cuda.set_device(chosen.index)
    return torch.device("cuda", torch.cuda.current_device())


def freeze_batchnorm(model: nn.Module) -> int:
    """BatchNorm frozen in place (timm's ``freeze_batch_norm_2d``: running statistics, no parameters), in eval mode
    like any other BatchNorm left over (1d/3d); returns how many layers are frozen."""
    freeze_batch_norm_2d(model)
    frozen = 0
    for module in model.modules():
        if isinstance(module, (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d, FrozenBatchNormAct2d)):
            module.eval().requires_grad_(False)
            frozen += 1
    return frozen


def all_finite(accelerator: Accelerator, value: Tensor) -> bool:
    """Whether ``value`` is finite on every process (the same answer everywhere, so ranks skip together)."""
    flag = torch.tensor([float(torch.isfinite(value.detach()).all())], device=accelerator.device)
    return bool(accelerator.gather(flag).min().item() == 1.0)


def training_step(accelerator: Accelerator, wrapped: nn.Module, objective: Objective, inputs: Tensor,
                  labels: Tensor, center: Tensor | None = None) -> tuple[LossOutput, bool]:
    """Loss and backward of one batch; returns the objective's output and whether its loss was finite everywhere.

    The clean forward goes through ``wrapped`` (the DDP wrapper, whose backward hooks all-reduce), with a graph to
    the inputs when the objective reuses it as its first attack iterate (Deep Defense: ``wants_input_graph``); the
    objective's own passes through the unwrapped module (no collectives, so per-rank early exits cannot hang), and
    one ``accelerator.backward`` on the total loss (grad-accumulation division and fp16 loss scaling included).
    A non-finite loss is not back-propagated.
    """
    extra = {}
    if accelerator.scaler is not None and "loss_scale" in inspect.signature(objective).parameters:
        extra["loss_scale"] = accelerator.scaler.get_scale()
    out = _objective_output(wrapped, accelerator.unwrap_model(wrapped), objective, inputs, labels, center, extra)
    finite = all_finite(accelerator, out.loss)
    if finite:
        accelerator.backward(out.loss)
    return out, finite


def _objective_output(wrapped: nn.Module, model: nn.Module, objective: Objective, inputs: Tensor, labels: Tensor,
                      center: Tensor | None, extra: dict) -> LossOutput:
    wants_graph = getattr(objective, "wants_input_graph", None)
    if wants_graph is not None and wants_graph(model):
        inputs = inputs.detach().requires_grad_(True)
    return objective(model, inputs, labels, logits=wrapped(inputs), center=center, **extra)


def trial_step(model: nn.Module, dataset: Dataset, config: TrainConfig, objective: Objective = cross_entropy, *,
               center: Tensor | None = None, batch_size: int = 8) -> bool:
    """One forward and backward of ``objective`` on the first ``batch_size`` examples of ``dataset`` (at most
    ``config.batch_size``; two at the least, for BatchNorm in training mode), with ``model`` in the training state
    ``config`` sets (BatchNorm frozen or not), on the model's device; no optimizer step. ``model`` is changed
    (BatchNorm statistics, gradients): pass a copy. Returns whether the loss and every gradient were finite;
    errors (a layer without a double backward, a shape that does not fit) propagate."""
    device = next(model.parameters()).device
    size = max(2, min(batch_size, config.batch_size, len(dataset)))
    inputs, labels = next(iter(DataLoader(dataset, batch_size=size)))
    inputs, labels = inputs.to(device), labels.to(device)
    model.train()
    if config.freeze_bn:
        freeze_batchnorm(model)
    model.zero_grad(set_to_none=True)
    out = _objective_output(model, model, objective, inputs, labels,
                            None if center is None else center.to(device), {})
    if not torch.isfinite(out.loss.detach()).all():
        return False
    out.loss.backward()
    return all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


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
    data: DataConfig | None = None,
) -> list[dict]:
    """Train ``model`` in place with ``objective``; returns one dict of mean statistics per epoch.

    With ``checkpoint_dir``, a checkpoint is written at the end of every epoch and every ``checkpoint_every``
    batches (when that batch ends an optimizer step); ``resume=True`` continues from the latest checkpoint of this
    phase (``desc``) there. Epoch records (main process statistics) go to the accelerator's trackers. ``data``
    sets the loader's workers (:mod:`dd_hub.data.loaders`); the batches are a function of (seed, epoch) only.
    """
    accelerator = accelerator or make_accelerator(grad_accumulation=config.grad_accumulation)
    loader = training_loader(dataset, config.batch_size, seed, data)
    run = _Run(model, loader, config, objective, accelerator, desc, checkpoint_dir, checkpoint_every)
    if resume:
        run.restore_latest()
    center = None if center is None else center.to(run.accelerator.device)
    for epoch in range(run.position.epoch, config.epochs):
        for inputs, labels in run.epoch_batches(epoch, progress):
            run.step(inputs, labels, center)
        run.end_epoch(epoch)
    run.accelerator.wait_for_everyone()
    return run.position.history


class _Run:
    """The state of one :func:`train` call and its steps: optimizer, schedule, position, checkpoints."""

    def __init__(self, model: nn.Module, loader: DataLoader, config: TrainConfig, objective: Objective,
                 accelerator: Accelerator, desc: str, checkpoint_dir: str | Path | None, checkpoint_every: int) -> None:
        self.config, self.objective, self.accelerator = config, objective, accelerator
        self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, checkpoint_every
        model.train()
        if config.freeze_bn:
            freeze_batchnorm(model)
        self.params = [p for p in model.parameters() if p.requires_grad]
        if config.optimizer == "adam":
            optimizer = torch.optim.Adam(self.params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            optimizer = torch.optim.SGD(self.params, lr=config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.lr_milestones,
                                                              gamma=config.lr_decay)
        self.wrapped, self.optimizer = accelerator.prepare(model, optimizer)
        self.loader = accelerator.prepare_data_loader(loader)
        self.position = Position(desc)
        self.after_step = getattr(objective, "after_step", None)  # e.g. Parseval's retraction
        self.nonfinite = 0
        self.batches = 0
        self.bar = None
        self.epoch_start = time.perf_counter()

    def restore_latest(self) -> None:
        """Continue from the latest checkpoint of this phase, if there is one."""
        found = latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        if found is None or not found.name.startswith(f"{self.position.phase}-"):
            return
        position = load_checkpoint(found, self.accelerator, self.wrapped, self.optimizer, self.scheduler)
        if position.epoch > self.config.epochs:
            raise DDHubError(f"the checkpoint in {found.parent} has {position.epoch} {position.phase} epochs done; "
                             f"resume with at least that many epochs (not {self.config.epochs})")
        self.position = position
        load_rng(found, self.accelerator)
        if position.epoch >= self.config.epochs:
            self.accelerator.print(f"{position.phase} finished before: reloaded from {found}")
        else:
            self.accelerator.print(f"resumed {position.phase} from {found} (epoch {position.epoch + 1}, "
                                   f"batch {position.step})")

    def epoch_batches(self, epoch: int, progress: bool):
        """This epoch's batches, after those a resumed run already did, with a progress bar."""
        self.epoch_start = time.perf_counter()
        self.wrapped.train()
        if self.config.freeze_bn:
            freeze_batchnorm(self.accelerator.unwrap_model(self.wrapped))
        loader = self.loader
        loader.set_epoch(epoch)
        self.batches = len(loader)
        if self.position.step:
            loader = self.accelerator.skip_first_batches(loader, self.position.step)
        self.bar = tqdm(loader, desc=f"{self.position.phase} {epoch + 1}/{self.config.epochs}", leave=False,
                        unit="batch", disable=not progress or not self.accelerator.is_local_main_process)
        return self.bar

    def step(self, inputs: Tensor, labels: Tensor, center: Tensor | None) -> None:
        """One batch: loss, backward, optimizer step (or a skipped one after a non-finite value), statistics."""
        accelerator, position = self.accelerator, self.position
        with accelerator.accumulate(self.wrapped):
            out, ok = training_step(accelerator, self.wrapped, self.objective, inputs, labels, center)
            if ok and accelerator.sync_gradients:
                ok = self._finite_and_clipped(out.stats)
            if ok:
                self.optimizer.step()
                self.optimizer.zero_grad()
                if self.after_step is not None and accelerator.sync_gradients:
                    self.after_step(accelerator.unwrap_model(self.wrapped))
                self.nonfinite = 0
            else:
                self._skip_step()
        position.step += 1
        position.global_step += 1
        if ok:
            self._accumulate_stats(out.stats)
        at_interval = self.checkpoint_every and position.global_step % self.checkpoint_every == 0
        if ok and at_interval and accelerator.sync_gradients and position.step < self.batches:  # last: end_epoch
            self.checkpoint()

    def _finite_and_clipped(self, stats: dict[str, float]) -> bool:
        """Whether the gradients are finite on every process (fp16's scaler checks its own), from one global norm
        that also clips them to ``max_grad_norm`` when set (after unscaling fp16's); ``stats`` then get the norm
        before clipping and whether it clipped, for the epoch's record."""
        accelerator, limit = self.accelerator, self.config.max_grad_norm
        if limit is not None:
            norm = accelerator.clip_grad_norm_(self.params, limit)
            stats.update(grad_norm=float(norm), clipped=float(norm > limit))
        elif accelerator.scaler is None:
            norm = torch.stack([p.grad.norm() for p in self.params if p.grad is not None])
        return accelerator.scaler is not None or all_finite(accelerator, norm)

    def _accumulate_stats(self, stats: dict[str, float]) -> None:
        sums = self.position.sums
        for key, value in {"steps": 1.0, **stats}.items():
            sums[key] = sums.get(key, 0.0) + value
        self.bar.set_postfix({k: f"{v / sums['steps']:.4g}" for k, v in sums.items()
                             if k not in ("steps", "skipped_steps")}, refresh=False)

    def end_epoch(self, epoch: int) -> None:
        """Log the epoch's mean statistics and step counts, stop a diverging phase, step the schedule and
        checkpoint."""
        position = self.position
        steps, skipped = position.sums.pop("steps", 0.0), position.sums.pop("skipped_steps", 0.0)
        counts = {"steps": int(steps), "skipped_steps": int(skipped)}
        if "clipped" in position.sums:
            counts["clipped_steps"] = int(round(position.sums["clipped"]))
        record = {"phase": position.phase, "epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                  **{k: v / max(steps, 1.0) for k, v in position.sums.items()}, **counts,
                  "seconds": round(time.perf_counter() - self.epoch_start, 3)}  # this process's, this run's part
        self._check_divergence(record)
        if epoch + 1 == self.config.epochs and not self.config.freeze_bn and (batches := self.recalibrate_batchnorm()):
            record["bn_recalibrated_batches"] = batches
        self.scheduler.step()
        position.history.append(record)
        self.accelerator.log(record, step=position.global_step)
        position.epoch, position.step, position.sums = epoch + 1, 0, {}
        self.checkpoint()

    def recalibrate_batchnorm(self) -> int:
        """BatchNorm's running statistics recomputed (torch's ``update_bn``) over the first
        ``recalibrate_bn_batches`` training batches of each process, averaged over processes; returns how many
        batches were used (0 when the network has no BatchNorm or the setting is 0)."""
        model = self.accelerator.unwrap_model(self.wrapped)
        layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        batches = min(self.config.recalibrate_bn_batches, len(self.loader)) if layers else 0
        if batches:
            with torch.no_grad():
                update_bn(itertools.islice(self.loader, batches), model)
                if self.accelerator.num_processes > 1:  # equal shards: the mean of the ranks' averages
                    for layer in layers:
                        layer.running_mean.copy_(self.accelerator.reduce(layer.running_mean, "mean"))
                        layer.running_var.copy_(self.accelerator.reduce(layer.running_var, "mean"))
        return batches

    def _check_divergence(self, record: dict) -> None:
        """Stop the phase when more than ``max_skipped_share`` of its steps so far (every one, at the least) were
        skipped for a non-finite loss or gradient: a network that was (almost) never updated is not evaluated."""
        done = [*self.position.history, record]
        skipped = sum(r.get("skipped_steps", 0) for r in done)
        total = skipped + sum(r.get("steps", 0) for r in done)
        if skipped == 0 or (skipped / total <= self.config.max_skipped_share and skipped < total):
            return
        phase = self.position.phase
        section = "reference" if phase == "reference" else "harden"
        raise DDHubError(f"the {phase} phase diverged: {skipped} of its {total} steps ({skipped / total:.0%}) were "
                         f"skipped for a non-finite loss or gradient (more than {section}.max_skipped_share = "
                         f"{self.config.max_skipped_share:g}); lower the learning rate (--set {section}.lr=...) or "
                         f"lambda (--set defense.lam=...), or clip the gradients (--set {section}.max_grad_norm=1)")

    def checkpoint(self) -> None:
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, self.accelerator, self.wrapped, self.optimizer, self.scheduler,
                            self.position)

    def _skip_step(self) -> None:
        """Drop this accumulation window's gradients after a non-finite loss or gradient; abort after too many."""
        self.nonfinite += 1
        self.position.sums["skipped_steps"] = self.position.sums.get("skipped_steps", 0.0) + 1
        for param in self.params:
            param.grad = None
        scaler = self.accelerator.scaler
        if scaler is not None:  # an fp16 overflow in the inner input-gradients: lower the scale
            scaler.scale(torch.ones((), device=self.accelerator.device))  # initialises a still-lazy scale tensor
            scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
        where = f"epoch {self.position.epoch + 1}, batch {self.position.step + 1}"
        if self.nonfinite >= MAX_CONSECUTIVE_NONFINITE:
            section = "reference" if self.position.phase == "reference" else "harden"
            raise DDHubError(f"the {self.position.phase} phase diverged: {self.nonfinite} consecutive non-finite "
                             f"losses or gradients ({where}); lower the learning rate (--set {section}.lr=...) or "
                             f"lambda (--set defense.lam=...), clip the gradients (--set {section}.max_grad_norm=1), "
                             "or train in fp32")
        warnings.warn(f"{self.position.phase}: non-finite loss or gradient at {where}: step skipped")
