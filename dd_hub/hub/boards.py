"""Finding published dd-hub checkpoints and ranking them, RobustBench-like: model cards read from the Hub (tag
``dd-hub``, filtered on the Hub side by dataset and threat-model tags) or from local card folders, one board per
(dataset, threat model) ranked by AutoAttack robust accuracy, ``dd-hub list``'s Markdown and ``model_cards/index.md``.

A threat model is an AutoAttack entry of a card's ``model-index`` (``metric_type: robust_accuracy``, ``metric_args``
with ``attack: autoattack``, ``norm``, ``eps``). Entries are read from cards, never from weights. The HTML site
(:mod:`dd_hub.hub.site`) renders the same boards.
"""
from __future__ import annotations

import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import unquote, urlsplit

from ..storage.atomic_io import copy_atomic, write_bytes_atomic, write_text_atomic
from .card import card_metrics
from ..errors import DDHubError, first_line
from .client import hub_errors, resolve_token, validate_repo_id
from .upload import card_files

HUB_TAG = "dd-hub"
HUB_URL = "https://huggingface.co"
CARD_NAME = "README.md"
DEFAULT_METHOD = "deep_defense"
#: seconds to wait for one answer of the Hub (``DD_HUB_HUB_TIMEOUT`` overrides)
HUB_TIMEOUT_S = float(os.environ.get("DD_HUB_HUB_TIMEOUT", "10"))
MAX_IMAGE_BYTES = 20 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?")
NO_THREAT_MODEL = "no standard threat model evaluated"
NORM_LABELS = {"linf": "L∞", "l2": "L2"}


# --- cards -------------------------------------------------------------------------------------------------------
@dataclass
class Card:
    """One model card and the PNG figures its body references (relative path as written in the card -> bytes)."""

    card: object                     # huggingface_hub.ModelCard
    name: str                        # folder name (local) or repo name (Hub)
    repo_id: str | None = None       # ORG/NAME when known
    images: dict[str, bytes] = field(default_factory=dict)
    missing_images: list[str] = field(default_factory=list)
    source: str = ""                 # where it was read from, for messages

    @property
    def info(self) -> dict:
        """The card's ``dd_hub`` metadata block (architecture, dataset, recipe, ...); empty when absent."""
        value = getattr(self.card.data, "dd_hub", None)
        return value if isinstance(value, dict) else {}

    @property
    def published(self) -> bool:
        """False when the card says its weights are not on the Hub yet (``dd_hub.published: false``)."""
        return self.info.get("published", True) is not False

    @property
    def timm_loadable(self) -> bool:
        return getattr(self.card.data, "library_name", None) == "timm"

    @property
    def title(self) -> str:
        return self.repo_id or self.name

    def add_image(self, ref: str, data: bytes | None) -> None:
        """Keep the PNG ``data`` the card shows as ``ref``; anything else (absent, not a PNG, too big) is missing."""
        if data is not None and data.startswith(PNG_SIGNATURE) and len(data) <= MAX_IMAGE_BYTES:
            self.images[ref] = data
        else:
            self.missing_images.append(ref)


def referenced_images(body: str) -> list[str]:
    """Relative paths of the PNG images the rendered Markdown ``body`` shows, normalised, in order of appearance."""
    found = []
    for src in MARKDOWN_IMAGE.findall(body):
        path = _local_path(src)
        if path is not None and path.lower().endswith(".png") and path not in found:
            found.append(path)
    return found


def _local_path(url: str) -> str | None:
    """``url`` as a normalised path inside the card's folder, or None (remote, absolute or escaping it)."""
    parts = urlsplit(url.strip())
    if parts.scheme or parts.netloc or not parts.path:
        return None
    path = posixpath.normpath(unquote(parts.path))
    if path.startswith(("/", "../")) or path in (".", "..") or "\\" in path:
        return None
    return path


