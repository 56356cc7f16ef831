"""How to compute the candidate classes' input gradients: the measurement behind ``candidate_gradients='auto'``.

    python benchmarks/candidate_gradients.py [--device cuda] [--repeats 5] [--models lenet,resnet18,resnet18-imagenet]

For one DeepFool iteration on the benchmark models (see bench.py; the ImageNet-scale ones at bench.py's default
batch), times three ways of getting the input gradient of each of the 9 candidate margins (equal results, checked
to 1e-6): one ``autograd.grad`` per candidate through the retained graph ("loop", dd-hub's
``candidate_gradients='loop'``), one batched call with ``is_grads_batched=True`` ("vmap", dd-hub's ``'batched'``),
and an expanded batch (inputs replicated per candidate, one forward, one backward). ``'auto'`` is the loop on CPU
and batched on CUDA. Also prints how many DeepFool iterations LeNet's images need (attack, and Deep Defense's
unrolling).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import build, timed  # noqa: E402

from dd_hub.attacks import deepfool, deepfool_unrolled  # noqa: E402


def strategies(model, x):
    with torch.no_grad():
        logits = model(x)
    source, targets = logits.argmax(1), logits.topk(10, dim=1).indices[:, 1:]
    n, m = targets.shape

    def margins_of(inputs):
        out = model(inputs)
        return out.gather(1, targets) - out.gather(1, source[:, None])

    def loop():
        xx = x.clone().requires_grad_(True)
        margins = margins_of(xx)
        return torch.stack([torch.autograd.grad(c.sum(), xx, retain_graph=True)[0] for c in margins.unbind(1)])

    def vmap():
        xx = x.clone().requires_grad_(True)
        cotangents = torch.eye(m, device=x.device)[:, None, :].expand(m, n, m)
        return torch.autograd.grad(margins_of(xx), xx, cotangents, is_grads_batched=True)[0]

    def expanded():
        xx = x.expand(m, *x.shape).reshape(m * n, *x.shape[1:]).clone().requires_grad_(True)
        out = model(xx).view(m, n, -1)
        margins = out.gather(2, targets.T[:, :, None]) - out.gather(2, source[None, :, None].expand(m, n, 1))
        return torch.autograd.grad(margins.sum(), xx)[0].view(m, *x.shape)

    return {"loop": loop, "vmap": vmap, "expanded": expanded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="lenet,resnet18")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for name in args.models.split(","):
        model, x, labels = build(name, device)
        fns = strategies(model, x)
        reference = fns["loop"]()
        for label, fn in fns.items():
            assert torch.allclose(fn(), reference, atol=1e-6), label
        timings = timed(fns, device, args.repeats)
        row = ", ".join(f"{label} {1000 * wall:.0f} ms (CPU {1000 * cpu:.0f} ms)"
                        for label, (wall, cpu, _) in timings.items())
        print(f"{name} ({len(x)} images, 9 candidates, median of {args.repeats}): {row}")
        if name == "lenet":
            with torch.no_grad():
                correct = (model(x).argmax(1) == labels).sum().item()
            iterations = deepfool(model, x, bounds=(0.0, 1.0)).iterations
            print(f"lenet: {correct}/{len(x)} correctly classified; images per DeepFool iteration count "
                  f"{_histogram(iterations)}")
            unrolled = deepfool_unrolled(model, x, labels).iterations  # the Deep Defense step's unrolling
            print(f"lenet: images per unrolled iteration count (5 steps, no box) {_histogram(unrolled)}")


def _histogram(iterations: torch.Tensor) -> dict[int, int]:
    return {k: v for k, v in enumerate(torch.bincount(iterations).tolist()) if v}


if __name__ == "__main__":
    main()
