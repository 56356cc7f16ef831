"""Leaderboards, RobustBench-like: one board per (dataset, threat model), ranked by AutoAttack robust accuracy,
as ``dd-hub list``'s Markdown and JSON, and ``model_cards/index.md``. The HTML site (:mod:`dd_hub.hub.site`) renders
the same boards.

A threat model is an AutoAttack figure of a card (:class:`dd_hub.hub.cards.Figure` with ``attack: autoattack``,
a norm and an eps). Every row says whether its robust figure is *verified* (re-measured by someone other than the
publisher and found to agree), *disputed* or *self-reported* (:mod:`dd_hub.hub.verification`), and carries the
card's impossible claims as flags. Verified rows rank first, then self-reported ones, then flagged or disputed
ones; within each group, by robust accuracy. Text from cards reaches a table only through
:func:`dd_hub.text.markdown_cell`.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..names import INDEX_NAME
from ..storage.atomic_io import write_text_atomic
from ..text import markdown_cell, markdown_table, name_skeleton, one_line, unique_names
from .cards import HUB_URL, Card, Figure
from .collection import load_local_cards
from .verification import canonical_dataset, canonical_eps, card_dataset, counted_weights, figure_status

DEFAULT_METHOD = "deep_defense"
NO_THREAT_MODEL = "no standard threat model evaluated"
NORM_LABELS = {"linf": "L∞", "l2": "L2"}
STATUS_ORDER = {"verified": 0, "self-reported": 1, "re-measured": 1, "disputed": 2}


@dataclass
class Row:
    """One card on one board."""

    card: Card
    slug: str
    clean_accuracy: float | None
    robust: Figure | None = None
    rho2: float | None = None
    status: str = "self-reported"    # of the robust figure: verified, disputed, re-measured or self-reported
    verified_by: str = ""
    status_note: str = ""            # the status in words (figure_status's text)
    flags: list[str] = field(default_factory=list)
    also_named: list[str] = field(default_factory=list)   # other cards of the same weights, merged into this row

    @property
    def robust_accuracy(self) -> float | None:
        return None if self.robust is None else self.robust.value

    @property
    def eps(self) -> float | None:
        return None if self.robust is None else self.robust.args["eps"]

    @property
    def n_examples(self) -> int | None:
        return None if self.robust is None else self.robust.args.get("n_examples")

    @property
    def evaluation(self) -> str | None:
        """How the AutoAttack figure was run, as the card states it: ``standard``, or ``custom (apgd-ce, ...)``."""
        if self.robust is None:
            return None
        args = self.robust.args
        version = str(args.get("version") or args.get("implementation") or "")
        attacks = args.get("attacks")
        if version == "custom" and isinstance(attacks, list) and attacks:
            version += f" ({', '.join(map(str, attacks))})"
        return version or None

    @property
    def reference_robust(self) -> float | None:
        """The reference model's robust accuracy at this row's threat model, where the card names it."""
        if self.robust is None:
            return None
        return self.card.reference.get("autoattack", {}).get(str(self.robust.args.get("threat_model")))

    @property
    def gain(self) -> float | None:
        """Robust accuracy gained over the reference model (a fraction; negative for a loss), where the card
        names the reference's figure."""
        reference = self.reference_robust
        return None if reference is None or self.robust is None else self.robust.value - reference

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


def slugs(cards: list[Card]) -> dict[int, str]:
    """id(card) -> a unique file-name-safe page name (``org--name`` for Hub ids)."""
    names = unique_names([card.title.replace("/", "--") for card in cards])
    return {id(card): name for card, name in zip(cards, names)}


def _eps_key(eps: float) -> float:
    """``eps`` as boards are keyed by (:func:`dd_hub.hub.verification.canonical_eps`): budgets on the dataset's
    grid within float noise share a board, and a board's title tells its budget from every other board's."""
    return canonical_eps(eps)


def weights_key(card: Card) -> tuple | None:
    """What tells two cards' weights apart: the sha256 a trusted verifier measured or the Hub computed (one key
    for every card), else the one the card states (``dd_hub.weights_sha256``), which joins only cards of one owner
    (so that nobody can merge another publisher's row into theirs by stating its hash); None when nothing says."""
    known = counted_weights(card) or getattr(card, "weights_sha256", None)
    if isinstance(known, str) and len(known) == 64:
        return ("sha256", known)
    stated = card.info.get("weights_sha256")
    if isinstance(stated, str) and len(stated) == 64:
        owner = card.repo_id.split("/")[0].lower() if card.repo_id else None
        return ("stated", owner, stated)
    return None


