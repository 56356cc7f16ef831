"""``dd_hub.load``: a checkpoint from a folder or from the Hub, as a model taking [0, 1] images.

Hub checkpoints are fetched with huggingface_hub (its cache, ``HF_HUB_OFFLINE``, pinned revisions), only their
config.json and model.safetensors and only under a size cap, then loaded like a folder
(:func:`dd_hub.models.directory.load_directory`): safetensors only, the config checked, the weights fitting exactly.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DDHubError
from ..models.directory import load_directory
from ..models.normalized import NormalizedModel
from ..names import CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME
from ..storage.weights import PICKLE_SUFFIXES
from .client import Budget, HubReader, hub_call, resolve_token, validate_repo_id

#: the largest weight file dd-hub downloads (``DD_HUB_MAX_WEIGHTS_BYTES`` overrides)
MAX_WEIGHTS_BYTES = int(os.environ.get("DD_HUB_MAX_WEIGHTS_BYTES", str(8 << 30)))


def load(name_or_path: str | Path, *, revision: str | None = None) -> NormalizedModel:
    """A saved dd-hub/timm checkpoint as a model taking [0, 1] images, in eval mode.

    Accepts a directory (or ``local-dir:DIR``) and ``hf-hub:ORG/NAME[@rev]`` / ``ORG/NAME``. Always loads the
    weights: unlike ``timm.create_model('hf-hub:...')`` without ``pretrained=True``, it never returns random ones.
    """
    folder = resolve(name_or_path, revision=revision)
    return load_directory(folder, links_within=cache_root(folder))


def resolve(name_or_path: str | Path, *, revision: str | None = None, metrics: bool = False) -> Path:
    """The local folder of a checkpoint: the directory itself, or the Hub snapshot it names (downloaded, with its
    metrics.json when ``metrics``)."""
    text = str(name_or_path).removeprefix("local-dir:")
    path = Path(text)
    if path.is_dir():
        return path
    if text.startswith(("hf-hub:", "hf_hub:")):
        text = text.split(":", 1)[1]
    else:
        _check_hub_id(text)
    repo_id, _, at_revision = text.partition("@")
    return download(validate_repo_id(repo_id), revision=revision or at_revision or None, metrics=metrics)


def cache_root(folder: Path) -> Path | None:
    """The repo's folder in huggingface_hub's cache when ``folder`` is one of its snapshots (whose files are links
    into that repo folder's blobs), else None."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE).resolve()
    repo = folder.resolve().parents[1] if len(folder.resolve().parents) > 1 else None
    return repo if repo is not None and repo.parent == cache and folder.resolve().parent.name == "snapshots" else None


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


def download(repo_id: str, *, revision: str | None = None, budget: Budget | None = None, metrics: bool = False) -> Path:
    """The local snapshot folder of a Hub checkpoint's config.json and weights (and metrics.json with ``metrics``;
    pickles are never fetched; weights over :data:`MAX_WEIGHTS_BYTES` are refused before any byte is read)."""
    from huggingface_hub import constants, snapshot_download

    budget = budget or Budget()
    token = resolve_token()
    if not constants.is_offline_mode():
        _check_files(repo_id, revision, token, budget)
    return Path(hub_call(f"cannot fetch {repo_id}", lambda: snapshot_download(
        repo_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, *([METRICS_NAME] if metrics else [])],
        token=token), repo_id, budget, transfer=True))


def _check_files(repo_id: str, revision: str | None, token: str | None, budget: Budget) -> None:
    """The repo must hold model.safetensors of an acceptable size (its file list says, before the download)."""
    from urllib.parse import quote

    what = f"cannot fetch {repo_id}"
    path = f"api/models/{quote(repo_id)}" + (f"/revision/{quote(revision, safe='')}" if revision else "")
    info = HubReader(token, budget).json(path, params={"blobs": "true"}, what=what)
    siblings = info.get("siblings") if isinstance(info, dict) else None
    files = {s.get("rfilename"): s for s in siblings or [] if isinstance(s, dict)}
    if WEIGHTS_NAME not in files:
        pickles = [f for f in files if isinstance(f, str) and f.endswith(PICKLE_SUFFIXES)]
        hint = f"; it holds pickle weights ({pickles[0][:100]}), which dd-hub does not load" if pickles else ""
        raise DDHubError(f"{repo_id} has no {WEIGHTS_NAME}{hint}")
    size = files[WEIGHTS_NAME].get("size")
    if isinstance(size, int) and size > MAX_WEIGHTS_BYTES:
        raise DDHubError(f"{repo_id}'s {WEIGHTS_NAME} is {size:,} bytes, over the {MAX_WEIGHTS_BYTES:,} allowed "
                         "(DD_HUB_MAX_WEIGHTS_BYTES)")
