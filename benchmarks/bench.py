"""DeepFool and Deep Defense step benchmark: dd-hub side by side with foolbox and torchattacks, in one run.

    python benchmarks/bench.py                       # LeNet 28x28 (batch 100) and ResNet-18 32x32 (batch 32)
    python benchmarks/bench.py --models lenet --repeats 5 --json bench.json

For each model, on the same model, batch and settings (L2, 50 iterations, 10 candidates, overshoot 0.02, [0, 1]
box):
- DeepFool throughput (images/s, median of ``--repeats`` timed runs after one warm-up) of ``dd_hub.deepfool``,
  foolbox's ``L2DeepFoolAttack`` and torchattacks' ``DeepFool`` (on the first ``--torchattacks-rows`` images only:
  it loops over samples in Python), with each one's rho_2 = mean ||r||_2 / ||x||_2 and success rate;
- the wall time of one Deep Defense training step (forward, loss with 5 unrolled iterations and 10 candidates,
  backward) divided by that of one plain cross-entropy step, for dd-hub and for the naive unrolling that keeps all
  candidates' gradients in the graph (benchmarks/naive_unroll.py);
- the peak memory of each step above the memory held before it: ``torch.cuda.max_memory_allocated`` on GPU, the
  process's peak resident set (``VmHWM`` after resetting it) in a fresh subprocess per step on CPU.
LeNet is trained for one epoch on the embedded MNIST-5k data (so DeepFool sees a real classifier); the ResNet-18s
are timm's with random weights and uniform random images, all in eval mode (Deep Defense freezes BatchNorm).
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
from typing import Callable
from unittest import mock

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dd_hub.defense  # noqa: E402
from dd_hub import create_model, deepfool  # noqa: E402
from dd_hub.defense import DeepDefenseLoss, ratio  # noqa: E402
from naive_unroll import naive_deepfool_unrolled  # noqa: E402

DEEPFOOL = dict(steps=50, candidates=10, overshoot=0.02)
MODELS = {  # name: (timm/dd-hub model, batch, input shape, classes)
    "lenet": ("dd_lenet_mnist", 100, (1, 28, 28), 10),
    "resnet18": ("resnet18", 32, (3, 32, 32), 10),
    "resnet18-224": ("resnet18", 32, (3, 224, 224), 1000),
}


def build(name: str, device: torch.device, weights: Path | None = None) -> tuple[nn.Module, Tensor, Tensor]:
    """The model (eval mode), a batch in [0, 1] and its labels."""
    arch, batch, shape, classes = MODELS[name]
    torch.manual_seed(0)
    model = create_model(arch, num_classes=classes)
    if name == "lenet":
        from dd_hub.data import create_dataset

        if weights is not None and weights.exists():
            from safetensors.torch import load_model

            load_model(model, weights)
        else:
            from dd_hub.train import TrainConfig
            from dd_hub.train import train

            train(model, create_dataset("mnist-5k", "train"),
                  TrainConfig(epochs=1, batch_size=64, lr=0.01, lr_milestones=[], freeze_bn=False), progress=False)
        images, labels = create_dataset("mnist-5k", "test").tensors
        inputs, labels = images[:batch], labels[:batch]
    else:
        inputs = torch.rand(batch, *shape)
        with torch.no_grad():
            labels = model.eval()(inputs).argmax(1)  # a fine-tuning start point classifies its data correctly
    return model.eval().to(device), inputs.to(device), labels.to(device)


def timed(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int | dict[str, int]) -> dict:
    """``{name: (median wall s, median process CPU s, last result)}``; one warm-up each, then the runs interleaved.

    Interleaving (round robin) exposes every implementation to the same background load on a shared machine; the
    CPU time (all threads of this process) is the cross-check that does not count time spent waiting for a core.
    """
    runs = repeats if isinstance(repeats, dict) else dict.fromkeys(fns, repeats)
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    results = {}
    for name, fn in fns.items():  # the warm-up is the measurement only where no runs are asked for (torchattacks)
        start, start_cpu = time.perf_counter(), time.process_time()
        results[name] = fn()
        _sync(device)
        if runs[name] == 0:
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    for round_ in range(max(runs.values())):
        for name, fn in fns.items():
            if round_ >= runs[name]:
                continue
            _sync(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = fn()
            _sync(device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]), results[name]) for name in fns}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_deepfool(model: nn.Module, inputs: Tensor, repeats: int, ta_rows: int) -> list[dict]:
    import foolbox as fb
    import torchattacks

    device = inputs.device
    with torch.no_grad():
        predictions = model(inputs).argmax(1)

    def ours() -> tuple[Tensor, Tensor]:
        result = deepfool(model, inputs, **DEEPFOOL, bounds=(0.0, 1.0))
        return result.perturbation, result.success

    attack = fb.attacks.L2DeepFoolAttack(**DEEPFOOL, loss="logits")
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)

    def foolbox() -> tuple[Tensor, Tensor]:
        raw, _, success = attack(fmodel, inputs, predictions, epsilons=None)
        return raw - inputs, success

    ta_attack = torchattacks.DeepFool(model, steps=DEEPFOOL["steps"], overshoot=DEEPFOOL["overshoot"])
    ta_inputs, ta_predictions = inputs[:ta_rows], predictions[:ta_rows]

    def torchattacks_() -> tuple[Tensor, Tensor]:
        adversarial = ta_attack(ta_inputs, ta_predictions)
        with torch.no_grad():
            return adversarial - ta_inputs, model(adversarial).argmax(1) != ta_predictions

    timings = timed({"dd-hub": ours, "foolbox": foolbox, "torchattacks": torchattacks_}, device,
                    {"dd-hub": repeats, "foolbox": repeats, "torchattacks": 0})
    rows = []
    for label, x in (("dd-hub", inputs), ("foolbox", inputs), ("torchattacks", ta_inputs)):
        seconds, cpu_seconds, (perturbation, success) = timings[label]
        rows.append({"impl": label, "images": len(x), "seconds": seconds, "cpu_seconds": cpu_seconds,
                     "images_per_s": len(x) / seconds, "rho2": ratio(perturbation, x).mean().item(),
                     "success": success.float().mean().item()})
    ours_on_ta_rows = ours()[0][:ta_rows]
    rows[-1]["rho2_dd_hub_same_rows"] = ratio(ours_on_ta_rows, ta_inputs).mean().item()
    return rows


def step_fn(kind: str, model: nn.Module, inputs: Tensor, labels: Tensor) -> Callable[[], None]:
    """One training step's forward + backward: ``plain`` (cross-entropy), ``deep-defense`` or ``naive``."""
    loss_fn = DeepDefenseLoss()  # 5 unrolled iterations, 10 candidates, the paper's lambda/c/d

    def step() -> None:
        model.zero_grad(set_to_none=True)
        if kind == "plain":
            F.cross_entropy(model(inputs), labels).backward()
        elif kind == "deep-defense":
            loss_fn(model, inputs, labels).backward()
        else:
            with mock.patch.object(dd_hub.defense, "deepfool_unrolled", naive_deepfool_unrolled):
                loss_fn(model, inputs, labels).backward()

    return step


