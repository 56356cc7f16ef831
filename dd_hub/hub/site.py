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

import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from urllib.parse import quote, urlsplit

from ..errors import DDHubError
from ..registration import is_own_architecture
from .boards import (DEFAULT_METHOD, HUB_URL, NORM_LABELS, Board, Card, _local_path, _number, _percent,
                          _results, boards, format_eps, slugs)

MARKER = ".dd-hub-site"          # marks an output directory as ours, so a rebuild may replace it

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


def _hub_cell(card: Card) -> str:
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


def _evaluation_html(evaluation: str | None) -> str:
    """The evaluation cell, broken only between attacks ("custom (apgd-ce, apgd-t)"), never inside a name."""
    if not evaluation:
        return "–"
    return ", ".join(f'<span class="nowrap">{e(part)}</span>' for part in evaluation.split(", "))


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
                      f"<td>{_evaluation_html(row.evaluation)}</td>"]
        else:
            cells += [_num_cell(row.rho2, "–" if row.rho2 is None else f"{row.rho2:.4g}"),
                      f"<td>{e(row.architecture)}</td>", f"<td>{e(row.dataset)}</td>", f"<td>{e(row.method)}</td>"]
        cells.append(f"<td>{_hub_cell(row.card)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if tested:
        note = (f"Ranked by robust accuracy under AutoAttack ({NORM_LABELS[board.norm]}, ε = {format_eps(board.eps)} "
                f"in [0, 1] pixel space) on the test split of {board.dataset}. n_examples: the number of test images "
                "the card's AutoAttack figure was measured on; Evaluation: the AutoAttack version the card states "
                "(standard, or custom with the attacks it names).")
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


def _index_html(all_boards: list[Board], cards: list[Card], notices: list[str]) -> str:
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


def _load_line(card: Card) -> str:
    repo_id = card.repo_id or f"ORG/{card.name}"
    if card.timm_loadable:
        own = is_own_architecture(str(card.info.get("architecture") or ""))
        registration = "import dd_hub  # registers dd-hub's own architectures with timm\n" if own else ""
        return (f"import timm\n{registration}\n"
                f"model = timm.create_model('hf-hub:{repo_id}', pretrained=True).eval()")
    return f"import dd_hub\n\nmodel = dd_hub.load('{repo_id}')  # takes [0, 1] images"


def _figure_rows(card: Card) -> str:
    results = _results(card)
    if not results:
        return '<p class="muted">The card has no model-index figures.</p>'
    datasets = [f"{result.dataset_name} ({result.dataset_split or '?'})" for result in results]
    shared = len(set(datasets)) == 1      # the usual case: state the test images once, above the table
    rows = []
    for result, dataset in zip(results, datasets):
        value = _number(result.metric_value)
        if value is None:
            text = str(result.metric_value)
        elif result.metric_type in ("accuracy", "robust_accuracy") and 0 <= value <= 1:
            text = _percent(value)
        else:
            text = f"{value:.4g}"
        args = result.metric_args if isinstance(result.metric_args, dict) else {}
        settings = ", ".join(f"{k}={v}" for k, v in args.items())
        dataset_cell = "" if shared else f"<td>{e(dataset)}</td>"
        rows.append(f"<tr><td>{e(result.metric_name or result.metric_type)}</td>"
                    f'<td class="num">{e(text)}</td>{dataset_cell}<td><code>{e(settings)}</code></td></tr>')
    intro = f'<p class="note">Test images: {e(datasets[0])}.</p>' if shared else ""
    dataset_head = "" if shared else "<th>dataset</th>"
    return (f'{intro}<table><thead><tr><th>metric</th><th class="num">value</th>{dataset_head}<th>settings</th>'
            "</tr></thead><tbody>" + "\n".join(rows) + "</tbody></table>")


def _model_html(card: Card, slug: str, image_files: dict[str, str]) -> str:
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
    return (resources.files("dd_hub.hub") / "site_assets" / name).read_bytes()


def _image_names(card: Card) -> dict[str, str]:
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


def build_site(cards: list[Card], out_dir: str | Path, *, notices: list[str] | None = None) -> SiteResult:
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
