"""Publish a hardened model directory to the Hugging Face Hub in one commit.

``create_repo`` (which answers with the full repo id, user namespace included) and one ``create_commit`` whose
operations add the directory's files straight from disk and the card rendered for the repo from memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..storage.atomic_io import read_json_object
from .card import render_card
from ..errors import DDHubError
from .client import hub_api, hub_errors, resolve_token, validate_repo_id
from .figures import CURVE_NAME, TRAINING_NAME
from ..models.directory import CONFIG_NAME, WEIGHTS_NAME, check_model_dir
from ..storage.run_dir import check_complete

CARD_NAME = "README.md"
METRICS_NAME = "metrics.json"
UPLOADED = (CONFIG_NAME, WEIGHTS_NAME, METRICS_NAME, CURVE_NAME, TRAINING_NAME)
USER_PLACEHOLDER = "<user>"


@dataclass
class PublishResult:
    """What :func:`publish` did (or, with ``dry_run``, would do)."""

    repo_id: str
    revision: str
    files: list[str]
    commit_url: str | None = None
    dry_run: bool = False


def read_metrics(model_dir: str | Path) -> dict:
    """The directory's metrics.json, or a one-line error saying what is wrong with it."""
    path = Path(model_dir) / METRICS_NAME
    if not path.is_file():
        raise DDHubError(f"{model_dir} has no {METRICS_NAME}; pass the --out directory of `dd-hub harden`")
    metrics = read_json_object(path, what="dd-hub metrics", fix="rerun `dd-hub harden`")
    missing = [key for key in ("model", "recipe", "hardened", "reference") if not isinstance(metrics.get(key), dict)]
    if missing:
        raise DDHubError(f"{path} is not a dd-hub metrics file (no '{missing[0]}' section); rerun `dd-hub harden`")
    return metrics


def card_files(model_dir: Path, repo_id: str) -> dict[str, str | bytes]:
    """Path in the repo -> local file path or content: the uploaded files and the card rendered for ``repo_id``."""
    metrics = read_metrics(model_dir)
    files: dict[str, str | bytes] = {name: str(model_dir / name) for name in UPLOADED if (model_dir / name).is_file()}
    figures = {"curve_file": CURVE_NAME if CURVE_NAME in files else None,
               "training_file": TRAINING_NAME if TRAINING_NAME in files else None}
    try:
        files[CARD_NAME] = render_card(metrics, **figures, repo_id=repo_id).encode("utf-8")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DDHubError(f"{model_dir / METRICS_NAME} lacks what the card needs ({type(exc).__name__}: {exc}); "
                         "rerun `dd-hub harden`") from None
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

    Uploads config.json, model.safetensors, metrics.json, the robustness curve and a README.md card rendered for
    ``repo_id`` (its usage snippet names the repo). ``repo_id`` defaults to ``<user>/<arch>-<dataset>-deepdefense``;
    a name without ``/`` goes under the token's user. Publishing again adds a new commit. ``dry_run`` runs every
    local check the real publish runs and returns what would be uploaded, without contacting the Hub.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DDHubError(f"{model_dir} is not a directory; pass the --out directory of `dd-hub harden`")
    check_model_dir(model_dir)
    check_complete(model_dir)
    name = repo_id or read_metrics(model_dir)["model"]["repo_name"]
    validate_repo_id(name if "/" in name else f"{USER_PLACEHOLDER.strip('<>')}/{name}")
    files = card_files(model_dir, name if "/" in name else f"{USER_PLACEHOLDER}/{name}")
    token = resolve_token(token)
    revision = revision or "main"
    if dry_run:
        return PublishResult(name if "/" in name else f"{USER_PLACEHOLDER}/{name}", revision, sorted(files),
                             dry_run=True)
    if token is None:
        raise DDHubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    api = hub_api(token)
    with hub_errors(f"cannot publish to {name}", name):
        repo_id = api.create_repo(name, private=private, exist_ok=True, repo_type="model").repo_id
        if repo_id != name:  # the card's usage snippet names the full id
            files = card_files(model_dir, repo_id)
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.create_commit(
            repo_id, operations=_operations(files), revision=revision,
            commit_message=commit_message or f"Upload {repo_id.split('/')[1]} (dd-hub)",
        )
    return PublishResult(repo_id, revision, sorted(files), commit_url=commit.commit_url)


def _operations(files: dict[str, str | bytes]) -> list:
    from huggingface_hub import CommitOperationAdd

    return [CommitOperationAdd(path_in_repo=name, path_or_fileobj=source) for name, source in sorted(files.items())]
