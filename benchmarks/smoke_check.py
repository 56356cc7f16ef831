"""What a new user gets from ``dd-hub harden NAME --dataset mnist-5k --allow-random-init --smoke``, per network:

    OMP_NUM_THREADS=2 python benchmarks/smoke_check.py tv:resnet18 efficientnet_b0 levit_128s ...

Each network either **ran**: exit 0 and a complete folder (model.safetensors, config.json, metrics.json that says
smoke, README.md, the reference's weights), hardened weights that differ from the reference's, and an export that
plain timm or torchvision loads in a process that never imports dd_hub with the same logits as ``dd_hub.load``;
or was **refused**: a non-zero exit with one line on stderr, before any checkpoint was written. Anything else is
**failed**, with what was wrong. Prints one markdown row per network, then the counts.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def smoke(name: str, out: Path, timeout: float) -> dict:
    """Runs the smoke command for ``name`` into ``out`` and judges what it left."""
    command = ["dd-hub", "harden", name, "--dataset", "mnist-5k", "--allow-random-init", "--smoke", "--out", str(out),
               "--quiet"]
    began = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"name": name, "status": "failed", "reason": f"took over {timeout:.0f} s"}
    record = {"name": name, "wall_s": round(time.perf_counter() - began, 1)}
    errors = [line for line in done.stderr.splitlines() if line.strip() and "Warning" not in line
              and not line.startswith("  ")]
    if done.returncode != 0:
        checkpoints = list((out / "checkpoints").rglob("model.safetensors")) if (out / "checkpoints").exists() else []
        if "Traceback" in done.stderr or len(errors) != 1:
            return {**record, "status": "failed", "reason": f"exit {done.returncode} without one line: "
                    + " / ".join(errors[-3:])[:300]}
        if checkpoints:
            return {**record, "status": "failed", "reason": f"stopped after work started: {errors[0][:300]}"}
        return {**record, "status": "refused", "reason": errors[0][:300]}
    return {**record, **_judge_folder(out)}


def _judge_folder(out: Path) -> dict:
    from safetensors.torch import load_file

    missing = [f for f in ("model.safetensors", "config.json", "metrics.json", "README.md",
                           "reference/model.safetensors") if not (out / f).is_file()]
    if missing:
        return {"status": "failed", "reason": f"incomplete folder: no {', '.join(missing)}"}
    if not json.loads((out / "metrics.json").read_text()).get("smoke"):
        return {"status": "failed", "reason": "metrics.json does not say smoke"}
    hardened, reference = load_file(str(out / "model.safetensors")), load_file(str(out / "reference/model.safetensors"))
    changed = [k for k in hardened if k in reference and not hardened[k].equal(reference[k])]
    if not changed:
        return {"status": "failed", "reason": "the hardened weights are the reference's"}
    architecture = json.loads((out / "config.json").read_text())["architecture"]
    if not architecture.startswith("tv:") and not _timm_knows(architecture):
        return {"status": "ran", "changed_tensors": f"{len(changed)}/{len(hardened)}", "plain_gap": None,
                "note": f"{architecture} is dd-hub's own architecture: dd_hub.load only"}
    with tempfile.TemporaryDirectory(prefix="dd-hub-smoke-") as work:
        (Path(work) / "model").symlink_to(out.resolve())
        _dd_hub_logits(out, Path(work) / "x.safetensors")
        done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "zoo.py"), "--plain", work],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""}, cwd=work)
        plain = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {
            "status": "failed", "reason": "the plain load died: " + (done.stderr.strip().splitlines() or ["?"])[-1]}
    if plain.get("status") == "failed":
        return plain
    return {"status": "ran", "changed_tensors": f"{len(changed)}/{len(hardened)}", "plain_gap": plain["plain_gap"]}


def _timm_knows(architecture: str) -> bool:
    import timm

    return timm.is_model(architecture)


def _dd_hub_logits(folder: Path, path: Path) -> None:
    """Four test images and ``dd_hub.load``'s logits for them, for the plain check (run in another process)."""
    code = ("import sys, torch, dd_hub; from safetensors.torch import save_file\n"
            "x = torch.stack([dd_hub.create_dataset('mnist-5k', 'test')[i][0] for i in range(4)])\n"
            "with torch.no_grad(): logits = dd_hub.load(sys.argv[1])(x)\n"
            "save_file({'x': x.contiguous(), 'logits': logits.contiguous()}, sys.argv[2])\n")
    subprocess.run([sys.executable, "-c", code, str(folder), str(path)], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--out", type=Path, help="keep the runs' folders here (default: a temporary folder)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per network")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dd-hub-smoke-runs-") as scratch:
        base = args.out or Path(scratch)
        print("| network | outcome | wall s | what |\n|---|---|---|---|", flush=True)
        records = []
        for name in args.names:
            record = smoke(name, base / name.replace(":", "_"), args.timeout)
            records.append(record)
            what = record.get("reason") or (f"{record['changed_tensors']} tensors changed by hardening; "
                                             + (record.get("note") or f"plain load gap {record['plain_gap']:.1e}"))
            print(f"| `{name}` | {record['status']} | {record.get('wall_s', '–')} | {what} |", flush=True)
    counts = {s: sum(r["status"] == s for r in records) for s in ("ran", "refused", "failed")}
    print(f"\n{counts['ran']} ran, {counts['refused']} refused up front, {counts['failed']} failed "
          f"(of {len(records)})")
    sys.exit(1 if counts["failed"] else 0)


if __name__ == "__main__":
    main()
