"""Why a recipe's Deep Defense fine-tuning diverges: its frozen BatchNorm channels, then the hardening steps one by
one with the gradient norm before any clipping.

    python benchmarks/diagnose_divergence.py recipes/mnist_mobilenetv3.yaml --out DIR [--max-grad-norm X] [--lr X]

Trains the recipe's reference (or reloads ``DIR/reference.safetensors`` from an earlier call), prints how many
frozen BatchNorm channels have a running variance below 1e-3 and the smallest one, then runs up to ``--epochs``
epochs of the recipe's Deep Defense objective with plain SGD (the recipe's lr, momentum and weight decay, BatchNorm
frozen, one thread), printing one JSON line per step: loss, the objective's statistics and the global gradient
norm before clipping. It stops at the first non-finite loss or gradient. This is how the MobileNetV3 recipe's
figures (gradient norm 20 -> 926 in five steps; the clipping trials at 50, 5 and 1.0) were measured.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from safetensors.torch import load_model, save_model

from dd_hub.data.loaders import training_loader
from dd_hub.recipes import load_recipe
from dd_hub.training.deep_defense import DeepDefenseLoss
from dd_hub.training.loop import freeze_batchnorm, make_accelerator
from dd_hub.workflows.start import prepare_start, train_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="where the reference's weights are kept")
    parser.add_argument("--max-grad-norm", type=float, default=0.0, help="clip at this global norm (0: off)")
    parser.add_argument("--lr", type=float, help="default: the recipe's harden.lr")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(args.recipe, {})
    set_seed(recipe.seed)
    start = prepare_start(recipe)
    reference = args.out / "reference.safetensors"
    if reference.exists():
        load_model(start.model, str(reference))
    else:
        train_reference(start, recipe, accelerator=make_accelerator(), echo=print, progress=False, data=recipe.data)
        args.out.mkdir(parents=True, exist_ok=True)
        save_model(start.model, str(reference))
    model = start.model
    variances = torch.cat([m.running_var for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    print(json.dumps({"batchnorm_channels": len(variances), "running_var_below_1e-3": int((variances < 1e-3).sum()),
                      "smallest_running_var": variances.min().item()}), flush=True)
    model.train()
    freeze_batchnorm(model)
    harden = recipe.harden
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr or harden.lr, momentum=harden.momentum,
                                weight_decay=harden.weight_decay)
    loss_fn = DeepDefenseLoss(recipe.defense)
    loader = training_loader(start.train_set, harden.batch_size, recipe.seed, recipe.data)
    begin, step = time.perf_counter(), 0
    for epoch in range(args.epochs):
        loader.sampler.set_epoch(epoch)
        for inputs, labels in loader:
            step += 1
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, inputs, labels, center=start.center)
            loss.backward()
            norm = torch.stack([p.grad.norm() for p in params if p.grad is not None]).norm().item()
            print(json.dumps({"s": round(time.perf_counter() - begin, 1), "epoch": epoch + 1, "step": step,
                              "loss": loss.item(), "grad_norm": norm, **loss_fn.stats}), flush=True)
            if not (math.isfinite(loss.item()) and math.isfinite(norm)):
                print("non-finite: stopped", flush=True)
                return
            if args.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            optimizer.step()


if __name__ == "__main__":
    main()