def _load_card(path: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(path)


def load_local_cards(cards_dir: str | Path) -> tuple[list[Card], list[str]]:
    """Every ``cards_dir/*/README.md`` with the PNGs it references from its folder; returns (cards, notices).

    A card that cannot be read is not dropped silently: it becomes a notice (shown on the site's front page).
    """
    cards_dir = Path(cards_dir)
    if not cards_dir.is_dir():
        raise DDHubError(f"{cards_dir} is not a directory of model cards (expected {cards_dir}/*/{CARD_NAME})")
    cards, notices = [], []
    for card_path in sorted(cards_dir.glob(f"*/{CARD_NAME}")):
        folder = card_path.parent
        try:
            card = _load_card(card_path)
        except Exception as exc:  # a malformed front matter or model-index, from any layer of huggingface_hub/yaml
            notices.append(f"{card_path}: not listed, the card cannot be read ({type(exc).__name__}: {first_line(exc)})")
            continue
        site_card = Card(card, folder.name, _card_repo_id(card), source=str(card_path))
        root = folder.resolve()
        for ref in referenced_images(card.text):
            target = (folder / ref).resolve()
            site_card.add_image(ref, target.read_bytes() if target.is_file() and root in target.parents else None)
        cards.append(site_card)
    return cards, notices


def _card_repo_id(card) -> str | None:
    info = getattr(card.data, "dd_hub", None)
    repo_id = info.get("repo_id") if isinstance(info, dict) else None
    return repo_id if isinstance(repo_id, str) and repo_id.count("/") == 1 else None


def load_hub_cards(*, limit: int = 1000, author: str | None = None, token: str | None = None,
                   timeout: float = HUB_TIMEOUT_S, tags: Sequence[str] = ()) -> tuple[list[Card], list[str]]:
    """dd-hub checkpoints on the Hub (tag ``dd-hub``): each card and the PNGs it references; returns (cards, notices).

    Every request times out after ``timeout`` seconds; an unreachable Hub is a one-line :class:`DDHubError`.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError

    cards, notices = [], []
    with hub_errors("cannot list the dd-hub models on the Hub"):
        repo_ids = list_hub_models(limit=limit, author=author, token=token, timeout=timeout, tags=tags)
    for repo_id in sorted(repo_ids):
        with hub_errors(f"cannot download the card of {repo_id}"):
            try:
                card_path = hf_hub_download(repo_id, CARD_NAME, etag_timeout=timeout, token=token)
            except (RemoteEntryNotFoundError, RepositoryNotFoundError):
                notices.append(f"{repo_id}: not listed, it has no {CARD_NAME} (or it went away)")
                continue
        try:
            card = _load_card(Path(card_path))
        except Exception as exc:
            notices.append(f"{repo_id}: not listed, its card cannot be read ({type(exc).__name__}: {first_line(exc)})")
            continue
        site_card = Card(card, repo_id.split("/")[-1], repo_id, source=f"{HUB_URL}/{repo_id}")
        for ref in referenced_images(card.text):
            with hub_errors(f"cannot download {ref} of {repo_id}"):
                try:
                    data = Path(hf_hub_download(repo_id, ref, etag_timeout=timeout, token=token)).read_bytes()
                except RemoteEntryNotFoundError:
                    data = None
            site_card.add_image(ref, data)
        cards.append(site_card)
    return cards, notices


def list_hub_models(*, limit: int = 1000, author: str | None = None, token: str | None = None,
                    timeout: float = HUB_TIMEOUT_S, tags: Sequence[str] = ()) -> list[str]:
    """Ids of the Hub's models tagged ``dd-hub``: the request of ``HfApi().list_models(filter=["dd-hub"],
    cardData=True, limit=limit)``, made here in one attempt per page with a timeout, because ``list_models`` waits
    without a timeout and retries network errors for half a minute."""
    from huggingface_hub import constants, get_session
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    url: str | None = f"{constants.ENDPOINT}/api/models"
    params: dict | None = {"filter": [HUB_TAG, *tags], "cardData": "true", "limit": str(min(limit, 1000))}
    if author:
        params["author"] = author
    headers = build_hf_headers(token=token, library_name="dd-hub")
    ids: list[str] = []
    while url and len(ids) < limit:
        response = get_session().get(url, params=params, headers=headers, timeout=timeout)
        hf_raise_for_status(response)
        ids += [item.get("id") or item.get("modelId") for item in response.json()]
        url, params = response.links.get("next", {}).get("url"), None
    return [i for i in ids[:limit] if isinstance(i, str)]


# --- boards -------------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One card on one board."""

    card: Card
    slug: str
    clean_accuracy: float | None
    robust_accuracy: float | None = None
    rho2: float | None = None
    eps: float | None = None
    n_examples: int | None = None
    evaluation: str | None = None    # the AutoAttack entry's version/implementation, as the card states it

    @property
    def architecture(self) -> str:
        return str(self.card.info.get("architecture") or "?")

    @property
    def method(self) -> str:
        return str(self.card.info.get("method") or DEFAULT_METHOD)

    @property
    def dataset(self) -> str:
        return str(self.card.info.get("dataset") or "?")


