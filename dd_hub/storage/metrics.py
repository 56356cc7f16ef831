"""metrics.json: what a run trained and measured, sealed to the files beside it. One reader for every command.

A run writes metrics.json last (:func:`dd_hub.storage.run_dir.commit`): it records the sha256 of every other file of
the folder (``files``) and a digest of its own content (``digest``), so that an accident (a weight file of another
run copied in, a truncated or half-edited metrics.json, a file removed afterwards) is noticed by every reader
(load, eval, publish, cards --add). The digest is no signature: it proves integrity against accidents, not who
wrote the figures; anyone who edits them can compute it again. What proves authorship is the Hub commit (its
account) and an independent verification (:mod:`dd_hub.hub.verification`). A file added afterwards is not
noticed, and not used either: readers open only the files listed, and publish uploads only those.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import DDHubError
from ..names import COMMIT_NAME, METRICS_NAME, STAGING_DIR
from .atomic_io import read_json_object, regular_file, sha256_file

MAX_METRICS_BYTES = 16 << 20
#: the largest file a model folder may list (weights included; ``DD_HUB_MAX_WEIGHTS_BYTES`` overrides), checked
#: before it is hashed: a sparse 1 TiB file is refused at once, not read
MAX_LISTED_BYTES = int(os.environ.get("DD_HUB_MAX_WEIGHTS_BYTES", str(8 << 30)))
#: the sections every dd-hub metrics.json has
SECTIONS = ("model", "recipe", "hardened", "reference")


def digest(metrics: dict) -> str:
    """sha256 of the metrics' canonical JSON, without the digest itself: an accidental edit no longer matches (a
    deliberate one can recompute it: it is no signature)."""
    body = {k: v for k, v in metrics.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def seal(metrics: dict, folder: Path, manifest: str = METRICS_NAME) -> dict:
    """``metrics`` with the hashes of every file in ``folder`` (the ``manifest`` itself and hidden files aside)
    and its digest."""
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != manifest
                   and not p.name.startswith("."))
    sealed = {**metrics, "files": {name: sha256_file(folder / name) for name in names}}
    return {**sealed, "digest": digest(sealed)}


def read_metrics(model_dir: str | Path, *, required: bool = True, only: tuple[str, ...] | None = None,
                 links_within: Path | None = None) -> dict | None:
    """The folder's metrics.json after every reader's checks: no unfinished commit, the dd-hub sections present,
    the digest intact, and every file it lists present and unchanged (``only``: just these files, which it must
    list: for a Hub snapshot that holds the weights and config alone). A folder without metrics.json is a plain
    timm folder: None, or a one-line error when ``required``. Files may not be links, except into ``links_within``
    (a Hub snapshot in huggingface_hub's cache)."""
    model_dir = Path(model_dir)
    if (model_dir / STAGING_DIR / COMMIT_NAME).is_file():
        raise DDHubError(f"{model_dir} was interrupted while its files were being replaced; rerun the same "
                         "`dd-hub harden ... --resume` to finish it")
    path = model_dir / METRICS_NAME
    if path.is_symlink() and not regular_file(path, links_within=links_within):
        raise DDHubError(f"{path} is a link out of its folder; dd-hub reads a model folder as a closed unit")
    if not path.is_file():
        if required:
            raise DDHubError(f"{model_dir} has no {METRICS_NAME}; pass the --out directory of `dd-hub harden`")
        return None
    metrics = read_json_object(path, what="dd-hub metrics", fix="rerun `dd-hub harden`", max_bytes=MAX_METRICS_BYTES)
    missing = [key for key in SECTIONS if not isinstance(metrics.get(key), dict)]
    if missing:
        raise DDHubError(f"{path} is not a dd-hub metrics file (no '{missing[0]}' section); rerun `dd-hub harden`")
    recorded = metrics.get("files")
    if not isinstance(recorded, dict):
        raise DDHubError(f"{path} records no file hashes, so nothing ties it to the weights beside it; rerun "
                         "`dd-hub harden` (or remove metrics.json to use the folder as a plain timm checkpoint)")
    if metrics.get("digest") != digest(metrics):
        raise DDHubError(f"{path} was changed after the run that wrote it (its digest no longer matches); rerun "
                         "`dd-hub harden` (the digest catches accidents, it is no proof of who wrote the figures)")
    unlisted = [name for name in only or () if name not in recorded]
    if unlisted:
        raise DDHubError(f"{path} does not list {unlisted[0]}, so nothing ties its figures to that file; rerun "
                         "`dd-hub harden`")
    for name, expected in recorded.items():
        if only is not None and name not in only:
            continue
        file = model_dir / str(name)
        if regular_file(file, links_within=links_within) and file.stat().st_size > MAX_LISTED_BYTES:
            raise DDHubError(f"{file} is {file.stat().st_size:,} bytes, over the {MAX_LISTED_BYTES:,} a model folder's "
                             "file may have (DD_HUB_MAX_WEIGHTS_BYTES); not read")
        if Path(str(name)).name != name or not regular_file(file, links_within=links_within) \
                or sha256_file(file) != expected:
            raise DDHubError(f"{model_dir / str(name)} is not the file {METRICS_NAME} was measured on (missing, "
                             "changed or a link); rerun `dd-hub harden` instead of mixing the files of two runs")
    return metrics
