"""What every run (``harden``, ``reproduce``, ``sweep``) does around its phases: one progress line when a phase
starts and one when it ends, with its time; nothing finished lost to a later failure (checkpoints and reports kept,
``--resume`` continues); and a non-finite figure named before anything is written.

A finished evaluation is written as soon as it ends, tied to the weights it measured and the settings it used; a
resumed run reuses it for those very weights and settings only (:func:`evaluate_kept`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn
from torch.utils.data import Dataset

from ..errors import DDHubError, first_line
from ..evaluation.report import EvalConfig, Report, evaluate
from ..names import CHECKPOINTS_DIR
from ..recipes import Recipe
from ..storage import run_dir
from ..storage.atomic_io import read_json_object, write_json_atomic
from ..training.loop import make_accelerator

Echo = Callable[[str], None]
REPORT_NAME = "report.json"  # a finished evaluation, in its phase's checkpoint folder


def seconds(value: float) -> str:
    """``12.3 s``, ``4 min 5 s``, ``1 h 2 min``."""
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@contextlib.contextmanager
def phase(echo: Echo, name: str, detail: str = "") -> Iterator[None]:
    """``name ...`` when the phase starts, ``name: done in T`` when it ends (nothing more on failure: the error
    says what happened)."""
    echo(f"{name}{f' ({detail})' if detail else ''} ...")
    start = time.perf_counter()
    yield
    echo(f"{name}: done in {seconds(time.perf_counter() - start)}")


@contextlib.contextmanager
def kept_on_failure(kept: Path) -> Iterator[None]:
    """A failure after some work names what is kept in ``kept`` (once it exists) and how to continue from it."""
    try:
        yield
    except Exception as exc:
        if not kept.is_dir():
            raise
        what = str(exc) if isinstance(exc, DDHubError) else f"{type(exc).__name__}: {first_line(exc)}"
        raise DDHubError(f"{what} (what finished is kept in {kept}: rerun the same command with --resume to "
                         "continue from there, without training again what finished)") from exc


@contextlib.contextmanager
def multi_phase_run(out_dir: Path, settings: dict, recipe: Recipe, *, resume: bool, overwrite: bool,
                    outputs: tuple[str, ...], mixed_precision: str, device: str | None, progress: bool,
                    checkpoint_every: int | None) -> Iterator[dict]:
    """The output folder of a run of several phases (``reproduce``, ``sweep``) locked, prepared and checked against
    ``settings``, failures kept (:func:`kept_on_failure`); yields the keyword arguments of every phase's training
    loop (:func:`dd_hub.training.loop.train`)."""
    with run_dir.locked(out_dir):
        run_dir.prepare(out_dir, resume=resume, overwrite=overwrite, outputs=outputs)
        run_dir.check_settings(out_dir, settings, resume=resume)
        with kept_on_failure(out_dir / CHECKPOINTS_DIR):
            accelerator = make_accelerator(mixed_precision, recipe.harden.grad_accumulation, device=device)
            yield dict(accelerator=accelerator, progress=progress, data=recipe.data, resume=resume,
                       checkpoint_every=checkpoint_every)


def evaluate_kept(model: nn.Module, test_set: Dataset, config: EvalConfig, path: Path, *, resume: bool,
                  echo: Echo, name: str, eps_ref: float | None = None, write: bool = True, **evaluation) -> Report:
    """:func:`dd_hub.evaluation.report.evaluate`, its report written to ``path`` as soon as it is measured (by the
    main process: ``write``); with ``resume``, one found there is reused when it was measured on the same weights,
    settings and epsilon_ref."""
    key = {"weights_sha256": weights_digest(model), "evaluation": dataclasses.asdict(config), "eps_ref": eps_ref}
    if resume and (kept := _kept_report(path, key)) is not None:
        echo(f"{name}: the report measured before on these weights is reused ({path})")
        return kept
    report = evaluate(model, test_set, config, eps_ref=eps_ref, **evaluation)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"key": key, "report": report.to_dict()})
    return report


def weights_digest(model: nn.Module) -> str:
    """sha256 of the model's state (names and tensor bytes, in order): which weights a kept report measured."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _kept_report(path: Path, key: dict) -> Report | None:
    """The report kept at ``path`` if it was measured under ``key``; None when absent, unreadable or not ours."""
    if not path.is_file():
        return None
    try:
        kept = read_json_object(path, what="a kept report", fix="")
        return Report.from_dict(kept["report"]) if kept.get("key") == key else None
    except (DDHubError, KeyError, TypeError, ValueError):
        return None


def check_finite_figures(reports: dict[str, Report]) -> None:
    """A one-line error naming the first non-finite figure and the model it came from (before metrics.json)."""
    for model, report in reports.items():
        where = _non_finite(report.to_dict())
        if where is not None:
            raise DDHubError(f"the {model} model's figure '{where}' is not a finite number: that model diverged "
                             "or its evaluation failed; retrain with a lower learning rate or lambda, or clip the "
                             "gradients (--set harden.max_grad_norm=1)")


def _non_finite(data: object, path: str = "") -> str | None:
    if isinstance(data, float) and not math.isfinite(data):
        return path or "value"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found = _non_finite(value, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None
