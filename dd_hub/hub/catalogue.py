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
from ..names import CARD_NAME
from ..storage.atomic_io import copy_atomic, write_bytes_atomic
from ..storage.metrics import read_metrics
from .client import validate_repo_id
from .upload import FIGURES, card_files
from .verification import RECORD_NAME

_FOLDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def add_card(model_dir: str | Path, cards_dir: str | Path, repo_id: str | None = None) -> Path:
    """A model directory's card and figures (and verification record, if any) into ``cards_dir/<name>/``: rendered
    for ``repo_id`` when the weights are published there, else marked ``published: false``."""
    model_dir, cards_dir = Path(model_dir), Path(cards_dir)
    if repo_id is not None:
        validate_repo_id(repo_id)
    name = repo_id.split("/")[-1] if repo_id else str(read_metrics(model_dir)["model"].get("repo_name", ""))
    if not _FOLDER_NAME.match(name) or name in (".", ".."):
        raise DDHubError(f"{name[:100]!r} cannot name a card folder (letters, digits, '.', '_', '-'; no path)")
    target = cards_dir / name
    if cards_dir.resolve() not in (target.resolve().parent,) or target.is_symlink():
        raise DDHubError(f"{target} is not a folder inside {cards_dir}")
    files = card_files(model_dir, repo_id, published=repo_id is not None)
    target.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(target / CARD_NAME, files[CARD_NAME])
    for figure in FIGURES:
        if figure in files:
            copy_atomic(files[figure], target / figure)
    record = model_dir / RECORD_NAME
    if record.is_file() and not record.is_symlink():
        copy_atomic(record, target / RECORD_NAME)
    return target