@dataclass
class Board:
    """A ranked table: one (dataset, norm, eps) threat model, or the cards without one (``norm`` None)."""

    anchor: str
    title: str
    dataset: str | None
    norm: str | None
    eps: float | None
    rows: list[Row]


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _results(card: Card) -> list:
    return list(getattr(card.card.data, "eval_results", None) or [])


def _first(card: Card, metric_type: str) -> float | None:
    for result in _results(card):
        if result.metric_type == metric_type and _number(result.metric_value) is not None:
            return _number(result.metric_value)
    return None


def threat_models(card: Card) -> list[tuple[str, str, float, object]]:
    """(dataset, norm, eps, EvalResult) for each AutoAttack entry of the card's model-index."""
    found = []
    for result in _results(card):
        args = result.metric_args if isinstance(result.metric_args, dict) else {}
        norm, eps = str(args.get("norm", "")).lower(), _number(args.get("eps"))
        if (result.metric_type == "robust_accuracy" and args.get("attack") == "autoattack" and norm in NORM_LABELS
                and eps is not None and _number(result.metric_value) is not None):
            dataset = card.info.get("dataset") or result.dataset_name or "?"
            found.append((str(dataset), norm, eps, result))
    return found


def slugs(cards: Iterable[Card]) -> dict[int, str]:
    """id(card) -> a unique file-name-safe page name (``org--name`` for Hub ids)."""
    taken, result = set(), {}
    for card in cards:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", card.title.replace("/", "--")).strip(".-") or "model"
        slug, n = base, 2
        while slug.lower() in taken:
            slug, n = f"{base}-{n}", n + 1
        taken.add(slug.lower())
        result[id(card)] = slug
    return result


def _evaluation_label(args: dict) -> str | None:
    """How an AutoAttack entry was run, from its args: ``standard``, or ``custom (apgd-ce, apgd-t)``."""
    version = str(args.get("version") or args.get("implementation") or "")
    attacks = args.get("attacks")
    if version == "custom" and isinstance(attacks, list) and attacks:
        version += f" ({', '.join(map(str, attacks))})"
    return version or None


