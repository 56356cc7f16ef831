"""A static leaderboard site of dd-hub checkpoints, RobustBench-like: ``dd-hub site OUT [--from DIR]``.

Input: model cards (huggingface_hub ``ModelCard``s: ``model-index`` figures, the ``dd_hub`` metadata block, a
Markdown body and the PNG figures it references), read from local card folders (:func:`load_local_cards`) or from the
Hub (:func:`load_hub_cards`). Output (:func:`build_site`): one board per (dataset, threat model), a threat model
being an AutoAttack entry of the ``model-index`` (``metric_type: robust_accuracy``, ``metric_args`` with
``attack: autoattack``, ``norm``, ``eps``), ranked by that robust accuracy; one board for the cards without such an
entry; one page per model.

The site is self-contained static HTML, CSS and JavaScript: no URL outside it is ever loaded (no CDN, no web font,
no remote image; remote images in a card are shown as links), so it works opened from ``file://``. Card bodies are
rendered with the ``markdown`` package with raw HTML escaped, then passed through a tag/attribute whitelist; every
other string is HTML-escaped. The output is deterministic: the same cards give the same bytes.
"""
from __future__ import annotations

import contextlib
import html
import math
import os
import posixpath
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import quote, unquote, urlsplit

from .errors import DDHubError

HUB_TAG = "dd-hub"
HUB_URL = "https://huggingface.co"
CARD_NAME = "README.md"
DEFAULT_METHOD = "deep_defense"
#: seconds to wait for one answer of the Hub (``DD_HUB_HUB_TIMEOUT`` overrides)
HUB_TIMEOUT_S = float(os.environ.get("DD_HUB_HUB_TIMEOUT", "10"))
MAX_IMAGE_BYTES = 20 * 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARKER = ".dd-hub-site"          # marks an output directory as ours, so a rebuild may replace it
NO_THREAT_MODEL = "no standard threat model evaluated"
NORM_LABELS = {"linf": "L∞", "l2": "L2"}


# --- cards -------------------------------------------------------------------------------------------------------
@dataclass
class SiteCard:
    """One model card and the PNG figures its body references (relative path as written in the card -> bytes)."""

    card: object                     # huggingface_hub.ModelCard
    name: str                        # folder name (local) or repo name (Hub)
    repo_id: str | None = None       # ORG/NAME when known
    images: dict[str, bytes] = field(default_factory=dict)
    missing_images: list[str] = field(default_factory=list)
    source: str = ""                 # where it was read from, for messages

    @property
    def info(self) -> dict:
        """The card's ``dd_hub`` metadata block (architecture, dataset, recipe, ...); empty when absent."""
        value = getattr(self.card.data, "dd_hub", None)
        return value if isinstance(value, dict) else {}

    @property
    def published(self) -> bool:
        """False when the card says its weights are not on the Hub yet (``dd_hub.published: false``)."""
        return self.info.get("published", True) is not False

    @property
    def timm_loadable(self) -> bool:
        return getattr(self.card.data, "library_name", None) == "timm"

    @property
    def title(self) -> str:
        return self.repo_id or self.name


def referenced_images(body: str) -> list[str]:
    """Relative paths of the PNG images the rendered Markdown ``body`` shows, normalised, in order of appearance."""
    found = []
    for src in _MarkdownImages.collect(body):
        path = _local_path(src)
        if path is not None and path.lower().endswith(".png") and path not in found:
            found.append(path)
    return found


def _local_path(url: str) -> str | None:
    """``url`` as a normalised path inside the card's folder, or None (remote, absolute or escaping it)."""
    parts = urlsplit(url.strip())
    if parts.scheme or parts.netloc or not parts.path:
        return None
    path = posixpath.normpath(unquote(parts.path))
    if path.startswith(("/", "../")) or path in (".", "..") or "\\" in path:
        return None
    return path


