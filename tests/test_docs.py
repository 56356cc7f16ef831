"""Every code block of README.md and docs/*.md runs as written, in order, as a newcomer would paste them.

How the blocks run (docs/architecture.md, "Documentation that runs"):

- Every fenced block names its language: ``bash`` and ``python`` blocks run, ``text`` blocks are not code
  (diagrams, command synopses, printed output) and are not run.
- The README's blocks run top to bottom in a fresh copy of the repository (a newcomer's clone); then each docs/*.md file's blocks, in the same folder
  (its pages say "from the folder where you ran the README's quickstart"). ``bash`` blocks run with
  ``bash -euo pipefail``; each ``python`` block runs in a fresh namespace (its imports and setup must be in the
  block), in one interpreter per page so that torch is imported once.
- Small data: every ``dd-hub`` command runs with :data:`SMALL` appended for its subcommand (fewer epochs, training
  and test images; the default evaluation, AutoAttack included, on a few images). A later option wins in click, so
  the appended ones replace the block's own. ``DD_HUB_DOCS_FULL=1`` runs the pages at full size instead (no
  :data:`SMALL`, no ``small:`` directive; parse-only blocks stay parse-only): what a newcomer runs.
- The Hub is tests/hub_server.py's loopback double (``HF_ENDPOINT``), signed in as :data:`USER`.
- An HTML comment right before a block changes how it runs, each line one directive::

      <!-- docs-test: skip: REASON -->           not run (an install, the test suite itself); REASON is reported
      <!-- docs-test: parse-only: REASON -->     hours of compute: every dd-hub command in it (after bash's
                                                 expansion) is checked, not run: with --show-recipe when it
                                                 runs a recipe (options and recipe keys), else parsed
      <!-- docs-test: replace: OLD => NEW -->    run with OLD replaced by NEW (a placeholder such as ORG/NAME)
      <!-- docs-test: small: OLD => NEW -->      the same, for the small-data run only (fewer images)
      <!-- docs-test: needs: TOOL -->            skipped, and reported, where TOOL is not installed
"""
from __future__ import annotations

import json
import os
import re
import resource
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hub_server import FakeHub

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN, NOT_CODE = ("bash", "python"), ("text",)
USER, TOKEN = "newcomer", "hf_docs_test_secret"
FULL = os.environ.get("DD_HUB_DOCS_FULL") == "1"
BLOCK_TIMEOUT_S = 300

_SMALL_TRAINING = ["--set", "reference.epochs=1", "--epochs", "1", "--set", "max_train_examples=100",
                   "--max-examples", "20", "--set", "evaluation.autoattack_max_examples=10",
                   "--set", "evaluation.sanity_max_examples=10", "--set", "evaluation.deepfool_steps=10",
                   "--set", "evaluation.pgd_steps=5", "--set", "evaluation.minimal_norm_steps=10"]
#: options appended to every dd-hub command of a block, by subcommand
SMALL = {} if FULL else {
    "harden": [*_SMALL_TRAINING, "--quiet"], "reproduce": [*_SMALL_TRAINING, "--quiet"],
    "sweep": [*_SMALL_TRAINING, "--quiet"], "eval": ["--max-examples", "20", "--quiet"], "verify": ["--quiet"]}

_FENCE = re.compile(r"^ {0,3}```(.*)$")
_DIRECTIVES = re.compile(r"<!--\s*docs-test:(.*?)-->", re.S)


@dataclass
class Block:
    page: Path
    line: int                 # of the opening fence, 1-based
    language: str
    code: str
    directives: list[tuple[str, str]] = field(default_factory=list)

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page.name
        return f"{page}:{self.line}"

    def directive(self, name: str) -> str | None:
        return next((value for key, value in self.directives if key == name), None)

    def runnable_code(self) -> str:
        code = self.code
        for key, value in self.directives:
            if key == "replace" or (key == "small" and not FULL):
                old, _, new = value.partition("=>")
                assert old.strip() in code, f"{self.where}: {key}: {old.strip()!r} is not in the block"
                code = code.replace(old.strip(), new.strip())
        return code


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page``, with the directives of an HTML comment right before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{page.name}:{i + 1}: unclosed code block"
        before = "\n".join(lines[:i]).rstrip()
        comment = _DIRECTIVES.search(before[before.rfind("<!--"):]) if before.endswith("-->") else None
        directives = []
        for text in (comment.group(1).strip().splitlines() if comment else []):
            key, _, value = text.strip().partition(":")
            directives.append((key.strip(), value.strip()))
        found.append(Block(page, i + 1, opening.group(1).strip(), "\n".join(lines[i + 1:end]) + "\n", directives))
        i = end + 1
    return found


