"""The Deep Defense step and a whole run, timed side by side under two revisions of dd-hub in one run.

    python benchmarks/compare_revisions.py --before 904741f                    # step timings, LeNet and ResNet-18
    python benchmarks/compare_revisions.py --before 904741f --quickstart       # also the README's quickstart

Each revision is checked out in a temporary git worktree; every measurement runs in a fresh child process with
that worktree first on ``sys.path``, and the two revisions' children alternate (round robin), so that both see the
same background load. Steps: one Deep Defense training step (``dd_hub.DeepDefenseLoss()``: 5 unrolled iterations,
10 candidates) and one plain cross-entropy step, forward and backward, on the paper's LeNet trained for one epoch on
MNIST-5k (batch 100; the same weights for both revisions) and on timm's resnet18 at 32x32 with random weights
(batch 32). Each child times the two steps alternately (``--repeats`` of each after a warm-up) and reports their
medians and its own ratio; the table gives the medians over ``--rounds`` children, each child's ratio and their
median, the figure compared: a ratio measured inside one process does not move with what differs between
processes (memory layout, load).
``--quickstart`` runs ``dd-hub harden lenet --dataset mnist-5k`` under both revisions at the same time (one thread
each) and prints their wall times, the figures each printed (clean accuracy, rho_2, AutoAttack) and, from the
newer one's metrics.json, where the time went.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"lenet": ("dd_lenet_mnist", 100, (1, 28, 28), 10), "resnet18": ("resnet18", 32, (3, 32, 32), 10)}

CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import torch, timm
import torch.nn.functional as F
torch.set_num_threads(1)
timm.layers.set_fused_attn(False)
import dd_hub
arch, batch, shape, classes, repeats, weights = json.loads(sys.argv[2])
torch.manual_seed(0)
model = dd_hub.create_model(arch, num_classes=classes)
if weights:
    from safetensors.torch import load_model
    load_model(model, weights)
model.eval()
torch.manual_seed(1)
if arch == "dd_lenet_mnist":
    from dd_hub.data.datasets import create_dataset
    inputs, labels = create_dataset("mnist-5k", "test").tensors
    inputs, labels = inputs[:batch], labels[:batch]
else:
    inputs = torch.rand(batch, *shape)
    with torch.no_grad():
        labels = model(inputs).argmax(1)
loss_fn = dd_hub.DeepDefenseLoss()
losses = {"plain": lambda: F.cross_entropy(model(inputs), labels),
          "deep-defense": lambda: loss_fn(model, inputs, labels)}
def step(kind):
    model.zero_grad(set_to_none=True)
    losses[kind]().backward()
times = {kind: [] for kind in losses}
for kind in losses:
    step(kind)
for _ in range(repeats):  # the two steps alternate, so that both see the same load
    for kind in losses:
        start = time.perf_counter()
        step(kind)
        times[kind].append(time.perf_counter() - start)
print(json.dumps({**{kind: statistics.median(t) for kind, t in times.items()}, "df_iters": loss_fn.stats["df_iters"]}))
"""


def worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev], check=True,
                   capture_output=True)
    return where


def child(tree: Path, model: str, repeats: int, weights: str | None) -> dict:
    arch, batch, shape, classes = MODELS[model]
    spec = json.dumps([arch, batch, shape, classes, repeats, weights])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), spec], env=env, check=True, capture_output=True,
                         text=True, cwd=tree).stdout
    return json.loads(out.strip().splitlines()[-1])


def lenet_weights(path: Path) -> str:
    """The LeNet both revisions use: one epoch on MNIST-5k, trained by this tree, saved as safetensors."""
    sys.path.insert(0, str(ROOT))
    import torch
    from safetensors.torch import save_model

    import dd_hub
    from dd_hub.data.datasets import create_dataset
    from dd_hub.training.loop import TrainConfig, train

    torch.manual_seed(0)
    model = dd_hub.create_model("dd_lenet_mnist")
    train(model, create_dataset("mnist-5k", "train"),
          TrainConfig(epochs=1, batch_size=64, lr=0.01, lr_milestones=[], freeze_bn=False), progress=False)
    save_model(model, str(path))
    return str(path)


