"""A static leaderboard site of dd-hub checkpoints, RobustBench-like: ``dd-hub site OUT [--from DIR]``.

Input: validated cards (:mod:`dd_hub.hub.cards`), read from local card folders or from the Hub. Output
(:func:`build_site`): one board per (dataset, threat model) ranked like ``dd-hub list`` (:mod:`dd_hub.hub.boards`),
one board for the cards without a threat model, one page per model, each figure with its verification status.

Pages are rendered from Jinja2 templates (``templates/``) with autoescaping on, so every string from a card is
escaped; card bodies are rendered with markdown-it-py (CommonMark, linear time) with raw HTML escaped, then passed through a
tag/attribute whitelist whose links keep http(s)/mailto schemes only, and enter the templates as that sanitised
HTML. The site is self-contained static HTML, CSS and JavaScript: no URL outside it is ever loaded (no CDN, no web
font, no remote image; remote images in a card are shown as links), so it works opened from ``file://``. The output
is deterministic: the same cards give the same bytes.

Rebuilding into a folder keeps every file the previous build did not write (a ``CNAME``, a ``.git`` folder: how
GitHub Pages sites are kept); the files it wrote are listed with their sha256 in the folder's ``.dd-hub-site``
manifest, and a rebuild removes only those that are still unchanged and are site files (``index.html``,
``assets/``, ``models/``), whatever a manifest lists. A folder that
is not a dd-hub site, or a user file where the new site needs to write, is refused with one line.
"""
from __future__ import annotations

import html
import json
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
from ..names import SITE_MARKER
from ..registration import is_own_architecture
from ..storage.atomic_io import sha256_file
from ..text import one_line, unique_names
from .boards import (DEFAULT_METHOD, NORM_LABELS, Board, boards, format_eps, informative_board, percent, points,
                     slugs)
from .cards import HUB_URL, Card, image_captions, local_path
from .verification import figure_status

MAX_BODY_CHARS = 100_000
e = html.escape