def test_every_block_names_its_language_and_every_directive_is_known():
    for page in PAGES:
        for block in blocks(page):
            assert block.language in RUN + NOT_CODE, (
                f"{block.where}: a code block must say ```bash, ```python or ```text (not run), not "
                f"```{block.language}")
            for key, value in block.directives:
                assert key in ("skip", "parse-only", "replace", "small", "needs") and value, f"{block.where}: bad directive {key}"
                assert block.language in RUN, f"{block.where}: a directive on a block that is not run"


# --- running -----------------------------------------------------------------------------------------------------
_WORKER = r"""
import contextlib, io, json, os, sys, time, traceback
for request in sys.stdin:
    request = json.loads(request)
    os.chdir(request["cwd"])
    output, ok, cpu = io.StringIO(), True, time.process_time()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            exec(compile(request["code"], request["where"], "exec"), {"__name__": "__main__"})
        except BaseException:
            ok = False
            traceback.print_exc()
    reply = {"ok": ok, "output": output.getvalue(), "cpu_s": time.process_time() - cpu}
    sys.__stdout__.write(json.dumps(reply) + "\n")
    sys.__stdout__.flush()
"""


class Session:
    """One page's run: its folder, environment, a python worker, and the dd-hub command with :data:`SMALL`."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.worker: subprocess.Popen | None = None
        self.worker_cpu_s = 0.0

    def run(self, block: Block) -> str:
        if block.directive("parse-only") is not None:
            return self._parse_only(block)
        if block.language == "bash":
            return self._bash(block.runnable_code(), block)
        return self._python(block)

    def _bash(self, code: str, block: Block, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=self.folder, env=env or self.env,
                                capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{block.where} failed (exit {result.returncode}):\n{code}\n{output[-4000:]}"
        return output

    def _python(self, block: Block) -> str:
        if self.worker is None:
            self.worker = subprocess.Popen([sys.executable, "-c", _WORKER], stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, env=self.env, text=True, cwd=self.folder)
        request = {"code": block.runnable_code(), "where": block.where, "cwd": str(self.folder)}
        self.worker.stdin.write(json.dumps(request) + "\n")
        self.worker.stdin.flush()
        watchdog = threading.Timer(BLOCK_TIMEOUT_S, self.worker.kill)
        watchdog.start()
        try:
            answer = self.worker.stdout.readline()
        finally:
            watchdog.cancel()
        assert answer, f"{block.where}: the python worker died or timed out"
        reply = json.loads(answer)
        assert reply["ok"], f"{block.where} failed:\n{block.runnable_code()}\n{reply['output'][-4000:]}"
        self.worker_cpu_s += reply["cpu_s"]
        return reply["output"]

    def _parse_only(self, block: Block) -> str:
        """Each dd-hub command of the block, as bash expands it, checked without running: a command that runs a
        recipe with ``--show-recipe`` (options, refusals and recipe keys checked, the recipe printed), any other
        parsed by the command line."""
        from click.testing import CliRunner

        from dd_hub.cli import main

        record = self.folder / ".dd-hub-commands"
        record.unlink(missing_ok=True)
        recorder = f'dd-hub() {{ printf "%s\\0" "$@" >> {shlex.quote(str(record))}; printf "\\36\\0" >> ' \
                   f'{shlex.quote(str(record))}; }}\n'
        self._bash(recorder + block.runnable_code(), block)
        commands = [c.split("\0")[:-1] for c in record.read_text().split("\36\0")[:-1]] if record.exists() else []
        record.unlink(missing_ok=True)
        assert commands, f"{block.where}: parse-only, but no dd-hub command in it"
        for args in commands:
            command = main.get_command(None, args[0])
            assert command is not None, f"{block.where}: no command dd-hub {args[0]}"
            if any(p.name == "show_recipe" for p in command.params):
                result = CliRunner().invoke(main, [*args, "--show-recipe"])
                assert result.exit_code == 0, f"{block.where}: dd-hub {shlex.join(args)}: {result.output[-2000:]}"
                continue
            try:
                command.make_context(args[0], list(args[1:]))
            except Exception as exc:  # click's usage errors
                pytest.fail(f"{block.where}: dd-hub {shlex.join(args)}: {exc}")
        return ""

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stdin.close()
            self.worker.wait(timeout=60)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A fresh copy of the repository's files, the Hub double signed in as :data:`USER`, and a ``dd-hub`` on PATH
    that appends :data:`SMALL`."""
    folder = tmp_path_factory.mktemp("newcomer") / "dd-hub"
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True)
    if listed.returncode == 0:  # a clone: its files, as a newcomer's clone has them
        for name in filter(None, listed.stdout.split("\0")):
            if (ROOT / name).is_file():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, folder / name)
    else:  # an unpacked source tree
        shutil.copytree(ROOT, folder, ignore=shutil.ignore_patterns(".git", "runs", "site", "__pycache__", "*.egg-info"))
    tools = tmp_path_factory.mktemp("tools")
    cases = "\n".join(f"  {command}) extra=({shlex.join(options)});;" for command, options in SMALL.items())
    shim = tools / "dd-hub"
    shim.write_text(f"#!/usr/bin/env bash\n# dd-hub with tests/test_docs.py's SMALL options appended\nextra=()\n"
                    f"case \"${{1:-}}\" in\n{cases}\nesac\n"
                    f"exec {shlex.quote(sys.executable)} -m dd_hub \"$@\" \"${{extra[@]}}\"\n")
    shim.chmod(0o755)
    hub = FakeHub(tokens={TOKEN: USER}).start()
    home = tmp_path_factory.mktemp("hf_home")
    env = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_TOKEN": TOKEN,
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "MPLBACKEND": "Agg"}
    yield folder, env
    hub.stop()


