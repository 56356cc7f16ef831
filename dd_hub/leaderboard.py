"""Finding published dd-hub checkpoints: Hub search, one card's figures, the leaderboard and ``model_cards/index.md``.

Entries are read from card data (``model-index`` and the ``dd_hub`` metadata block), never from weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .atomic_io import copy_atomic, write_bytes_atomic, write_text_atomic
from .card import card_metrics
from .errors import DDHubError
from .hub_client import hub_api, hub_errors, resolve_token, validate_repo_id
from .upload import CARD_NAME, card_files

HUB_TAG = "dd-hub"


@dataclass
class Entry:
    """One published checkpoint in a leaderboard: its figures as named by :func:`dd_hub.card.card_metrics`."""

    repo_id: str
    architecture: str
    dataset: str
    metrics: dict[str, float] = field(default_factory=dict)


def entry_from_card(repo_id: str | None, card_data) -> Entry:
    """A leaderboard entry from a card's data (``ModelCardData``); ``repo_id`` defaults to the card's own."""
    info = getattr(card_data, "dd_hub", None) or {}
    repo_id = repo_id or info.get("repo_id") or card_data.model_name
    return Entry(repo_id, info.get("architecture", "?"), info.get("dataset", "?"), card_metrics(card_data))


def find_published(*, dataset: str | None = None, arch: str | None = None, author: str | None = None,
                   token: str | None = None) -> list[Entry]:
    """dd-hub checkpoints on the Hub (tag ``dd-hub``), with their figures from the card data."""
    api = hub_api(resolve_token(token))
    entries = []
    with hub_errors("cannot list models"):
        for info in api.list_models(filter=[HUB_TAG], author=author, cardData=True):
            if info.card_data is None:
                continue
            entry = entry_from_card(info.id, info.card_data)
            if (dataset is None or entry.dataset == dataset) and (arch is None or entry.architecture == arch):
                entries.append(entry)
    return entries


def show(repo_id: str, *, token: str | None = None) -> Entry:
    """One published checkpoint's figures, read from its card on the Hub (or a local model directory)."""
    from huggingface_hub import ModelCard

    path = Path(repo_id)
    if path.is_dir():
        card_path = path / CARD_NAME
        if not card_path.is_file():
            raise DDHubError(f"{path} has no {CARD_NAME}")
        return entry_from_card(repo_id, ModelCard.load(card_path).data)
    validate_repo_id(repo_id)
    with hub_errors(f"cannot read the card of {repo_id}", repo_id):
        card = ModelCard.load(repo_id, token=resolve_token(token))
    return entry_from_card(repo_id, card.data)


def sort_entries(entries: Iterable[Entry], metric: str) -> list[Entry]:
    """Best first by ``metric`` (all dd-hub metrics are higher-is-better); entries without it go last."""
    entries = list(entries)
    known = sorted({name for e in entries for name in e.metrics})
    if entries and metric not in known:
        raise DDHubError(f"unknown metric '{metric}' to sort by; available: {', '.join(known)}")
    return sorted(entries, key=lambda e: (metric not in e.metrics, -e.metrics.get(metric, 0.0), e.repo_id))


def leaderboard(entries: list[Entry], sort: str = "rho2", *, link: bool = False) -> str:
    """A Markdown table of ``entries``, best first by ``sort``; ``link`` makes repo ids Hub links."""
    entries = sort_entries(entries, sort)
    columns = ["clean_accuracy", "rho2"]
    columns += sorted({m for e in entries for m in e.metrics if "@" in m}, key=_column_order)
    header = "| # | model | architecture | dataset | " + " | ".join(columns) + " |\n"
    header += "|---|---|---|---|" + "---|" * len(columns) + "\n"
    rows = []
    for rank, e in enumerate(entries, 1):
        name = f"[{e.repo_id}](https://huggingface.co/{e.repo_id})" if link else e.repo_id
        values = [_format(c, e.metrics.get(c)) for c in columns]
        rows.append(f"| {rank} | {name} | {e.architecture} | {e.dataset} | " + " | ".join(values) + " |")
    return header + "\n".join(rows) + ("\n" if rows else "")


def _column_order(metric: str) -> tuple:
    """fgs before pgd; per attack the eps_ref fractions first, then absolute epsilons, each ascending."""
    attack, _, where = metric.partition("@")
    return (attack != "fgs", attack, not where.endswith("eps_ref"), float(where.removesuffix("eps_ref")))


def _format(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if metric == "rho2" else f"{value:.2%}"


def add_card(model_dir: str | Path, cards_dir: str | Path, repo_id: str) -> Path:
    """Write a published model's card (rendered for ``repo_id``) and its curve into ``cards_dir/<name>/``."""
    model_dir, target = Path(model_dir), Path(cards_dir) / repo_id.split("/")[-1]
    files = card_files(model_dir, repo_id)
    target.mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        if name == CARD_NAME:
            write_bytes_atomic(target / name, source)
        elif name.endswith(".png"):
            copy_atomic(source, target / name)
    return target


def write_index(cards_dir: str | Path, sort: str = "rho2") -> Path:
    """Regenerate ``cards_dir/index.md``: the leaderboard of every ``cards_dir/*/README.md``."""
    from huggingface_hub import ModelCard

    cards_dir = Path(cards_dir)
    if not cards_dir.is_dir():
        raise DDHubError(f"{cards_dir} is not a directory")
    entries = []
    for card_path in sorted(cards_dir.glob(f"*/{CARD_NAME}")):
        entries.append(entry_from_card(None, ModelCard.load(card_path).data))
    table = leaderboard(entries, sort, link=True) if entries else "No checkpoints published yet.\n"
    text = f"""# dd-hub model cards

Checkpoints this project publishes, hardened with Deep Defense. Regenerated by `dd-hub cards` from the cards in the
sub-directories; do not edit by hand. Sorted by `{sort}` (higher is better). Accuracies are fractions of the test
split under the attack named in each column (fgs, pgd; [0, 1] pixel space; `fgs@0.5eps_ref` is at half the model's
epsilon_ref, `fgs@0.1` at epsilon 0.1); rho2 is the mean DeepFool L2 ratio. Each card states the norms, settings and
number of examples.

{table}"""
    index = cards_dir / "index.md"
    write_text_atomic(index, text)
    return index
