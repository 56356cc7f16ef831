"""Verification records at the scale of the boards: each verifier's *record index*, one file per account, so that a
board of 10,000 models learns which figures are verified without one request per model.

``dd-hub verify --publish`` opens a pull request with its record on the model's repo (the record a reader of that
one model sees) and also appends it to ``<account>/dd-hub-verifications`` (:data:`INDEX_REPO`), a repo of the
verifier's own, tagged :data:`INDEX_TAG`, whose :data:`INDEX_FILE` holds every record that account published. Only
that account can write there (the Hub enforces its namespace), so the index says who measured as surely as a pull
request's author does; the model's owner cannot close or hide it.

A board reads the indexes in a fixed number of requests, whatever the number of models: one listing page of the
index repos (:data:`INDEX_TAG`), one download per index (every trusted account's; of the others, the
:data:`MAX_UNTRUSTED_INDEXES` most recently changed, shown as "re-measured", never counted), one or two per trusted
account (that it is a user, not an organisation whose members could write its index) and per namespace of a model
that has records (who can write to that model: its owner's records do not count). The verdicts are then those of
:func:`dd_hub.hub.verification.figure_status`, recomputed from each record's numbers.
"""
from __future__ import annotations

import json

from ..errors import DDHubError
from ..text import one_line
from .cards import Card
from .client import HubReader, MAX_JSON_BYTES
from .verification import InvalidRecord, Verification, parse_record, repo_writers

INDEX_REPO = "dd-hub-verifications"
INDEX_FILE = "index.json"
INDEX_TAG = "dd-hub-verification-index"
INDEX_VERSION = 1
#: indexes of accounts not on the trusted list read per board (the most recently changed): shown, never counted
MAX_UNTRUSTED_INDEXES = 20
#: records one index may hold
MAX_INDEX_RECORDS = 100_000


def index_repo(account: str) -> str:
    return f"{account}/{INDEX_REPO}"


def parse_index(text: str, account: str) -> list[Verification]:
    """The records of ``account``'s index (oldest first), each checked like a record of a pull request, with
    ``account`` and an ``order`` (its day, then its place in the index); records that break the format are
    skipped."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidRecord(f"its index is not JSON ({one_line(exc, 80)})") from None
    entries = data.get("records") if isinstance(data, dict) and data.get("dd_hub_verification_index") == \
        INDEX_VERSION else None
    if not isinstance(entries, list):
        raise InvalidRecord(f"not a dd-hub record index of version {INDEX_VERSION}")
    records = []
    for position, entry in enumerate(entries[:MAX_INDEX_RECORDS]):
        try:
            record = parse_record(json.dumps(entry), f"{index_repo(account)} record {position + 1}")
        except (InvalidRecord, TypeError, ValueError):
            continue
        day = "".join(c for c in record.date[:10] if c.isdigit())
        record.account = account
        record.order = int(day) * MAX_INDEX_RECORDS + position if len(day) == 8 else position
        records.append(record)
    return records


def index_text(records: list[dict]) -> str:
    """The text of an index holding ``records`` (each a record's JSON object)."""
    return json.dumps({"dd_hub_verification_index": INDEX_VERSION, "records": records}, indent=1, sort_keys=True,
                      allow_nan=False) + "\n"


def attach_index_records(reader: HubReader, cards: list[Card], trusted: frozenset[str]) -> list[str]:
    """Attach to each card (from the Hub) the records of the verifiers' indexes that concern it and count (module
    docstring); returns one-line notices. A card whose owners the Hub does not state gets no record and is marked
    incomplete (never shown verified)."""
    by_repo = {card.repo_id.lower(): card for card in cards if card.repo_id}
    notices: list[str] = []
    accounts = {name.lower(): name for name in trusted}
    listing = reader.pages("api/models", params={"filter": INDEX_TAG, "limit": "1000", "sort": "lastModified",
                                                 "direction": "-1"},
                           limit=1000, what="cannot list the verification indexes on the Hub")
    untrusted = 0
    for item in listing:
        repo_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(repo_id, str) or repo_id.count("/") != 1 or repo_id.split("/")[1] != INDEX_REPO:
            continue
        account = repo_id.split("/")[0]
        if account.lower() not in accounts and untrusted < MAX_UNTRUSTED_INDEXES:
            untrusted += 1
            accounts[account.lower()] = account
    found: dict[str, list[Verification]] = {}
    for key, account in sorted(accounts.items()):
        try:
            if account in trusted and repo_writers(reader, account) != frozenset({account}):
                notices.append(f"{index_repo(account)}: not used, {account} is not a single user account")
                continue
            data = reader.file(index_repo(account), INDEX_FILE, max_bytes=MAX_JSON_BYTES,
                               what=f"cannot read the record index of {account}")
            if data is None:
                continue
            for record in parse_index(data.decode("utf-8", errors="replace"), account):
                if record.repo_id and record.repo_id.lower() in by_repo:
                    found.setdefault(record.repo_id.lower(), []).append(record)
        except (InvalidRecord, DDHubError) as exc:
            if reader.budget.remaining() <= 0:
                raise
            notices.append(f"{index_repo(account)}: not used, {one_line(exc)}")
            if account in trusted:     # a trusted verifier unread: nothing it could have disputed shows verified
                for card in cards:
                    card.verification_complete = False
    for key, records in found.items():
        card = by_repo[key]
        writers = repo_writers(reader, card.repo_id.split("/")[0])
        if writers is None:
            card.verification_complete = False
            notices.append(f"{card.repo_id}: the Hub does not say who can write to it: no verification record used")
            continue
        folded = {w.lower() for w in writers}
        card.verifications = sorted([r for r in records if r.account.lower() not in folded], key=lambda r: r.order)
    return notices


def publish_record(record: Verification, token: str | None, budget) -> str:
    """Append ``record`` to its verifier's index on the Hub (creating the repo the first time); returns the index's
    repo id. The account is the token's, which is the record's (``verified_by``)."""
    from huggingface_hub import CommitOperationAdd

    from .client import hub_api, hub_call

    repo_id = index_repo(record.verified_by)
    api = hub_api(token)
    hub_call(f"cannot create {repo_id}", lambda: api.create_repo(repo_id, exist_ok=True), repo_id, budget)
    current = HubReader(token, budget).file(repo_id, INDEX_FILE, max_bytes=MAX_JSON_BYTES,
                                            what=f"cannot read {repo_id}")
    records = []
    if current is not None:
        try:
            data = json.loads(current)
            records = list(data.get("records") or []) if isinstance(data, dict) else []
        except (ValueError, RecursionError):
            records = []
    records.append(json.loads(record.to_json()))
    readme = (f"---\ntags:\n- {INDEX_TAG}\n---\n\n# dd-hub verification records of {record.verified_by}\n\n"
              f"Every record `dd-hub verify --publish` published from this account, in `{INDEX_FILE}`; boards read "
              "it to show which figures this account re-measured.\n")
    operations = [CommitOperationAdd(path_in_repo=INDEX_FILE, path_or_fileobj=index_text(records).encode()),
                  CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode())]
    hub_call(f"cannot update {repo_id}", lambda: api.create_commit(
        repo_id, operations=operations, commit_message=f"record for {record.repo_id}"), repo_id, budget,
        transfer=True)
    return repo_id
