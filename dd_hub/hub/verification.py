"""Verification records: a card's figures re-measured from the published weights, who did it, and what a board
may conclude from them. Pure and cheap (no torch, no request) except :func:`hub_verifications`.

A card's figures are its publisher's claims (*self-reported*). ``dd-hub verify`` downloads the weights, re-runs the
protocol the checkpoint's metrics.json records and writes a record (:data:`RECORD_NAME`, JSON, format
:data:`RECORD_VERSION`): per figure, the *threat model's identity* it measured (:func:`figure_identity`: kind,
attack, dataset, norm, eps on the dataset's grid, attack version), the card's value, the measured value and the
number of images the verifier measured on; the sha256 of the weights it measured and a digest of the protocol.

Readers never trust what a record concludes, only its numbers: a figure is matched to a measurement by identity,
never by a name, and the verdict is recomputed with :func:`judge` (the verifier's own image count, at least
:data:`MIN_EXAMPLES`; a tolerance at most :data:`MAX_TOLERANCE`, widened by the sampling error of a smaller
sample, never beyond :data:`MAX_MARGIN`). The name a record gives (``verified_by``) is free text and never trusted.

Who counts (docs/hub.md): a Hub record is published as a pull request; the account that opened it is the one the
Hub states. It counts only when that account cannot write to the repo (not the owner, not a member of the owning
organisation, as the Hub reports them), and ranks a figure *verified* only when the board's operator trusts it
(``--trusted-verifiers``) and it measured the repo's current commit. Records of other accounts are shown as what
they are: "re-measured by X, not on the trusted list". A trusted record that disagrees makes the figure *disputed*
until a newer trusted record on the current commit agrees (every pull request is read, closed ones too). A local
record is a file its folder's owner put there: re-checked against the folder's weights and protocol when the folder
holds them, else shown unchecked; it never makes a figure verified.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DDHubError
from ..settings import is_finite_number
from ..storage.atomic_io import read_text_limited
from ..text import one_line
from .cards import MIN_AUTOATTACK_EXAMPLES, Card, Figure
from .client import HubReader

RECORD_NAME = "dd-hub-verification.json"
RECORD_VERSION = 2
PR_TITLE = "dd-hub verification"
MAX_RECORD_BYTES = 256 << 10
#: the tolerance on accuracies a verifier may ask for (fractions); readers cap what a record states at this
MAX_TOLERANCE = 0.05
DEFAULT_TOLERANCE = 0.02
#: rho_2 is compared relatively, at this fraction of the card's value
RHO_TOLERANCE = 0.05
#: no verdict (neither verified nor disputed) from fewer images: the boards' own minimum
MIN_EXAMPLES = MIN_AUTOATTACK_EXAMPLES
#: the widest margin any verdict on an accuracy may have, whatever the sample
MAX_MARGIN = 0.10
#: pull-request pages (50 each on the Hub) read per repo; a repo with more is never shown verified
MAX_DISCUSSION_PAGES = 20
#: records of accounts not on the trusted list fetched per repo (the newest): shown, never counted
MAX_UNTRUSTED_RECORDS = 3
MAX_MEMBER_PAGES = 20

VERIFIED, DISPUTED, RE_MEASURED, SELF_REPORTED = "verified", "disputed", "re-measured", "self-reported"


class InvalidRecord(ValueError):
    """A verification record that breaks the format; its message is one line."""


# --- identities and verdicts (pure) -------------------------------------------------------------------------------
def canonical_dataset(name: object) -> str:
    return one_line(name, 80).strip().lower() or "?"


def canonical_eps(eps: float) -> float:
    """``eps`` on the grid boards are keyed by: a multiple of 1/255 (the 8-bit pixel grid) within float noise is
    that multiple exactly (8/255 written any way), anything else is rounded to 6 significant digits (0.3000000001
    is 0.3), so that two budgets share a board exactly when they print the same."""
    k = round(eps * 255)
    if k > 0 and abs(eps * 255 - k) < 1e-6 * max(1, k):
        return k / 255
    return float(f"{eps:.6g}")


def card_dataset(card: Card, figure: Figure) -> str:
    """The dataset a board places ``figure`` under (the card's ``dd_hub.dataset``, else its model-index entry)."""
    return canonical_dataset(card.info.get("dataset") or figure.dataset)


def figure_identity(figure: Figure, dataset: str) -> str | None:
    """What a figure measures, as one string: kind, attack, dataset, norm, eps on the grid, and the attack's
    version and budget. Two figures are compared only when their identities are equal; None for a figure whose
    threat model is not stated well enough to be re-measured."""
    args = figure.args
    ds = canonical_dataset(dataset)

    def number(key: str):
        value = args.get(key)
        return value if is_finite_number(value) else None

    if figure.kind == "accuracy":
        parts = ["accuracy", ds]
    elif figure.kind == "rho2":
        parts = ["rho2", ds, one_line(args.get("space", "?"), 20), number("steps")]
    else:
        attack = one_line(args.get("attack", ""), 20).lower()
        norm = one_line(args.get("norm", ""), 10).lower()
        if norm not in ("linf", "l2") or attack not in ("autoattack", "fgs", "pgd"):
            return None
        if attack == "autoattack":
            version = one_line(args.get("version") or args.get("implementation") or "", 20).lower()
            attacks = args.get("attacks") if version == "custom" and isinstance(args.get("attacks"), list) else []
            parts = [attack, ds, norm, canonical_eps(args["eps"]), version, ",".join(sorted(map(str, attacks)))]
        elif number("fraction") is not None:
            parts = [attack, ds, norm, "eps_ref", f"{args['fraction']:g}", number("steps"), number("restarts")]
        elif number("eps") is not None and args["eps"] > 0:
            parts = [attack, ds, norm, canonical_eps(args["eps"]), number("steps"), number("restarts")]
        else:
            return None
    return "|".join("" if p is None else (f"{p:.10g}" if isinstance(p, float) else str(p)) for p in parts)


def judge(kind: str, card: float, measured: float, n: int, card_n: int | None = None,
          tolerance: float = DEFAULT_TOLERANCE) -> tuple[str, float | None]:
    """``(verdict, margin)`` of one re-measured figure, from its numbers only: ``'agrees'`` or ``'disagrees'``,
    or ``'too few images'`` (fewer than :data:`MIN_EXAMPLES`: no verdict at all). Accuracies: ``tolerance`` (at
    most :data:`MAX_TOLERANCE`), widened by two standard errors of the verifier's own sample when it measured
    fewer images than the card states (or the card states none), at most :data:`MAX_MARGIN`; rho_2: a relative
    :data:`RHO_TOLERANCE`."""
    if not isinstance(n, int) or n < MIN_EXAMPLES:
        return "too few images", None
    if kind == "rho2":
        margin = RHO_TOLERANCE * abs(card)
    else:
        margin = min(max(tolerance, 0.0), MAX_TOLERANCE)
        if not isinstance(card_n, int) or n < card_n:
            p = min(max(measured, 0.0), 1.0)
            margin += 2 * math.sqrt(max(p * (1 - p), 1 / n) / n)
        margin = min(margin, MAX_MARGIN)
    return ("agrees" if abs(measured - card) <= margin + 1e-12 else "disagrees"), margin


def entry_verdict(entry: dict, tolerance: float) -> tuple[str, float | None]:
    """:func:`judge` of one record entry (its numbers, never its stated verdict)."""
    return judge(entry["kind"], entry["card"], entry["measured"], entry["n_examples"], entry.get("card_n_examples"),
                 tolerance)


def protocol_digest(metrics: dict) -> str:
    """sha256 of what a re-measurement re-runs from metrics.json: the dataset, the evaluation settings, the rho
    space, the training images a centered rho is measured around, and a given epsilon_ref."""
    recipe, hardened = metrics.get("recipe") or {}, metrics.get("hardened") or {}
    body = {"dataset": recipe.get("dataset"), "evaluation": recipe.get("evaluation"),
            "rho_space": recipe.get("rho_space"), "max_train_examples": recipe.get("max_train_examples"),
            "eps_ref": hardened.get("eps_ref") if hardened.get("eps_ref_source") == "given" else None}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


# --- records -------------------------------------------------------------------------------------------------------
@dataclass
class Verification:
    """One re-measurement of a card's figures (what is saved), and, once read, where it came from (not saved)."""

    verified_by: str                         # free text: the verifier's account as it says; never trusted
    date: str
    dd_hub_version: str
    repo_id: str | None                      # None for a local folder
    revision: str | None                     # the repo commit that was measured
    tolerance: float                         # the absolute tolerance on accuracies the verifier asked for
    weights_sha256: str                      # of the weights that were measured
    protocol: str                            # protocol_digest of the metrics.json that was re-run
    figures: dict[str, dict] = field(default_factory=dict)     # identity -> {kind, card, card_n_examples, ...}
    settings: dict = field(default_factory=dict)               # the evaluation settings that were run
    source: str = field(default="", compare=False)             # where it was read from
    account: str | None = field(default=None, compare=False)   # the Hub account that opened its pull request
    order: int = field(default=0, compare=False)               # its pull request's number (newer is larger)
    checked: bool | None = field(default=None, compare=False)  # local: matches the folder's weights and protocol

    def to_json(self) -> str:
        body = {"dd_hub_verification": RECORD_VERSION, **asdict(self)}
        for key in ("source", "account", "order", "checked"):
            body.pop(key)
        return json.dumps(body, indent=2, sort_keys=True, allow_nan=False) + "\n"


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_record(text: str, source: str = "") -> Verification:
    """A :class:`Verification` from JSON text, or :class:`InvalidRecord`. Every entry's identity is kept as it
    names the threat model measured; conclusions a record states (``agrees``, ``margin``) are ignored."""
    if len(text) > MAX_RECORD_BYTES:
        raise InvalidRecord(f"it is larger than {MAX_RECORD_BYTES:,} characters")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRecord(f"not JSON ({one_line(exc, 80)})") from None
    if not isinstance(data, dict) or data.get("dd_hub_verification") != RECORD_VERSION:
        raise InvalidRecord(f"not a dd-hub verification record of version {RECORD_VERSION} (older records matched "
                            "figures by name: verify again)")

    def text_field(key: str, optional: bool = False, limit: int = 200) -> str | None:
        value = data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise InvalidRecord(f"'{key}' must be a non-empty string")
        return one_line(value, limit)

    tolerance = data.get("tolerance")
    if not is_finite_number(tolerance) or not 0 <= tolerance <= 1:
        raise InvalidRecord("'tolerance' must be a number in [0, 1]")
    weights = data.get("weights_sha256")
    if not isinstance(weights, str) or len(weights) != 64 or any(c not in "0123456789abcdef" for c in weights):
        raise InvalidRecord("'weights_sha256' must be a sha256 in hex")
    figures = data.get("figures")
    if not isinstance(figures, dict) or not figures or len(figures) > 200:
        raise InvalidRecord("'figures' must be a mapping of 1 to 200 figures")
    checked = {}
    for key, entry in figures.items():
        name = one_line(key, 60)
        if not isinstance(entry, dict) or entry.get("kind") not in ("accuracy", "robust_accuracy", "rho2") or not all(
                is_finite_number(entry.get(k)) for k in ("card", "measured")):
            raise InvalidRecord(f"figure {name!r} must have a kind and finite card and measured values")
        high = 100.0 if entry["kind"] == "rho2" else 1.0
        if not all(0 <= entry[k] <= high for k in ("card", "measured")):
            raise InvalidRecord(f"figure {name!r}: values out of range")
        if not _whole(entry.get("n_examples")) or not 1 <= entry["n_examples"] <= 10_000_000:
            raise InvalidRecord(f"figure {name!r} must state the images it was measured on (n_examples)")
        card_n = entry.get("card_n_examples")
        if not isinstance(key, str) or len(key) > 300:
            raise InvalidRecord(f"figure {name!r}: its identity is too long")
        stem = key.split("|", 1)[0]
        if entry["kind"] != {"accuracy": "accuracy", "rho2": "rho2"}.get(stem, "robust_accuracy"):
            raise InvalidRecord(f"figure {name!r}: its kind is not the one its identity names")
        checked[one_line(key, 300)] = {"kind": entry["kind"], "card": float(entry["card"]),
                                       "measured": float(entry["measured"]), "n_examples": entry["n_examples"],
                                       "card_n_examples": card_n if _whole(card_n) and card_n > 0 else None}
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    return Verification(verified_by=text_field("verified_by", limit=100), date=text_field("date", limit=40),
                        dd_hub_version=text_field("dd_hub_version", limit=40),
                        repo_id=text_field("repo_id", optional=True), revision=text_field("revision", optional=True),
                        tolerance=float(tolerance), weights_sha256=weights,
                        protocol=text_field("protocol", limit=64), figures=checked,
                        settings={k: v for k, v in list(settings.items())[:20] if isinstance(k, str)}, source=source)


# --- what a board shows -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FigureStatus:
    """A figure's status on a board: ``status`` (verified, disputed, re-measured, self-reported), ``by`` (the
    accounts behind it) and ``text`` (one line for a reader)."""

    status: str
    by: str = ""
    text: str = SELF_REPORTED


def figure_status(card: Card, figure: Figure, trusted: frozenset[str] | set[str] | None = None) -> FigureStatus:
    """The status of one figure of ``card`` from the records attached to it (module docstring); ``trusted`` are
    the accounts whose records rank as verified (default: the card's ``trusted``, set by the collection)."""
    trusted = frozenset(trusted if trusted is not None else getattr(card, "trusted", frozenset()))
    identity = figure_identity(figure, card_dataset(card, figure))
    if identity is None:
        return FigureStatus(SELF_REPORTED, "", "self-reported (its threat model is not stated fully)")
    counted, shown = [], []
    for record in card.verifications:
        entry = record.figures.get(identity)
        if entry is None:
            continue
        verdict, _ = entry_verdict(entry, record.tolerance)
        if verdict == "too few images":
            continue
        if record.account is not None and record.account in trusted:
            counted.append((record, entry, verdict))
        else:
            shown.append((record, entry, verdict))
    current = [(r, v) for r, e, v in counted if v == "agrees" and r.revision is not None
               and r.revision == card.revision and abs(e["card"] - figure.value) <= 1e-9]
    settled_at = max((r.order for r, _ in current), default=-1)
    disputes = [r for r, _, v in counted if v == "disagrees" and r.order >= settled_at]
    if disputes:
        who = ", ".join(sorted({r.account for r in disputes}))
        return FigureStatus(DISPUTED, who, f"disputed by {who}")
    if current and getattr(card, "verification_complete", True):
        who = ", ".join(sorted({r.account for r, _ in current}))
        return FigureStatus(VERIFIED, who, f"verified by {who}")
    stale = [(r, e, v) for r, e, v in counted if (r, v) not in current]
    if shown or stale:
        parts = []
        for record, entry, verdict in stale[-2:] + shown[-3:]:
            old = "" if record.revision == card.revision and abs(entry["card"] - figure.value) <= 1e-9 \
                else ", for an older commit or value"
            if record.account is None:
                state = "checked against the folder's weights" if record.checked else "unchecked"
                parts.append(f"a local record ({state}) says it {verdict}")
            elif record.account in trusted:
                parts.append(f"re-measured by {record.account} ({verdict}{old})")
            else:
                parts.append(f"re-measured by {record.account} ({verdict}{old}), not on the trusted list")
        return FigureStatus(RE_MEASURED, "", "; ".join(parts))
    return FigureStatus(SELF_REPORTED, "", SELF_REPORTED)


def counted_weights(card: Card) -> str | None:
    """The sha256 of the weights a trusted, non-owner record measured on the card's current commit (what tells two
    cards' weights apart when their publisher would rather it did not), or None."""
    trusted = getattr(card, "trusted", frozenset())
    for record in reversed(card.verifications):
        if record.account is not None and record.account in trusted and record.revision is not None \
                and record.revision == card.revision:
            return record.weights_sha256
    return None


# --- reading records ----------------------------------------------------------------------------------------------
def local_verifications(folder: Path, card: Card | None = None) -> tuple[list[Verification], list[str]]:
    """The record beside a local card (if any), re-checked against the folder's weights and protocol when the
    folder holds a sealed metrics.json (else unchecked), and a one-line problem when it cannot be used."""
    path = folder / RECORD_NAME
    if not path.is_file() and not path.is_symlink():
        return [], []
    try:
        if path.is_symlink():
            raise InvalidRecord("it is a link")
        record = parse_record(read_text_limited(path, MAX_RECORD_BYTES), str(path))
        record.checked = record_matches_folder(record, folder)
        if record.checked is False:
            raise InvalidRecord("it measured other weights or another protocol than this folder's")
        return [record], []
    except (InvalidRecord, ValueError, OSError) as exc:
        return [], [f"verification record not used: {one_line(exc)}"]


def record_matches_folder(record: Verification, folder: Path) -> bool | None:
    """Whether ``record`` measured the weights and protocol of the model folder ``folder`` (None when the folder
    holds no sealed metrics.json and weights to check against)."""
    from ..names import METRICS_NAME, WEIGHTS_NAME
    from ..storage.metrics import read_metrics

    if not (folder / METRICS_NAME).is_file():
        return None
    try:
        metrics = read_metrics(folder)
    except DDHubError:
        return False
    files = metrics.get("files") or {}
    if WEIGHTS_NAME not in files:
        return None
    return files[WEIGHTS_NAME] == record.weights_sha256 and protocol_digest(metrics) == record.protocol


def repo_writers(reader: HubReader, namespace: str, *, exists: bool = False) -> frozenset[str] | None:
    """The accounts that can write to repos under ``namespace`` as the Hub reports them: the user itself, or the
    members of the organisation (``GET /api/organizations/{org}/members``); None when the Hub does not say.
    ``exists``: the namespace is known to hold a repo (the listing showed one), so one that is no organisation is a
    user, without asking the Hub."""
    from urllib.parse import quote

    memo = reader.memo.setdefault("writers", {})
    key = namespace.lower()
    if key in memo:
        return memo[key]
    what = f"cannot list the members of {namespace}"
    writers: frozenset[str] | None
    try:
        response = reader.get(f"api/organizations/{quote(namespace)}/members", what=what)
        if response.status == 404 and exists:
            writers = frozenset({namespace})
        elif response.status == 404:
            user = reader.get(f"api/users/{quote(namespace)}/overview", what=f"cannot look up {namespace}")
            writers = frozenset({namespace}) if user.status == 200 else None
        elif response.status == 200:
            members = {namespace}
            for item in _follow(reader, response, what):     # at most MAX_MEMBER_PAGES pages
                name = item.get("user") if isinstance(item, dict) else None
                if isinstance(name, str):
                    members.add(name)
            writers = frozenset(members)
        else:
            writers = None
    except (InvalidRecord, DDHubError):
        if reader.budget.remaining() <= 0:
            raise
        writers = None
    memo[key] = writers
    return writers


def _follow(reader: HubReader, first, what: str):
    """The items of a list answer and of its ``Link: next`` pages (on the Hub's origin, each once)."""
    from urllib.parse import urljoin

    response, seen = first, set()
    for _ in range(MAX_MEMBER_PAGES):
        items = response.json()
        if not isinstance(items, list):
            raise InvalidRecord("the Hub's list is not a list")
        yield from items
        seen.add(response.url)
        url = response.next_page()
        if url is None:
            return
        url = urljoin(response.url, url)
        if url in seen:
            return
        response = reader.get(url, what=what)
        if response.status != 200:
            raise InvalidRecord(f"the Hub answered {response.status}")
    raise InvalidRecord("too many pages")


def pull_requests(reader: HubReader, repo_id: str) -> tuple[list[dict], bool]:
    """``([{num, author, status, title}], complete)``: the repo's pull requests, open, merged and closed, newest
    first, read page by page (``?p=N``) up to :data:`MAX_DISCUSSION_PAGES`; ``complete`` is False when there were
    more, or a page could not be read."""
    from urllib.parse import quote

    items: list[dict] = []
    for page in range(MAX_DISCUSSION_PAGES):
        response = reader.get(f"api/models/{quote(repo_id)}/discussions",
                              params={"type": "pull_request", "status": "all", "p": str(page)},
                              what=f"cannot list the pull requests of {repo_id}")
        if response.status >= 400:
            return items, False
        listing = response.json()
        discussions = listing.get("discussions") if isinstance(listing, dict) else None
        if not isinstance(discussions, list):
            return items, False
        for item in discussions:
            if not isinstance(item, dict) or not isinstance(item.get("author"), dict):
                continue
            num, author = item.get("num"), item["author"].get("name")
            if _whole(num) and is_account_name(author):
                items.append({"num": num, "author": author, "status": str(item.get("status", "")),
                              "title": str(item.get("title", ""))[:200]})
        total, start = listing.get("count"), listing.get("start", 0)
        if not discussions or not _whole(total) or not _whole(start) or start + len(discussions) >= total:
            return items, True
    return items, False


def hub_verifications(reader: HubReader, card: Card, trusted: frozenset[str] | set[str] = frozenset()
                      ) -> tuple[list[Verification], list[str]]:
    """The records of the repo's dd-hub verification pull requests that count (module docstring), with one-line
    problems for those that do not. Every trusted account's records are read; of the others only the newest
    :data:`MAX_UNTRUSTED_RECORDS`. Sets ``card.verification_complete`` to False when not every pull request could
    be read (its figures are then never shown verified)."""

    repo_id = card.repo_id
    namespace = repo_id.split("/")[0]
    pulls, complete = pull_requests(reader, repo_id)
    card.verification_complete = complete
    candidates = [p for p in pulls if p["title"].startswith(PR_TITLE)]
    if not candidates:
        return [], ([] if complete else ["not every pull request could be read: no figure shown verified"])
    writers = repo_writers(reader, namespace)
    if writers is None:
        card.verification_complete = False
        return [], [f"the Hub does not say who can write to {namespace}: no verification record used"]
    writers_folded = {w.lower() for w in writers}
    records, problems, untrusted = [], [], 0
    for pull in sorted(candidates, key=lambda p: -p["num"]):
        author = pull["author"]
        if author.lower() in writers_folded:
            continue  # the publisher (or a member of its organisation) re-measuring its own claims
        if author not in trusted:
            if untrusted >= MAX_UNTRUSTED_RECORDS:
                continue
            untrusted += 1
        num = pull["num"]
        try:
            commit = _authors_last_commit(reader, repo_id, num, author)
            data = reader.file(repo_id, RECORD_NAME, revision=commit, max_bytes=MAX_RECORD_BYTES)
            if data is None:
                raise InvalidRecord("the pull request holds no record")
            record = parse_record(data.decode("utf-8", errors="replace"), f"{repo_id} pull request #{num}")
            if record.repo_id is None or record.repo_id.lower() != repo_id.lower():
                raise InvalidRecord(f"it names another repo ({one_line(record.repo_id, 100)})")
        except (InvalidRecord, DDHubError) as exc:
            if reader.budget.remaining() <= 0:
                raise
            problems.append(f"verification in pull request #{num} not used: {one_line(exc)}")
            if author in trusted:
                card.verification_complete = False
            continue
        record.account, record.order = author, num
        records.append(record)
    if not card.verification_complete:
        problems.append("not every pull request could be read: no figure shown verified")
    return sorted(records, key=lambda r: r.order), problems


def _authors_last_commit(reader: HubReader, repo_id: str, num: int, author: str) -> str:
    """The newest commit of pull request ``num`` made by its author alone: the record is read there, because the
    repo's owner can push to a pull request's branch (a record someone else committed is not its author's, and a
    later commit by the owner does not make the author's record go away)."""
    from urllib.parse import quote

    response = reader.get(f"api/models/{quote(repo_id)}/commits/{quote(f'refs/pr/{num}', safe='')}",
                          what=f"cannot list the commits of {repo_id} pull request #{num}")
    commits = response.json() if response.status == 200 else None
    for item in commits[:100] if isinstance(commits, list) else []:
        authors = [a.get("user") for a in item.get("authors") or [] if isinstance(a, dict)] \
            if isinstance(item, dict) else []
        sha = item.get("id") if isinstance(item, dict) else None
        if authors == [author] and isinstance(sha, str) and sha.isalnum() and len(sha) <= 64:
            return sha
    raise InvalidRecord(f"no commit of the pull request is {one_line(author, 60)}'s alone")


def is_account_name(name: object) -> bool:
    """A Hub account name as the Hub allows them (ASCII letters, digits, ``-``, ``_``, ``.``; at most 96): what a
    pull request's author must be before its name is shown or compared."""
    return isinstance(name, str) and 0 < len(name) <= 96 and all(c.isascii() and (c.isalnum() or c in "-_.")
                                                                   for c in name)


def read_trusted_verifiers(path: str | Path | None) -> frozenset[str]:
    """The accounts in a trusted-verifiers file: one Hub account per line, ``#`` comments; empty for None."""

    if path is None:
        return frozenset()
    try:
        text = read_text_limited(Path(path), 1 << 20)
    except (OSError, ValueError) as exc:
        raise DDHubError(f"cannot read the trusted verifiers in {one_line(path, 200)}: {one_line(exc, 200)}") from None
    names = set()
    for number, line in enumerate(text.splitlines(), 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if not is_account_name(name):
            raise DDHubError(f"{one_line(path, 200)} line {number}: {one_line(name, 60)!r} is no Hub account name")
        names.add(name)
    return frozenset(names)


def apply_trust(cards: list[Card], trusted: frozenset[str]) -> None:
    """Let every card's figures be judged with ``trusted`` (:func:`figure_status`)."""
    for card in cards:
        card.trusted = trusted
