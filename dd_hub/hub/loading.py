"""``dd_hub.load``: a checkpoint from a folder or from the Hub, as a model taking [0, 1] images.

Hub checkpoints are fetched with huggingface_hub (its cache, ``HF_HUB_OFFLINE``, pinned revisions), only their
config.json and model.safetensors and only under a size cap, then loaded like a folder
(:func:`dd_hub.models.directory.load_directory`): safetensors only, the config checked, the weights fitting exactly.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DDHubError, first_line
from ..models.directory import MAX_CONFIG_BYTES, load_directory
from ..models.normalized import NormalizedModel
from ..names import CONFIG_NAME, METRICS_NAME, WEIGHTS_NAME
from ..storage.metrics import MAX_METRICS_BYTES
from ..storage.weights import PICKLE_SUFFIXES
from .client import MAX_WEIGHTS_BYTES, Budget, HubReader, hub_call, resolve_token, validate_repo_id


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
    explicit = text.startswith(("hf-hub:", "hf_hub:"))
    if explicit:
        text = text.split(":", 1)[1]
    else:
        _check_hub_id(text)
    repo_id, _, at_revision = text.partition("@")
    try:
        return download(validate_repo_id(repo_id), revision=revision or at_revision or None, metrics=metrics)
    except DDHubError as exc:
        if explicit:
            raise
        # ORG/NAME reads as a relative path too: say that no such folder exists before what the Hub answered
        raise type(exc)(f"no model directory {text} here (and as a Hub id: {first_line(exc)})") from None


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
    """The local snapshot folder of a Hub checkpoint's config.json and weights (and metrics.json with ``metrics``).

    Pickles are never fetched. Online, the file list is read first: every file to fetch must state a size under its
    cap (weights :data:`MAX_WEIGHTS_BYTES`), and the snapshot downloaded must be the commit that list described (a
    repo that changed in between is refused: its files were not checked). The download itself is not pinned to that
    commit, so that the cache's ``main`` stays usable offline."""
    from huggingface_hub import constants, snapshot_download

    budget = budget or Budget()
    token = resolve_token()
    wanted = {CONFIG_NAME: MAX_CONFIG_BYTES, WEIGHTS_NAME: MAX_WEIGHTS_BYTES,
              **({METRICS_NAME: MAX_METRICS_BYTES} if metrics else {})}
    checked = None if constants.is_offline_mode() else _check_files(repo_id, revision, token, budget, wanted)
    folder = Path(hub_call(f"cannot fetch {repo_id}", lambda: snapshot_download(
        repo_id, revision=revision, allow_patterns=list(wanted), token=token), repo_id, budget, transfer=True))
    if checked is not None and folder.name != checked:
        raise DDHubError(f"{repo_id} changed while it was being fetched (commit {folder.name[:12]}, not the "
                         f"{checked[:12]} checked); run the command again")
    return folder


def _check_files(repo_id: str, revision: str | None, token: str | None, budget: Budget,
                 wanted: dict[str, int]) -> str | None:
    """The commit the repo's file list describes (None if it names none), after checking that it holds
    model.safetensors and that each ``wanted`` file it holds states a size within its cap."""
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
    for name, cap in wanted.items():
        if name not in files:
            continue
        size = files[name].get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DDHubError(f"the Hub's file list of {repo_id} gives no size for {name}: not downloaded; try again")
        if size > cap:
            hint = " (DD_HUB_MAX_WEIGHTS_BYTES)" if name == WEIGHTS_NAME else ""
            raise DDHubError(f"{repo_id}'s {name} is {size:,} bytes, over the {cap:,} allowed{hint}")
    sha = info.get("sha")
    return sha if isinstance(sha, str) and len(sha) == 40 and all(c in "0123456789abcdef" for c in sha) else None
