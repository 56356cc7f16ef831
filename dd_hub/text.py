"""Text that dd-hub prints or writes: Markdown tables, safe single-line strings, unique file names."""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Sequence

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def one_line(text: object, limit: int = 300) -> str:
    """``text`` as one printable line: control characters (terminal escape sequences, newlines, bidi overrides)
    become spaces, runs of spaces one, and it is cut at ``limit`` characters."""
    cleaned = str(text)
    if not (cleaned.isascii() and cleaned.isprintable()):   # printable ASCII (the usual case) has nothing to clean
        cleaned = "".join(" " if unicodedata.category(c).startswith("C") else c for c in cleaned)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


#: letters of other scripts that look like Latin ones (Cyrillic, Greek), and digits that look like letters
_LOOK_ALIKES = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ӏ": "l", "ɡ": "g", "ԛ": "q", "ԝ": "w",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "γ": "y", "ω": "w", "ϲ": "c", "ϳ": "j", "0": "o", "1": "l", "i": "l", "|": "l",
})


def name_skeleton(text: object) -> str:
    """What a name looks like to a reader: Unicode compatibility forms folded (NFKD, accents dropped), case
    folded, look-alike letters of other scripts and ``0``/``1``/``i`` mapped to one Latin letter, separators
    dropped. Two names with one skeleton are indistinguishable on a board (``org/good``, ``ORG/GOOD``,
    ``оrg/good`` with a Cyrillic ``о``)."""
    folded = unicodedata.normalize("NFKD", str(text)).casefold()
    folded = "".join(c for c in folded if not unicodedata.combining(c)).translate(_LOOK_ALIKES)
    return "".join(c for c in folded if c.isalnum())


def markdown_cell(text: object) -> str:
    """``text`` safe inside a Markdown table cell: one line, ``|`` and HTML-significant characters escaped."""
    return (one_line(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;"))


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]], *, escape: bool = False) -> str:
    """A Markdown table; ``escape`` makes every cell one safe line (for text read from outside)."""
    cell = markdown_cell if escape else str
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def unique_names(bases: Iterable[str], *, suffix: str = "") -> list[str]:
    """File-name-safe, case-insensitively unique names for ``bases`` (in order): unsafe characters become ``-``,
    a name already taken gets ``-2``, ``-3``, ... before ``suffix``."""
    taken: set[str] = set()
    names = []
    for base in bases:
        stem = _UNSAFE_NAME.sub("-", base).strip(".-") or "item"
        if suffix and stem.lower().endswith(suffix.lower()):
            stem = stem[: -len(suffix)] or "item"
        name, n = stem + suffix, 2
        while name.lower() in taken:
            name, n = f"{stem}-{n}{suffix}", n + 1
        taken.add(name.lower())
        names.append(name)
    return names

