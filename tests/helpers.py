"""Helpers shared by the tests: the command line, one-line errors, fresh interpreters, free ports."""
from __future__ import annotations

import socket
import subprocess
import sys

from click.testing import CliRunner, Result

from dd_hub.cli import main


def run_cli(*args: str) -> Result:
    """``dd-hub ARGS`` in-process; exceptions other than the CLI's own exits surface as ``result.exception``."""
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result: Result, contains: str) -> None:
    """Exit status 2 and the output ends in one ``error: ...`` line (after any progress lines), no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]] and "Traceback" not in result.output, result.output
    assert contains in lines[-1], lines[-1]


def run_python(code: str, env: dict | None = None, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (a new user's process) with ``env``."""
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
