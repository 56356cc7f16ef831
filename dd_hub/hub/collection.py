"""Collecting cards for the boards: every card of a local catalogue folder, or every dd-hub card on the Hub, each
with its figures' images and the verification records that concern it; one bad card or repo is a one-line notice,
never the end of the listing. ``show`` reads one card.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DDHubError
from ..names import CARD_NAME
from ..storage.atomic_io import read_text_limited
from ..text import one_line
from .cards import (HUB_URL, MAX_CARD_BYTES, MAX_IMAGE_BYTES, MAX_TEXT, Card, InvalidCard, _repo_id, parse_card,
                    read_local_image, referenced_images)
from .client import Budget, HubReader, HubTooLarge, resolve_token, validate_repo_id
from .verification import hub_verifications, local_verifications

HUB_TAG = "dd-hub"


# --- local folders -------------------------------------------------------------------------------------------------
def load_local_cards(cards_dir: str | Path) -> tuple[list[Card], list[str]]:
    """Every ``cards_dir/*/README.md`` with the PNGs it references from its folder and the verification records
    beside it; returns (cards, notices). A card that cannot be read becomes a one-line notice, never an error."""
    cards_dir = Path(cards_dir)
    if not cards_dir.is_dir():
        raise DDHubError(f"{cards_dir} is not a directory of model cards (expected {cards_dir}/*/{CARD_NAME})")
    cards, notices = [], []
    for folder in sorted(p for p in cards_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        card_path = folder / CARD_NAME
        if not card_path.is_file():
            continue
        where = one_line(str(card_path), MAX_TEXT)
        try:
            if card_path.is_symlink():
                raise InvalidCard("it is a link")
            card = listable(parse_card(read_text_limited(card_path, MAX_CARD_BYTES), name=folder.name,
                                       source=str(card_path)))
        except (InvalidCard, ValueError, OSError) as exc:
            notices.append(f"{where}: not listed, {one_line(exc)}")
            continue
        for ref in referenced_images(card.body):
            card.add_image(ref, read_local_image(folder, ref))
        card.verifications, problems = local_verifications(folder, card)
        notices += [f"{where}: {problem}" for problem in problems]
        cards.append(card)
    return cards, notices


def listable(card: Card) -> Card:
    """``card``, unless it is a smoke run's (``dd_hub.smoke: true``), which no board lists."""
    if card.info.get("smoke") is True:
        raise InvalidCard("a smoke run (--smoke), not a model")
    return card


# --- the Hub -------------------------------------------------------------------------------------------------------
def list_hub_models(reader: HubReader, *, limit: int = 1000, author: str | None = None,
                    tags: tuple[str, ...] = ()) -> list[str]:
    """Ids of the Hub's models tagged ``dd-hub`` (and ``tags``), at most ``limit``."""
    params: dict = {"filter": [HUB_TAG, *tags], "limit": str(min(limit, 1000))}
    if author:
        params["author"] = author
    ids = []
    for item in reader.pages("api/models", params=params, limit=limit,
                             what="cannot list the dd-hub models on the Hub"):
        repo_id = item.get("id") or item.get("modelId") if isinstance(item, dict) else None
        if isinstance(repo_id, str) and _repo_id(repo_id) and repo_id not in ids:
            ids.append(repo_id)
    return ids


def load_hub_cards(*, limit: int = 1000, author: str | None = None, token: str | None = None,
                   tags: tuple[str, ...] = (), images: bool = True,
                   verifications: bool = True) -> tuple[list[Card], list[str]]:
    """dd-hub checkpoints on the Hub (tag ``dd-hub``): each card, the PNGs it references (``images``) and the
    verification records of its pull requests (``verifications``); returns (cards, notices).

    Every request is bounded (:mod:`dd_hub.hub.client`); a repo that cannot be read (403, a huge or malformed card,
    a timeout) becomes a notice and is skipped; an unreachable Hub is a one-line :class:`DDHubError`.
    """
    reader = HubReader(resolve_token(token), Budget())
    cards, notices = [], []
    for repo_id in sorted(list_hub_models(reader, limit=limit, author=author, tags=tags)):
        try:
            text, revision = reader.download(repo_id, CARD_NAME, max_bytes=MAX_CARD_BYTES)
            if text is None:
                notices.append(f"{repo_id}: not listed, it has no {CARD_NAME} (or it went away)")
                continue
            card = listable(parse_card(text.decode("utf-8", errors="replace"), name=repo_id.split("/")[-1],
                                       repo_id=repo_id, source=f"{HUB_URL}/{repo_id}"))
            card.revision = revision
            if images:
                for ref in referenced_images(card.body):
                    card.add_image(ref, _image(reader, repo_id, ref))
            if verifications:
                card.verifications, problems = hub_verifications(reader, card)
                notices += [f"{repo_id}: {problem}" for problem in problems]
        except (InvalidCard, DDHubError) as exc:
            if reader.budget.remaining() <= 0:
                raise
            notices.append(f"{repo_id}: not listed, {one_line(exc)}")
            continue
        cards.append(card)
    return cards, notices


def _image(reader: HubReader, repo_id: str, ref: str) -> bytes | None:
    """The PNG a Hub card shows as ``ref``; one over :data:`MAX_IMAGE_BYTES` is a missing image, not a lost card."""
    try:
        return reader.file(repo_id, ref, max_bytes=MAX_IMAGE_BYTES)
    except HubTooLarge:
        return None


def show(repo_id: str, *, token: str | None = None) -> Card:
    """One checkpoint's card, from a local model directory or from the Hub (validated like every card)."""
    path = Path(repo_id)
    if path.is_dir():
        card_path = path / CARD_NAME
        if not card_path.is_file() or card_path.is_symlink():
            raise DDHubError(f"{path} has no {CARD_NAME}")
        text, name, source = read_text_limited(card_path, MAX_CARD_BYTES), path.name, str(card_path)
        repo = None
    else:
        repo = validate_repo_id(repo_id)
        data = HubReader(resolve_token(token)).file(repo, CARD_NAME, max_bytes=MAX_CARD_BYTES,
                                                     what=f"cannot read the card of {repo}")
        if data is None:
            raise DDHubError(f"{repo} has no {CARD_NAME} on the Hub (or no such repo)")
        text, name, source = data.decode("utf-8", errors="replace"), repo.split("/")[-1], f"{HUB_URL}/{repo}"
    try:
        return parse_card(text, name=name, repo_id=repo, source=source)
    except InvalidCard as exc:
        raise DDHubError(f"the card of {one_line(repo_id, MAX_TEXT)} cannot be read: {exc}") from None


def find_published(*, dataset: str | None = None, threat_model: str | None = None, author: str | None = None,
                   limit: int = 100, token: str | None = None) -> tuple[list[Card], list[str]]:
    """dd-hub cards on the Hub for ``dd-hub list``, filtered on the Hub side by dd-hub's dataset and threat-model
    tags; no figure images are downloaded (the list shows none)."""
    from .card import search_tags

    tags = tuple(tag for tag in search_tags(dataset or "", [threat_model] if threat_model else [])
                 if (dataset and tag.startswith("dd-hub-dataset-")) or tag.startswith("dd-hub-threat-model-"))
    return load_hub_cards(limit=limit, author=author, token=token, tags=tags, images=False)
