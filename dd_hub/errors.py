"""The one exception type users see: a one-line message that says what to do."""


class DDHubError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 2, without a traceback."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none): what a one-line
    error quotes of a library's error."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
