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
TORCHVISION_PREFIX = "tv:"
# torchvision models whose state dict loads strictly into the timm model of the same name (timm keeps
# torchvision's key names for these families; VGG needs timm's own key filter for its ConvMlp head)
TIMM_TWINS = frozenset({
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "wide_resnet50_2", "wide_resnet101_2",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d", "densenet121", "densenet161", "densenet169",
    "densenet201", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
})


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
    config = dict(extra_config or {})
    if label_names is not None:
        config["label_names"] = list(label_names)
    if _is_torchvision(bare):
        name = torchvision_name(bare)
        if name in TIMM_TWINS:
            bare = timm_twin(bare, name, _normalization(model))
        else:
            return _save_torchvision(bare, name, directory, config, _normalization(model))
    if not hasattr(bare, "pretrained_cfg") or not timm.is_model(bare.pretrained_cfg.get("architecture", "")):
        raise DDHubError(f"cannot export {type(bare).__name__}: only timm-registry and torchvision networks can be saved")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
        timm.models.save_for_hf(bare, tmp, model_config=config, safe_serialization=True)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            os.chmod(Path(tmp) / name, _umask_mode())
            os.replace(Path(tmp) / name, directory / name)
    return directory


def architecture_name(model: nn.Module) -> str:
    """The ``architecture`` :func:`save_model` writes for ``model``: its timm name, the timm twin of a torchvision
    network, or ``tv:NAME`` for torchvision networks without one."""
    bare = unwrap(model)
    if _is_torchvision(bare):
        name = torchvision_name(bare)
        return name if name in TIMM_TWINS else TORCHVISION_PREFIX + name
    return bare.pretrained_cfg["architecture"]


def _is_torchvision(model: nn.Module) -> bool:
    return type(model).__module__.startswith("torchvision.models")


def _normalization(model: nn.Module) -> tuple[list[float], list[float]] | None:
    """mean/std of the outermost :class:`NormalizedModel` around ``model``, if any."""
    while not isinstance(model, NormalizedModel):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            return None
        model = inner
    return model.mean.flatten().tolist(), model.std.flatten().tolist()


def torchvision_name(model: nn.Module) -> str:
    """The torchvision builder name (``resnet50``) of a torchvision network, found by its parameter shapes.

    Candidates are the builders of the network's own module, built on the meta device (no memory, no weights).
    """
    import torchvision

    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    num_classes = _num_classes(model)
    for name in torchvision.models.list_models(module=torchvision.models):
        builder = torchvision.models.get_model_builder(name)
        if builder.__module__ != type(model).__module__:
            continue
        with torch.device("meta"):
            candidate = builder(weights=None, num_classes=num_classes)
        if type(candidate) is type(model) and shapes == {k: tuple(v.shape) for k, v in candidate.state_dict().items()}:
            return name
    raise DDHubError(f"cannot tell which torchvision builder made this {type(model).__name__}")


def _num_classes(model: nn.Module) -> int:
    """Output size of a torchvision classifier: the last parameter (the head's bias or weight) gives it."""
    last = [v for k, v in model.state_dict().items() if k.endswith(("weight", "bias"))][-1]
    return last.shape[0]


def timm_twin(model: nn.Module, name: str, normalization: tuple | None = None) -> nn.Module:
    """The timm network of the same name carrying ``model``'s torchvision weights (strict load)."""
    twin = timm.create_model(name, pretrained=False, num_classes=_num_classes(model))
    state = model.state_dict()
    if name.startswith("vgg"):
        state = timm.models.vgg._filter_fn(state)  # classifier.* -> pre_logits.fc*/head.fc (ConvMlp)
    try:
        twin.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DDHubError(f"torchvision {name} does not map onto timm's {name}: {str(exc).splitlines()[0]}") from None
    if normalization is not None:
        twin.pretrained_cfg = {**twin.pretrained_cfg, "mean": tuple(normalization[0]), "std": tuple(normalization[1])}
    return twin.eval()


