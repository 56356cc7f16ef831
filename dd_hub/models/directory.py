"""The model directory, in timm's Hub format: save, check, load (local, ``local-dir:``, ``hf-hub:``), download.

A model directory holds ``config.json`` (timm's layout: architecture, num_classes, label_names, pretrained_cfg)
and ``model.safetensors``; ``dd-hub harden`` adds ``metrics.json``, the ``README.md`` card and figures. Only
safetensors is ever read: pickles are refused.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import timm
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..storage.atomic_io import file_mode, read_json_object
from ..errors import DDHubError, first_line
from .normalized import NormalizedModel, model_args_of, normalization_of, unwrap
from .twice_differentiable import make_twice_differentiable
from .torchvision_compat import (IMAGENET_MEAN, IMAGENET_STD, TIMM_TWINS, TORCHVISION_DATA_CFG,
                                        build_torchvision, exported_architecture, is_torchvision,
                                        output_size, split_prefix, timm_twin, torchvision_name, torchvision_names)
from ..storage.run_dir import check_complete
from ..storage.weights import PICKLE_SUFFIXES, WEIGHTS_NAME, check_finite, load_state_dict

CONFIG_NAME = "config.json"


def architecture_name(model: nn.Module) -> str:
    """The ``architecture`` :func:`save_model` writes for ``model``: its timm name, the timm twin of a torchvision
    network, or ``tv:NAME`` for torchvision networks without one."""
    bare = unwrap(model)
    return exported_architecture(bare) if is_torchvision(bare) else bare.pretrained_cfg["architecture"]


def save_model(model: nn.Module, directory: str | Path, *, label_names: list[str] | None = None,
               extra_config: dict | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` of the bare network into ``directory``, atomically.

    Both files are written in a temporary folder inside ``directory`` and renamed into place.
    """
    bare, normalization = unwrap(model), normalization_of(model)
    check_finite(bare.state_dict(), f"the model to save in {directory}")
    config = dict(extra_config or {})
    if label_names is not None:
        config["label_names"] = list(label_names)
    if is_torchvision(bare):
        name = torchvision_name(bare)
        if name not in TIMM_TWINS:
            config = {**config, **({"model_args": model_args_of(model)} if model_args_of(model) else {})}
            return _write_model_files(directory,
                                      lambda tmp: _save_torchvision(bare, name, tmp, config, normalization))
        bare = timm_twin(bare, name, normalization)
    if not hasattr(bare, "pretrained_cfg") or not timm.is_model(bare.pretrained_cfg.get("architecture", "")):
        raise DDHubError(f"cannot export {type(bare).__name__}: only timm-registry and torchvision networks can be saved")
    model_args = model_args_of(model) or None
    return _write_model_files(directory, lambda tmp: timm.models.save_for_hf(
        bare, tmp, model_config=config, model_args=model_args, safe_serialization=True))


def _write_model_files(directory: str | Path, write) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
            write(Path(tmp))
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                os.chmod(Path(tmp) / name, file_mode())
                os.replace(Path(tmp) / name, directory / name)
    except OSError as exc:
        raise DDHubError(f"cannot write the model into {directory}: {exc.strerror or exc}") from None
    return directory


def _save_torchvision(model: nn.Module, name: str, directory: Path, config: dict, normalization: tuple | None) -> None:
    """A torchvision network with no timm twin: ``architecture: tv:NAME`` + torchvision's preprocessing.

    timm cannot build it (``tv:NAME`` is no timm architecture, so timm refuses it instead of loading random
    weights); :func:`load` can.
    """
    mean, std = normalization or (list(IMAGENET_MEAN), list(IMAGENET_STD))
    full_config = {"architecture": exported_architecture(model), "library": "torchvision",
                   "num_classes": output_size(model), **config,
                   "pretrained_cfg": {**TORCHVISION_DATA_CFG, "tag": "tv_in1k", "mean": list(mean), "std": list(std)}}
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(directory / WEIGHTS_NAME),
              metadata={"format": "pt"})
    (directory / CONFIG_NAME).write_text(json.dumps(full_config, indent=4) + "\n")


def _load_torchvision(config: dict, path: Path) -> NormalizedModel:
    name = split_prefix(config["architecture"])
    if name not in torchvision_names():
        raise DDHubError(f"{path / CONFIG_NAME} names unknown torchvision architecture '{name}'")
    model = build_torchvision(name, num_classes=config["num_classes"], **(config.get("model_args") or {}))
    try:
        model.load_state_dict(load_state_dict(path))
    except RuntimeError as exc:
        raise DDHubError(f"weights in {path} do not fit {name}: {first_line(exc)}") from None
    cfg = config["pretrained_cfg"]
    return NormalizedModel(model, cfg["mean"], cfg["std"], model_args=config.get("model_args")).eval()


