"""``dd-hub verify``: re-measure a card's figures from its weights and say, figure by figure, whether they agree.

The weights are the ones the card describes: a local model directory, or the Hub repo at the very commit its card
was read from. The protocol is the one its metrics.json records (dataset, evaluation settings, epsilon_ref), run
on all its images or, with ``max_examples``, on a class-balanced subset (the tolerance then widens by two standard
errors of the smaller sample). The result is a verification record (:mod:`dd_hub.hub.verification`): written
beside a local card, or published as a pull request on the model's repo, so that boards can show who verified what.
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DDHubError
from ..hub.card import report_metrics
from ..hub.cards import MAX_CARD_BYTES, Card, InvalidCard, parse_card
from ..hub.client import Budget, HubReader, hub_api, hub_call, resolve_token, validate_repo_id
from ..hub.verification import PR_TITLE, RECORD_NAME, Verification
from ..names import CARD_NAME
from ..storage.atomic_io import read_text_limited, write_text_atomic
from ..text import markdown_cell, markdown_table, one_line
from ..version import __version__
from .evaluate import evaluate_saved

#: absolute tolerance on accuracies (fractions); rho_2 is compared relatively, at this fraction of its value
TOLERANCE = 0.02
RHO_TOLERANCE = 0.05


@dataclass
class VerifyResult:
    """What :func:`verify` measured and where its record went."""

    record: Verification
    table: str
    unmeasured: list[str]
    written: Path | None = None
    pull_request: str | None = None

    @property
    def agrees(self) -> bool:
        return all(entry["agrees"] for entry in self.record.figures.values())


def verify(name_or_path: str | Path, *, max_examples: int | None = None, tolerance: float = TOLERANCE,
           data_dir: str | Path | None = None, device: str | None = None, progress: bool = True,
           publish: bool = False, out: str | Path | None = None, token: str | None = None) -> VerifyResult:
    """Re-measure the card of ``name_or_path`` (a model directory or ``ORG/NAME`` on the Hub); see the module
    docstring. ``publish`` opens a pull request with the record on the Hub repo; ``out`` writes the record to a file
    (default for a local directory: ``DIR/dd-hub-verification.json``)."""
    if not 0 <= tolerance <= 1:
        raise DDHubError(f"the tolerance is a fraction in [0, 1], not {tolerance}")
    path = Path(str(name_or_path).removeprefix("local-dir:"))
    budget = Budget()
    token = resolve_token(token)
    if path.is_dir():
        card, repo_id, revision, target = _local_card(path), None, None, str(path)
        if publish:
            raise DDHubError("--publish opens a pull request on a Hub repo: verify ORG/NAME instead of a folder")
    else:
        repo_id = validate_repo_id(str(name_or_path).removeprefix("hf-hub:"))
        card, revision = _hub_card(repo_id, token, budget)
        target = f"{repo_id}@{revision}" if revision else repo_id
    claims = {figure.key: figure for figure in card.figures}
    if not claims:
        raise DDHubError(f"the card of {one_line(name_or_path, 100)} holds no figures to verify")
    who = _who(token, budget) if repo_id or token else "local"  # before the evaluation: a missing token fails fast
    overrides = {"max_examples": max_examples, "autoattack_max_examples": max_examples} if max_examples else {}
    report = evaluate_saved(target, data_dir=data_dir, overrides=overrides, device=device, progress=progress)
    measured = report_metrics(report.to_dict())
    sizes = {f"autoattack@{name}": figure["n_examples"] for name, figure in report.autoattack.items()}
    figures, unmeasured = {}, []
    for key, claim in sorted(claims.items()):
        if key not in measured:
            unmeasured.append(key)
            continue
        n = sizes.get(key, report.n_examples)
        margin = _margin(claim.kind, claim.value, tolerance, n, claim.args.get("n_examples"))
        figures[key] = {"card": claim.value, "measured": measured[key], "margin": margin,
                        "agrees": abs(measured[key] - claim.value) <= margin}
    if not figures:
        raise DDHubError("none of the card's figures could be re-measured with its recorded protocol")
    record = Verification(verified_by=who, date=datetime.date.today().isoformat(), dd_hub_version=__version__,
                          repo_id=repo_id, revision=revision, tolerance=tolerance,
                          n_examples={key: sizes.get(key, report.n_examples) for key in figures}, figures=figures,
                          settings={"max_examples": max_examples, "subset_seed": report.subset_seed,
                                    "rho_space": report.rho_space, "deepfool": report.deepfool,
                                    "eps_ref": report.eps_ref, "eps_ref_source": report.eps_ref_source})
    result = VerifyResult(record, _table(figures), unmeasured)
    written = Path(out) if out else (path / RECORD_NAME if path.is_dir() else None)
    if written is not None:
        write_text_atomic(written, record.to_json())
        result.written = written
    if publish:
        result.pull_request = _open_pull_request(record, token, Budget())  # the evaluation's minutes are not the Hub's
    return result


def _margin(kind: str, claim: float, tolerance: float, n: int, claimed_n: object) -> float:
    """The tolerance of one figure: ``tolerance`` for accuracies, widened by two standard errors when re-measured
    on fewer images than the card's; a relative tolerance for rho_2."""
    if kind == "rho2":
        return RHO_TOLERANCE * abs(claim)
    if isinstance(claimed_n, int) and n < claimed_n:
        return tolerance + 2 * math.sqrt(max(claim * (1 - claim), 1e-4) / max(n, 1))
    return tolerance