def _load_card(path: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(path)


def load_local_cards(cards_dir: str | Path) -> tuple[list[SiteCard], list[str]]:
    """Every ``cards_dir/*/README.md`` with the PNGs it references from its folder; returns (cards, notices).

    A card that cannot be read is not dropped silently: it becomes a notice (shown on the site's front page).
    """
    cards_dir = Path(cards_dir)
    if not cards_dir.is_dir():
        raise DDHubError(f"{cards_dir} is not a directory of model cards (expected {cards_dir}/*/{CARD_NAME})")
    cards, notices = [], []
    for card_path in sorted(cards_dir.glob(f"*/{CARD_NAME}")):
        folder = card_path.parent
        try:
            card = _load_card(card_path)
        except Exception as exc:  # a malformed front matter or model-index, from any layer of huggingface_hub/yaml
            notices.append(f"{card_path}: not listed, the card cannot be read ({_one_line(exc)})")
            continue
        site_card = SiteCard(card, folder.name, _card_repo_id(card), source=str(card_path))
        root = folder.resolve()
        for ref in referenced_images(card.text):
            target = (folder / ref).resolve()
            data = target.read_bytes() if target.is_file() and root in target.parents else None
            if data is not None and data.startswith(PNG_SIGNATURE) and len(data) <= MAX_IMAGE_BYTES:
                site_card.images[ref] = data
            else:
                site_card.missing_images.append(ref)
        cards.append(site_card)
    return cards, notices


def _card_repo_id(card) -> str | None:
    info = getattr(card.data, "dd_hub", None)
    repo_id = info.get("repo_id") if isinstance(info, dict) else None
    return repo_id if isinstance(repo_id, str) and repo_id.count("/") == 1 else None


def load_hub_cards(*, limit: int = 1000, author: str | None = None, token: str | None = None,
                   timeout: float = HUB_TIMEOUT_S) -> tuple[list[SiteCard], list[str]]:
    """dd-hub checkpoints on the Hub (tag ``dd-hub``): each card and the PNGs it references; returns (cards, notices).

    Every request times out after ``timeout`` seconds; an unreachable Hub is a one-line :class:`DDHubError`.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError

    cards, notices = [], []
    with _hub_errors("cannot list the dd-hub models on the Hub"):
        repo_ids = list_hub_models(limit=limit, author=author, token=token, timeout=timeout)
    for repo_id in sorted(repo_ids):
        with _hub_errors(f"cannot download the card of {repo_id}"):
            try:
                card_path = hf_hub_download(repo_id, CARD_NAME, etag_timeout=timeout, token=token)
            except (RemoteEntryNotFoundError, RepositoryNotFoundError):
                notices.append(f"{repo_id}: not listed, it has no {CARD_NAME} (or it went away)")
                continue
        try:
            card = _load_card(Path(card_path))
        except Exception as exc:
            notices.append(f"{repo_id}: not listed, its card cannot be read ({_one_line(exc)})")
            continue
        site_card = SiteCard(card, repo_id.split("/")[-1], repo_id, source=f"{HUB_URL}/{repo_id}")
        for ref in referenced_images(card.text):
            with _hub_errors(f"cannot download {ref} of {repo_id}"):
                try:
                    data = Path(hf_hub_download(repo_id, ref, etag_timeout=timeout, token=token)).read_bytes()
                except RemoteEntryNotFoundError:
                    data = None
            if data is not None and data.startswith(PNG_SIGNATURE) and len(data) <= MAX_IMAGE_BYTES:
                site_card.images[ref] = data
            else:
                site_card.missing_images.append(ref)
        cards.append(site_card)
    return cards, notices


def list_hub_models(*, limit: int = 1000, author: str | None = None, token: str | None = None,
                    timeout: float = HUB_TIMEOUT_S) -> list[str]:
    """Ids of the Hub's models tagged ``dd-hub``: the request of ``HfApi().list_models(filter=["dd-hub"],
    cardData=True, limit=limit)``, made here in one attempt per page with a timeout, because ``list_models`` waits
    without a timeout and retries network errors for half a minute."""
    from huggingface_hub import constants, get_session
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    url: str | None = f"{constants.ENDPOINT}/api/models"
    params: dict | None = {"filter": HUB_TAG, "cardData": "true", "limit": str(min(limit, 1000))}
    if author:
        params["author"] = author
    headers = build_hf_headers(token=token, library_name="dd-hub")
    ids: list[str] = []
    while url and len(ids) < limit:
        response = get_session().get(url, params=params, headers=headers, timeout=timeout)
        hf_raise_for_status(response)
        ids += [item.get("id") or item.get("modelId") for item in response.json()]
        url, params = response.links.get("next", {}).get("url"), None
    return [i for i in ids[:limit] if isinstance(i, str)]


@contextlib.contextmanager
def _hub_errors(action: str) -> Iterator[None]:
    """huggingface_hub and network exceptions -> one-line :class:`DDHubError` (never echoing a token)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        yield
    except OfflineModeIsEnabled:
        raise DDHubError(f"{action}: huggingface_hub is in offline mode (HF_HUB_OFFLINE=1); build from local cards "
                         "with --from DIR") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 401:
            raise DDHubError(f"{action}: the Hub rejected the token (401); log in again with `hf auth login`") from None
        raise DDHubError(f"{action}: the Hub answered {status}: {_one_line(exc)}") from None
    except OSError as exc:
        raise DDHubError(f"{action}: cannot reach the Hub ({type(exc).__name__}); check the network or "
                         "HF_ENDPOINT, or build from local cards with --from DIR") from None
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2"):
            raise DDHubError(f"{action}: cannot reach the Hub ({type(exc).__name__}, no answer within the "
                             "timeout?); check the network or HF_ENDPOINT, or build from local cards with "
                             "--from DIR") from None
        raise


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- boards -------------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """One card on one board."""

    card: SiteCard
    slug: str
    clean_accuracy: float | None
    robust_accuracy: float | None = None
    rho2: float | None = None
    eps: float | None = None
    n_examples: int | None = None
    evaluation: str | None = None    # the AutoAttack entry's version/implementation, as the card states it

    @property
    def architecture(self) -> str:
        return str(self.card.info.get("architecture") or "?")

    @property
    def method(self) -> str:
        return str(self.card.info.get("method") or DEFAULT_METHOD)

    @property
    def dataset(self) -> str:
        return str(self.card.info.get("dataset") or "?")


