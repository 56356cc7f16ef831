"""The GPU check: every CUDA-only path of dd-hub run once and compared with the CPU-exact path, then the GPU
benchmark rows, in one command that fits a short lease (under 8 minutes on one GPU, model builds included).

    python benchmarks/gpu_check.py --out gpu-report        # writes gpu-report/gpu_check.json and gpu_check.md

On a bare GPU machine without network, ``benchmarks/gpu_wheels.sh`` (run where pip works) gathers the packages it
needs as wheels; its header gives the two commands to run there.

Checks (each timed, each with the measured figure it is judged by):
1. candidate gradients: DeepFool with ``candidate_gradients='batched'`` (vmap over the backward, the CUDA default)
   against ``'loop'``: the same iterations and perturbations (max abs difference), and the same Deep Defense
   parameter gradients (relative difference);
2. mixed precision: a Deep Defense step under fp16 autocast with loss scaling of the inner gradients
   (``DeepDefenseLoss()(model, x, y, loss_scale=...)``) and under bf16 autocast, against fp32: cosine
   similarity and relative error of the parameter gradients, finite losses;
3. channels_last: logits and Deep Defense gradients of a conv net in channels_last against contiguous;
4. AutoAttack ``standard`` (APGD-CE, APGD-T, FAB-T, Square) on a few images of a trained LeNet: it runs, and its
   robust accuracy is at most the ``custom`` version's (APGD-CE + APGD-T);
5. a short ``dd_hub.harden`` on a generated ImageNet-layout folder with loader workers and bf16 (test_resnet);
then the GPU rows of ``benchmarks/bench.py`` (DeepFool against adv-lib/foolbox/torchattacks, Deep Defense step
ratio and peak memory) for LeNet and ResNet-18 at 32x32 and 224x224.

Without CUDA it stops at once with one line and exit status 2 (``--cpu-smoke`` runs the checks on the CPU with tiny
sizes instead, to test the script itself; its figures say nothing about a GPU).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

BUDGET_S = 8 * 60


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class Report:
    """Check results in order, each with its verdict, figures and seconds."""

    def __init__(self, device: torch.device, smoke: bool) -> None:
        self.device, self.smoke, self.start = device, smoke, time.perf_counter()
        self.checks: list[dict] = []
        self.bench: dict = {}

    def run(self, name: str, check: Callable[[], tuple[bool, dict]]) -> None:
        start = time.perf_counter()
        try:
            passed, figures = check()
        except Exception as exc:  # a check that crashes is a failed check with its error, the others still run
            passed, figures = False, {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                                      "traceback": traceback.format_exc(limit=3)}
        self.checks.append({"check": name, "passed": bool(passed), "seconds": round(time.perf_counter() - start, 2),
                            **figures})
        print(f"{'PASS' if passed else 'FAIL'} {name} ({self.checks[-1]['seconds']} s): "
              f"{ {k: v for k, v in figures.items() if k != 'traceback'} }", flush=True)

    def markdown(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU (smoke run)"
        lines = [f"# dd-hub GPU check on {name}", "",
                 f"torch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}; "
                 f"{time.perf_counter() - self.start:.0f} s in all. Checks in fp32 with TF32 off; benchmark rows with "
                 "PyTorch's TF32 defaults.", "", "| check | verdict | s | figures |",
                 "|---|---|---|---|"]
        for c in self.checks:
            figures = ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("check", "passed", "seconds",
                                                                               "traceback"))
            lines.append(f"| {c['check']} | {'pass' if c['passed'] else 'FAIL'} | {c['seconds']} | {figures} |")
        for model, tables in self.bench.items():
            lines += ["", f"## {model}", "", *tables]
        return "\n".join(lines) + "\n"


def conv_net(device: torch.device, size: int, classes: int = 10) -> torch.nn.Module:
    import dd_hub

    torch.manual_seed(0)
    return dd_hub.create_model("resnet18", num_classes=classes).to(device).eval()


def batch(model: torch.nn.Module, device: torch.device, n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    x = torch.rand(n, 3, size, size, device=device)
    with torch.no_grad():
        return x, model(x).argmax(1)


def param_grads(model, loss) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def check_candidate_gradients(device, n, size) -> tuple[bool, dict]:
    import dd_hub

    model = conv_net(device, size)
    x, y = batch(model, device, n, size)
    loop = dd_hub.deepfool(model, x, steps=10, candidate_gradients="loop")
    batched = dd_hub.deepfool(model, x, steps=10, candidate_gradients="batched")
    diff = (loop.adversarial - batched.adversarial).abs().max().item()
    same_iters = bool(torch.equal(loop.iterations, batched.iterations))
    grads = {s: param_grads(model, dd_hub.DeepDefenseLoss(candidate_gradients=s)(model, x, y))
             for s in ("loop", "batched")}
    rel = relative(grads["batched"], grads["loop"])
    return same_iters and diff < 1e-4 and rel < 1e-4, {"max_abs_perturbation_diff": diff, "same_iterations": same_iters,
                                                      "dd_grad_relative_diff": rel}


def check_mixed_precision(device, n, size) -> tuple[bool, dict]:
    import dd_hub

    model = conv_net(device, size)
    x, y = batch(model, device, n, size)
    loss_fn = dd_hub.DeepDefenseLoss()
    reference = param_grads(model, loss_fn(model, x, y))
    figures, ok = {}, True
    for dtype, scale in ((torch.float16, 2.0 ** 16), (torch.bfloat16, None)):
        if device.type == "cpu" and dtype == torch.float16:
            continue
        with torch.autocast(device.type, dtype=dtype):
            loss = loss_fn(model, x, y, loss_scale=scale)
        grads = param_grads(model, loss * (scale or 1.0)) / (scale or 1.0)
        cosine = F.cosine_similarity(grads, reference, dim=0).item()
        name = str(dtype).split(".")[-1]
        figures.update({f"{name}_cosine": round(cosine, 5), f"{name}_relative": round(relative(grads, reference), 4),
                        f"{name}_finite": bool(torch.isfinite(grads).all())})
        ok &= cosine > 0.98 and bool(torch.isfinite(grads).all())
    return ok, figures


def check_channels_last(device, n, size) -> tuple[bool, dict]:
    import copy

    import dd_hub

    model = conv_net(device, size)
    x, y = batch(model, device, n, size)
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    with torch.no_grad():
        logits = (model(x) - nhwc(x.contiguous(memory_format=torch.channels_last))).abs().max().item()
    loss_fn = dd_hub.DeepDefenseLoss()
    rel = relative(param_grads(nhwc, loss_fn(nhwc, x, y)), param_grads(model, loss_fn(model, x, y)))
    return logits < 1e-3 and rel < 1e-3, {"max_abs_logit_diff": logits, "dd_grad_relative_diff": rel}


def check_autoattack(device, n, _size) -> tuple[bool, dict]:
    import dd_hub
    from dd_hub.data.datasets import create_dataset
    from dd_hub.training.loop import TrainConfig, train

    torch.manual_seed(0)
    model = dd_hub.create_model("dd_lenet_mnist")
    train(model, create_dataset("mnist-5k", "train"), TrainConfig(epochs=1, batch_size=64, lr=0.01, lr_milestones=[],
                                                                  freeze_bn=False), progress=False)
    model = model.to(device).eval()
    x, y = (t[:n].to(device) for t in create_dataset("mnist-5k", "test").tensors)
    standard = dd_hub.autoattack(model, x, y, eps=2.0, norm="l2", version="standard")
    custom = dd_hub.autoattack(model, x, y, eps=2.0, norm="l2", version="custom")
    return standard.robust_accuracy <= custom.robust_accuracy + 1e-9, {
        "images": n, "standard_attacks": standard.metadata["attacks"], "standard_robust": standard.robust_accuracy,
        "custom_robust": custom.robust_accuracy, "clean": standard.clean_accuracy}


def check_harden(device, n, size) -> tuple[bool, dict]:
    from bench import write_imagenet_folder
    from dd_hub.recipes import find_recipe
    from dd_hub.workflows.harden import harden

    with tempfile.TemporaryDirectory() as tmp:
        folder = write_imagenet_folder(Path(tmp) / "data", n, n, classes=5, size=size + 8)
        recipe = find_recipe("test_resnet", "imagenet", {
            "harden.epochs": 1, "harden.batch_size": max(2, n // 4), "data.workers": 2,
            "evaluation.max_examples": n, "evaluation.deepfool_steps": 5, "evaluation.pgd_steps": 5,
            "evaluation.sanity_max_examples": n, "evaluation.autoattack_max_examples": n})
        precision = "bf16" if device.type == "cuda" else "no"
        result = harden(recipe, Path(tmp) / "out", data_dir=folder, allow_random_init=True, progress=False,
                        echo=lambda *_: None, mixed_precision=precision, input_size=size)
        autoattack = result.hardened.autoattack
        return result.hardened is not None, {"images": n, "mixed_precision": precision,
                                             "clean": result.hardened.clean_accuracy,
                                             "autoattack": {k: v["accuracy"] for k, v in autoattack.items()},
                                             "skipped": {k: v.get("skipped") for k, v in autoattack.items()}}


def bench_rows(report: Report, models: list[str], repeats: int) -> None:
    import bench

    for name in models:
        if time.perf_counter() - report.start > BUDGET_S - 60:
            report.bench[name] = ["(skipped: the time budget is spent)"]
            continue
        model, inputs, labels = bench.build(name, report.device)
        deepfool = bench.bench_deepfool(model, inputs, repeats, 5)
        steps = bench.bench_steps(model, inputs, labels, repeats)
        memory = {k: bench.peak_memory_mib(name, k, report.device, None) for k in bench.STEPS}
        report.bench[name] = [bench._deepfool_table(deepfool), "", bench._step_table(steps, memory)]
        print(f"bench {name} done ({time.perf_counter() - report.start:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--cpu-smoke", action="store_true", help="run the checks on the CPU, tiny (tests the script)")
    args = parser.parse_args()
    if not args.cpu_smoke and not torch.cuda.is_available():
        fail("gpu_check needs a CUDA GPU and torch.cuda.is_available() is False here; run it on a machine with one "
             "(or --cpu-smoke to test the script on the CPU)")
    import timm

    timm.layers.set_fused_attn(False)
    device = torch.device("cpu" if args.cpu_smoke else "cuda")
    n, size = (4, 32) if args.cpu_smoke else (32, 64)
    report = Report(device, args.cpu_smoke)
    # The checks compare paths that must agree to fp32 rounding: TF32 (on by default for cuDNN convolutions) rounds
    # inputs to 10 mantissa bits, differently per algorithm and layout, so it is off for them and back on (PyTorch's
    # defaults, what users get) for the benchmark rows.
    defaults = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    report.run("candidate gradients: batched = loop", lambda: check_candidate_gradients(device, n, size))
    report.run("mixed precision: fp16 and bf16 Deep Defense steps ~ fp32",
               lambda: check_mixed_precision(device, n, size))
    report.run("channels_last = contiguous", lambda: check_channels_last(device, n, size))
    report.run("AutoAttack standard runs, no weaker than custom", lambda: check_autoattack(device, 8 if args.cpu_smoke
                                                                                            else 64, size))
    report.run("harden on an ImageNet-layout folder, workers, bf16", lambda: check_harden(device, 8 if args.cpu_smoke
                                                                                         else 32, size))
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = defaults
    bench_rows(report, ["lenet"] if args.cpu_smoke else ["lenet", "resnet18", "resnet18-224"],
               1 if args.cpu_smoke else 3)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps({"device": str(device), "checks": report.checks,
                                                         "bench": report.bench}, indent=2, default=str))
    (args.out / "gpu_check.md").write_text(report.markdown())
    print(f"wrote {args.out / 'gpu_check.md'} ({time.perf_counter() - report.start:.0f} s)")
    sys.exit(0 if all(c["passed"] for c in report.checks) else 1)


if __name__ == "__main__":
    main()
