"""The tables of docs/results.md's "Beyond the paper's networks", printed from the run folders that produced them.

    python benchmarks/families.py RUN_DIR [RUN_DIR ...]

Each RUN_DIR is the output of ``dd-hub reproduce`` (its ``results.json``), of ``dd-hub sweep`` (its
``sweep.json``) or of ``dd-hub harden`` (its ``metrics.json``: the hardened model, one row); a ``RUN_DIR.time`` file beside it, written by GNU ``/usr/bin/time -v``, adds its wall time and
peak memory. Prints, in Markdown: one table per AutoAttack threat model (architecture x method: clean accuracy,
robust accuracy, rho_2), the c sweeps, the cost of each method (mean epoch seconds and unrolled DeepFool
iterations from the training logs, wall time of each run) and Deep Defense's per-epoch training curve.
Nothing is computed here that the runs did not measure.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

LABELS = {"reference": "reference", "clean": "clean fine-tune", "pgd_adv": "PGD adv. training",
          "deep_defense": "Deep Defense"}


def method_label(method: str, recipe: dict) -> str:
    if method == "pgd_adv":
        adversarial = recipe["adversarial"]
        return f"{LABELS[method]} ({adversarial['norm'].upper()}, eps {adversarial['eps']:g})"
    if method == "deep_defense":
        defense = recipe["defense"]
        return f"{LABELS[method]} (c {defense['c']:g}, lambda {defense['lam']:g})"
    return LABELS.get(method, method)


def _row(model: str, method: str, reports: list[dict], training: list[dict]) -> dict:
    """One table row: the mean of ``reports`` (one per seed) and the training log's cost and curve."""
    iterations = [e["df_iters"] for e in training if "df_iters" in e]
    return {"model": model, "method": method,
            "clean": statistics.fmean(r["clean_accuracy"] for r in reports),
            "rho2": statistics.fmean(r["rho2"] for r in reports),
            "autoattack": {name: statistics.fmean(r["autoattack"][name]["accuracy"] for r in reports)
                           for name in reports[0].get("autoattack", {})},
            "epochs": len(training),
            "epoch_s": statistics.fmean(e["seconds"] for e in training) if training else None,
            "df_iters": statistics.fmean(iterations) if iterations else None,
            "curve": [(e["epoch"], e["acc"], e.get("rho")) for e in training]}


def reproduce_rows(run_dir: Path) -> list[dict]:
    results = json.loads((run_dir / "results.json").read_text())
    rows = []
    for method in results["methods"]:
        metrics_file = run_dir / f"seed{results['seeds'][0]}" / method / "metrics.json"
        training = json.loads(metrics_file.read_text())["training"] if metrics_file.exists() else []
        rows.append(_row(results["model"], method_label(method, results["recipe"]),
                         [run["reports"][method] for run in results["runs"]], training))
    return rows


def harden_rows(run_dir: Path) -> list[dict]:
    """The hardened model of a ``dd-hub harden`` folder (its metrics.json) as one row."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    training = metrics["training"]
    method = method_label(metrics["model"]["method"], metrics["recipe"]) + f", {len(training)} epochs"
    return [_row(metrics["model"]["architecture"], method, [metrics["hardened"]], training)]


def wall_and_peak(run_dir: Path) -> tuple[str, str]:
    time_file = run_dir.with_name(run_dir.name + ".time")
    if not time_file.exists():
        return "–", "–"
    text = time_file.read_text()
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", text)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return (wall.group(1) if wall else "–", f"{int(peak.group(1)) / 2**20:.1f} GiB" if peak else "–")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    rows, sweeps, costs = [], [], []
    for run_dir in args.runs:
        if (run_dir / "sweep.json").exists():
            sweep = json.loads((run_dir / "sweep.json").read_text())
            sweeps += [(sweep["model"], point) for point in sweep["points"]]
        else:
            found = harden_rows(run_dir) if (run_dir / "metrics.json").exists() else reproduce_rows(run_dir)
            rows += [row for row in found if row not in rows]
        costs.append((run_dir.name, *wall_and_peak(run_dir)))
    threat_models = sorted({name for row in rows for name in row["autoattack"]})
    for threat in threat_models:
        print(f"\n### AutoAttack {threat}\n\n| architecture | method | clean | robust | rho_2 |\n|---|---|---|---|---|")
        for row in rows:
            if threat in row["autoattack"]:
                print(f"| {row['model']} | {row['method']} | {row['clean']:.1%} | {row['autoattack'][threat]:.1%} | "
                      f"{row['rho2']:.3f} |")
    if sweeps:
        print("\n### c sweeps\n\n| architecture | c | clean | rho_2 |\n|---|---|---|---|")
        for model, point in sweeps:
            print(f"| {model} | {point['c']:g} | {point['accuracy']:.1%} | {point['rho2']:.3f} |")
    print("\n### Training cost\n\n| architecture | method | epochs | mean epoch s | unrolled DeepFool iterations |\n"
          "|---|---|---|---|---|")
    for row in rows:
        if row["epochs"]:
            iters = f"{row['df_iters']:.2f}" if row["df_iters"] is not None else "–"
            print(f"| {row['model']} | {row['method']} | {row['epochs']} | {row['epoch_s']:.1f} | {iters} |")
    curves = [row for row in rows if row["df_iters"] is not None and row["curve"]]
    if curves:
        epochs = max(len(row["curve"]) for row in curves)
        print("\n### Deep Defense per epoch (training batches: accuracy, rho_2)\n\n| architecture | "
              + " | ".join(f"epoch {e}" for e in range(1, epochs + 1)) + " |")
        print("|---|" + "---|" * epochs)
        for row in curves:
            print(f"| {row['model']} | " + " | ".join(f"{acc:.1%}, {rho:.3f}" for _, acc, rho in row["curve"]) + " |")
    print("\n| run | wall time | peak memory |\n|---|---|---|")
    for name, wall, peak in costs:
        print(f"| {name} | {wall} | {peak} |")


if __name__ == "__main__":
    main()
