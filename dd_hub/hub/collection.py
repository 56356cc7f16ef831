"""Collecting cards for the boards: every card of a local catalogue folder, or every dd-hub card on the Hub, with the
verification records that concern it; one bad card or repo is a one-line notice, never the end of the listing.
``show`` reads one card.

The Hub is read by pages, not per card: the model listing (``GET /api/models``, up to :data:`PAGE_SIZE` models a page,
``expand`` = :data:`LISTING_FIELDS`, as huggingface_hub's ``list_models(expand=[...])`` asks) already holds each
card's metadata (``cardData``, with its ``model-index``), its commit and its files, so the boards need no request per
card: a card's body is downloaded only by ``show`` (and for a listing entry without ``cardData``), its figures are
linked from the Hub, never copied.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DDHubError
from ..names import CARD_NAME, WEIGHTS_NAME
from ..storage.atomic_io import read_text_limited
from ..text import one_line
from .cards import (HUB_URL, MAX_CARD_BYTES, MAX_IMAGE_BYTES, MAX_IMAGES, MAX_TEXT, Card, InvalidCard, _repo_id,
                    card_from_metadata, check_metadata_limits, local_path, parse_card, read_local_image,
                    referenced_images)
from .client import Budget, HubReader, HubTooLarge, resolve_token, validate_repo_id
from .record_index import attach_index_records
from .verification import local_verifications

HUB_TAG = "dd-hub"
#: models per listing page: the most the Hub's listing returns in one page
PAGE_SIZE = 1000
#: what each listing entry carries (the Hub's ``expand`` properties): the card's metadata, its commit, its files
LISTING_FIELDS = ("author", "cardData", "sha", "siblings")
#: the default catalogue folder, where ``show NAME`` looks for a local card folder of that name
CATALOGUE = "model_cards"


# --- local folders -------------------------------------------------------------------------------------------------
def load_local_cards(cards_dir: str | Path, *, limit: int | None = None,
                     images: bool = True) -> tuple[list[Card], list[str]]:
    """The first ``limit`` (by folder name) ``cards_dir/*/README.md`` with the verification records beside them and,
    with ``images``, the PNGs they reference from their folder; returns (cards, notices). A card that cannot be read
    becomes a one-line notice, never an error."""
    cards_dir = Path(cards_dir)
    if not cards_dir.is_dir():
        raise DDHubError(f"{cards_dir} is not a directory of model cards (expected {cards_dir}/*/{CARD_NAME})")
    cards, notices = [], []
    for folder in sorted(p for p in cards_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        if limit is not None and len(cards) >= limit:
            break
        card_path = folder / CARD_NAME
        if not card_path.is_file():
            continue
        where = one_line(str(card_path), MAX_TEXT)
        try:
            card = listable(_read_local_card(folder))
        except (InvalidCard, ValueError, OSError) as exc:
            notices.append(f"{where}: not listed, {one_line(exc)}")
            continue
        if images:
            for ref in referenced_images(card.body):
                card.add_image(ref, read_local_image(folder, ref))
        card.verifications, problems = local_verifications(folder, card)
        notices += [f"{where}: {problem}" for problem in problems]
        cards.append(card)
    return cards, notices


def _read_local_card(folder: Path) -> Card:
    card_path = folder / CARD_NAME
    if card_path.is_symlink():
        raise InvalidCard("it is a link")
    return parse_card(read_text_limited(card_path, MAX_CARD_BYTES), name=folder.name, source=str(card_path))


def listable(card: Card) -> Card:
    """``card``, unless it is a smoke run's (``dd_hub.smoke: true``), which no board lists."""
    if card.info.get("smoke") is True:
        raise InvalidCard("a smoke run (--smoke), not a model")
    return card


# --- the Hub -------------------------------------------------------------------------------------------------------
def hub_listing(reader: HubReader, *, limit: int = PAGE_SIZE, author: str | None = None,
                tags: tuple[str, ...] = (), fields: tuple[str, ...] = LISTING_FIELDS) -> list[dict]:
    """The Hub's listing of the models tagged ``dd-hub`` (and ``tags``), at most ``limit``, each entry a dict with
    a valid ``id`` (repeated ids dropped): ``ceil(limit / PAGE_SIZE)`` requests at most."""
    params: dict = {"filter": [HUB_TAG, *tags], "limit": str(min(limit, PAGE_SIZE))}
    if fields:
        params["expand"] = list(fields)
    if author:
        params["author"] = author
    items, seen = [], set()
    for item in reader.pages("api/models", params=params, limit=limit,
                             what="cannot list the dd-hub models on the Hub"):
        repo_id = item.get("id") or item.get("modelId") if isinstance(item, dict) else None
        if isinstance(repo_id, str) and _repo_id(repo_id) and repo_id.lower() not in seen:  # ids ignore case
            seen.add(repo_id.lower())
            items.append({**item, "id": repo_id})
    return items


def list_hub_models(reader: HubReader, *, limit: int = 1000, author: str | None = None,
                    tags: tuple[str, ...] = ()) -> list[str]:
    """Ids of the Hub's models tagged ``dd-hub`` (and ``tags``), at most ``limit``."""
    return [item["id"] for item in hub_listing(reader, limit=limit, author=author, tags=tags, fields=())]


def load_hub_cards(*, limit: int = 1000, author: str | None = None, token: str | None = None,
                   tags: tuple[str, ...] = (), images: bool = False, verifications: bool = True,
                   trusted: frozenset[str] = frozenset()) -> tuple[list[Card], list[str]]:
    """dd-hub checkpoints on the Hub (tag ``dd-hub``), built from the pages of the Hub's listing (module
    docstring), with the verification records of the verifiers' record indexes (``verifications``,
    :mod:`dd_hub.hub.record_index`: a few requests whatever the number of models; records by ``trusted`` accounts
    rank as verified); returns (cards, notices).

    A listing entry without ``cardData`` (a Hub that does not expand it) costs a download of its card, and then,
    with ``images``, of the PNGs its body shows. Every request is bounded (:mod:`dd_hub.hub.client`); a repo that
    cannot be read (403, a huge or malformed card, a timeout) becomes a notice and is skipped; an unreachable Hub is a
    one-line :class:`DDHubError`.
    """
    reader = HubReader(resolve_token(token), Budget())
    cards, notices = [], []
    for item in sorted(hub_listing(reader, limit=limit, author=author, tags=tags), key=lambda i: i["id"]):
        repo_id = item["id"]
        try:
            card = _listed_card(reader, item, images)
            if card is None:
                notices.append(f"{repo_id}: not listed, it has no {CARD_NAME} (or it went away)")
                continue
            card = listable(card)
            card.trusted = trusted
        except (InvalidCard, DDHubError) as exc:
            if reader.budget.remaining() <= 0:
                raise
            notices.append(f"{repo_id}: not listed, {one_line(exc)}")
            continue
        cards.append(card)
    if verifications and cards:
        notices += attach_index_records(reader, cards, trusted)
    return cards, notices


def _listed_card(reader: HubReader, item: dict, images: bool) -> Card | None:
    """The card of one listing entry: from its ``cardData`` (JSON, under the card limits), else downloaded."""
    repo_id = item["id"]
    name, source = repo_id.split("/")[-1], f"{HUB_URL}/{repo_id}"
    data = item.get("cardData")
    if data is None:
        text, revision = reader.download(repo_id, CARD_NAME, max_bytes=MAX_CARD_BYTES)
        if text is None:
            return None
        card = parse_card(text.decode("utf-8", errors="replace"), name=name, repo_id=repo_id, source=source)
        card.revision = revision
        if images:
            for ref in referenced_images(card.body):
                card.add_image(ref, _image(reader, repo_id, ref))
        return card
    check_metadata_limits(data)
    card = card_from_metadata(data, name=name, repo_id=repo_id, source=source)
    sha = item.get("sha")
    card.revision = sha if isinstance(sha, str) and sha.isalnum() and len(sha) <= 64 else None
    card.hub_images = _png_files(item.get("siblings"))
    card.weights_sha256 = _hub_weights_sha256(item.get("siblings"))
    return card


def _hub_weights_sha256(siblings: object) -> str | None:
    """The sha256 the Hub computed of model.safetensors (its LFS pointer, in a file list with blobs), or None."""
    for entry in siblings if isinstance(siblings, list) else []:
        if isinstance(entry, dict) and entry.get("rfilename") == WEIGHTS_NAME and isinstance(entry.get("lfs"), dict):
            sha = entry["lfs"].get("sha256")
            if isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha):
                return sha
    return None