def boards(cards: list[Card]) -> list[Board]:
    """The boards of ``cards``: one per (dataset, norm, eps), best robust accuracy first (ties: clean accuracy, then
    name), then the board of the cards without an AutoAttack entry (best rho2 first), if any."""
    names = slugs(cards)
    by_threat: dict[tuple[str, str, float], dict[int, Row]] = {}
    untested = []
    for card in cards:
        clean = _first(card, "accuracy")
        entries = threat_models(card)
        if not entries:
            untested.append(Row(card, names[id(card)], clean, rho2=_first(card, "rho2")))
            continue
        for dataset, norm, eps, result in entries:
            args = result.metric_args
            row = Row(card, names[id(card)], clean, robust_accuracy=_number(result.metric_value),
                      rho2=_first(card, "rho2"), eps=eps, n_examples=_int(args.get("n_examples")),
                      evaluation=_evaluation_label(args))
            rows = by_threat.setdefault((dataset, norm, _eps_key(eps)), {})
            previous = rows.get(id(card))
            if previous is None or row.robust_accuracy < previous.robust_accuracy:  # the strongest evaluation counts
                rows[id(card)] = row
    result = []
    for (dataset, norm, eps), rows in sorted(by_threat.items(), key=lambda kv: (kv[0][0], kv[0][1] != "linf",
                                                                                   kv[0][1], kv[0][2])):
        ranked = sorted(rows.values(), key=lambda r: (-r.robust_accuracy, -(r.clean_accuracy or 0.0), r.slug))
        anchor = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{dataset}-{norm}-{eps:g}")
        result.append(Board(anchor, f"{dataset} · {NORM_LABELS[norm]}, ε = {format_eps(eps)}", dataset, norm, eps,
                            ranked))
    if untested:
        ranked = sorted(untested, key=lambda r: (r.rho2 is None, -(r.rho2 or 0.0), r.slug))
        result.append(Board("no-threat-model", NO_THREAT_MODEL.capitalize(), None, None, None, ranked))
    return result


def _eps_key(eps: float) -> float:
    """``eps`` as boards are keyed by: equal budgets written with other float noise (8/255) share a board."""
    return round(eps, 10)


def select_boards(all_boards: list[Board], *, dataset: str | None = None,
                  threat_model: str | None = None) -> list[Board]:
    """The boards of ``dataset`` (plus the board of cards without a threat model) and of ``threat_model`` (its
    board only). The Hub's tag filter picks cards; a card evaluated at several threat models has a board for each."""
    from ..attacks.threat_models import threat_model as norm_and_eps

    budget = None if threat_model is None else norm_and_eps(threat_model)
    return [b for b in all_boards if (dataset in (None, b.dataset) or b.norm is None)
            and (budget is None or (b.norm, b.eps) == (budget[0], _eps_key(budget[1])))]


def _int(value) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


def format_eps(eps: float) -> str:
    """``0.3``; a multiple of 1/255 that is no short decimal as ``8/255 (0.03137)``."""
    plain = f"{eps:.6g}"
    k = round(eps * 255)
    if 0 < eps < 1 and abs(eps * 255 - k) < 5e-4 and len(plain) > 6:
        return f"{k}/255 ({eps:.4g})"
    return plain


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


# --- Markdown and JSON ---------------------------------------------------------------------------------------------
def board_markdown(board: Board, *, link: bool = True) -> str:
    """One board as a Markdown table with RobustBench's columns."""
    lines = [f"### {board.title}", ""]
    if board.norm is None:
        lines += ["| # | model | clean | rho_2 | architecture | method |", "|---|---|---|---|---|---|"]
        lines += [f"| {i} | {_name(r, link)} | {_percent(r.clean_accuracy)} | "
                  f"{'–' if r.rho2 is None else f'{r.rho2:.4g}'} | {r.architecture} | {r.method} |"
                  for i, r in enumerate(board.rows, 1)]
    else:
        lines += ["| # | model | clean | AutoAttack robust | architecture | method | eps | n_examples | link |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {i} | {r.card.title} | {_percent(r.clean_accuracy)} | {_percent(r.robust_accuracy)} | "
                  f"{r.architecture} | {r.method} | {format_eps(board.eps)} | {r.n_examples or '–'} | "
                  f"{_link(r) if link else '–'} |" for i, r in enumerate(board.rows, 1)]
    return "\n".join(lines) + "\n"


def board_json(board: Board) -> dict:
    """One board as plain data (``dd-hub list --json``)."""
    return {"board": board.title, "dataset": board.dataset, "norm": board.norm, "eps": board.eps, "rows": [
        {"model": r.card.title, "clean_accuracy": r.clean_accuracy, "robust_accuracy": r.robust_accuracy,
         "rho2": r.rho2, "architecture": r.architecture, "method": r.method, "n_examples": r.n_examples,
         "evaluation": r.evaluation, "published": r.card.published} for r in board.rows]}


