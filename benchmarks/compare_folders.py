"""Whether a rebuild gave the same model: weights tensor for tensor, then every figure of the two evaluations.

    python benchmarks/compare_folders.py model_cards/dd_lenet_mnist-mnist-5k-deepdefense runs/rebuild/seed1234/deep_defense

Each side is a model folder (model.safetensors and metrics.json, whose ``hardened`` figures are compared), a
phase checkpoint folder (model.safetensors, its keys under the normalizing wrapper's ``model.``), or a
``.safetensors`` file; a ``report.json`` beside a checkpoint folder (its phase's kept evaluation) is compared like
metrics.json's figures (all but the seconds each part took). Prints what differs and exits 1 when anything does.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safetensors.torch import load_file


def weights(path: Path) -> dict:
    file = path if path.suffix == ".safetensors" else path / "model.safetensors"
    return {key.removeprefix("model."): tensor for key, tensor in load_file(str(file)).items()}


def figures(path: Path) -> dict[str, float] | None:
    """Every number of the model's evaluation, by its dotted key (None when there is none)."""
    if (path / "metrics.json").is_file():
        report = json.loads((path / "metrics.json").read_text())["hardened"]
    elif (path.parent / "report.json").is_file():
        report = json.loads((path.parent / "report.json").read_text())["report"]
    else:
        return None
    flat: dict[str, float] = {}

    def walk(value, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = value
    walk({k: v for k, v in report.items() if k != "seconds"}, "")  # how long each part took is no figure
    return flat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    a, b = weights(args.first), weights(args.second)
    common = sorted(set(a) & set(b))
    differ = [key for key in common if not a[key].equal(b[key])]
    print(f"weights: {len(common)} tensors in both ({len(a)} and {len(b)} in all), {len(differ)} differ"
          + (f": {', '.join(differ[:5])}" if differ else " (torch.equal on each)"))
    fa, fb = figures(args.first), figures(args.second)
    if fa is None or fb is None:
        print("figures: not compared (no metrics.json or report.json on one side)")
        changed = []
    else:
        shared = sorted(set(fa) & set(fb))
        changed = [key for key in shared if fa[key] != fb[key]]
        print(f"figures: {len(shared)} numbers in both, {len(changed)} differ"
              + "".join(f"\n  {key}: {fa[key]} vs {fb[key]}" for key in changed[:20]))
    sys.exit(1 if differ or changed or set(a) != set(b) else 0)


if __name__ == "__main__":
    main()