def _png_files(siblings: object) -> list[str]:
    """The PNGs of a repo's file list (listing ``siblings``), as safe relative paths, at most :data:`MAX_IMAGES`."""
    found: list[str] = []
    for entry in siblings if isinstance(siblings, list) else []:
        name = entry.get("rfilename") if isinstance(entry, dict) else None
        path = local_path(name) if isinstance(name, str) and len(name) <= MAX_TEXT else None
        if path is not None and path.lower().endswith(".png") and path not in found:
            found.append(path)
        if len(found) == MAX_IMAGES:
            break
    return found


def _image(reader: HubReader, repo_id: str, ref: str) -> bytes | None:
    """The PNG a Hub card shows as ``ref``; one over :data:`MAX_IMAGE_BYTES` is a missing image, not a lost card."""
    try:
        return reader.file(repo_id, ref, max_bytes=MAX_IMAGE_BYTES)
    except HubTooLarge:
        return None


def show(name: str, *, token: str | None = None, cards_dir: str | Path | None = None) -> Card:
    """One checkpoint's card (validated like every card), from a local model or card folder given by its path or by
    its name in ``cards_dir`` (default :data:`CATALOGUE`), else from the Hub (``ORG/NAME``)."""
    folder = local_folder(name, cards_dir)
    if folder is not None:
        card_path = folder / CARD_NAME
        if not card_path.is_file() or card_path.is_symlink():
            raise DDHubError(f"{folder} has no {CARD_NAME}")
        try:
            return _read_local_card(folder)
        except (InvalidCard, ValueError, OSError) as exc:
            raise DDHubError(f"the card of {one_line(name, MAX_TEXT)} cannot be read: {one_line(exc)}") from None
    if "/" not in name:
        where = Path(cards_dir or CATALOGUE)
        raise DDHubError(f"no folder {one_line(name, MAX_TEXT)!r} here or in {where}/, and a Hub model is named "
                         "ORG/NAME; give a model folder's path, a card folder's name, or ORG/NAME")
    repo = validate_repo_id(name)
    data = HubReader(resolve_token(token)).file(repo, CARD_NAME, max_bytes=MAX_CARD_BYTES,
                                                 what=f"cannot read the card of {repo}")
    if data is None:
        raise DDHubError(f"{repo} has no {CARD_NAME} on the Hub (or no such repo)")
    try:
        return parse_card(data.decode("utf-8", errors="replace"), name=repo.split("/")[-1], repo_id=repo,
                          source=f"{HUB_URL}/{repo}")
    except InvalidCard as exc:
        raise DDHubError(f"the card of {one_line(name, MAX_TEXT)} cannot be read: {exc}") from None


