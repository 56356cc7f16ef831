"""Verification records at the scale of the boards: each verifier's *record index*, so that a board of 10,000 models
learns which figures are verified without one request per model.

``dd-hub verify --publish`` opens a pull request with its record on the model's repo (the record a reader of that
one model sees) and also adds it to ``<account>/dd-hub-verifications`` (:data:`INDEX_REPO`), a repo of the
verifier's own, tagged :data:`INDEX_TAG`, whose card's front matter holds the account's records
(:data:`RECORDS_KEY`, the newest :data:`MAX_INDEX_RECORDS`). Only that account can write there (the Hub enforces its
namespace), so the index says who measured as surely as a pull request's author does, and the model's owner cannot
close or hide it.

The Hub's listing returns every card's front matter (``cardData``), so a board reads every index in one listing
request per :data:`INDEX_PAGE` verifiers, whatever the number of models: the trusted accounts' records always, the
others' (at most :data:`MAX_UNTRUSTED_INDEXES` indexes) shown as "re-measured", never counted (should the listing be
cut, by thousands of index repos or a page too large, each trusted account's index is asked for by its author: no
one can hide a trusted record, or a dispute, by publishing indexes); then one request per
namespace of a model that has records (who can write to that model: its owners' records do not count). A trusted
account is the operator's choice: an organisation on the list vouches for the records of all its members. The
verdicts are then :func:`dd_hub.hub.verification.figure_status`'s, recomputed from each record's numbers.
"""
from __future__ import annotations

import json

from ..errors import DDHubError
from ..text import one_line
from .cards import FRONT_MATTER, Card, InvalidCard, check_metadata_limits, load_yaml
from .client import MAX_PAGES, HubReader
from .verification import InvalidRecord, Verification, parse_record, repo_writers

INDEX_REPO = "dd-hub-verifications"
INDEX_TAG = "dd-hub-verification-index"
RECORDS_KEY = "dd_hub_verifications"
#: records an index keeps (the newest): within a card's limits (512 KiB, 20,000 YAML nodes)
MAX_INDEX_RECORDS = 300
#: indexes per listing page (each up to a card's 512 KiB, within a listing page's byte cap)
INDEX_PAGE = 50
#: indexes of accounts not on the trusted list used per board: shown, never counted
MAX_UNTRUSTED_INDEXES = 20


def index_repo(account: str) -> str:
    return f"{account}/{INDEX_REPO}"


def index_records(metadata: object, account: str) -> list[Verification]:
    """The records of ``account``'s index (its card's parsed front matter), oldest first, each checked like a
    record of a pull request, with ``account`` and an ``order`` (its day, then its place in the index); records that
    break the format are skipped."""
    entries = metadata.get(RECORDS_KEY) if isinstance(metadata, dict) else None
    if not isinstance(entries, list):
        raise InvalidRecord("it holds no dd-hub verification records")
    records = []
    for position, entry in enumerate(entries[-MAX_INDEX_RECORDS:]):
        try:
            record = parse_record(json.dumps(entry), f"{index_repo(account)} record {position + 1}")
        except (InvalidRecord, TypeError, ValueError):
            continue
        day = "".join(c for c in record.date[:10] if c.isdigit())
        record.account = account
        record.order = int(day) * 1000 + position if len(day) == 8 else position
        records.append(record)
    return records


def index_card(records: list[dict], account: str) -> str:
    """The README of ``account``'s index holding ``records`` (each a record's JSON object; the newest
    :data:`MAX_INDEX_RECORDS` are kept)."""
    import yaml

    front = yaml.safe_dump({"tags": [INDEX_TAG], RECORDS_KEY: records[-MAX_INDEX_RECORDS:]}, sort_keys=True,
                           allow_unicode=False, width=1000)
    return (f"---\n{front}---\n\n# dd-hub verification records of {account}\n\nEvery record `dd-hub verify "
            f"--publish` published from this account (the newest {MAX_INDEX_RECORDS}), in this card's front matter; "
            "boards read it to show which figures this account re-measured.\n")


