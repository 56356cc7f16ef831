"""The one exception type users see: a one-line message that says what to do."""


class DDHubError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 2, without a traceback."""
