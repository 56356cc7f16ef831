"""Checkpoints in timm's Hub format: save, load (local dir, ``local-dir:`` or ``hf-hub:``), state dicts.

A model directory holds ``config.json`` (timm's layout: architecture, num_classes, label_names, pretrained_cfg),
``model.safetensors`` and our ``README.md`` card. Only safetensors is ever read: pickles are refused.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from .errors import DDHubError
from .models.factory import NormalizedModel, unwrap

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".tar")


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from a ``.safetensors`` file or a model directory; pickled checkpoints are refused."""
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS_NAME).is_file():
            pickles = [p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
            hint = f" (found pickle {pickles[0]}: dd-hub only loads safetensors)" if pickles else ""
            raise DDHubError(f"no {WEIGHTS_NAME} in {path}{hint}")
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise DDHubError(f"checkpoint {path} does not exist")
    if path.suffix in PICKLE_SUFFIXES:
        raise DDHubError(f"{path.name} is a pickle checkpoint, which can run code when loaded; convert it to "
                         "safetensors (safetensors.torch.save_file(torch.load(f, weights_only=True), 'model.safetensors'))")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DDHubError(f"{path} is not a readable safetensors file ({exc}); it may be truncated or corrupt") from None


def save_model(model: nn.Module, directory: str | Path, *, label_names: list[str] | None = None,
               extra_config: dict | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` of the bare timm network into ``directory``, atomically.

    The files are written in a temporary folder next to ``directory`` and moved in by rename, so a crash never
    leaves a half-written checkpoint.
    """
    bare = unwrap(model)
    if not hasattr(bare, "pretrained_cfg") or not timm.is_model(bare.pretrained_cfg.get("architecture", "")):
        raise DDHubError("only timm-registry networks can be saved in timm's format")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = dict(extra_config or {})
    if label_names is not None:
        config["label_names"] = list(label_names)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
        timm.models.save_for_hf(bare, tmp, model_config=config, safe_serialization=True)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            os.chmod(Path(tmp) / name, _umask_mode())
            os.replace(Path(tmp) / name, directory / name)
    return directory


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as fh:
        fh.write(text)
    os.chmod(fh.name, _umask_mode())
    os.replace(fh.name, path)


def copy_atomic(source: str | Path, target: str | Path) -> None:
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def load(name_or_path: str | Path) -> NormalizedModel:
    """A saved dd-hub/timm checkpoint as a model taking [0, 1] images, in eval mode.

    Accepts a directory (or ``local-dir:DIR``) and ``hf-hub:ORG/NAME[@rev]`` / ``ORG/NAME``. Always loads the
    weights: unlike ``timm.create_model('hf-hub:...')`` without ``pretrained=True``, it never returns random ones.
    """
    text = str(name_or_path)
    if text.startswith("local-dir:"):
        text = text[len("local-dir:"):]
    path = Path(text)
    if path.is_dir():
        _check_local(path)
        timm_name = f"local-dir:{path.resolve()}"
    elif text.startswith(("hf-hub:", "hf_hub:")):
        timm_name = "hf-hub:" + text.split(":", 1)[1]
    elif text.count("/") == 1 and not path.exists():
        timm_name = f"hf-hub:{text}"
    else:
        raise DDHubError(f"{text} is neither a model directory nor a Hub id (ORG/NAME)")
    try:
        model = timm.create_model(timm_name, pretrained=True)
    except RuntimeError as exc:
        raise DDHubError(f"weights in {text} do not fit its config.json: {str(exc).splitlines()[0]}") from None
    except (OSError, ValueError) as exc:
        raise DDHubError(f"cannot load {text}: {str(exc).splitlines()[0]}") from None
    config = timm.data.resolve_model_data_config(model)
    return NormalizedModel(model, config["mean"], config["std"]).eval()


def _check_local(path: Path) -> None:
    """Clear errors for what timm would report from deep inside: missing files, pickles, unknown architectures."""
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise DDHubError(f"{path} has no {CONFIG_NAME}; is it a dd-hub/timm model directory?")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise DDHubError(f"{config_path} is not valid JSON: {exc}") from None
    architecture = config.get("architecture")
    if not architecture or not timm.is_model(architecture):
        raise DDHubError(f"{config_path} names unknown architecture '{architecture}'; "
                         "is the package that registers it (e.g. dd_hub) imported and up to date?")
    _check_weights(path)


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