def _table(figures: dict[str, dict]) -> str:
    rows = [[markdown_cell(key), f"{v['card']:.4g}", f"{v['measured']:.4g}", f"±{v['margin']:.3g}",
             "agrees" if v["agrees"] else "DISAGREES"] for key, v in figures.items()]
    return markdown_table(["figure", "card", "measured", "tolerance", "verdict"], rows)


def _local_card(folder: Path) -> Card:
    card_path = folder / CARD_NAME
    if not card_path.is_file() or card_path.is_symlink():
        raise DDHubError(f"{folder} has no {CARD_NAME} to verify")
    try:
        return parse_card(read_text_limited(card_path, MAX_CARD_BYTES), name=folder.name, source=str(card_path))
    except (InvalidCard, ValueError) as exc:
        raise DDHubError(f"the card in {folder} cannot be read: {one_line(exc)}") from None


def _hub_card(repo_id: str, token: str | None, budget: Budget) -> tuple[Card, str | None]:
    data, revision = HubReader(token, budget).download(repo_id, CARD_NAME, max_bytes=MAX_CARD_BYTES)
    if data is None:
        raise DDHubError(f"{repo_id} has no {CARD_NAME} on the Hub (or no such repo)")
    try:
        return parse_card(data.decode("utf-8", errors="replace"), name=repo_id.split("/")[1], repo_id=repo_id), revision
    except InvalidCard as exc:
        raise DDHubError(f"the card of {repo_id} cannot be read: {exc}") from None


def _who(token: str | None, budget: Budget) -> str:
    if token is None:
        raise DDHubError("verifying a Hub repo needs a Hugging Face token (HF_TOKEN or `hf auth login`): the record "
                         "names the account that made it")
    info = hub_call("cannot tell who you are on the Hub", lambda: hub_api(token).whoami(), budget=budget)
    name = info.get("name") if isinstance(info, dict) else None
    if not isinstance(name, str):
        raise DDHubError("the Hub did not say which account the token belongs to")
    return name


def _open_pull_request(record: Verification, token: str | None, budget: Budget) -> str | None:
    from huggingface_hub import CommitOperationAdd

    agree = sum(entry["agrees"] for entry in record.figures.values())
    title = f"{PR_TITLE} by {record.verified_by}: {agree} of {len(record.figures)} figures agree"
    operation = CommitOperationAdd(path_in_repo=RECORD_NAME, path_or_fileobj=record.to_json().encode("utf-8"))
    commit = hub_call(f"cannot open a pull request on {record.repo_id}", lambda: hub_api(token).create_commit(
        record.repo_id, operations=[operation], commit_message=title, create_pr=True,
        commit_description="Figures of this card re-measured by `dd-hub verify` from the published weights."),
        record.repo_id, budget, transfer=True)
    return commit.pr_url
