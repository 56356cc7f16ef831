"""The Hub side of dd-hub: publish a model directory, find published checkpoints, show one card, the leaderboard.

Everything goes through huggingface_hub (``create_repo`` + one ``upload_folder`` commit, ``list_models`` with card
data, ``ModelCard.load``). The token comes from where huggingface_hub looks (``HF_TOKEN``, the ``hf auth login``
cache); dd-hub never prints or stores it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .card import CURVE_NAME, card_metrics, render_card
from .errors import DDHubError
from .hub import CONFIG_NAME, WEIGHTS_NAME, _check_local, copy_atomic, write_text_atomic

CARD_NAME = "README.md"
METRICS_NAME = "metrics.json"
UPLOADED = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, METRICS_NAME, CURVE_NAME)
HUB_TAG = "dd-hub"


@dataclass
class PublishResult:
    """What :func:`publish` did (or, with ``dry_run``, would do)."""

    repo_id: str
    revision: str
    files: list[str]
    commit_url: str | None = None
    dry_run: bool = False


@dataclass
class Entry:
    """One published checkpoint in a leaderboard: its figures as named by :func:`dd_hub.card.card_metrics`."""

    repo_id: str
    architecture: str
    dataset: str
    metrics: dict[str, float] = field(default_factory=dict)


def _api(token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(token=token, library_name="dd-hub")


def _hub_errors(action: str, repo_id: str | None = None):
    """Turns huggingface_hub/network exceptions into one-line :class:`DDHubError`s (never echoing a token)."""
    import contextlib

    try:
        import httpx2 as httpx  # huggingface_hub 2.x's HTTP client
    except ImportError:  # huggingface_hub 1.x
        import httpx
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError

    @contextlib.contextmanager
    def guard():
        try:
            yield
        except HFValidationError as exc:
            raise DDHubError(f"invalid repo name '{repo_id}': {str(exc).splitlines()[0]}") from None
        except RepositoryNotFoundError:
            raise DDHubError(f"{action}: no repo {repo_id} on the Hub, or your token cannot see it") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status == 401:
                raise DDHubError(f"{action}: the Hub rejected the token (401); log in again with `hf auth login` "
                                 "or set HF_TOKEN to a valid token") from None
            if status == 403:
                raise DDHubError(f"{action}: your token has no write permission for {repo_id} (403); use a "
                                 "write token or a namespace you own (--repo-id YOUR_NAME/NAME)") from None
            raise DDHubError(f"{action}: the Hub answered {status}: {str(exc).splitlines()[0]}") from None
        except (httpx.TransportError, OSError) as exc:
            raise DDHubError(f"{action}: cannot reach the Hub ({type(exc).__name__}); check the network or "
                             "HF_ENDPOINT") from None

    return guard()


def resolve_token(token: str | None = None) -> str | None:
    """The token huggingface_hub would use: the argument, ``HF_TOKEN`` or the login cache."""
    from huggingface_hub import get_token

    return token or get_token()


def default_repo_name(model_dir: str | Path) -> str:
    """``<arch>-<dataset>-deepdefense`` from the directory's metrics.json."""
    metrics_path = Path(model_dir) / METRICS_NAME
    if not metrics_path.is_file():
        raise DDHubError(f"{model_dir} has no {METRICS_NAME} to name the repo from; pass --repo-id ORG/NAME")
    return json.loads(metrics_path.read_text())["model"]["repo_name"]


def _validate_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise DDHubError(f"invalid repo name '{repo_id}': {str(exc).splitlines()[0]}") from None
    if repo_id.count("/") != 1:
        raise DDHubError(f"invalid repo name '{repo_id}': use ORG/NAME")


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
    a name without ``/`` goes under the user. Publishing again adds a new commit. ``dry_run`` checks everything
    local and returns what would be uploaded without contacting the Hub (unless the user name is needed).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise DDHubError(f"{model_dir} is not a directory; pass the --out directory of `dd-hub harden`")
    _check_local(model_dir)
    token = resolve_token(token)
    if token is None and not dry_run:
        raise DDHubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    name = repo_id or default_repo_name(model_dir)
    if "/" not in name:
        if token is None:
            name = f"<user>/{name}"
        else:
            with _hub_errors("cannot find out your user name"):
                name = f"{_api(token).whoami()['name']}/{name}"
    repo_id = name
    if not repo_id.startswith("<user>/"):
        _validate_repo_id(repo_id)
    revision = revision or "main"
    files = [f for f in UPLOADED if (model_dir / f).is_file() or f == CARD_NAME]
    if not (model_dir / METRICS_NAME).is_file() and not (model_dir / CARD_NAME).is_file():
        raise DDHubError(f"{model_dir} has neither {METRICS_NAME} nor {CARD_NAME}; a published model needs its card")
    if dry_run:
        return PublishResult(repo_id, revision, files, dry_run=True)

    api = _api(token)
    with tempfile.TemporaryDirectory(prefix="dd-hub-publish-") as staging:
        _stage(model_dir, Path(staging), repo_id)
        with _hub_errors(f"cannot publish to {repo_id}", repo_id):
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=staging, revision=revision, allow_patterns=list(UPLOADED),
                commit_message=commit_message or f"Upload {repo_id.split('/')[1]} (dd-hub)",
            )
    return PublishResult(repo_id, revision, files, commit_url=commit.commit_url)


def _stage(model_dir: Path, staging: Path, repo_id: str, names: Iterable[str] = UPLOADED) -> None:
    """``names`` of ``model_dir`` copied into ``staging``, plus the card rendered for ``repo_id``."""
    for name in names:
        if name != CARD_NAME and (model_dir / name).is_file():
            copy_atomic(model_dir / name, staging / name)
    metrics_path = model_dir / METRICS_NAME
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        curve = CURVE_NAME if (model_dir / CURVE_NAME).is_file() else None
        write_text_atomic(staging / CARD_NAME, render_card(metrics, curve_file=curve, repo_id=repo_id))
    else:
        shutil.copyfile(model_dir / CARD_NAME, staging / CARD_NAME)


def entry_from_card(repo_id: str | None, card_data) -> Entry:
    """A leaderboard entry from a card's data (``ModelCardData``); ``repo_id`` defaults to the card's own."""
    info = getattr(card_data, "dd_hub", None) or {}
    repo_id = repo_id or info.get("repo_id") or card_data.model_name
    return Entry(repo_id, info.get("architecture", "?"), info.get("dataset", "?"), card_metrics(card_data))


def find_published(*, dataset: str | None = None, arch: str | None = None, author: str | None = None,
                   token: str | None = None) -> list[Entry]:
    """dd-hub checkpoints on the Hub (tag ``dd-hub``), with their figures from the card data."""
    api = _api(resolve_token(token))
    entries = []
    with _hub_errors("cannot list models"):
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
    _validate_repo_id(repo_id)
    with _hub_errors(f"cannot read the card of {repo_id}", repo_id):
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
    if not (model_dir / METRICS_NAME).is_file():
        raise DDHubError(f"{model_dir} has no {METRICS_NAME}; pass the --out directory of `dd-hub harden`")
    target.mkdir(parents=True, exist_ok=True)
    _stage(model_dir, target, repo_id, names=(CURVE_NAME,))
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