def _name(row: Row, link: bool) -> str:
    return f"[{row.card.title}]({HUB_URL}/{row.card.repo_id})" if link and row.card.repo_id else row.card.title


def _link(row: Row) -> str:
    if not row.card.published:
        return "not published yet"
    return f"[Hub]({HUB_URL}/{row.card.repo_id})" if row.card.repo_id else "–"


def leaderboard_markdown(cards: list[Card], *, link: bool = True) -> str:
    """Every board of ``cards``, one after another."""
    return "\n".join(board_markdown(board, link=link) for board in boards(cards))


def find_published(*, dataset: str | None = None, threat_model: str | None = None, author: str | None = None,
                   limit: int = 100, token: str | None = None) -> tuple[list[Card], list[str]]:
    """dd-hub cards on the Hub, filtered on the Hub side by dd-hub's tags; returns (cards, notices)."""
    from .card import search_tags

    tags = [tag for tag in search_tags(dataset or "", [threat_model] if threat_model else [])
            if (dataset and tag.startswith("dd-hub-dataset-")) or tag.startswith("dd-hub-threat-model-")]
    return load_hub_cards(limit=limit, author=author, token=resolve_token(token), tags=tags)


def show(repo_id: str, *, token: str | None = None) -> tuple[str, dict[str, float]]:
    """One checkpoint's figures (names of :func:`dd_hub.hub.card.card_metrics`), from its card on the Hub or in a local
    model directory; returns (title, figures)."""
    from huggingface_hub import ModelCard

    path = Path(repo_id)
    if path.is_dir():
        card_path = path / CARD_NAME
        if not card_path.is_file():
            raise DDHubError(f"{path} has no {CARD_NAME}")
        card = ModelCard.load(card_path)
    else:
        validate_repo_id(repo_id)
        with hub_errors(f"cannot read the card of {repo_id}"):
            card = ModelCard.load(repo_id, token=resolve_token(token))
    info = getattr(card.data, "dd_hub", None) or {}
    title = f"{repo_id}: {info.get('architecture', '?')} on {info.get('dataset', '?')}"
    return title, card_metrics(card.data)


def add_card(model_dir: str | Path, cards_dir: str | Path, repo_id: str | None = None) -> Path:
    """A model directory's card and figures into ``cards_dir/<name>/``: rendered for ``repo_id`` when the weights
    are published there, else marked ``published: false``."""
    model_dir = Path(model_dir)
    files = card_files(model_dir, repo_id)
    name = repo_id.split("/")[-1] if repo_id else json_repo_name(model_dir)
    target = Path(cards_dir) / name
    target.mkdir(parents=True, exist_ok=True)
    for file_name, source in files.items():
        if file_name == CARD_NAME:
            write_bytes_atomic(target / file_name, source)
        elif file_name.endswith(".png"):
            copy_atomic(source, target / file_name)
    return target


def json_repo_name(model_dir: Path) -> str:
    from .upload import read_metrics

    return read_metrics(model_dir)["model"]["repo_name"]


def write_index(cards_dir: str | Path) -> Path:
    """Regenerate ``cards_dir/index.md``: the boards of every ``cards_dir/*/README.md``."""
    cards, notices = load_local_cards(cards_dir)
    body = leaderboard_markdown(cards) if cards else "No cards yet.\n"
    problems = "".join(f"- {notice}\n" for notice in notices)
    text = f"""# dd-hub model cards

The checkpoints this project trained and measured, one folder per card. Regenerated by `dd-hub cards` from the
cards in the sub-directories; do not edit by hand. One board per dataset and threat model, ranked by robust
accuracy under AutoAttack (the reference implementation by its authors, at the version and attacks each card's
`model-index` states), RobustBench-style; clean accuracy on the same test images. Perturbation sizes in [0, 1]
pixel space. "not published yet": the weights are not on the Hub (yet); the card records how to reproduce them.

{body}{chr(10) + "Cards that could not be read:" + chr(10) + problems if problems else ""}"""
    index = Path(cards_dir) / "index.md"
    write_text_atomic(index, text)
    return index