@dataclass
class Board:
    """A ranked table: one (dataset, norm, eps) threat model, or the cards without one (``norm`` None)."""

    anchor: str
    title: str
    dataset: str | None
    norm: str | None
    eps: float | None
    rows: list[Row]


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _results(card: SiteCard) -> list:
    return list(getattr(card.card.data, "eval_results", None) or [])


def _first(card: SiteCard, metric_type: str) -> float | None:
    for result in _results(card):
        if result.metric_type == metric_type and _number(result.metric_value) is not None:
            return _number(result.metric_value)
    return None


def threat_models(card: SiteCard) -> list[tuple[str, str, float, object]]:
    """(dataset, norm, eps, EvalResult) for each AutoAttack entry of the card's model-index."""
    found = []
    for result in _results(card):
        args = result.metric_args if isinstance(result.metric_args, dict) else {}
        norm, eps = str(args.get("norm", "")).lower(), _number(args.get("eps"))
        if (result.metric_type == "robust_accuracy" and args.get("attack") == "autoattack" and norm in NORM_LABELS
                and eps is not None and _number(result.metric_value) is not None):
            dataset = result.dataset_name or card.info.get("dataset") or "?"
            found.append((str(dataset), norm, eps, result))
    return found


def slugs(cards: Iterable[SiteCard]) -> dict[int, str]:
    """id(card) -> a unique file-name-safe page name (``org--name`` for Hub ids)."""
    taken, result = set(), {}
    for card in cards:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", card.title.replace("/", "--")).strip(".-") or "model"
        slug, n = base, 2
        while slug.lower() in taken:
            slug, n = f"{base}-{n}", n + 1
        taken.add(slug.lower())
        result[id(card)] = slug
    return result


