"""The model directory, in timm's Hub format: save, check and load a local folder.

A model directory holds ``config.json`` (timm's layout: architecture, num_classes, label_names, model_args,
pretrained_cfg) and ``model.safetensors``; ``dd-hub harden`` adds ``metrics.json``, the ``README.md`` card and
figures. Loading is strict: only safetensors is read (pickles are refused), config.json is checked before timm sees
it (types, sizes, no key that changes how weights are loaded), and the weights must fit the network it describes
exactly, tensor for tensor and shape for shape (nothing is resized, filtered or left at random). Checkpoints on the
Hub are fetched by :mod:`dd_hub.hub.loading` and then loaded from their folder here.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import timm
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..errors import DDHubError, first_line
from ..names import CONFIG_NAME, WEIGHTS_NAME
from ..storage.atomic_io import file_mode, read_json_object, regular_file
from ..storage.metrics import read_metrics
from ..storage.weights import check_finite, load_state_dict, load_weights_into, read_weights
from .normalized import NormalizedModel, model_args_of, normalization_of, resize_of, unwrap
from .torchvision_compat import (IMAGENET_MEAN, IMAGENET_STD, TORCHVISION_DATA_CFG, TORCHVISION_PREFIX, build_of,
                                 build_torchvision, exported_architecture, is_torchvision, split_prefix, timm_twin,
                                 torchvision_names)
from .twice_differentiable import make_twice_differentiable

#: config.json keys of timm's factory that change how (or whether) weights are loaded, never constructor arguments
LOADER_KEYS = frozenset({"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict",
                         "checkpoint_path", "cache_dir", "features_only", "feature_cfg", "out_indices", "scriptable",
                         "exportable", "no_jit"})
#: config.json key (dd-hub's; timm ignores it): images of another size are resized to pretrained_cfg.input_size
#: (bilinear, align_corners=False) before the normalization, as the model was trained
RESIZE_KEY = "resize_input"
MAX_CLASSES = 100_000
MAX_IMAGE_SIDE = 4096
MAX_CONFIG_BYTES = 1 << 20


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
    if resize_of(model) is not None:  # images of other sizes are resized to pretrained_cfg.input_size first
        config[RESIZE_KEY] = True
    if is_torchvision(bare):
        architecture = exported_architecture(bare)
        if split_prefix(architecture) is not None:
            return _write_model_files(directory, lambda tmp: _save_torchvision(bare, tmp, config, normalization))
        bare = timm_twin(bare, architecture, normalization)
    if not hasattr(bare, "pretrained_cfg") or not timm.is_model(bare.pretrained_cfg.get("architecture", "")):
        raise DDHubError(f"cannot export {type(bare).__name__}: only timm-registry and torchvision networks can be saved")
    model_args = model_args_of(model) or None
    return _write_model_files(directory, lambda tmp: timm.models.save_for_hf(
        bare, tmp, model_config=config, model_args=model_args, safe_serialization=True))


def check_export(model: nn.Module, input_size: Sequence[int] | None = None, *, inputs: torch.Tensor | None = None,
                 label_names: list[str] | None = None, name: str = "this model") -> None:
    """Prove that ``model`` can be exported: save it into a temporary folder, load it back with :func:`load_directory`
    and compare both networks' logits, in eval mode, on ``inputs`` (default: two random images of ``input_size``
    ``(C, H, W)``).

    Cheap (one save, one load, two forwards); meant to run before any training, so that an export that cannot
    work is refused in one line (a :class:`DDHubError` naming ``name`` and saying what to do) instead of after hours
    of work. ``model`` is left as it was (weights and training mode).
    """
    if inputs is None:
        inputs = torch.rand(2, *input_size, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    try:
        with tempfile.TemporaryDirectory(prefix="dd-hub-export-check-") as tmp, torch.no_grad():
            try:
                save_model(model, tmp, label_names=label_names)
                reloaded = load_directory(tmp)
            except Exception as exc:  # a DDHubError or anything a library raised: the run must not start either way
                raise DDHubError(f"the export of '{name}' fails before any training ({first_line(exc)}); choose "
                                 "another model") from None
            device = next(model.parameters()).device
            expected = model.eval()(inputs.to(device)).float().cpu()
            got = reloaded.eval()(inputs.cpu()).float()
    finally:
        model.train(was_training)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-3, atol=1e-4 * (1 + float(
            expected.abs().max()))):
        gap = (got - expected).abs().max().item() if got.shape == expected.shape else "other shape"
        raise DDHubError(f"the export of '{name}' does not reload as the same network (largest logit gap {gap}); "
                         "please report it, and choose another model meanwhile")


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


def _save_torchvision(model: nn.Module, directory: Path, config: dict, normalization: tuple | None) -> None:
    """A torchvision network exported as built: ``architecture: tv:NAME``, its builder's ``num_classes`` and
    ``model_args`` (recorded when it was built, see :class:`TorchvisionBuild`) and its preprocessing.

    timm cannot build it (``tv:NAME`` is no timm architecture, so timm refuses it instead of loading random
    weights); :func:`load` can, and so can plain torchvision:
    ``torchvision.models.get_model(NAME, num_classes=num_classes, **model_args)`` takes the weights as they are.
    """
    build = build_of(model)
    mean, std = normalization or (list(IMAGENET_MEAN), list(IMAGENET_STD))
    full_config = {"architecture": TORCHVISION_PREFIX + build.name, "library": "torchvision",
                   "num_classes": build.num_classes, **config,
                   **({"model_args": build.model_args} if build.model_args else {}),
                   "pretrained_cfg": {**build.data_config, "tag": "tv_in1k", "mean": list(mean), "std": list(std)}}
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(directory / WEIGHTS_NAME),
              metadata={"format": "pt"})
    (directory / CONFIG_NAME).write_text(json.dumps(full_config, indent=4) + "\n")


def _load_torchvision(config: dict, path: Path, hashed: str | None = None) -> NormalizedModel:
    name = split_prefix(config["architecture"])
    if name not in torchvision_names():
        raise DDHubError(f"{path / CONFIG_NAME} names unknown torchvision architecture '{name}'")
    build = lambda: build_torchvision(name, num_classes=config["num_classes"], **(config.get("model_args") or {}))
    _check_size_before_building(build, path)
    model = build()
    try:
        load_weights_into(model, read_weights(path / WEIGHTS_NAME, hashed))
    except RuntimeError as exc:
        raise DDHubError(f"weights in {path} do not fit {name}: {first_line(exc)}") from None
    cfg = config["pretrained_cfg"]
    preprocessing = {k: cfg[k] for k in TORCHVISION_DATA_CFG if k in cfg}
    model.torchvision_build = replace(model.torchvision_build, data_config={**TORCHVISION_DATA_CFG, **preprocessing})
    return NormalizedModel(model, cfg["mean"], cfg["std"], model_args=config.get("model_args"),
                           resize_to=_resize_to(config)).eval()


def _resize_to(config: dict) -> list[int] | None:
    """``(H, W)`` of ``pretrained_cfg.input_size`` when the export says images are resized to it first."""
    return list(config["pretrained_cfg"].get("input_size", [3, 224, 224])[1:]) if config.get(RESIZE_KEY) else None


def load_directory(path: str | Path, *, links_within: Path | None = None) -> NormalizedModel:
    """The checkpoint in folder ``path`` as a model taking [0, 1] images (normalization inside), in eval mode.

    Refuses a folder whose metrics.json does not match its files (an interrupted or mixed-up run), a config.json
    that is not a timm config or would change how weights load, and weights that do not fit the network exactly.
    Files may not be links, except into ``links_within`` (a Hub snapshot in huggingface_hub's cache).
    """
    path = Path(path)
    metrics = read_metrics(path, required=False, links_within=links_within,
                           only=(CONFIG_NAME, WEIGHTS_NAME) if links_within is not None else None)
    hashed = (metrics or {}).get("files", {}).get(WEIGHTS_NAME)
    config = check_model_dir(path, links_within=links_within)
    if split_prefix(config["architecture"]) is not None:
        return _load_torchvision(config, path, hashed)
    model_args = dict(config.get("model_args") or {})
    pretrained_cfg = {**config["pretrained_cfg"], "architecture": config["architecture"]}
    for key in ("num_classes", "label_names", "label_descriptions"):
        if key in config:
            pretrained_cfg[key] = config[key]
    if config.get("global_pool") is not None:
        model_args.setdefault("global_pool", config["global_pool"])
    if "num_classes" in config:
        model_args["num_classes"] = config["num_classes"]
    try:
        build = lambda: timm.create_model(config["architecture"], pretrained=False, pretrained_cfg=pretrained_cfg,
                                          **model_args)
        _check_size_before_building(build, path)
        model = build()
    except (RuntimeError, ValueError, TypeError, KeyError, AssertionError) as exc:
        raise DDHubError(f"{path / CONFIG_NAME} does not describe a network timm can build ({first_line(exc)})") from None
    try:
        load_weights_into(model, read_weights(path / WEIGHTS_NAME, hashed))
    except RuntimeError as exc:
        raise DDHubError(f"the weights in {path} do not fit the network its config.json describes "
                         f"({first_line(exc)}); re-export the model with dd-hub or timm") from None
    make_twice_differentiable(model)
    data_config = timm.data.resolve_model_data_config(model)
    return NormalizedModel(model, data_config["mean"], data_config["std"], model_args=config.get("model_args"),
                           resize_to=_resize_to(config)).eval()


def _check_size_before_building(build, path: Path) -> None:
    """Build the network on the meta device (no memory) and refuse it when it needs more bytes of weights than
    model.safetensors holds: they could never fit, and a 300-byte config.json must not allocate gigabytes first."""
    try:
        with torch.device("meta"):
            probe = build()
    except (NotImplementedError, RuntimeError, DDHubError) as exc:
        if "meta" in str(exc).lower():
            return  # a network whose construction reads tensor values: built for real, as before
        raise
    tensors = {id(t): t for t in probe.state_dict(keep_vars=True).values()}   # tied weights once
    needed = sum(t.numel() * t.element_size() for t in tensors.values())
    held = (path / WEIGHTS_NAME).stat().st_size
    if needed > held:
        raise DDHubError(f"the weights in {path} do not fit the network its config.json describes (it needs "
                         f"{needed:,} bytes, {WEIGHTS_NAME} holds {held:,}; checked before building it); re-export "
                         "the model with dd-hub or timm")


def check_model_dir(path: Path, *, links_within: Path | None = None) -> dict:
    """The directory's config.json, after clear errors for what timm would report from deep inside (missing files,
    pickles, a config that is not a timm config, unknown architectures, unreadable weights) and for what it would
    silently accept (keys that change how weights load, sizes and statistics out of range)."""
    config_path = path / CONFIG_NAME
    if not regular_file(config_path, links_within=links_within):
        what = "is a link out of its folder" if config_path.is_symlink() else f"has no {CONFIG_NAME}"
        raise DDHubError(f"{path} {what}; is it a dd-hub/timm model directory?")
    config = read_json_object(config_path, what="timm's config", fix="re-export the model with dd-hub or timm",
                              max_bytes=MAX_CONFIG_BYTES)
    architecture = config.get("architecture")
    known = isinstance(architecture, str) and (split_prefix(architecture) is not None or timm.is_model(architecture))
    if not known:
        hint = " (one of dd-hub's own: import dd_hub first)" if str(architecture).startswith("dd_") else ""
        raise DDHubError(f"{config_path} names unknown architecture {str(architecture)[:100]!r}{hint}; is the "
                         "package that registers it imported and up to date?")
    _check_config(config, config_path)
    _check_weights(path, links_within)
    return config


def _check_config(config: dict, where: Path) -> None:
    def bad(what: str) -> DDHubError:
        return DDHubError(f"{where}: {what}; re-export the model with dd-hub or timm")

    num_classes = config.get("num_classes")
    if num_classes is not None and not _is_int(num_classes, 1, MAX_CLASSES):
        raise bad(f"num_classes must be an integer from 1 to {MAX_CLASSES}, not {str(num_classes)[:50]!r}")
    if not isinstance(config.get(RESIZE_KEY, False), bool):
        raise bad(f"{RESIZE_KEY} must be true or false")
    model_args = config.get("model_args", {})
    if not isinstance(model_args, dict):
        raise bad("model_args must be a mapping")
    refused = sorted(LOADER_KEYS & set(model_args))
    if refused:
        raise bad(f"model_args may not set '{refused[0]}', which changes how weights are loaded")
    cfg = config.get("pretrained_cfg")
    if not isinstance(cfg, dict):
        raise bad("pretrained_cfg must be a mapping (timm's layout)")
    torchvision = split_prefix(str(config["architecture"])) is not None
    if torchvision and num_classes is None:
        raise bad("a torchvision network's config must give num_classes")
    missing = [key for key in ("mean", "std") if torchvision and key not in cfg]
    if missing:
        raise bad(f"a torchvision network's pretrained_cfg must give {missing[0]}")
    size = cfg.get("input_size", [3, 224, 224])
    if not (isinstance(size, (list, tuple)) and len(size) == 3 and _is_int(size[0], 1, 64)
            and all(_is_int(side, 1, MAX_IMAGE_SIDE) for side in size[1:])):
        raise bad(f"pretrained_cfg.input_size must be [channels, height, width] of at most {MAX_IMAGE_SIDE}")
    for key in ("mean", "std"):
        values = cfg.get(key)
        if values is None:
            continue
        if not (isinstance(values, (list, tuple)) and len(values) in (1, size[0]) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)):
            raise bad(f"pretrained_cfg.{key} must be {size[0]} finite numbers")
        if key == "std" and any(v <= 0 for v in values):
            raise bad("pretrained_cfg.std must be positive")


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _check_weights(path: Path, links_within: Path | None = None) -> None:
    """Cheap integrity check of ``path/model.safetensors`` (header and sizes), refusing pickles and links."""
    weights = path / WEIGHTS_NAME
    if weights.is_symlink() and not regular_file(weights, links_within=links_within):
        raise DDHubError(f"{weights} is a link out of its folder; dd-hub reads a model folder as a closed unit")
    if not weights.is_file():
        load_state_dict(path)  # raises the right error (missing file or pickle found)
    try:
        with safe_open(str(weights), framework="pt") as fh:
            fh.keys()
    except (SafetensorError, OSError, ValueError) as exc:
        raise DDHubError(f"{weights} is not a readable safetensors file ({exc}); it may be truncated or corrupt") from None