def _save_torchvision(model: nn.Module, name: str, directory: str | Path, config: dict,
                      normalization: tuple | None) -> Path:
    """A torchvision network with no timm twin: our config (``architecture: tv:NAME``) + safetensors weights.

    timm cannot build it (``tv:NAME`` is no timm architecture, so timm refuses it instead of loading random
    weights); :func:`load` can.
    """
    from safetensors.torch import save_file

    from .models.factory import IMAGENET_MEAN, IMAGENET_STD

    mean, std = normalization or (list(IMAGENET_MEAN), list(IMAGENET_STD))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    full_config = {
        "architecture": TORCHVISION_PREFIX + name,
        "library": "torchvision",
        "num_classes": _num_classes(model),
        **config,
        "pretrained_cfg": {"input_size": [3, 224, 224], "interpolation": "bilinear", "crop_pct": 0.875,
                           "crop_mode": "center", "mean": list(mean), "std": list(std)},
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(dir=directory, prefix=".save-") as tmp:
        save_file(state, str(Path(tmp) / WEIGHTS_NAME), metadata={"format": "pt"})
        (Path(tmp) / CONFIG_NAME).write_text(json.dumps(full_config, indent=4) + "\n")
        for file in (CONFIG_NAME, WEIGHTS_NAME):
            os.chmod(Path(tmp) / file, _umask_mode())
            os.replace(Path(tmp) / file, directory / file)
    return directory


def _load_torchvision(config: dict, path: Path) -> NormalizedModel:
    import torchvision

    name = config["architecture"][len(TORCHVISION_PREFIX):]
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise DDHubError(f"{path / CONFIG_NAME} names unknown torchvision architecture '{name}'")
    model = torchvision.models.get_model(name, weights=None, num_classes=config["num_classes"])
    try:
        model.load_state_dict(load_state_dict(path))
    except RuntimeError as exc:
        raise DDHubError(f"weights in {path} do not fit {name}: {str(exc).splitlines()[0]}") from None
    cfg = config["pretrained_cfg"]
    return NormalizedModel(model, cfg["mean"], cfg["std"]).eval()


def _umask_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to a temp file beside ``path`` and rename it over ``path``."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as fh:
        fh.write(data)
    os.chmod(fh.name, _umask_mode())
    os.replace(fh.name, path)


def copy_atomic(source: str | Path, target: str | Path) -> None:
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def load(name_or_path: str | Path, *, revision: str | None = None) -> NormalizedModel:
    """A saved dd-hub/timm checkpoint as a model taking [0, 1] images, in eval mode.

    Accepts a directory (or ``local-dir:DIR``) and ``hf-hub:ORG/NAME[@rev]`` / ``ORG/NAME``. Always loads the
    weights: unlike ``timm.create_model('hf-hub:...')`` without ``pretrained=True``, it never returns random ones.
    Hub checkpoints are fetched (or read from the cache, also with ``HF_HUB_OFFLINE=1``) and then loaded like a
    directory, so they get the same checks: safetensors only, known architecture, intact weights.
    """
    text = str(name_or_path)
    if text.startswith("local-dir:"):
        text = text[len("local-dir:"):]
    path = Path(text)
    if not path.is_dir():
        if text.startswith(("hf-hub:", "hf_hub:")):
            text = text.split(":", 1)[1]
        elif text.count("/") != 1 or path.exists():
            raise DDHubError(f"{text} is neither a model directory nor a Hub id (ORG/NAME)")
        repo_id, _, at_revision = text.partition("@")
        path = download(repo_id, revision=revision or at_revision or None)
    config = _check_local(path)
    if config["architecture"].startswith(TORCHVISION_PREFIX):
        return _load_torchvision(config, path)
    try:
        model = timm.create_model(f"local-dir:{path.resolve()}", pretrained=True)
    except (RuntimeError, AttributeError, KeyError) as exc:  # timm's strict load or its first-conv adaptation
        raise DDHubError(f"weights in {text} do not fit its config.json: {str(exc).splitlines()[0]}") from None
    except (OSError, ValueError) as exc:
        raise DDHubError(f"cannot load {text}: {str(exc).splitlines()[0]}") from None
    data_config = timm.data.resolve_model_data_config(model)
    return NormalizedModel(model, data_config["mean"], data_config["std"]).eval()


def download(repo_id: str, *, revision: str | None = None) -> Path:
    """The local snapshot folder of a Hub checkpoint's config.json and weights (pickles are not fetched)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, HFValidationError, LocalEntryNotFoundError,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
        if not (path / WEIGHTS_NAME).is_file():
            from huggingface_hub import HfApi

            files = HfApi().list_repo_files(repo_id, revision=revision)
            pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
            hint = f"; it holds pickle weights ({pickles[0]}), which dd-hub does not load" if pickles else ""
            raise DDHubError(f"{repo_id} has no {WEIGHTS_NAME}{hint}")
        return path
    except HFValidationError as exc:
        raise DDHubError(f"'{repo_id}' is not a valid Hub repo id: {str(exc).splitlines()[0]}") from None
    except RepositoryNotFoundError:
        raise DDHubError(f"no model {repo_id} on the Hub (if it is private, log in with `hf auth login` or set "
                         "HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise DDHubError(f"{repo_id} has no revision '{revision}'") from None
    except LocalEntryNotFoundError:
        raise DDHubError(f"{repo_id} is not in the local Hub cache and the Hub cannot be reached (offline mode or "
                         "no network); download it once while online") from None
    except HfHubHTTPError as exc:
        raise DDHubError(f"the Hub refused to send {repo_id}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise DDHubError(f"cannot fetch {repo_id} ({type(exc).__name__}); check the network or HF_ENDPOINT") from None


def _check_local(path: Path) -> dict:
    """Clear errors for what timm would report from deep inside: missing files, pickles, unknown architectures."""
    config_path = path / CONFIG_NAME
    if not config_path.is_file():
        raise DDHubError(f"{path} has no {CONFIG_NAME}; is it a dd-hub/timm model directory?")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise DDHubError(f"{config_path} is not valid JSON: {exc}") from None
    architecture = config.get("architecture")
    known = isinstance(architecture, str) and (architecture.startswith(TORCHVISION_PREFIX) or timm.is_model(architecture))
    if not known:
        raise DDHubError(f"{config_path} names unknown architecture '{architecture}'; "
                         "is the package that registers it (e.g. dd_hub) imported and up to date?")
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
