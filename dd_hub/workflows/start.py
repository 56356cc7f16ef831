"""The starting point of every run (``harden``, ``reproduce``, ``sweep``): model, data, and where the weights came
from. One function builds it, so the three commands cannot drift apart.

Order matters: the dataset's classes set the model's head, the model's data config sets the images' size and crop
(normalization stays inside the model), and the reference model is trained, if the recipe asks for one, on that
data.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import timm
import torch
from accelerate import Accelerator
from torch import Tensor
from torch.utils.data import Dataset

from ..data.datasets import DatasetSpec, create_dataset, first_examples, get_spec, mean_image
from ..errors import DDHubError, first_line
from ..models import NormalizedModel, create_model, unwrap
from ..models.directory import check_export, save_model
from ..models.factory import check_input_size
from ..names import WEIGHTS_NAME
from ..recipes import Recipe
from ..storage.atomic_io import sha256_file
from ..storage.weights import load_state_dict, load_weights_into
from ..training.loop import train, trial_step, training_device
from ..training.objectives import create_objective, cross_entropy
from .phases import phase


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
    input: str = ""                 # the images the network sees, in words (native size, or resized to which)


def prepare_start(recipe: Recipe, *, data_dir: str | Path | None = None, checkpoint: str | Path | None = None,
                  allow_random_init: bool = False, input_size: int | None = None) -> Start:
    """Model and data of a run, checked before any work: unknown names, missing data, missing weights.

    Weights: ``checkpoint`` if given; else the library's pretrained weights if the recipe asks for them (never with
    ``allow_random_init``, so no Hub call is made when no weights are wanted); else the recipe's ``reference``
    section trains them (see :func:`train_reference`); else random, only with ``allow_random_init``.
    """
    spec = get_spec(recipe.dataset, data_dir)
    if input_size is not None and spec.input_size is not None:
        size = "x".join(str(v) for v in spec.input_size)
        raise DDHubError(f"--input-size does not apply to {spec.name}: it is read at its native {size} and the model "
                         "is built for that size; drop --input-size (it resizes folder and timm datasets)")
    weights = "checkpoint" if checkpoint else "pretrained" if recipe.pretrained and not allow_random_init else (
        "reference" if recipe.reference is not None else "random")
    if weights == "random" and not allow_random_init:
        raise DDHubError(f"no starting weights for '{recipe.model}': pass --checkpoint FILE, use a recipe with "
                         "pretrained: true or a reference section, or --allow-random-init")
    read = dict(data_dir=data_dir, skip_corrupt=recipe.data.skip_corrupt)
    native = spec.input_size is not None   # read at its native size: read (and so checked) before any weights
    if native:
        full_train_set, test_set = (create_dataset(recipe.dataset, split, **read) for split in ("train", "test"))
    timm.layers.set_fused_attn(False)  # double backward needs the math attention kernel, chosen at construction
    model = create_model(recipe.model, num_classes=spec.num_classes, pretrained=weights == "pretrained",
                         checkpoint_path=checkpoint, input_size=spec.input_size, mean=spec.mean, std=spec.std,
                         **recipe.model_args)
    data_config = timm.data.resolve_model_data_config(unwrap(model))
    if native:  # the model must take it
        check_input_size(model, spec.input_size, recipe.model)
    use_channels_last(model, recipe.channels_last)
    if input_size is not None:
        data_config.update(input_size=(data_config["input_size"][0], input_size, input_size), crop_pct=1.0)
    if not native:
        full_train_set, test_set = (create_dataset(recipe.dataset, split, data_config=data_config, **read)
                                    for split in ("train", "test"))
    train_set = first_examples(full_train_set, recipe.max_train_examples)
    skipped = {split: len(getattr(dataset, "skipped", [])) for split, dataset in
               (("train", full_train_set), ("test", test_set))}
    center = mean_image(train_set) if recipe.rho_space == "centered" else None
    base_model = _hub_id(unwrap(model)) if weights == "pretrained" else None
    provenance = describe_start(weights, checkpoint, base_model or recipe.model)
    channels, height, width = spec.input_size or data_config["input_size"]
    seen = f"{channels}x{height}x{width}"
    described = (f"{spec.name}'s native {seen}" if native else f"resized to {seen} (--input-size)" if input_size
                 else f"resized to the model's {seen}")
    if model.resize_to is not None:  # the network cannot classify them at that size: see create_model
        described += f", resized to {model.resize_to[0]}x{model.resize_to[1]} inside the model"
    return Start(model, spec, train_set, test_set, center, weights, provenance, base_model, skipped, described)


def preflight(start: Start, recipe: Recipe, methods: Sequence[str] | None = None, *, device: str | None = None,
              trial_batch: int = 8) -> None:
    """Prove, before any training, that the run can finish: on a copy of the starting model (on the run's device),
    one forward and backward of every phase's objective on one batch of the training data (the reference's
    cross-entropy when the recipe trains one, then each of ``methods``, default the recipe's), then the export
    written to a temporary folder, reloaded and compared with the network it came from. Anything that fails is a
    one-line error saying so, with nothing trained."""
    model = copy.deepcopy(start.model).to(training_device(device))
    center = start.center
    phases = [("reference training", recipe.reference, cross_entropy)] if start.weights == "reference" else []
    phases += [(f"hardening with {method}", recipe.harden, create_objective(dataclasses.replace(recipe, method=method)))
               for method in (methods or [recipe.method])]
    for name, config, objective in phases:
        try:
            finite = trial_step(model, start.train_set, config, objective, center=center, batch_size=trial_batch)
        except DDHubError:
            raise
        except Exception as exc:
            raise DDHubError(f"'{recipe.model}' cannot run the {name} (one batch failed before any training: "
                             f"{type(exc).__name__}: {first_line(exc)}); choose another model, or other "
                             "constructor arguments with --set model_args.KEY=VALUE") from None
        # a hardening objective on the untrained copy of a network the reference phase will train says little
        # (an untrained network's DeepFool perturbations are huge: exp(d * rho) overflows); on its own weights it does
        predictive = name == "reference training" or start.weights != "reference"
        if not finite and predictive:
            raise DDHubError(f"the {name} of '{recipe.model}' gives a non-finite loss or gradient on its first "
                             "batch, before any training; lower lambda (--set defense.lam=...) or use other "
                             "starting weights")
    model.zero_grad(set_to_none=True)
    inputs = torch.stack([start.test_set[i][0] for i in range(min(4, len(start.test_set)))])
    check_export(model, inputs=inputs, label_names=start.spec.label_names, name=recipe.model)


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
        echo(f"Reference training: finished before, not trained again (reloaded from {saved})")
        load_weights_into(unwrap(start.model), load_state_dict(saved))
        return []
    epochs = recipe.reference.epochs
    with phase(echo, "Reference training", f"{recipe.model} on {recipe.dataset}, {epochs} epoch{'s' * (epochs != 1)}"):
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


def describe_start(weights: str, checkpoint: str | Path | None = None, name: str = "") -> str:
    """Where a model's weights started, in words: ``weights`` is :class:`Start`'s."""
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