def boards(cards: list[SiteCard]) -> list[Board]:
    """The boards of ``cards``: one per (dataset, norm, eps), best robust accuracy first (ties: clean accuracy, then
    name), then the board of the cards without an AutoAttack entry (best rho2 first), if any."""
    names = slugs(cards)
    by_threat: dict[tuple[str, str, float], dict[int, Row]] = {}
    untested = []
    for card in cards:
        clean = _first(card, "accuracy")
        entries = threat_models(card)
        if not entries:
            untested.append(Row(card, names[id(card)], clean, rho2=_first(card, "rho2")))
            continue
        for dataset, norm, eps, result in entries:
            args = result.metric_args
            row = Row(card, names[id(card)], clean, robust_accuracy=_number(result.metric_value),
                      rho2=_first(card, "rho2"), eps=eps, n_examples=_int(args.get("n_examples")),
                      evaluation=str(args.get("version") or args.get("implementation") or "") or None)
            rows = by_threat.setdefault((dataset, norm, round(eps, 10)), {})
            previous = rows.get(id(card))
            if previous is None or row.robust_accuracy < previous.robust_accuracy:  # the strongest evaluation counts
                rows[id(card)] = row
    result = []
    for (dataset, norm, eps), rows in sorted(by_threat.items(), key=lambda kv: (kv[0][0], kv[0][1] != "linf",
                                                                                   kv[0][1], kv[0][2])):
        ranked = sorted(rows.values(), key=lambda r: (-r.robust_accuracy, -(r.clean_accuracy or 0.0), r.slug))
        anchor = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{dataset}-{norm}-{eps:g}")
        result.append(Board(anchor, f"{dataset} · {NORM_LABELS[norm]}, ε = {format_eps(eps)}", dataset, norm, eps,
                            ranked))
    if untested:
        ranked = sorted(untested, key=lambda r: (r.rho2 is None, -(r.rho2 or 0.0), r.slug))
        result.append(Board("no-threat-model", NO_THREAT_MODEL.capitalize(), None, None, None, ranked))
    return result


def _int(value) -> int | None:
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


def format_eps(eps: float) -> str:
    """``0.3``; a multiple of 1/255 that is no short decimal as ``8/255 (0.03137)``."""
    plain = f"{eps:.6g}"
    k = round(eps * 255)
    if 0 < eps < 1 and abs(eps * 255 - k) < 5e-4 and len(plain) > 6:
        return f"{k}/255 ({eps:.4g})"
    return plain


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


# --- HTML -----------------------------------------------------------------------------------------------------------
e = html.escape


