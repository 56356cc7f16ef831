"""Re-measure a model folder's AutoAttack figures with pyautoattack called directly (not through dd-hub's wrapper)
and compare them with its metrics.json.

    python benchmarks/check_autoattack.py runs/lenet [--dataset mnist-5k]

For each threat model of the hardened report it takes the settings the card records (norm, eps, version, attacks,
seed, n_examples), the same class-balanced subset of the test split, runs ``pyautoattack.AutoAttack`` on it and
prints the card's accuracy beside the independent one.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import dd_hub
from dd_hub.data import create_dataset
from dd_hub.loaders import balanced_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--dataset", help="default: the one in metrics.json")
    args = parser.parse_args()
    from pyautoattack import AutoAttack

    metrics = json.loads((Path(args.model_dir) / "metrics.json").read_text())
    model = dd_hub.load(args.model_dir).eval()
    test = create_dataset(args.dataset or metrics["model"]["dataset"], "test")
    print("| threat model | card | independent pyautoattack | n | difference (points) |\n|---|---|---|---|---|")
    for name, figure in sorted(metrics["hardened"]["autoattack"].items()):
        subset = balanced_subset(test, figure["n_examples"], figure.get("seed", 0))
        images, labels = (torch.stack(column) if i == 0 else torch.tensor(column)
                          for i, column in enumerate(zip(*[subset[i] for i in range(len(subset))])))
        attack = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[figure["norm"]], eps=figure["eps"],
                            version=figure["version"], seed=figure.get("seed", 0),
                            **({"attacks": figure["attacks"]} if figure["version"] == "custom" else {}))
        adversarial, _ = attack.run_standard_evaluation(images, labels, batch_size=250)
        with torch.no_grad():
            independent = (model(adversarial).argmax(1) == labels).float().mean().item()
        print(f"| {name} | {figure['accuracy']:.2%} | {independent:.2%} | {len(subset)} | "
              f"{100 * (independent - figure['accuracy']):+.1f} |")


if __name__ == "__main__":
    main()