def load(name_or_path: str | Path, *, revision: str | None = None) -> NormalizedModel:
    """A saved dd-hub/timm checkpoint as a model taking [0, 1] images, in eval mode.

    Accepts a directory (or ``local-dir:DIR``) and ``hf-hub:ORG/NAME[@rev]`` / ``ORG/NAME``. Always loads the
    weights: unlike ``timm.create_model('hf-hub:...')`` without ``pretrained=True``, it never returns random ones.
    Hub checkpoints are fetched (or read from the cache, also with ``HF_HUB_OFFLINE=1``) and then loaded like a
    directory, so they get the same checks: safetensors only, known architecture, intact weights.
    """
    text = str(name_or_path).removeprefix("local-dir:")
    path = Path(text)
    if not path.is_dir():
        if text.startswith(("hf-hub:", "hf_hub:")):
            text = text.split(":", 1)[1]
        else:
            _check_hub_id(text)
        repo_id, _, at_revision = text.partition("@")
        path = download(repo_id, revision=revision or at_revision or None)
    else:
        check_complete(path)
    config = check_model_dir(path)
    if split_prefix(config["architecture"]) is not None:
        return _load_torchvision(config, path)
    try:
        model = timm.create_model(f"local-dir:{path.resolve()}", pretrained=True)
    except (RuntimeError, AttributeError, KeyError) as exc:  # timm's strict load or its first-conv adaptation
        raise DDHubError(f"weights in {text} do not fit its config.json: {first_line(exc)}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise DDHubError(f"cannot load {text}: {first_line(exc)}") from None
    check_finite(model.state_dict(), str(path / WEIGHTS_NAME))
    make_twice_differentiable(model)
    data_config = timm.data.resolve_model_data_config(model)
    return NormalizedModel(model, data_config["mean"], data_config["std"],
                           model_args=config.get("model_args")).eval()


def _check_hub_id(text: str) -> None:
    """Refuse what looks like a local path before it is looked up on the Hub as ``ORG/NAME``."""
    path = Path(text)
    if path.exists():
        raise DDHubError(f"{text} is not a model directory")
    if text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise DDHubError(f"no model directory {text} (and it is no Hub id ORG/NAME)")
    if path.parent.is_dir():
        raise DDHubError(f"no model directory {text} (there is a local folder {path.parent}/; for the Hub model of "
                         f"that name write hf-hub:{text})")


def download(repo_id: str, *, revision: str | None = None) -> Path:
    """The local snapshot folder of a Hub checkpoint's config.json and weights (pickles are not fetched)."""
    from huggingface_hub import snapshot_download

    from ..hub.client import hub_errors, hub_api

    with hub_errors(f"cannot fetch {repo_id}", repo_id):
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
        if not (path / WEIGHTS_NAME).is_file():
            files = hub_api().list_repo_files(repo_id, revision=revision)
            pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
            hint = f"; it holds pickle weights ({pickles[0]}), which dd-hub does not load" if pickles else ""
            raise DDHubError(f"{repo_id} has no {WEIGHTS_NAME}{hint}")
    return path


def check_model_dir(path: Path) -> dict:
    """The directory's config.json, after clear errors for what timm would report from deep inside: missing files,
    pickles, a config that is not a timm config, unknown architectures, unreadable weights."""
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise DDHubError(f"{path} has no {CONFIG_NAME}; is it a dd-hub/timm model directory?")
    config = read_json_object(config_path, what="timm's config", fix="re-export the model with dd-hub or timm")
    architecture = config.get("architecture")
    known = isinstance(architecture, str) and (split_prefix(architecture) is not None or timm.is_model(architecture))
    if not known:
        raise DDHubError(f"{config_path} names unknown architecture '{architecture}'; "
                         "is the package that registers it (e.g. dd_hub) imported and up to date?")
    num_classes = config.get("num_classes")
    if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)
                                    or num_classes < 1):
        raise DDHubError(f"{config_path}: num_classes must be a positive integer, not {num_classes!r}")
    _check_weights(path)
    return config


def _check_weights(path: Path) -> None:
    """Cheap integrity check of ``path/model.safetensors`` (header and sizes), refusing pickles."""
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        load_state_dict(path)  # raises the right error (missing file or pickle found)
    try:
        with safe_open(str(weights), framework="pt") as fh:
            fh.keys()
    except (SafetensorError, OSError, ValueError) as exc:
        raise DDHubError(f"{weights} is not a readable safetensors file ({exc}); it may be truncated or corrupt") from None