STEPS = ("plain", "deep-defense", "naive")


def bench_steps(model: nn.Module, inputs: Tensor, labels: Tensor, repeats: int) -> dict[str, dict[str, float]]:
    timings = timed({kind: step_fn(kind, model, inputs, labels) for kind in STEPS}, inputs.device, repeats)
    return {kind: {"seconds": wall, "cpu_seconds": cpu} for kind, (wall, cpu, _) in timings.items()}


def peak_memory_mib(name: str, kind: str, device: torch.device, weights: Path | None) -> float:
    """Peak memory of one step above what was held before it, in MiB (see the module docstring)."""
    if device.type == "cuda":
        model, inputs, labels = build(name, device, weights)
        step = step_fn(kind, model, inputs, labels)
        step()  # warm-up: cuDNN workspaces and .grad buffers exist before the measured step, as in training
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    # Fixed mmap threshold: large tensors go back to the OS when freed, so the resident set follows live memory.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    command = [sys.executable, __file__, "--memory-child", name, kind, "--threads", str(torch.get_num_threads())]
    if weights is not None:
        command += ["--weights", str(weights)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def _memory_child(name: str, kind: str, weights: Path | None) -> None:
    model, inputs, labels = build(name, torch.device("cpu"), weights)
    step = step_fn(kind, model, inputs, labels)
    with torch.no_grad():
        model(inputs[:2])  # lazy initialisations (oneDNN primitives) before the baseline
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak resident set (VmHWM) to the current one
    before = _status_kib("VmRSS")
    step()
    print((_status_kib("VmHWM") - before) / 1024)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated: lenet, resnet18, resnet18-224 "
                        "(default: lenet,resnet18, plus resnet18-224 on GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: stable on shared machines)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the median is reported")
    parser.add_argument("--torchattacks-rows", type=int, default=10)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        return _memory_child(*args.memory_child, args.weights)

    device = torch.device(args.device)
    names = (args.models or ("lenet,resnet18,resnet18-224" if device.type == "cuda" else "lenet,resnet18")).split(",")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"# dd-hub benchmark on {where}; torch {torch.__version__}; median of {args.repeats} runs")
    results = {"device": where, "torch": torch.__version__, "repeats": args.repeats, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            weights = Path(tmp) / f"{name}.safetensors" if name == "lenet" else None
            model, inputs, labels = build(name, device)
            if weights is not None:
                from safetensors.torch import save_model

                save_model(model, str(weights))
            _, batch, shape, classes = MODELS[name]
            print(f"\n## {name}: {'x'.join(map(str, shape))}, {classes} classes, batch {batch}")
            deepfool_rows = bench_deepfool(model, inputs, args.repeats, args.torchattacks_rows)
            print(_deepfool_table(deepfool_rows))
            step_seconds = bench_steps(model, inputs, labels, args.repeats)
            memory = {} if args.no_memory else {k: peak_memory_mib(name, k, device, weights) for k in STEPS}
            print(_step_table(step_seconds, memory))
            results["models"][name] = {"deepfool": deepfool_rows, "step_seconds": step_seconds,
                                       "step_peak_mib": memory}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _deepfool_table(rows: list[dict]) -> str:
    ours = rows[0]["images_per_s"]
    ours_cpu = rows[0]["images"] / rows[0]["cpu_seconds"]
    lines = ["| DeepFool L2 | images | images/s | dd-hub speed-up | speed-up in CPU time | rho_2 | success |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['impl']} | {row['images']} | {row['images_per_s']:.1f} | "
                     f"{ours / row['images_per_s']:.1f}x | {ours_cpu * row['cpu_seconds'] / row['images']:.1f}x | "
                     f"{row['rho2']:.4f} | {row['success']:.1%} |")
    lines.append(f"(dd-hub rho_2 on torchattacks' {rows[-1]['images']} images: {rows[-1]['rho2_dd_hub_same_rows']:.4f})")
    return "\n".join(lines)


def _step_table(seconds: dict[str, dict[str, float]], memory: dict[str, float]) -> str:
    lines = ["| training step | ms | / plain step | CPU-time ratio | peak MiB | / plain peak |",
             "|---|---|---|---|---|---|"]
    plain = seconds["plain"]
    for kind in STEPS:
        peak = f"{memory[kind]:.1f} | {memory[kind] / memory['plain']:.1f}x" if memory else "- | -"
        lines.append(f"| {kind} | {1000 * seconds[kind]['seconds']:.1f} | "
                     f"{seconds[kind]['seconds'] / plain['seconds']:.1f}x | "
                     f"{seconds[kind]['cpu_seconds'] / plain['cpu_seconds']:.1f}x | {peak} |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
