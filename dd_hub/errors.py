"""The one exception type users see: a one-line message that says what to do."""
from __future__ import annotations

import difflib
from typing import Iterable


class DDHubError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 2, without a traceback."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none): what a one-line
    error quotes of a library's error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def did_you_mean(name: str, known: Iterable[str], n: int = 3) -> str:
    """`` (did you mean a, b?)`` with up to ``n`` distinct names of ``known`` close to ``name`` (any case), or ''."""
    by_lower: dict[str, str] = {}
    for item in known:
        by_lower.setdefault(item.lower(), item)
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)
    return f" (did you mean {', '.join(by_lower[c] for c in close)}?)" if close else ""