def steps(trees: dict[str, Path], models: list[str], rounds: int, repeats: int, weights: dict[str, str | None]) -> dict:
    results: dict = {label: {m: [] for m in models} for label in trees}
    for _ in range(rounds):
        for model in models:
            for label, tree in trees.items():
                results[label][model].append(child(tree, model, repeats, weights[model]))
    print("| model | revision | plain ms | Deep Defense ms | ratio (median of children) | children's ratios | "
          "unrolled iterations |")
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for model in models:
        for label in trees:
            runs = results[label][model]
            plain = statistics.median(r["plain"] for r in runs)
            dd = statistics.median(r["deep-defense"] for r in runs)
            ratios = [r["deep-defense"] / r["plain"] for r in runs]
            summary[f"{model}/{label}"] = {"plain_s": plain, "deep_defense_s": dd,
                                           "ratio": statistics.median(ratios), "ratios": ratios}
            print(f"| {model} | {label} | {1000 * plain:.1f} | {1000 * dd:.1f} | {statistics.median(ratios):.2f}x | "
                  + ", ".join(f"{r:.2f}" for r in ratios) + f" | {runs[-1]['df_iters']:.2f} |")
    return summary


def quickstart(trees: dict[str, Path], out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    processes = {}
    for label, tree in trees.items():
        command = [sys.executable, "-m", "dd_hub", "harden", "lenet", "--dataset", "mnist-5k", "--out",
                   str(out / label), "--quiet"]
        processes[label] = (time.perf_counter(), subprocess.Popen(
            command, env={**env, "PYTHONPATH": str(tree)}, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    walls = {}
    for label, (start, process) in processes.items():
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"quickstart under {label} failed:\n{output[-3000:]}")
        walls[label] = time.perf_counter() - start
    print("\n| quickstart | wall s |\n|---|---|")
    for label, seconds in walls.items():
        print(f"| {label} | {seconds:.0f} |")
    figures = {label: _figures(json.loads((out / label / "metrics.json").read_text())) for label in trees}
    print("\n| quickstart figures | " + " | ".join(figures["after"]) + " |\n|---|" + "---|" * len(figures["after"]))
    for label, row in figures.items():
        print(f"| {label} | " + " | ".join(row.values()) + " |")
    metrics = json.loads((out / "after" / "metrics.json").read_text())
    profile = {"reference training": sum(e["seconds"] for e in metrics.get("reference_training", [])),
               "hardening": sum(e["seconds"] for e in metrics["training"]),
               **{f"evaluation of the hardened model: {k}": v for k, v in metrics["hardened"]["seconds"].items()},
               **{f"evaluation of the reference: {k}": v for k, v in metrics["reference"]["seconds"].items()}}
    print("\n| where the quickstart's time went (after) | s | share |\n|---|---|---|")
    for stage, seconds in profile.items():
        print(f"| {stage} | {seconds:.0f} | {seconds / walls['after']:.0%} |")
    return {"wall_s": walls, "profile_s": profile, "figures": figures}


def _figures(metrics: dict) -> dict[str, str]:
    """The figures the README quotes: clean accuracy, rho_2 and AutoAttack robust accuracy, reference -> hardened."""
    def pair(read) -> str:
        return f"{read(metrics['reference'])} -> {read(metrics['hardened'])}"
    row = {"clean": pair(lambda m: f"{m['clean_accuracy']:.1%}"), "rho_2": pair(lambda m: f"{m['rho2']:.3f}")}
    for threat in metrics["hardened"]["autoattack"]:
        row[f"AutoAttack {threat}"] = pair(lambda m: f"{m['autoattack'][threat]['accuracy']:.0%}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare this working tree against")
    parser.add_argument("--models", default="lenet,resnet18")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per (revision, model, step)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per child")
    parser.add_argument("--quickstart", action="store_true", help="also run the README's quickstart under both")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": worktree(args.before, Path(tmp) / "before"), "after": ROOT}
        try:
            models = args.models.split(",")
            weights = {m: lenet_weights(Path(tmp) / "lenet.safetensors") if m == "lenet" else None for m in models}
            print(f"# before: {args.before}; after: this working tree; 1 thread per child")
            results = {"steps": steps(trees, models, args.rounds, args.repeats, weights)}
            if args.quickstart:
                results["quickstart"] = quickstart(trees, Path(tmp) / "runs")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees["before"])],
                           capture_output=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
