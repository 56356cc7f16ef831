"""The starting point of every run (``harden``, ``reproduce``, ``sweep``): model, data, and where the weights came
from. One function builds it, so the three commands cannot drift apart.

Order matters: the dataset's classes set the model's head, the model's data config sets the images' size and crop
(normalization stays inside the model), and the reference model is trained, if the recipe asks for one, on that
data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import timm
import torch
from accelerate import Accelerator
from torch import Tensor
from torch.utils.data import Dataset

from ..data.datasets import DatasetSpec, create_dataset, first_examples, get_spec, mean_image
from ..errors import DDHubError
from ..models import NormalizedModel, create_model, unwrap
from ..models.directory import save_model
from ..models.factory import check_input_size
from ..names import WEIGHTS_NAME
from ..recipes import Recipe
from ..storage.atomic_io import sha256_file
from ..storage.weights import load_state_dict
from ..training.loop import train
from ..training.objectives import cross_entropy


@dataclass
class Start:
    """A run's starting model and data. ``weights`` says where the weights come from: 'checkpoint', 'pretrained',
    'reference' (trained by the recipe's ``reference`` section) or 'random'; ``provenance`` says it in words."""

    model: NormalizedModel
    spec: DatasetSpec
    train_set: Dataset
    test_set: Dataset
    center: Tensor | None
    weights: str
    provenance: str
    base_model: str | None = None   # the Hub id of pretrained weights, for the card's ``base_model``
    skipped: dict[str, int] = field(default_factory=dict)  # unreadable images left out per split (skip_corrupt)


def prepare_start(recipe: Recipe, *, data_dir: str | Path | None = None, checkpoint: str | Path | None = None,
                  allow_random_init: bool = False, input_size: int | None = None) -> Start:
    """Model and data of a run, checked before any work: unknown names, missing data, missing weights.

    Weights: ``checkpoint`` if given; else the library's pretrained weights if the recipe asks for them (never with
    ``allow_random_init``, so no Hub call is made when no weights are wanted); else the recipe's ``reference``
    section trains them (see :func:`train_reference`); else random, only with ``allow_random_init``.
    """
    spec = get_spec(recipe.dataset, data_dir)
    weights = "checkpoint" if checkpoint else "pretrained" if recipe.pretrained and not allow_random_init else (
        "reference" if recipe.reference is not None else "random")
    if weights == "random" and not allow_random_init:
        raise DDHubError(f"no starting weights for '{recipe.model}': pass --checkpoint FILE, use a recipe with "
                         "pretrained: true or a reference section, or --allow-random-init")
    timm.layers.set_fused_attn(False)  # double backward needs the math attention kernel, chosen at construction
    model = create_model(recipe.model, num_classes=spec.num_classes, pretrained=weights == "pretrained",
                         checkpoint_path=checkpoint, input_size=spec.input_size, mean=spec.mean, std=spec.std,
                         **recipe.model_args)
    data_config = timm.data.resolve_model_data_config(unwrap(model))
    if spec.input_size is not None:  # read at its native size: the model must take it
        check_input_size(model, spec.input_size, recipe.model)
    use_channels_last(model, recipe.channels_last)
    if input_size is not None:
        data_config.update(input_size=(data_config["input_size"][0], input_size, input_size), crop_pct=1.0)
    read = dict(data_dir=data_dir, data_config=data_config, skip_corrupt=recipe.data.skip_corrupt)
    full_train_set = create_dataset(recipe.dataset, "train", **read)
    test_set = create_dataset(recipe.dataset, "test", **read)
    train_set = first_examples(full_train_set, recipe.max_train_examples)
    skipped = {split: len(getattr(dataset, "skipped", [])) for split, dataset in
               (("train", full_train_set), ("test", test_set))}
    center = mean_image(train_set) if recipe.rho_space == "centered" else None
    base_model = _hub_id(unwrap(model)) if weights == "pretrained" else None
    provenance = _provenance(weights, checkpoint, base_model or recipe.model)
    return Start(model, spec, train_set, test_set, center, weights, provenance, base_model, skipped)


def train_reference(start: Start, recipe: Recipe, *, accelerator: Accelerator, echo: Callable[[str], None] = print,
                    seed: int | None = None, save_dir: str | Path | None = None, resume: bool = False,
                    **loop) -> list[dict]:
    """Train the starting model with the recipe's ``reference`` settings when its weights are to come from there
    (data order from ``seed``, default the recipe's); returns the training's epoch records (none when nothing was
    trained). With ``save_dir`` the trained reference is saved there, and a resumed run reloads it instead of
    training again; ``loop`` goes to :func:`dd_hub.training.loop.train`."""
    if start.weights != "reference":
        return []
    saved = Path(save_dir) / WEIGHTS_NAME if save_dir else None
    if resume and saved is not None and saved.is_file():
        echo(f"Resuming with the reference model trained before ({saved})")
        unwrap(start.model).load_state_dict(load_state_dict(saved))
        return []
    echo(f"Training the reference {recipe.model} on {recipe.dataset} ({recipe.reference.epochs} epochs)")
    history = train(start.model, start.train_set, recipe.reference, cross_entropy, accelerator=accelerator,
                    desc="reference", seed=recipe.seed if seed is None else seed, resume=resume, **loop)
    if save_dir is not None:
        if accelerator.is_main_process:
            save_model(start.model, save_dir, label_names=start.spec.label_names)
        accelerator.wait_for_everyone()
    return history


def use_channels_last(model: torch.nn.Module, setting: bool | None) -> bool:
    """Convolution weights in channels_last memory format: ``setting`` True or False, or None for "on a GPU, for
    networks with 2-D convolutions" (where cuDNN's NHWC kernels help; on CPU it buys nothing). Same values either
    way: only the memory layout changes. Returns whether it was applied."""
    wanted = setting if setting is not None else (
        torch.cuda.is_available() and any(isinstance(m, torch.nn.Conv2d) for m in model.modules()))
    if wanted:
        model.to(memory_format=torch.channels_last)
    return bool(wanted)


def _provenance(weights: str, checkpoint: str | Path | None, name: str) -> str:
    if weights == "checkpoint":
        path = Path(str(checkpoint))
        digest = sha256_file(path / WEIGHTS_NAME if path.is_dir() else path)
        return f"the weights of `{path.name}` (sha256 {digest[:16]}...)"
    if weights == "pretrained":
        return f"the pretrained weights `{name}`"
    if weights == "reference":
        return "a reference model trained by dd-hub with the recipe's `reference` settings (saved under `reference/`)"
    return "random initialization (no pretrained weights)"


def _hub_id(model) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("hf_hub_id") or None