def _page(title: str, body: str, *, depth: int) -> str:
    up = "../" * depth
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{e(title)}</title>
<link rel="stylesheet" href="{up}assets/site.css">
</head>
<body>
<header class="site"><h1><a href="{up}index.html">dd-hub leaderboard</a></h1>
<p>Classifiers hardened with Deep Defense and published with dd-hub, ranked by robust accuracy</p></header>
<main>
{body}
</main>
<footer>Built by <code>dd-hub site</code> from the model cards' <code>model-index</code>. Static page: nothing is
loaded from outside it.</footer>
<script src="{up}assets/site.js"></script>
</body>
</html>
"""


def _hub_cell(card: SiteCard) -> str:
    if not card.published:
        return '<span class="tag">not published yet</span>'
    if card.repo_id:
        return (f'<a class="hub" href="{e(HUB_URL + "/" + quote(card.repo_id))}" title="{e(card.repo_id)} on the '
                'Hugging Face Hub" rel="noopener noreferrer">Hub ↗</a>')
    return '<span class="muted">repo id unknown</span>'


def _num_cell(value: float | None, text: str, css: str = "num") -> str:
    data = "" if value is None else repr(float(value))
    return f'<td class="{css}" data-value="{data}">{e(text)}</td>'


def _header(label: str, kind: str, *, sorted_desc: bool = False, css: str = "", first: str | None = None) -> str:
    """A sortable column header; ``first`` is the direction of the first click (numbers: descending, text:
    ascending, unless given)."""
    cls = f' class="{css}"' if css else ""
    state = "descending" if sorted_desc else "none"
    first_attr = f' data-first="{first}"' if first else ""
    return (f'<th{cls} data-type="{kind}"{first_attr} aria-sort="{state}"><button type="button">{e(label)}</button>'
            "</th>")


def _board_html(board: Board) -> str:
    tested = board.norm is not None
    heads = [_header("Rank", "number", css="num", first="ascending"), _header("Model", "text"),
             _header("Clean accuracy", "number", css="num")]
    if tested:
        heads += [_header("AutoAttack robust accuracy", "number", sorted_desc=True, css="num"),
                  _header("Architecture", "text"), _header("Method", "text"), _header("ε", "number", css="num"),
                  _header("n_examples", "number", css="num"), _header("Evaluation", "text")]
    else:
        heads += [_header("rho2", "number", sorted_desc=True, css="num"), _header("Architecture", "text"),
                  _header("Dataset", "text"), _header("Method", "text")]
    heads.append(_header("Hub", "text"))
    rows = []
    for rank, row in enumerate(board.rows, 1):
        cells = [f'<td class="num rank" data-value="{rank}">{rank}</td>',
                 f'<td class="model"><a href="models/{e(quote(row.slug))}.html">{e(row.card.title)}</a></td>',
                 _num_cell(row.clean_accuracy, _percent(row.clean_accuracy))]
        if tested:
            cells += [_num_cell(row.robust_accuracy, _percent(row.robust_accuracy), "num robust"),
                      f"<td>{e(row.architecture)}</td>", f"<td>{e(row.method)}</td>",
                      _num_cell(row.eps, format_eps(row.eps)),
                      _num_cell(row.n_examples, "–" if row.n_examples is None else str(row.n_examples)),
                      f"<td>{e(row.evaluation or '–')}</td>"]
        else:
            cells += [_num_cell(row.rho2, "–" if row.rho2 is None else f"{row.rho2:.4g}"),
                      f"<td>{e(row.architecture)}</td>", f"<td>{e(row.dataset)}</td>", f"<td>{e(row.method)}</td>"]
        cells.append(f"<td>{_hub_cell(row.card)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if tested:
        note = (f"Ranked by robust accuracy under AutoAttack ({NORM_LABELS[board.norm]}, ε = {format_eps(board.eps)} "
                f"in [0, 1] pixel space) on the test split of {board.dataset}; n_examples is the number of test images "
                "the card reports for that entry, Evaluation the AutoAttack version it states.")
    else:
        note = ("These models' cards hold no AutoAttack entry, so they cannot be ranked against a standard threat "
                "model. Listed by rho2 (mean DeepFool L2 ratio, higher is more robust), which is not comparable "
                "across datasets.")
    board_id = f"board-{board.anchor}"
    return f"""<section class="board" id="{e(board.anchor)}">
<h2>{e(board.title)}</h2>
<p class="note">{e(note)}</p>
<div class="toolbar"><input class="filter" type="search" placeholder="Filter rows…"
 aria-label="Filter the rows of {e(board.title)}" data-board="{e(board_id)}">
