"""``dd-hub verify``: re-measure a card's figures from its weights and say, figure by figure, whether they agree.

The weights are the ones the card describes: a local model directory, or the Hub repo at the very commit its card
was read from. The protocol is the one its metrics.json records (dataset, evaluation settings, epsilon_ref), run
on all its images or, with ``max_examples``, on a class-balanced subset of at least 100 (the tolerance then widens
by two standard errors of the verifier's own sample, never beyond 0.10). Each of the card's figures is matched to a
measurement by its threat model's identity (dataset, norm, eps, attack version), never by its name. The result is a
verification record (:mod:`dd_hub.hub.verification`): written beside a local card, or published as a pull request on
the model's repo, so that boards can show who re-measured what; readers recompute every verdict from its numbers.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from ..errors import DDHubError
from ..hub.card import eval_results
from ..hub.cards import MAX_CARD_BYTES, Card, Figure, InvalidCard, parse_card
from ..hub.client import Budget, HubReader, hub_api, hub_call, resolve_token, validate_repo_id
from ..hub.record_index import publish_record
from ..hub.loading import cache_root, resolve
from ..hub.verification import (DEFAULT_TOLERANCE, MAX_TOLERANCE, MIN_EXAMPLES, PR_TITLE, RECORD_NAME, Verification,
                                card_dataset, figure_identity, judge, protocol_digest)
from ..names import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from ..storage.atomic_io import read_text_limited, write_text_atomic
from ..storage.metrics import read_metrics
from ..text import markdown_cell, markdown_table, one_line
from ..version import __version__
from .evaluate import evaluate_saved

TOLERANCE = DEFAULT_TOLERANCE


@dataclass
class VerifyResult:
    """What :func:`verify` measured and where its record went."""

    record: Verification
    table: str
    unmeasured: list[str]
    verdicts: dict[str, str]
    written: Path | None = None
    pull_request: str | None = None
    index: str | None = None          # the verifier's record index it was added to (hub/record_index.py)

    @property
    def agrees(self) -> bool:
        """Every figure re-measured on enough images, and every one agrees."""
        return bool(self.verdicts) and all(v == "agrees" for v in self.verdicts.values())


def verify(name_or_path: str | Path, *, max_examples: int | None = None, tolerance: float = TOLERANCE,
           data_dir: str | Path | None = None, device: str | None = None, progress: bool = True,
           publish: bool = False, out: str | Path | None = None, token: str | None = None) -> VerifyResult:
    """Re-measure the card of ``name_or_path`` (a model directory or ``ORG/NAME`` on the Hub); see the module
    docstring. ``publish`` opens a pull request with the record on the Hub repo; ``out`` writes the record to a file
    (default for a local directory: ``DIR/dd-hub-verification.json``)."""
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance <= MAX_TOLERANCE):
        raise DDHubError(f"the tolerance is a fraction in [0, {MAX_TOLERANCE}] (a wider one verifies nothing), not "
                         f"{one_line(tolerance, 40)}")
    if max_examples is not None and max_examples < MIN_EXAMPLES:
        raise DDHubError(f"--max-examples must be at least {MIN_EXAMPLES}: fewer images give no verdict (the boards' "
                         "minimum)")
    if out is not None and (Path(out).is_dir() or not Path(out).parent.is_dir()):
        raise DDHubError(f"--out {one_line(out, 200)} must be a file in an existing folder (checked before the "
                         "re-measurement, not after)")
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
    claims: dict[str, Figure] = {}
    unmeasured = []
    for figure in card.figures:
        identity = figure_identity(figure, card_dataset(card, figure))
        if identity is None or identity in claims:
            unmeasured.append(figure.key)
        else:
            claims[identity] = figure
    if not claims:
        raise DDHubError(f"the card of {one_line(name_or_path, 100)} holds no figures to verify")
    who = _who(token, budget) if repo_id or token else "local"  # before the evaluation: a missing token fails fast
    folder = resolve(target, metrics=True)
    links_within = cache_root(folder)
    metrics = read_metrics(folder, links_within=links_within,
                           only=None if links_within is None else (CONFIG_NAME, WEIGHTS_NAME))
    overrides = {"max_examples": max_examples, "autoattack_max_examples": max_examples} if max_examples else {}
    report = evaluate_saved(folder, data_dir=data_dir, overrides=overrides, device=device, progress=progress)
    measured = measured_figures(metrics, report.to_dict())
    figures, verdicts, rows = {}, {}, []
    for identity, claim in claims.items():
        found = measured.get(identity)
        if found is None:
            unmeasured.append(claim.key)
            continue
        n, card_n = found.args.get("n_examples"), claim.args.get("n_examples")
        verdict, margin = judge(claim.kind, claim.value, found.value, n, card_n, tolerance)
        figures[identity] = {"kind": claim.kind, "card": claim.value, "measured": found.value, "n_examples": n,
                             "card_n_examples": card_n if isinstance(card_n, int) else None}
        verdicts[identity] = verdict
        rows.append([markdown_cell(claim.key), f"{claim.value:.4g}", f"{found.value:.4g}", n,
                     "–" if margin is None else f"±{margin:.3g}",
                     {"agrees": "agrees", "disagrees": "DISAGREES"}.get(verdict, f"no verdict ({verdict})")])
    if not figures:
        raise DDHubError("none of the card's figures could be re-measured with its recorded protocol on the threat "
                         "model it states")
    record = Verification(verified_by=who, date=datetime.date.today().isoformat(), dd_hub_version=__version__,
                          repo_id=repo_id, revision=revision, tolerance=tolerance,
                          weights_sha256=metrics["files"][WEIGHTS_NAME], protocol=protocol_digest(metrics),
                          figures=figures,
                          settings={"max_examples": max_examples, "subset_seed": report.subset_seed,
                                    "rho_space": report.rho_space, "deepfool": report.deepfool,
                                    "eps_ref": report.eps_ref, "eps_ref_source": report.eps_ref_source})
    table = markdown_table(["figure", "card", "measured", "images", "tolerance", "verdict"], rows)
    result = VerifyResult(record, table, unmeasured, verdicts)
    written = Path(out) if out else (path / RECORD_NAME if path.is_dir() else None)
    if written is not None:
        write_text_atomic(written, record.to_json())
        result.written = written
    if publish:
        result.pull_request = _open_pull_request(record, verdicts, token, Budget())  # not the evaluation's minutes
        result.index = publish_record(record, token, Budget())   # what the boards read (hub/record_index.py)
    return result


def measured_figures(metrics: dict, report: dict) -> dict[str, Figure]:
    """identity -> figure of a re-measured report, read back exactly as a card's reader reads the card dd-hub
    renders for it (so both sides name a threat model the same way)."""
    from huggingface_hub.repocard_data import eval_results_to_model_index

    from ..hub.cards import _figures

    model = {"dataset_hub_id": "measured", **metrics["model"]}
    model_index = eval_results_to_model_index("measured", eval_results({**metrics, "model": model,
                                                                        "hardened": report}))
    dataset = str(metrics["model"].get("dataset") or metrics["recipe"].get("dataset"))
    found = {}
    for figure in _figures(model_index, {"dataset": dataset}):
        identity = figure_identity(figure, dataset)
        if identity is not None:
            found.setdefault(identity, figure)
    return found


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


def _open_pull_request(record: Verification, verdicts: dict[str, str], token: str | None,
                       budget: Budget) -> str | None:
    from huggingface_hub import CommitOperationAdd

    agree = sum(verdict == "agrees" for verdict in verdicts.values())
    title = f"{PR_TITLE} by {record.verified_by}: {agree} of {len(record.figures)} figures agree"
    operation = CommitOperationAdd(path_in_repo=RECORD_NAME, path_or_fileobj=record.to_json().encode("utf-8"))
    commit = hub_call(f"cannot open a pull request on {record.repo_id}", lambda: hub_api(token).create_commit(
        record.repo_id, operations=[operation], commit_message=title, create_pr=True,
        commit_description="Figures of this card re-measured by `dd-hub verify` from the published weights."),
        record.repo_id, budget, transfer=True)
    return commit.pr_url