def local_folder(name: str, cards_dir: str | Path | None = None) -> Path | None:
    """The folder ``name`` names: a path to a folder, or a folder of that name in ``cards_dir`` (default
    :data:`CATALOGUE`); None when there is none."""
    path = Path(name)
    if path.is_dir():
        return path
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        return None
    candidate = Path(cards_dir or CATALOGUE) / name
    return candidate if candidate.is_dir() and not candidate.is_symlink() else None


def find_published(*, dataset: str | None = None, threat_model: str | None = None, author: str | None = None,
                   limit: int = 100, token: str | None = None, trusted: frozenset[str] = frozenset()
                   ) -> tuple[list[Card], list[str]]:
    """dd-hub cards on the Hub for ``dd-hub list``, filtered on the Hub side by dd-hub's dataset and threat-model
    tags; no figure images are downloaded (the list shows none)."""
    from .card import search_tags

    tags = tuple(tag for tag in search_tags(dataset or "", [threat_model] if threat_model else [])
                 if (dataset and tag.startswith("dd-hub-dataset-")) or tag.startswith("dd-hub-threat-model-"))
    return load_hub_cards(limit=limit, author=author, token=token, tags=tags, trusted=trusted)


def hub_datasets(*, token: str | None = None, author: str | None = None) -> list[str]:
    """The datasets of the dd-hub models on the Hub (from their ``dd-hub-dataset-*`` tags), for a listing that found
    nothing: one listing page, without card data."""
    reader = HubReader(resolve_token(token), Budget())
    prefix = "dd-hub-dataset-"
    found = set()
    for item in hub_listing(reader, limit=PAGE_SIZE, author=author, fields=("tags",)):
        tags = item.get("tags") if isinstance(item.get("tags"), list) else []
        found.update(one_line(t[len(prefix):], 60) for t in tags if isinstance(t, str) and t.startswith(prefix))
    return sorted(found)
