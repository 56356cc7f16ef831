"""Re-measure a model folder's AutoAttack figures with pyautoattack called directly (not through dd-hub's wrapper)
and compare them with its metrics.json.

    python benchmarks/check_autoattack.py runs/lenet [--dataset mnist-5k] [--per-batch]

For each threat model of the hardened report it takes the settings the card records (norm, eps, version, attacks,
seed, n_examples), the same class-balanced subset of the test split, runs ``pyautoattack.AutoAttack`` on it and
prints the card's accuracy beside the independent one.

By default one ``run_standard_evaluation`` call attacks the whole subset, the simplest independent run. dd-hub
calls AutoAttack once per evaluation batch (the recipe's ``evaluation.batch_size`` consecutive images of the
subset, each call seeded with the card's seed), so that a sharded evaluation equals a single-process one; the two
draw different random starts for the images left after the first attack and may differ by a few tenths of a point.
``--per-batch`` calls it the way dd-hub does, which should give the card's figure exactly.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import dd_hub
from dd_hub.data.datasets import create_dataset
from dd_hub.data.loaders import balanced_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--dataset", help="default: the one in metrics.json")
    parser.add_argument("--per-batch", action="store_true",
                        help="one AutoAttack call per evaluation batch, as dd-hub makes them")
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
        batch_size = metrics["recipe"]["evaluation"]["batch_size"]
        calls = range(0, len(labels), batch_size) if args.per_batch else [0]
        size = batch_size if args.per_batch else len(labels)
        adversarial = torch.cat([attack.run_standard_evaluation(images[i:i + size], labels[i:i + size],
                                                                batch_size=batch_size)[0] for i in calls])
        with torch.no_grad():
            independent = (model(adversarial).argmax(1) == labels).float().mean().item()
        print(f"| {name} | {figure['accuracy']:.2%} | {independent:.2%} | {len(subset)} | "
              f"{round(100 * (independent - figure['accuracy']), 1) + 0.0:+.1f} |")   # + 0.0: never '-0.0'


if __name__ == "__main__":
    main()