<span class="muted" id="{e(board_id)}-count"></span></div>
<div class="table-wrap"><table class="board" id="{e(board_id)}">
<thead><tr>{"".join(heads)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table></div>
</section>"""


def _index_html(all_boards: list[Board], cards: list[SiteCard], notices: list[str]) -> str:
    parts = []
    intro = ("One board per dataset and threat model, like RobustBench: a threat model is an AutoAttack entry of a "
             "card's model-index (norm and ε). Click a column header to sort, type in a board's box to filter its "
             "rows, click a model for its card, figures and how to load it.")
    parts.append(f'<section class="panel"><p>{e(intro)}</p>')
    if all_boards:
        links = "".join(f'<a href="#{e(b.anchor)}">{e(b.title)} ({len(b.rows)})</a>' for b in all_boards)
        parts.append(f'<nav class="toc">{links}</nav>')
    else:
        parts.append("<p><strong>No model cards found.</strong></p>")
    parts.append(f'<p class="note">{len(cards)} model card{"s" if len(cards) != 1 else ""}.</p>')
    for notice in notices:
        parts.append(f'<div class="notice">{e(notice)}</div>')
    parts.append("</section>")
    parts.extend(_board_html(b) for b in all_boards)
    return _page("dd-hub leaderboard", "\n".join(parts), depth=0)


def _load_line(card: SiteCard) -> str:
    repo_id = card.repo_id or f"ORG/{card.name}"
    if card.timm_loadable:
        return (f"import timm\nimport dd_hub  # registers dd-hub's own architectures\n\n"
                f"model = timm.create_model('hf-hub:{repo_id}', pretrained=True).eval()")
    return f"import dd_hub\n\nmodel = dd_hub.load('{repo_id}')  # takes [0, 1] images"


def _figure_rows(card: SiteCard) -> str:
    rows = []
    for result in _results(card):
        value = _number(result.metric_value)
        if value is None:
            text = str(result.metric_value)
        elif result.metric_type in ("accuracy", "robust_accuracy") and 0 <= value <= 1:
            text = _percent(value)
        else:
            text = f"{value:.4g}"
        args = result.metric_args if isinstance(result.metric_args, dict) else {}
        settings = ", ".join(f"{k}={v}" for k, v in args.items())
        rows.append(f"<tr><td>{e(result.metric_name or result.metric_type)}</td>"
                    f'<td class="num">{e(text)}</td><td>{e(str(result.dataset_name))} '
                    f"({e(str(result.dataset_split or '?'))})</td><td><code>{e(settings)}</code></td></tr>")
    if not rows:
        return '<p class="muted">The card has no model-index figures.</p>'
    return ("<table><thead><tr><th>metric</th><th class=\"num\">value</th><th>dataset</th><th>settings</th></tr>"
            "</thead><tbody>" + "\n".join(rows) + "</tbody></table>")


def _model_html(card: SiteCard, slug: str, image_files: dict[str, str]) -> str:
    info = card.info
    facts = [("Architecture", info.get("architecture") or "?"), ("Dataset", info.get("dataset") or "?"),
             ("Method", info.get("method") or DEFAULT_METHOD), ("Recipe", info.get("recipe") or "?"),
             ("rho space", info.get("rho_space") or "?"), ("dd-hub version", info.get("version") or "?"),
             ("Library", getattr(card.card.data, "library_name", None) or "?")]
    facts_html = "".join(f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in facts)
    if not card.published:
        hub = ('<div class="notice">The weights of this model are not published yet: the card says '
               "<code>published: false</code>. The load line below will work once they are.</div>")
    elif card.repo_id:
        hub = (f'<p>On the Hub: <a href="{e(HUB_URL + "/" + quote(card.repo_id))}" rel="noopener noreferrer">'
               f"{e(card.repo_id)}</a></p>")
    else:
        hub = '<p class="muted">The card does not name its Hub repo (ORG/NAME below is a placeholder).</p>'
    gallery = "".join(f'<figure><img src="{e(quote(slug))}/{e(quote(image_files[ref]))}" alt="{e(ref)}">'
                      f"<figcaption>{e(ref)}</figcaption></figure>" for ref in card.images)
    missing = "".join(f'<div class="notice">Figure <code>{e(ref)}</code> is referenced by the card but was not '
                      "found next to it.</div>" for ref in card.missing_images)
    body = render_markdown(card.card.text, images={ref: f"{slug}/{name}" for ref, name in image_files.items()},
                           repo_id=card.repo_id if card.published else None)
    parts = ['<p><a href="../index.html">← all boards</a></p>',
             f'<section class="panel"><h2>{e(card.title)}</h2><dl class="facts">{facts_html}</dl>{hub}',
             f"<h3>Load it</h3><pre><code>{e(_load_line(card))}</code></pre></section>",
             f'<section class="panel"><h3>Figures (model-index)</h3>{_figure_rows(card)}</section>']
    if gallery or missing:
        parts.append(f'<section class="panel"><h3>Curves</h3><div class="figures">{gallery}</div>{missing}</section>')
    parts.append(f'<section class="card-body"><h3>Model card</h3>{body}</section>')
    return _page(f"{card.title} · dd-hub leaderboard", "\n".join(parts), depth=1)


# --- Markdown, sanitised ------------------------------------------------------------------------------------------
def _markdown():
    try:
        import markdown
    except ImportError:
        raise DDHubError("the site needs the markdown package: pip install 'markdown>=3.5'") from None
    md = markdown.Markdown(extensions=["tables", "fenced_code"], output_format="html")
    md.preprocessors.deregister("html_block")   # raw HTML in a card is shown as text, never interpreted
    md.inlinePatterns.deregister("html")
    return md


class _MarkdownImages(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.extend(v for k, v in attrs if k == "src" and v)

    @classmethod
    def collect(cls, body: str) -> list[str]:
        parser = cls()
        parser.feed(_markdown().convert(body or ""))
        parser.close()
        return parser.sources


_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "code", "pre", "blockquote",
         "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a", "img", "del", "sup", "sub"}
_VOID = {"br", "hr", "img"}
_DROP_CONTENT = {"script", "style", "iframe", "object", "embed", "template", "svg", "math"}
_ALIGN = re.compile(r"^\s*text-align:\s*(left|right|center);?\s*$")
_LANGUAGE = re.compile(r"^language-[A-Za-z0-9_+-]+$")


class _Sanitizer(HTMLParser):
    """Re-emits whitelisted tags and attributes only; rewrites image sources to local copies (other images become
    links) and drops links with schemes other than http(s)/mailto."""

    def __init__(self, images: dict[str, str], repo_id: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.images, self.repo_id = images, repo_id
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in _DROP_CONTENT:
            self.skip += 1
            return
        if self.skip or tag not in _TAGS:
            return
        attrs = dict(attrs)
        kept: list[tuple[str, str]] = []
        if tag == "img":
            return self._image(attrs)
        if tag == "a":
            href = self._href(attrs.get("href") or "")
            if href:
                kept += [("href", href), ("rel", "nofollow noopener noreferrer")]
            if attrs.get("title"):
                kept.append(("title", attrs["title"]))
        elif tag in ("th", "td") and _ALIGN.match(attrs.get("style") or "") \
                or tag in ("th", "td") and attrs.get("align") in ("left", "right", "center"):
            align = attrs.get("align") or _ALIGN.match(attrs["style"]).group(1)
            kept.append(("style", f"text-align: {align};"))
        elif tag == "code" and _LANGUAGE.match(attrs.get("class") or ""):
            kept.append(("class", attrs["class"]))
        elif tag == "ol" and (attrs.get("start") or "").isdigit():
            kept.append(("start", attrs["start"]))
        self.out.append(f"<{tag}" + "".join(f' {k}="{e(v)}"' for k, v in kept) + ">")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in _DROP_CONTENT:
            self.skip = max(0, self.skip - 1)
        elif not self.skip and tag in _TAGS and tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(e(data, quote=False))

    def _image(self, attrs: dict) -> None:
        src, alt = attrs.get("src") or "", attrs.get("alt") or ""
        path = _local_path(src)
        if path is not None and path in self.images:
            self.out.append(f'<img src="{e(quote(self.images[path]))}" alt="{e(alt)}">')
            return
        label = f"[image not shown: {alt or src}]"
        parts = urlsplit(src.strip())
        if parts.scheme in ("http", "https"):  # a link the reader may follow; never loaded by the page
            self.out.append(f'<a href="{e(src.strip())}" rel="nofollow noopener noreferrer">{e(label)}</a>')
        else:
            self.out.append(f'<span class="muted">{e(label)}</span>')

    def _href(self, href: str) -> str | None:
        href = href.strip()
        parts = urlsplit(href)
        if parts.scheme in ("http", "https", "mailto"):
            return href
        if parts.scheme or parts.netloc:
            return None          # javascript:, data:, file:, protocol-relative ...
        if href.startswith("#"):
            return href
        path = _local_path(href)
        if path is not None and path in self.images:
            return quote(self.images[path])
        if path is not None and self.repo_id:
            return f"{HUB_URL}/{quote(self.repo_id)}/blob/main/{quote(path)}"
        return None


def render_markdown(text: str, *, images: dict[str, str] | None = None, repo_id: str | None = None) -> str:
    """A card body as sanitised HTML: Markdown (tables, fenced code) with raw HTML escaped; image paths of
    ``images`` (as written in the card -> path of the copy, relative to the page) shown, other images as links."""
    sanitizer = _Sanitizer(images or {}, repo_id)
    sanitizer.feed(_markdown().convert(text or ""))
    sanitizer.close()
    return "".join(sanitizer.out)


# --- writing ------------------------------------------------------------------------------------------------------
@dataclass
class SiteResult:
    """What :func:`build_site` wrote."""

    index: Path
    pages: list[Path]
    boards: list[Board]
    notices: list[str]


def _asset(name: str) -> bytes:
    return (resources.files("dd_hub") / "site_assets" / name).read_bytes()


def _image_names(card: SiteCard) -> dict[str, str]:
    names, taken = {}, set()
    for ref in card.images:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", ref.replace("/", "__")).strip("._") or "figure"
        base = base if base.lower().endswith(".png") else base + ".png"
        name, n = base, 2
        while name.lower() in taken:
            name, n = f"{n}-{base}", n + 1
        taken.add(name.lower())
        names[ref] = name
    return names


def build_site(cards: list[SiteCard], out_dir: str | Path, *, notices: list[str] | None = None) -> SiteResult:
    """Write the site for ``cards`` into ``out_dir`` (index.html, assets/, models/<name>.html and its figures).

    The site is built in a temporary sibling directory and moved into place, so a failed build leaves the previous
    site untouched. An existing ``out_dir`` is replaced only if it is empty or a site built by this function.
    """
    out_dir = Path(out_dir)
    notices = list(notices or [])
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / MARKER).is_file())):
        raise DDHubError(f"{out_dir} exists and is not a dd-hub site; choose a new or empty directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    cards = sorted(cards, key=lambda c: (c.title.lower(), c.title, c.source, c.name))
    all_boards = boards(cards)
    names = slugs(cards)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (work / "assets").mkdir()
        (work / "models").mkdir()
        for asset in ("site.css", "site.js"):
            (work / "assets" / asset).write_bytes(_asset(asset))
        pages = []
        for card in cards:
            slug = names[id(card)]
            files = _image_names(card)
            if files:
                (work / "models" / slug).mkdir()
            for ref, name in files.items():
                (work / "models" / slug / name).write_bytes(card.images[ref])
            (work / "models" / f"{slug}.html").write_text(_model_html(card, slug, files), encoding="utf-8")
            pages.append(out_dir / "models" / f"{slug}.html")
        (work / "index.html").write_text(_index_html(all_boards, cards, notices), encoding="utf-8")
        (work / MARKER).write_text("built by `dd-hub site`; the whole directory is replaced on rebuild\n")
        os.chmod(work, 0o755)
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, old / "site")
            os.replace(work, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return SiteResult(out_dir / "index.html", pages, all_boards, notices)
