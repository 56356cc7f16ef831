"""The catalogue of cards a project keeps (``model_cards/``): a model directory's card and figures added as a
folder of their own, and the index regenerated (:func:`dd_hub.hub.boards.write_index`).

A model directory may come from anyone: only the files its metrics.json lists and hashes are copied (none may be a
link), and the folder's name is checked to be one plain path component inside the catalogue, whatever the
metrics.json or ``--repo-id`` say.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import DDHubError
from ..names import CARD_NAME, METRICS_NAME
from ..storage.atomic_io import copy_atomic, write_bytes_atomic
from ..storage.metrics import read_metrics
from .client import validate_repo_id
from .upload import FIGURES, card_files
from .verification import RECORD_NAME, local_verifications

_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def add_card(model_dir: str | Path, cards_dir: str | Path, repo_id: str | None = None, *,
             complete: bool = False) -> Path:
    """A model directory's card and figures (and verification record, if any) into ``cards_dir/<name>/``: rendered
    for ``repo_id`` when the weights are published there, else marked ``published: false``. ``complete``: the whole
    sealed folder as the run wrote it (weights, config.json, metrics.json, figures, its card), so that the
    catalogue entry can be loaded, verified and published (`dd-hub publish` renders the repo's card) by itself."""
    model_dir, cards_dir = Path(model_dir), Path(cards_dir)
    if repo_id is not None:
        validate_repo_id(repo_id)
    name = repo_id.split("/")[-1] if repo_id else str(read_metrics(model_dir)["model"].get("repo_name", ""))
    if not _FOLDER_NAME.match(name) or name in (".", ".."):
        raise DDHubError(f"{name[:100]!r} cannot name a card folder (letters, digits, '.', '_', '-'; no path)")
    target = cards_dir / name
    if cards_dir.exists() and not cards_dir.is_dir():
        raise DDHubError(f"{cards_dir} is a file, not a folder of cards; choose another --cards-dir or CARDS_DIR")
    if cards_dir.resolve() not in (target.resolve().parent,) or target.is_symlink() \
            or (target.exists() and not target.is_dir()):
        raise DDHubError(f"{target} is not a folder inside {cards_dir}; move it away or choose another folder")
    files = card_files(model_dir, repo_id, published=repo_id is not None)
    record = _checked_record(model_dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DDHubError(f"cannot create {target}: {exc.strerror or exc}") from None
    if complete:  # the sealed folder as the run wrote it, card included: its metrics.json hashes every file
        for name in [*read_metrics(model_dir)["files"], METRICS_NAME]:
            copy_atomic(model_dir / name, target / name)
    else:
        write_bytes_atomic(target / CARD_NAME, files[CARD_NAME])
        for name in FIGURES:
            if name in files:
                copy_atomic(files[name], target / name)
    if record is not None:
        copy_atomic(record, target / RECORD_NAME)
    return target


def _checked_record(model_dir: Path) -> Path | None:
    """The folder's verification record when it measured this folder's weights with its protocol; a one-line
    error when it is there but did not (a record is copied only as what it is)."""
    record = model_dir / RECORD_NAME
    if not record.is_file() and not record.is_symlink():
        return None
    records, problems = local_verifications(model_dir, None)
    if problems or not records or records[0].checked is not True:
        reason = problems[0] if problems else "verification record not used: nothing to check it against"
        raise DDHubError(f"{model_dir}: {reason}; remove {RECORD_NAME} or run `dd-hub verify {model_dir}` again")
    return record
