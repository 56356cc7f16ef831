"""Verification records: figures of a card re-measured by dd-hub from the published weights, and who did it.

A card's figures are its publisher's claims (*self-reported*). ``dd-hub verify`` downloads the weights, re-runs the
protocol the checkpoint's metrics.json records and writes a record (:data:`RECORD_NAME`, JSON) with, per figure,
the card's value, the measured one, the tolerance and whether they agree. A record is published as a pull request
on the model's repo (its author is the Hub account that opened it, which the Hub states and the record cannot
forge); beside a local card it is a file in the card's folder.

What the boards trust (docs/hub.md): a Hub record counts when the account that opened its pull request is not the
repo's owner (an independent re-measurement), the record names that account and the repo, and it was made on the
repo's current commit; a local record counts as what it is, a file its folder's owner put there. A figure is
*verified* when a record that counts agrees with it, *disputed* when one disagrees, else *self-reported*.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..settings import is_finite_number
from ..storage.atomic_io import read_text_limited
from ..text import one_line
from .cards import Card, Figure
from .client import HubReader

RECORD_NAME = "dd-hub-verification.json"
RECORD_VERSION = 1
PR_TITLE = "dd-hub verification"
MAX_RECORD_BYTES = 256 << 10
MAX_PULL_REQUESTS = 20


class InvalidRecord(ValueError):
    """A verification record that breaks the format; its message is one line."""


@dataclass
class Verification:
    """One re-measurement of a card's figures."""

    verified_by: str
    date: str
    dd_hub_version: str
    repo_id: str | None                      # None for a local folder
    revision: str | None                     # the repo commit that was measured
    tolerance: float                         # the absolute tolerance on accuracies it was judged with
    n_examples: dict[str, int] = field(default_factory=dict)   # figure -> images it was re-measured on
    figures: dict[str, dict] = field(default_factory=dict)     # figure -> {card, measured, margin, agrees}
    settings: dict = field(default_factory=dict)               # the evaluation settings that were run
    source: str = ""                         # where the record was read from (not saved)

    def to_json(self) -> str:
        body = {"dd_hub_verification": RECORD_VERSION, **asdict(self)}
        body.pop("source")
        return json.dumps(body, indent=2, sort_keys=True, allow_nan=False) + "\n"


def parse_record(text: str, source: str = "") -> Verification:
    """A :class:`Verification` from JSON text, or :class:`InvalidRecord`."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRecord(f"not JSON ({one_line(exc, 80)})") from None
    if not isinstance(data, dict) or data.get("dd_hub_verification") != RECORD_VERSION:
        raise InvalidRecord("not a dd-hub verification record (version 1)")

    def text_field(key: str, optional: bool = False) -> str | None:
        value = data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise InvalidRecord(f"'{key}' must be a non-empty string")
        return one_line(value, 200)

    tolerance = data.get("tolerance")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance <= 1:
        raise InvalidRecord("'tolerance' must be a number in [0, 1]")
    figures = data.get("figures")
    if not isinstance(figures, dict) or not figures or len(figures) > 200:
        raise InvalidRecord("'figures' must be a mapping of 1 to 200 figures")
    checked = {}
    for key, entry in figures.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("agrees"), bool) or not all(
                is_finite_number(entry.get(k)) for k in ("card", "measured", "margin")):
            raise InvalidRecord(f"figure {one_line(key, 60)!r} must have finite card, measured, margin and agrees")
        checked[one_line(key, 80)] = {k: entry[k] for k in ("card", "measured", "margin", "agrees")}
    n_examples = data.get("n_examples") or {}
    if not isinstance(n_examples, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                   for v in n_examples.values()):
        raise InvalidRecord("'n_examples' must map figures to positive whole numbers")
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    return Verification(verified_by=text_field("verified_by"), date=text_field("date"),
                        dd_hub_version=text_field("dd_hub_version"), repo_id=text_field("repo_id", optional=True),
                        revision=text_field("revision", optional=True), tolerance=float(tolerance),
                        n_examples={one_line(k, 80): v for k, v in n_examples.items()}, figures=checked,
                        settings=settings, source=source)


def figure_status(card: Card, figure: Figure) -> tuple[str, str]:
    """``('verified' | 'disputed' | 'self-reported', who)`` of one figure of a card (module docstring); a record
    only speaks for the value it re-measured: one made for another value of the card (an older card) is ignored."""
    verified_by, disputed_by = [], []
    for record in card.verifications:
        entry = record.figures.get(figure.key)
        if entry is None or abs(entry["card"] - figure.value) > 1e-9:
            continue
        (verified_by if entry["agrees"] else disputed_by).append(record.verified_by)
    if disputed_by:
        return "disputed", ", ".join(sorted(set(disputed_by)))
    if verified_by:
        return "verified", ", ".join(sorted(set(verified_by)))
    return "self-reported", ""


def local_verifications(folder: Path, card: Card) -> tuple[list[Verification], list[str]]:
    """The record beside a local card (if any), and a one-line problem when it cannot be used."""
    path = folder / RECORD_NAME
    if not path.is_file():
        return [], []
    try:
        if path.is_symlink():
            raise InvalidRecord("it is a link")
        return [parse_record(read_text_limited(path, MAX_RECORD_BYTES), str(path))], []
    except (InvalidRecord, ValueError, OSError) as exc:
        return [], [f"verification record not used: {one_line(exc)}"]


def hub_verifications(reader: HubReader, card: Card) -> tuple[list[Verification], list[str]]:
    """The records of the repo's dd-hub verification pull requests that count (module docstring), with one-line
    problems for those that do not."""
    from urllib.parse import quote

    repo_id = card.repo_id
    owner = repo_id.split("/")[0]
    response = reader.get(f"api/models/{quote(repo_id)}/discussions", params={"type": "pull_request"},
                          what=f"cannot list the pull requests of {repo_id}")
    if response.status >= 400:
        return [], []
    listing = response.json()
    discussions = listing.get("discussions") if isinstance(listing, dict) else None
    records, problems = [], []
    for item in (discussions or [])[:MAX_PULL_REQUESTS]:
        if not isinstance(item, dict) or not str(item.get("title", "")).startswith(PR_TITLE):
            continue
        num, author = item.get("num"), (item.get("author") or {}).get("name") if isinstance(item.get("author"),
                                                                                           dict) else None
        if not isinstance(num, int) or not isinstance(author, str) or item.get("status") not in ("open", "merged"):
            continue
        if author == owner:
            continue  # the publisher re-measuring its own claims is no independent verification
        data = reader.file(repo_id, RECORD_NAME, revision=f"refs/pr/{num}", max_bytes=MAX_RECORD_BYTES)
        try:
            if data is None:
                raise InvalidRecord("the pull request holds no record")
            record = parse_record(data.decode("utf-8", errors="replace"), f"{repo_id} pull request #{num}")
            if record.verified_by != author or record.repo_id != repo_id:
                raise InvalidRecord(f"it names {record.verified_by} and {record.repo_id}, but was opened by "
                                    f"{one_line(author, 60)} on {repo_id}")
            if card.revision is not None and record.revision != card.revision:
                raise InvalidRecord("it measured another commit of the repo than the current one")
        except InvalidRecord as exc:
            problems.append(f"verification in pull request #{num} not used: {one_line(exc)}")
            continue
        records.append(record)
    return records, problems
