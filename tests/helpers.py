"""Helpers shared by the tests: the command line, one-line errors, fresh interpreters, free ports."""
from __future__ import annotations

import socket
import subprocess
import sys

import torch
from click.testing import CliRunner, Result
from torch import nn

from dd_hub import create_model
from dd_hub.cli import main


def run_cli(*args: str) -> Result:
    """``dd-hub ARGS`` in-process; exceptions other than the CLI's own exits surface as ``result.exception``."""
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit status 2 and the output ends in one ``error: ...`` line (after any progress lines) holding every
    fragment, with no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.output.strip().splitlines() if line]
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == [lines[-1]] and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def run_python(code: str, env: dict | None = None, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (a new user's process) with ``env``."""
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lenet(dtype: torch.dtype = torch.float64) -> nn.Module:
    """The paper's LeNet with seeded random weights, in eval mode (float64 for the gradient tests, where 1e-5 is a
    real tolerance)."""
    torch.manual_seed(0)
    return create_model("dd_lenet_mnist").to(dtype).eval()


def small_cnn(dtype: torch.dtype = torch.float64) -> nn.Module:
    """Conv + frozen BatchNorm + ReLU + max/avg pooling (the layer kinds of timm/torchvision CNNs), 12 classes (so
    10 candidates are a strict subset), in eval mode."""
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 12),
    )
    with torch.no_grad():  # non-trivial frozen statistics
        model[1].running_mean.uniform_(-0.2, 0.2)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.to(dtype).eval()