def _merge_and_flag(rows: list[Row]) -> list[Row]:
    """One row per weights (the names of the others listed in it: the best-placed row stays), and a flag on every
    row whose name looks like another's (case, look-alike letters) without being the same weights: of such names a
    verified one, else an ASCII one, else a lower-case one is taken for the original."""
    by_weights: dict[tuple, Row] = {}
    kept = []
    for row in sorted(rows, key=_rank):
        key = weights_key(row.card)
        if key is not None and key in by_weights:
            first = by_weights[key]
            first.also_named.append(row.card.title)
            if first.status != "verified" and abs(first.robust_accuracy - row.robust_accuracy) > 0.005:
                first.flags = [*first.flags, f"the same weights are claimed at {percent(row.robust_accuracy)} as "
                                             f"{one_line(row.card.title, 100)}"]
            continue
        if key is not None:
            by_weights[key] = row
        kept.append(row)
    seen: dict[str, str] = {}
    for row in sorted(kept, key=lambda r: (STATUS_ORDER[r.status] != 0, not r.card.title.isascii(),
                                           r.card.title != r.card.title.lower(), r.card.title)):
        skeleton = name_skeleton(row.card.title)
        if skeleton in seen and seen[skeleton] != row.card.title:
            row.flags = [*row.flags, f"its name looks like {one_line(seen[skeleton], 100)}'s (case or look-alike "
                                     "letters)"]
        seen.setdefault(skeleton, row.card.title)
    return sorted(kept, key=_rank)


def _rank(row: Row) -> tuple:
    return (STATUS_ORDER[row.status] + (2 if row.flags else 0), -row.robust_accuracy, -(row.clean_accuracy or 0.0),
            row.slug)


def boards(cards: list[Card]) -> list[Board]:
    """The boards of ``cards``: one per (dataset, norm, eps), ranked (module docstring), then the board of the cards
    without an AutoAttack figure (best rho2 first), if any."""
    names = slugs(cards)
    by_threat: dict[tuple[str, str, float], dict[int, Row]] = {}
    untested = []
    for card in cards:
        clean = card.figure("accuracy")
        rho2 = card.figure("rho2")
        common = dict(clean_accuracy=None if clean is None else clean.value, rho2=None if rho2 is None else rho2.value,
                      flags=list(card.problems))
        entries = [f for f in card.figures if f.threat_model is not None]
        if not entries:
            untested.append(Row(card, names[id(card)], **common))
            continue
        for figure in entries:
            status = figure_status(card, figure)
            row = Row(card, names[id(card)], robust=figure, status=status.status, verified_by=status.by,
                      status_note=status.text, **common)
            dataset = card_dataset(card, figure)
            rows = by_threat.setdefault((dataset, figure.args["norm"], _eps_key(figure.args["eps"])), {})
            previous = rows.get(id(card))
            if previous is None or row.robust_accuracy < previous.robust_accuracy:  # the strongest evaluation counts
                rows[id(card)] = row
    result = []
    keys = sorted(by_threat, key=lambda k: (k[0], k[1] != "linf", k[1], k[2]))
    anchors = unique_names([re.sub(r"[^A-Za-z0-9._-]+", "-", f"{d}-{n}-{e:.6g}") for d, n, e in keys])
    for (dataset, norm, eps), anchor in zip(keys, anchors):
        ranked = _merge_and_flag(list(by_threat[(dataset, norm, eps)].values()))
        result.append(Board(anchor, f"{dataset} · {NORM_LABELS[norm]}, ε = {format_eps(eps)}", dataset, norm, eps,
                            ranked))
    if untested:
        ranked = sorted(untested, key=lambda r: (r.rho2 is None, -(r.rho2 or 0.0), r.slug))
        result.append(Board("no-threat-model", NO_THREAT_MODEL.capitalize(), None, None, None, ranked))
    return result