def attach_index_records(reader: HubReader, cards: list[Card], trusted: frozenset[str]) -> list[str]:
    """Attach to each card (from the Hub) the records of the verifiers' indexes that concern it and count (module
    docstring); returns one-line notices. A card whose owners the Hub does not state gets no record and is marked
    incomplete (never shown verified)."""
    by_repo = {card.repo_id.lower(): card for card in cards if card.repo_id}
    folded_trusted = {name.lower(): name for name in trusted}
    notices: list[str] = []
    found: dict[str, list[Verification]] = {}
    read: set[str] = set()
    untrusted = 0

    def use(item: object) -> None:
        nonlocal untrusted
        repo_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(repo_id, str) or repo_id.count("/") != 1 or repo_id.split("/")[1] != INDEX_REPO:
            return
        account = repo_id.split("/")[0]
        if account.lower() in read:
            return
        if account.lower() not in folded_trusted:
            if untrusted >= MAX_UNTRUSTED_INDEXES:
                return
            untrusted += 1
        read.add(account.lower())
        try:
            check_metadata_limits(item.get("cardData"))
            records = index_records(item.get("cardData"), account)
        except (InvalidRecord, InvalidCard) as exc:
            notices.append(f"{repo_id}: not used, {one_line(exc)}")
            return
        for record in records:
            if record.repo_id and record.repo_id.lower() in by_repo:
                found.setdefault(record.repo_id.lower(), []).append(record)

    params = {"filter": INDEX_TAG, "limit": str(INDEX_PAGE), "expand": ["author", "cardData"]}
    seen = 0
    try:
        for item in reader.pages("api/models", params=params, limit=INDEX_PAGE * MAX_PAGES,
                                 what="cannot list the verification indexes on the Hub"):
            seen += 1
            use(item)
    except DDHubError as exc:      # a listing too large or broken: the trusted indexes are asked for one by one
        if reader.budget.remaining() <= 0:
            raise
        notices.append(f"the verification indexes could not be listed ({one_line(exc, 200)}); only trusted "
                       "verifiers' are read")
        seen = INDEX_PAGE * MAX_PAGES
    if seen >= INDEX_PAGE * MAX_PAGES:   # the listing may have been cut (thousands of index repos): never lose a
        for key, account in sorted(folded_trusted.items()):    # trusted verifier's records, and so its disputes
            if key not in read:
                try:
                    for item in reader.pages("api/models", params={**params, "author": account}, limit=INDEX_PAGE,
                                             what=f"cannot read the record index of {account}"):
                        use(item)
                except DDHubError as exc:
                    if reader.budget.remaining() <= 0:
                        raise
                    notices.append(f"{index_repo(account)}: not read ({one_line(exc, 200)}): no figure shown "
                                   "verified")
                    for card in cards:
                        card.verification_complete = False
    for key, records in found.items():
        card = by_repo[key]
        writers = repo_writers(reader, card.repo_id.split("/")[0], exists=True)
        if writers is None:
            card.verification_complete = False
            notices.append(f"{card.repo_id}: the Hub does not say who can write to it: no verification record used")
            continue
        folded = {w.lower() for w in writers}
        card.verifications = sorted([r for r in records if r.account.lower() not in folded], key=lambda r: r.order)
    return notices


def publish_record(record: Verification, token: str | None, budget) -> str:
    """Add ``record`` to its verifier's index on the Hub (creating the repo the first time); returns the index's
    repo id. The account is the token's, which is the record's (``verified_by``)."""
    from huggingface_hub import CommitOperationAdd

    from ..names import CARD_NAME
    from .cards import MAX_CARD_BYTES
    from .client import hub_api, hub_call

    repo_id = index_repo(record.verified_by)
    api = hub_api(token)
    hub_call(f"cannot create {repo_id}", lambda: api.create_repo(repo_id, exist_ok=True), repo_id, budget)
    current = HubReader(token, budget).file(repo_id, CARD_NAME, max_bytes=MAX_CARD_BYTES,
                                            what=f"cannot read {repo_id}")
    records: list = []
    match = FRONT_MATTER.match(current.decode("utf-8", errors="replace")) if current else None
    if match is not None:
        try:
            data = load_yaml(match.group(1))
            records = list(data.get(RECORDS_KEY) or []) if isinstance(data, dict) else []
        except InvalidCard:
            raise DDHubError(f"{repo_id}'s card cannot be read; fix or delete it, then publish again") from None
    records.append(json.loads(record.to_json()))
    operation = CommitOperationAdd(path_in_repo=CARD_NAME,
                                   path_or_fileobj=index_card(records, record.verified_by).encode())
    hub_call(f"cannot update {repo_id}", lambda: api.create_commit(
        repo_id, operations=[operation], commit_message=f"record for {record.repo_id}"), repo_id, budget,
        transfer=True)
    return repo_id
