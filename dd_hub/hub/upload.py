"""Publish a hardened model directory to the Hugging Face Hub in one commit.

``create_repo`` (which answers with the full repo id, user namespace included) and one ``create_commit`` whose
operations add the directory's files straight from disk and the card rendered for the repo from memory. A model
directory is a closed unit: only files that its metrics.json lists and hashes are read, none of them may be a link,
and nothing outside the folder is ever uploaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DDHubError
from ..models.directory import check_model_dir
from ..names import CARD_NAME, CONFIG_NAME, CURVE_NAME, METRICS_NAME, TRAINING_NAME, WEIGHTS_NAME
from ..storage.metrics import read_metrics
from .card import is_smoke, render_card
from .client import Budget, hub_api, hub_call, resolve_token, validate_repo_id

UPLOADED = (CONFIG_NAME, WEIGHTS_NAME, METRICS_NAME, CURVE_NAME, TRAINING_NAME)
FIGURES = (CURVE_NAME, TRAINING_NAME)
USER_PLACEHOLDER = "<user>"


@dataclass
class PublishResult:
    """What :func:`publish` did (or, with ``dry_run``, would do)."""

    repo_id: str
    revision: str
    files: list[str]
    commit_url: str | None = None
    dry_run: bool = False


def card_files(model_dir: str | Path, repo_id: str | None, *, published: bool = True) -> dict[str, str | bytes]:
    """Path in the repo -> local file path or content: the folder's files that are published (each listed and
    hashed in its metrics.json, none a link) and the card rendered for ``repo_id`` (``published=False``: a card
    that says the weights are not on the Hub yet)."""
    model_dir = Path(model_dir)
    metrics = read_metrics(model_dir)
    if is_smoke(metrics):
        raise DDHubError(f"{model_dir} is a smoke run (--smoke: a few hundred images, one epoch), not a model to "
                         "publish or list; run the same command without --smoke")
    sealed = metrics["files"]
    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if required not in sealed:
            raise DDHubError(f"{model_dir / METRICS_NAME} does not list {required}, so nothing ties its figures to "
                             "the weights; rerun `dd-hub harden`")
    files: dict[str, str | bytes] = {name: str(model_dir / name) for name in UPLOADED if name in sealed}
    files[METRICS_NAME] = str(model_dir / METRICS_NAME)
    figures = {"curve_file": CURVE_NAME if CURVE_NAME in files else None,
               "training_file": TRAINING_NAME if TRAINING_NAME in files else None}
    try:
        card = render_card(metrics, **figures, repo_id=repo_id if published else None)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DDHubError(f"{model_dir / METRICS_NAME} lacks what the card needs ({type(exc).__name__}); rerun "
                         "`dd-hub harden`") from None
    files[CARD_NAME] = card.encode("utf-8")
    return files


def publish(
    model_dir: str | Path,
    repo_id: str | None = None,
    *,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> PublishResult:
    """Upload a model directory written by ``harden`` to the Hub in one commit.

    Uploads config.json, model.safetensors, metrics.json, the figures and a README.md card rendered for
    ``repo_id`` (its usage snippet names the repo). ``repo_id`` defaults to ``<user>/<arch>-<dataset>-deepdefense``;
    a name without ``/`` goes under the token's user. Publishing again adds a new commit. ``dry_run`` runs every
    local check the real publish runs and returns what would be uploaded, without contacting the Hub.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DDHubError(f"{model_dir} is not a directory; pass the --out directory of `dd-hub harden`")
    check_model_dir(model_dir)
    name = repo_id or read_metrics(model_dir)["model"]["repo_name"]
    full = name if "/" in name else f"{USER_PLACEHOLDER.strip('<>')}/{name}"
    validate_repo_id(full)
    files = card_files(model_dir, name if "/" in name else f"{USER_PLACEHOLDER}/{name}")
    token = resolve_token(token)
    revision = revision or "main"
    if dry_run:
        return PublishResult(name if "/" in name else f"{USER_PLACEHOLDER}/{name}", revision, sorted(files),
                             dry_run=True)
    if token is None:
        raise DDHubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    api, budget, action = hub_api(token), Budget(), f"cannot publish to {name}"
    repo_id = hub_call(action, lambda: api.create_repo(name, private=private, exist_ok=True, repo_type="model"),
                       name, budget).repo_id
    if repo_id != name:  # the card's usage snippet names the full id
        files = card_files(model_dir, repo_id)
    if revision != "main":
        hub_call(action, lambda: api.create_branch(repo_id, branch=revision, exist_ok=True), repo_id, budget)
    commit = hub_call(action, lambda: api.create_commit(
        repo_id, operations=operations(files), revision=revision,
        commit_message=commit_message or f"Upload {repo_id.split('/')[1]} (dd-hub)"), repo_id, budget, transfer=True)
    return PublishResult(repo_id, revision, sorted(files), commit_url=commit.commit_url)


def operations(files: dict[str, str | bytes]) -> list:
    """``CommitOperationAdd`` of each (path in the repo -> local path or content)."""
    from huggingface_hub import CommitOperationAdd

    return [CommitOperationAdd(path_in_repo=name, path_or_fileobj=source) for name, source in sorted(files.items())]
