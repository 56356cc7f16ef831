"""The hub at scale: `dd-hub list` and `dd-hub site` over N generated cards, from the Hub double and from a local
folder, with the HTTP requests each command made (counted by the Hub double, tests/hub_server.py) and the CPU time
of the command's own process (user + system, from the operating system's accounting of the finished child).

    python benchmarks/hub_scale.py                   # N = 10,000 (about 3 minutes on a 2-core machine)
    python benchmarks/hub_scale.py --n 1000 --per-card 100

Every card is tests/generated_cards.py's (front matter like dd-hub's, a figure on the Hub). The commands run as
`python -m dd_hub ...` in a fresh process each, pointed at the double with HF_ENDPOINT, with one trusted verifier
whose record index holds a record (so the verification marks are on). ``--per-card M`` also times the old way of
reading the Hub, a download per card (a listing without cardData, as a Hub that does not expand it answers), on M
cards, for the ratio. Prints a Markdown table and the targets of docs/hub.md.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

#: (requests, CPU seconds) at most, per command (docs/hub.md)
TARGETS = {"list": (12, 30.0), "site": (36, 60.0)}


def run(args: list[str], env: dict, hub=None) -> tuple[int | None, float, float, str]:
    """(requests, CPU s, wall s, last line of output) of ``python -m dd_hub ARGS`` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    requests = len(hub.requests) if hub is not None else 0
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "dd_hub", *args], env=env, capture_output=True, text=True,
                          timeout=1800)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"error: dd-hub {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return (len(hub.requests) - requests if hub is not None else None), cpu, wall, last


def trusted_record(hub, repo_id: str) -> None:
    """A record by the verifier ``vera`` of ``repo_id``'s figures, in vera's record index (as verify --publish
    leaves it)."""
    from hub_server import Repo

    from dd_hub.hub.cards import parse_card
    from dd_hub.hub.record_index import index_card, index_repo
    from dd_hub.hub.verification import Verification, card_dataset, figure_identity

    card = parse_card(hub.files(repo_id)["README.md"].decode(), name="m", repo_id=repo_id)
    figures = {figure_identity(f, card_dataset(card, f)): {
        "kind": f.kind, "card": f.value, "measured": f.value, "n_examples": 1000,
        "card_n_examples": f.args.get("n_examples")} for f in card.figures if f.kind != "rho2"}
    figures = {k: v for k, v in figures.items() if k is not None}
    record = Verification(verified_by="vera", date="2026-01-01", dd_hub_version="bench", repo_id=repo_id,
                          revision=hub.repos[repo_id].branches["main"], tolerance=0.02, weights_sha256="0" * 64,
                          protocol="p", figures=figures)
    index = index_repo("vera")
    hub.repos[index] = Repo(owner="vera", private=False)
    hub.commit(index, "main", {"README.md": index_card([json.loads(record.to_json())], "vera").encode()}, "i")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="cards (default 10,000)")
    parser.add_argument("--per-card", type=int, default=0, metavar="M",
                        help="also time reading M cards one download each (the old way), for the ratio")
    args = parser.parse_args()
    if args.n < 1:
        raise SystemExit("error: --n must be at least 1")

    import generated_cards
    from hub_server import FakeHub

    work = Path(tempfile.mkdtemp(prefix="dd-hub-scale-"))
    hub = FakeHub(tokens={"hf_vera": "vera"}).start()
    try:
        png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
        generated_cards.publish(hub, args.n, png=png)
        trusted_record(hub, generated_cards.repo_id(3))
        (work / "trusted.txt").write_text("vera\n")
        cards_dir = generated_cards.write_folders(work / "cards", args.n)
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(work / "hf_home"), "HF_HUB_OFFLINE": "0",
               "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
        env.pop("HF_TOKEN", None)
        hub.card_data.clear()
        for repo_id, repo in hub.repos.items():     # the Hub parses front matter when a card is pushed, not listed
            hub.model_json(repo_id, repo.branches["main"], siblings=False)
        n, trusted = str(args.n), ["--trusted-verifiers", str(work / "trusted.txt")]
        rows = [
            ("list", "Hub double", ["list", "--limit", n, "--json", *trusted], hub),
            ("site", "Hub double", ["site", str(work / "site-hub"), "--limit", n, *trusted], hub),
            ("list", "local folder", ["list", "--from", str(cards_dir), "--limit", n, "--json"], None),
            ("site", "local folder", ["site", str(work / "site-local"), "--from", str(cards_dir), "--limit", n], None),
        ]
        print(f"| N cards | command | source | HTTP requests | CPU time (s) | wall (s) | target: requests, CPU |")
        print("|---|---|---|---|---|---|---|")
        results = {}
        for kind, source, command, server in rows:
            requests, cpu, wall, last = run(command, env, server)
            target = TARGETS[kind]
            within = (requests is None or requests <= target[0]) and cpu <= target[1]
            results[(kind, source)] = (requests, cpu)
            shown = ["dd-hub", *[a if not a.startswith(str(work)) else Path(a).name.upper() for a in command]]
            print(f"| {args.n:,} | `{' '.join(shown)}` | {source} | {'–' if requests is None else requests} | "
                  f"{cpu:.1f} | {wall:.1f} | {target[0]}, {target[1]:g} s: {'met' if within else 'MISSED'} |",
                  flush=True)
        marks = '"verified"' in "".join(p.read_text() for p in (work / "site-hub" / "data").glob("board-*.js"))
        print(f"\nverification marks on (one trusted record in vera's index shows as verified): {marks}")
        if args.per_card:
            old = FakeHub().start()
            try:
                generated_cards.publish(old, args.per_card, png=png)
                old.card_data_in_listing = False
                old_env = {**env, "HF_ENDPOINT": old.url}
                requests, cpu, wall, _ = run(["list", "--limit", str(args.per_card), "--json"], old_env, old)
                new_requests, new_cpu = results[("list", "Hub double")]
                print(f"\nper card (a listing without cardData), {args.per_card:,} cards: {requests} requests, "
                      f"{cpu:.1f} s CPU, {wall:.1f} s; by pages, {args.n:,} cards: {new_requests} requests, "
                      f"{new_cpu:.1f} s CPU: {requests / args.per_card * args.n / max(new_requests, 1):,.0f}x fewer "
                      f"requests and {cpu / args.per_card * args.n / max(new_cpu, 1e-9):.1f}x less CPU per card")
            finally:
                old.stop()
    finally:
        hub.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