def select_boards(all_boards: list[Board], *, dataset: str | None = None,
                  threat_model: str | None = None) -> list[Board]:
    """The boards of ``dataset`` (plus its cards without a threat model) and of ``threat_model`` (its board only). The Hub's tag filter picks cards; a card evaluated at several threat models has a board for each."""
    from ..threat_models import threat_model as norm_and_eps

    budget = None if threat_model is None else norm_and_eps(threat_model)
    dataset = None if dataset is None else canonical_dataset(dataset)
    selected = []
    for board in all_boards:
        if budget is not None and (board.norm, board.eps) != (budget[0], _eps_key(budget[1])):
            continue
        if board.norm is None and dataset is not None:     # the cards of that dataset without a threat model
            rows = [r for r in board.rows if canonical_dataset(r.dataset) == dataset]
            if rows:
                selected.append(dataclasses.replace(board, rows=rows))
        elif dataset in (None, board.dataset):
            selected.append(board)
    return selected


def format_eps(eps: float) -> str:
    """``0.3``; a multiple of 1/255 that is no short decimal as ``8/255 (0.03137)``."""
    plain = f"{eps:.6g}"
    k = round(eps * 255)
    if 0 < eps < 1 and abs(eps * 255 - k) < 5e-4 and len(plain) > 6:
        return f"{k}/255 ({eps:.4g})"
    return plain


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def status_text(row: Row) -> str:
    """The row's verification status in words, with its flags."""
    text = row.status_note or (f"{row.status} by {row.verified_by}" if row.verified_by else row.status)
    same = [f"the same weights as {', '.join(one_line(name, 100) for name in row.also_named[:5])}"
            + (f" and {len(row.also_named) - 5} more" if len(row.also_named) > 5 else "")] if row.also_named else []
    return "; ".join([text, *same, *(f"flag: {flag}" for flag in row.flags)])


def informative_board(all_boards: list[Board]) -> Board | None:
    """The board to open first: the threat-model board whose robust accuracies differ most from one another (most
    distinct values, then most rows), never one where every row is 0% when another has figures above it."""
    def spread(board: Board) -> tuple:
        values = [r.robust_accuracy for r in board.rows if r.robust_accuracy is not None]
        return (board.norm is not None, len({round(v, 4) for v in values if v > 0}), len(board.rows))

    return max(all_boards, key=spread, default=None)


def points(value: float | None) -> str:
    """A gain in percentage points: ``+12.30 pp``."""
    return "–" if value is None else f"{100 * value:+.2f} pp"


# --- Markdown, JSON and the terminal ------------------------------------------------------------------------------
def board_markdown(board: Board, *, link: bool = True) -> str:
    """One board as a Markdown table with RobustBench's columns and a status column; every cell from a card is
    escaped."""
    title = f"### {markdown_cell(board.title)}\n\n"
    if board.norm is None:
        header = ["#", "model", "clean", "rho_2", "architecture", "method", "status"]
        rows = [[i, _name(r, link), percent(r.clean_accuracy), "–" if r.rho2 is None else f"{r.rho2:.4g}",
                 markdown_cell(r.architecture), markdown_cell(r.method), markdown_cell("; ".join(r.flags) or "–")]
                for i, r in enumerate(board.rows, 1)]
    else:
        header = ["#", "model", "clean", "AutoAttack robust", "status", "architecture", "method", "eps",
                  "n_examples", "link"]
        rows = [[i, markdown_cell(r.card.title), percent(r.clean_accuracy), percent(r.robust_accuracy),
                 markdown_cell(status_text(r)), markdown_cell(r.architecture), markdown_cell(r.method),
                 format_eps(board.eps), r.n_examples or "–", _link(r) if link else "–"]
                for i, r in enumerate(board.rows, 1)]
    return title + markdown_table(header, rows)


def board_json(board: Board) -> dict:
    """One board as plain data (``dd-hub list --json``)."""
    return {"board": board.title, "dataset": board.dataset, "norm": board.norm, "eps": board.eps, "rows": [
        {"model": r.card.title, "also_named": r.also_named, "clean_accuracy": r.clean_accuracy,
         "robust_accuracy": r.robust_accuracy, "status": r.status, "verified_by": r.verified_by or None,
         "status_text": status_text(r), "flags": r.flags, "rho2": r.rho2,
         "architecture": r.architecture, "method": r.method, "n_examples": r.n_examples,
         "evaluation": r.evaluation, "published": r.card.published, "gain": r.gain} for r in board.rows]}


#: the terminal table's columns: (header, width at most, dropped in this order when the terminal is too narrow)
_COLUMNS = [("#", 5, 0), ("model", 48, 0), ("clean", 7, 0), ("robust", 7, 0), ("gain", 10, 2), ("status", 24, 1),
            ("architecture", 22, 3), ("method", 14, 4), ("n", 7, 5)]