def _environment():
    try:
        import jinja2
    except ImportError:
        raise DDHubError("the site needs Jinja2: pip install 'jinja2>=3.1'") from None
    env = jinja2.Environment(loader=jinja2.PackageLoader("dd_hub.hub", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals.update(hub_url=HUB_URL, norm_labels=NORM_LABELS, format_eps=format_eps, percent=percent)
    return env


def load_line(card: Card) -> str | None:
    """The Python lines that load the model by its real Hub id, or None while it has none (not published yet)."""
    if not card.published or card.repo_id is None:
        return None
    if card.timm_loadable:
        own = is_own_architecture(str(card.info.get("architecture") or ""))
        registration = "import dd_hub  # registers dd-hub's own architectures with timm\n" if own else ""
        return (f"import timm\n{registration}\n"
                f"model = timm.create_model('hf-hub:{card.repo_id}', pretrained=True).eval()")
    return f"import dd_hub\n\nmodel = dd_hub.load('{card.repo_id}')  # takes [0, 1] images"


#: what dd-hub's own figure files show, for their captions
FIGURE_CAPTIONS = {
    "robustness_curve.png": "Robustness curve: accuracy against ε under FGS, PGD and AutoAttack (L∞ and L2 panels), "
                            "reference and hardened model, measured points only",
    "training_curve.png": "Training curve: training-batch accuracy and ρ₂ per hardening epoch (the paper's Fig. 2)",
}


def figure_caption(ref: str, alt: str = "") -> str:
    """A figure's caption: dd-hub's words for its own figure files, else the card's alt text, else the file name."""
    return FIGURE_CAPTIONS.get(ref.rsplit("/", 1)[-1]) or one_line(alt, 200) or ref


def _figures(card: Card) -> tuple[list[dict], str | None]:
    """The model page's figure rows, and the test images they share (None when they differ)."""
    rows = []
    for figure in card.figures:
        status = figure_status(card, figure)
        text = percent(figure.value) if figure.kind in ("accuracy", "robust_accuracy") else f"{figure.value:.4g}"
        reference = card.reference.get("autoattack", {}).get(str(figure.args.get("threat_model"))) \
            if figure.threat_model is not None else card.reference.get("clean_accuracy") \
            if figure.kind == "accuracy" else None
        rows.append({"name": figure.name, "text": text, "status": status.status, "by": status.by,
                     "note": status.text if status.status == "re-measured" else "",
                     "reference": percent(reference) if reference is not None else "",
                     "gain": points(figure.value - reference) if reference is not None else "",
                     "dataset": f"{figure.dataset} ({figure.split or '?'})",
                     "settings": ", ".join(f"{k}={one_line(v, 80)}" for k, v in figure.args.items())})
    datasets = {row["dataset"] for row in rows}
    return rows, (datasets.pop() if len(datasets) == 1 else None)


def _model_page(env, card: Card, slug: str, image_files: dict[str, str], *, render_body: bool,
                boards_of: list[Board]) -> str:
    from markupsafe import Markup

    info = card.info
    facts = [("Architecture", info.get("architecture") or "?"), ("Dataset", info.get("dataset") or "?"),
             ("Method", info.get("method") or "deep_defense"), ("Recipe", info.get("recipe") or "?"),
             ("rho space", info.get("rho_space") or "?"), ("dd-hub version", info.get("version") or "?"),
             ("Library", card.library or "?")]
    if card.base_model:
        facts.append(("Starting weights", card.base_model))
    figures, shared = _figures(card)
    captions = image_captions(card.body)
    local = [(f"{slug}/{name}", figure_caption(ref, captions.get(ref, ""))) for ref, name in image_files.items()]
    revision = card.revision or "main"
    linked = [(f"{HUB_URL}/{card.repo_id}/blob/{revision}/{ref}", figure_caption(ref)) for ref in card.hub_images] \
        if card.repo_id and not image_files else []
    body = None
    if render_body and card.body.strip():
        body = Markup(render_markdown(card.body, images={ref: f"{slug}/{name}" for ref, name in image_files.items()},
                                      repo_id=card.repo_id if card.published else None))
    return env.get_template("model.html.j2").render(
        title=f"{card.title} · dd-hub leaderboard", up="../", card=card, facts=[(k, str(v)) for k, v in facts],
        load_line=load_line(card), figures=figures, shared_dataset=shared, local_figures=local,
        linked_figures=linked, body=body, boards=boards_of, max_bodies=MAX_RENDERED_BODIES)


# --- Markdown, sanitised ------------------------------------------------------------------------------------------
def _markdown():
    """CommonMark with tables and strikethrough (markdown-it-py, whose parser runs in about linear time on
    pathological input such as ``'[a](' * 25000``, where Python-Markdown's took minutes); raw HTML in a card is
    shown as text, never interpreted."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        raise DDHubError("the site needs markdown-it-py: pip install 'markdown-it-py>=3.0'") from None
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    md.validateLink = lambda url: True   # every link becomes <a>: the sanitizer keeps its text and drops bad schemes
    return md


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
        path = local_path(src)
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
        path = local_path(href)
        if path is not None and path in self.images:
            return quote(self.images[path])
        if path is not None and self.repo_id:
            return f"{HUB_URL}/{quote(self.repo_id)}/blob/main/{quote(path)}"
        return None


def render_markdown(text: str, *, images: dict[str, str] | None = None, repo_id: str | None = None) -> str:
    """A card body as sanitised HTML: Markdown (tables, fenced code) with raw HTML escaped; image paths of
    ``images`` (as written in the card -> path of the copy, relative to the page) shown, other images as links.
    Bodies longer than :data:`MAX_BODY_CHARS` are cut there, with a note: the time to render is linear in the
    input and bounded."""
    text = text or ""
    cut = len(text) > MAX_BODY_CHARS
    sanitizer = _Sanitizer(images or {}, repo_id)
    sanitizer.feed(_markdown().render(text[:MAX_BODY_CHARS]))
    sanitizer.close()
    note = (f'<p class="notice">The card\'s text is longer than {MAX_BODY_CHARS:,} characters; the rest is not '
            "shown here.</p>") if cut else ""
    return "".join(sanitizer.out) + note


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
    return dict(zip(card.images, unique_names([ref.replace("/", "__") for ref in card.images], suffix=".png")))


#: card bodies are rendered into the model pages of sites of at most this many models (a card body takes ~6 ms to
#: render: 10,000 would take a minute); larger sites link each card instead (on the Hub, or its copied text)
MAX_RENDERED_BODIES = 1000
#: board rows per page of the site's boards (the reader may choose 25 to 500)
ROWS_PER_PAGE = 50


def build_site(cards: list[Card], out_dir: str | Path, *, notices: list[str] | None = None) -> SiteResult:
    """Write the site for ``cards`` into ``out_dir``: ``index.html`` (small at any scale), ``data/`` (one script per
    board, loaded when the board is opened, and the search index, loaded on the first search), ``assets/`` and
    ``models/<name>.html`` (with local cards' figures beside it; Hub figures are linked, never copied).

    The site is built in a temporary sibling folder first, so a failed build changes nothing; then the previous
    build's files (its manifest) are replaced by the new ones, and every other file in ``out_dir`` is kept.
    """
    out_dir = Path(out_dir)
    notices = [one_line(n, 500) for n in notices or []]
    previous = _previous_build(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    cards = sorted(cards, key=lambda c: (c.title.lower(), c.title, c.source, c.name))
    all_boards = boards(cards)
    names = slugs(cards)
    files = dict(zip([b.anchor for b in all_boards], unique_names([f"board-{b.anchor}" for b in all_boards],
                                                                  suffix=".js")))
    boards_of: dict[int, list[Board]] = {}
    for board in all_boards:
        for row in board.rows:
            boards_of.setdefault(id(row.card), []).append(board)
    env = _environment()
    render_bodies = len(cards) <= MAX_RENDERED_BODIES
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for folder in ("assets", "models", "data"):
            (work / folder).mkdir()
        for asset in ("site.css", "site.js"):
            (work / "assets" / asset).write_bytes(_asset(asset))
        pages = []
        for card in cards:
            slug = names[id(card)]
            images = _image_names(card)
            if images:
                (work / "models" / slug).mkdir()
            for ref, name in images.items():
                (work / "models" / slug / name).write_bytes(card.images[ref])
            page = _model_page(env, card, slug, images, render_body=render_bodies,
                               boards_of=boards_of.get(id(card), []))
            (work / "models" / f"{slug}.html").write_text(page, encoding="utf-8")
            pages.append(out_dir / "models" / f"{slug}.html")
        for board in all_boards:
            _write_script(work / "data" / files[board.anchor], "board", board.anchor, board_rows(board))
        _write_script(work / "data" / "search.js", "search", search_rows(cards, names, boards_of, all_boards))
        first = informative_board(all_boards)
        _write_script(work / "data" / "index.js", "index", {
            "boards": [{"anchor": b.anchor, "title": b.title, "dataset": b.dataset, "tested": b.norm is not None,
                        "rows": len(b.rows), "file": files[b.anchor]} for b in all_boards],
            "first": first.anchor if first else None, "models": len(cards), "pageSize": ROWS_PER_PAGE, "hub": HUB_URL,
            "facets": {key: sorted({str(getattr(r, key)) for b in all_boards for r in b.rows})
                       for key in ("architecture", "method", "dataset")}})
        (work / "index.html").write_text(env.get_template("index.html.j2").render(
            title="dd-hub leaderboard", up="", boards=all_boards, cards=cards, notices=notices[:MAX_NOTICES],
            more_notices=max(0, len(notices) - MAX_NOTICES)), encoding="utf-8")
        written = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
        (work / SITE_MARKER).write_text("built by `dd-hub site`; it rewrites the files listed below (sha256, name) "
                                        "on a rebuild if they are unchanged, and keeps every other file\n" + "".join(
                                            f"{sha256_file(work / name)}  {name}\n" for name in written))
        _replace(out_dir, work, previous, written)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return SiteResult(out_dir / "index.html", pages, all_boards, notices)


#: notices listed on the index page (the rest are counted; the command prints them all)
MAX_NOTICES = 50
#: a board row in the site's data: the field order site.js reads (``ROW`` there)
ROW_FIELDS = ("rank", "slug", "model", "clean", "robust", "gain", "status", "status_text", "flags", "architecture",
              "method", "dataset", "n", "evaluation", "repo", "published", "rho2", "also")


def board_rows(board: Board) -> list[list]:
    """The rows of ``board`` as lists in :data:`ROW_FIELDS` order (plain JSON values; strings one safe line)."""
    return [[rank, r.slug, r.card.title, r.clean_accuracy, r.robust_accuracy, r.gain, r.status,
             r.status_note if r.status != "self-reported" else "", "; ".join(r.flags), r.architecture, r.method,
             r.dataset, r.n_examples, r.evaluation or "", r.card.repo_id or "", int(r.card.published), r.rho2,
             r.also_named[:5] + ([f"{len(r.also_named) - 5} more"] if len(r.also_named) > 5 else [])]
            for rank, r in enumerate(board.rows, 1)]


def search_rows(cards: list[Card], names: dict[int, str], boards_of: dict[int, list[Board]],
                all_boards: list[Board]) -> list[list]:
    """One entry per model for the search across boards: slug, name, architecture, method, dataset, and the
    positions of its boards in ``all_boards``."""
    def field(card: Card, key: str, default: str) -> str:
        return str(card.info.get(key) or default)

    position = {id(b): i for i, b in enumerate(all_boards)}
    return [[names[id(card)], card.title, field(card, "architecture", "?"), field(card, "method", DEFAULT_METHOD),
             field(card, "dataset", "?"), [position[id(b)] for b in boards_of.get(id(card), [])]] for card in cards]


def _write_script(path: Path, call: str, *args) -> None:
    """A script that hands ``args`` to ``DDHUB.<call>``: plain JSON (ASCII, so nothing in it can end the script or
    be read as markup), loadable with a script tag from ``file://``, where a page cannot fetch JSON."""
    text = ",".join(json.dumps(arg, ensure_ascii=True, separators=(",", ":"), allow_nan=False) for arg in args)
    path.write_text(f"DDHUB.{call}({text});\n", encoding="ascii")


def _previous_build(out_dir: Path) -> list[str]:
    """The files the previous build wrote (from its manifest); a one-line error unless ``out_dir`` is new, empty or
    a dd-hub site."""
    if not out_dir.exists():
        return []
    if not out_dir.is_dir() or out_dir.is_symlink():
        raise DDHubError(f"{out_dir} exists and is not a folder; choose another site folder")
    marker = out_dir / SITE_MARKER
    if not marker.is_file():
        if any(out_dir.iterdir()):
            raise DDHubError(f"{out_dir} holds files and is not a dd-hub site; choose a new or empty folder")
        return []
    listed = marker.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    ours = []
    for line in listed[:1_000_000]:
        digest, sep, name = line.partition("  ")
        if not sep:
            digest, name = None, line          # a manifest of an older dd-hub: names only
        if name and local_path(name) == name and _site_name(name) and _unchanged(out_dir / name, digest):
            ours.append(name)
    return ours


def _site_name(name: str) -> bool:
    """Whether ``name`` is a file the site writes: index.html, assets/*, data/*, models/* (never a hidden file, a
    CNAME, a .git folder or a user's notes, whatever a manifest lists)."""
    parts = name.split("/")
    return not any(part.startswith(".") for part in parts) and (
        name == "index.html" or parts[0] in ("assets", "data", "models") and len(parts) > 1)


def _unchanged(path: Path, digest: str | None) -> bool:
    """The file is still what the site wrote (its recorded sha256), or not there; a file changed since is the
    user's now."""
    if not path.is_file() or path.is_symlink() or digest is None:
        return True
    try:
        return path.stat().st_size <= 64 << 20 and sha256_file(path) == digest
    except OSError:
        return False


def _replace(out_dir: Path, work: Path, previous: list[str], written: list[str]) -> None:
    """Remove the previous build's files, move the new build's in; other files of ``out_dir`` stay. Every check runs
    before the first file is touched, and nothing is removed or written through a link."""
    out_dir.mkdir(exist_ok=True)
    ours = set(previous) | {SITE_MARKER}
    clash = [name for name in written if (out_dir / name).exists() and name not in ours]
    if clash:
        raise DDHubError(f"{out_dir / clash[0]} was not written by dd-hub site and the new site needs that name; "
                         "move it away or choose another folder")
    blocked = [name for name in written if not _real_folders(out_dir, Path(name).parent)]
    if blocked:
        raise DDHubError(f"{out_dir / Path(blocked[0]).parent} is a link or a file where the site needs a folder of "
                         "its own; move it away or choose another folder")
    try:
        for name in previous:
            target = out_dir / name
            if _real_folders(out_dir, Path(name).parent) and target.is_file() and not target.is_symlink():
                target.unlink()
        for folder in sorted({Path(name).parent for name in previous}, key=lambda p: -len(p.parts)):
            path = out_dir / folder
            if folder.parts and _real_folders(out_dir, folder) and path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        for name in [*written, SITE_MARKER]:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(work / name, out_dir / name)
    except OSError as exc:
        raise DDHubError(f"cannot write the site into {out_dir}: {exc.strerror or exc}; rerun the command") from None


def _real_folders(out_dir: Path, folder: Path) -> bool:
    """Whether ``out_dir / folder`` and every folder on the way to it is a real folder (or not there yet): no link,
    no file."""
    path = out_dir
    for part in folder.parts:
        path = path / part
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            return False
    return True