def _cpu_s(session: Session) -> float:
    """CPU seconds used so far by the finished child processes and the python worker."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime + session.worker_cpu_s


def _run_page(page: Path, workspace) -> list[str]:
    """Runs the page's blocks in order; returns what was not run for want of a tool."""
    folder, env = workspace
    session = Session(folder, env)
    missing = []
    try:
        for block in blocks(page):
            if block.language not in RUN or block.directive("skip") is not None:
                continue
            tool = block.directive("needs")
            if tool and shutil.which(tool) is None:
                missing.append(f"{block.where} needs {tool}")
                continue
            start, cpu = time.perf_counter(), _cpu_s(session)
            session.run(block)
            print(f"{block.where}: {time.perf_counter() - start:.1f} s, {_cpu_s(session) - cpu:.1f} s of CPU")  # -rP
    finally:
        session.close()
    return missing


@pytest.fixture(scope="module")
def after_readme(workspace):
    """The workspace after the README's blocks ran (the docs start from there)."""
    _run_page(ROOT / "README.md", workspace)
    return workspace


@pytest.mark.slow
def test_readme_runs_as_written(after_readme):
    assert (after_readme[0] / "runs").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize("page", [p.name for p in PAGES[1:]])
def test_docs_run_as_written(page, after_readme):
    missing = _run_page(ROOT / "docs" / page, after_readme)
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def test_skips_are_few_and_say_why():
    skipped = [(b.where, b.directive("skip")) for page in PAGES for b in blocks(page) if b.directive("skip")]
    print("\n".join(f"skipped {where}: {reason}" for where, reason in skipped))
    assert len(skipped) <= 4, skipped


def test_blocks_and_directives_are_read_and_a_wrong_option_fails_a_parse_only_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- docs-test: parse-only: long\n     replace: EPOCHS => 2 -->\n```bash\n"
                    "dd-hub harden lenet --dataset mnist-5k --epochs EPOCHS --no-such-option\n```\n\n```text\nx\n```\n")
    block, text = blocks(page)
    assert (block.line, block.language, text.language) == (5, "bash", "text")
    assert block.directive("parse-only") == "long" and "--epochs 2 " in block.runnable_code()
    with pytest.raises(AssertionError, match="no-such-option"):
        Session(tmp_path, dict(os.environ)).run(block)