_UNTESTED_COLUMNS = [("#", 5, 0), ("model", 48, 0), ("clean", 7, 0), ("rho_2", 7, 0), ("architecture", 22, 3),
                     ("method", 14, 4), ("status", 24, 1)]


def board_text(board: Board, width: int = 100) -> str:
    """One board as an aligned plain-text table that fits ``width`` columns: the narrowest columns of least use are
    dropped first, then long cells are cut with an ellipsis. Every cell from a card is one safe line."""
    if board.norm is None:
        columns = _UNTESTED_COLUMNS
        cells = [[str(i), r.card.title, percent(r.clean_accuracy), "–" if r.rho2 is None else f"{r.rho2:.4g}",
                  r.architecture, r.method, "; ".join(r.flags) or "–"] for i, r in enumerate(board.rows, 1)]
    else:
        columns = _COLUMNS
        cells = [[str(i), r.card.title, percent(r.clean_accuracy), percent(r.robust_accuracy), points(r.gain),
                  status_text(r), r.architecture, r.method, str(r.n_examples or "–")]
                 for i, r in enumerate(board.rows, 1)]
    cells = [[one_line(c, 200) for c in row] for row in cells]
    widths = [min(limit, max([len(header)] + [len(row[i]) for row in cells]))
              for i, (header, limit, _) in enumerate(columns)]
    keep = list(range(len(columns)))
    for drop in sorted({p for _, _, p in columns if p}, reverse=True):
        if sum(widths[i] + 2 for i in keep) - 2 <= width:
            break
        keep = [i for i in keep if columns[i][2] != drop]
    overflow = sum(widths[i] + 2 for i in keep) - 2 - width
    if overflow > 0:                                      # the model column gives way, down to 12 characters
        widths[1] = max(12, widths[1] - overflow)

    def line(row: list[str]) -> str:
        out = []
        for i in keep:
            text = row[i] if len(row[i]) <= widths[i] else row[i][: widths[i] - 1] + "…"
            out.append(text.rjust(widths[i]) if columns[i][0] in ("#", "clean", "robust", "gain", "rho_2", "n")
                       else text.ljust(widths[i]))
        return "  ".join(out).rstrip()

    header = line([h for h, _, _ in columns])
    title = one_line(board.title, width)
    return "\n".join([title, header, "-" * min(width, len(header)), *(line(row) for row in cells)]) + "\n"





def _name(row: Row, link: bool) -> str:
    title = markdown_cell(row.card.title)
    return f"[{title}]({HUB_URL}/{row.card.repo_id})" if link and row.card.repo_id else title


def _link(row: Row) -> str:
    if not row.card.published:
        return "not published yet"
    return f"[Hub]({HUB_URL}/{row.card.repo_id})" if row.card.repo_id else "–"


def leaderboard_markdown(cards: list[Card], *, link: bool = True) -> str:
    """Every board of ``cards``, one after another."""
    return "\n".join(board_markdown(board, link=link) for board in boards(cards))


def write_index(cards_dir: str | Path) -> Path:
    """Regenerate ``cards_dir/index.md``: the boards of every ``cards_dir/*/README.md``."""
    cards, notices = load_local_cards(cards_dir)
    body = leaderboard_markdown(cards) if cards else "No cards yet.\n"
    problems = "".join(f"- {markdown_cell(notice)}\n" for notice in notices)
    text = f"""# dd-hub model cards

The checkpoints this project trained and measured, one folder per card. Regenerated by `dd-hub cards` from the
cards in the sub-directories; do not edit by hand. One board per dataset and threat model, ranked by robust
accuracy under AutoAttack (the reference implementation by its authors, at the version and attacks each card's
`model-index` states), RobustBench-style; clean accuracy on the same test images. Perturbation sizes in [0, 1]
pixel space. Status: "self-reported" figures are the card's own; "re-measured" ones have a `dd-hub verify` record
beside the card (a file this repository keeps, so never "verified": that takes a trusted account's record on the
Hub). "not published yet": the weights are not on the Hub (yet); the card records how to reproduce them.

{body}{chr(10) + "Cards that could not be read:" + chr(10) + problems if problems else ""}"""
    index = Path(cards_dir) / INDEX_NAME
    write_text_atomic(index, text)
    return index
