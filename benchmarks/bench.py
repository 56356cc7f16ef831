"""DeepFool and Deep Defense step benchmark: dd-hub side by side with adv-lib, foolbox and torchattacks, in one run.

    python benchmarks/bench.py                       # LeNet 28x28 (batch 100) and ResNet-18 32x32 (batch 32)
    python benchmarks/bench.py --models lenet --repeats 5 --json bench.json
    python benchmarks/bench.py --models resnet18-imagenet,vit-s16-imagenet   # ImageNet scale (see below)

For each model, on the same model, batch and settings (L2, 50 iterations, 10 candidates, overshoot 0.02, [0, 1]
box):
- DeepFool throughput (images/s, median of ``--repeats`` timed runs after one warm-up) of ``dd_hub.deepfool``,
  adv-lib's ``df`` (the fastest public batched DeepFool; PyPI ``adv-lib``, installed with ``pip install --no-deps
  adv-lib``: its ``visdom`` dependency only serves its logger), foolbox's ``L2DeepFoolAttack`` and torchattacks'
  ``DeepFool`` (on the first ``--torchattacks-rows`` images only: it loops over samples in Python), with each one's
  rho_2 = mean ||r||_2 / ||x||_2 and success rate;
- the wall time of one Deep Defense training step (forward, loss with 5 unrolled iterations and 10 candidates,
  backward) divided by that of one plain cross-entropy step, for dd-hub and for the naive unrolling that keeps all
  candidates' gradients in the graph (benchmarks/naive_unroll.py);
- the peak memory of each step above the memory held before it: ``torch.cuda.max_memory_allocated`` on GPU, the
  process's peak resident set (``VmHWM`` after resetting it) in a fresh subprocess per step on CPU.
LeNet is trained for one epoch on the embedded MNIST-5k data (so DeepFool sees a real classifier); the ResNet-18s
are timm's with random weights and uniform random images, all in eval mode (Deep Defense freezes BatchNorm).

ImageNet scale (``resnet18-imagenet``: timm ``resnet18``; ``vit-s16-imagenet``: timm ``vit_small_patch16_224``,
fused attention off as dd-hub does, since its kernel has no double backward): 224x224, 1000 classes, random
weights, batch ``--imagenet-batch`` (default 4 on CPU, 32 on GPU). No foolbox/torchattacks/naive rows there; instead:
- the plain and Deep Defense training steps as above (time, peak memory, ratios; ``--dd-strategies`` adds Deep
  Defense steps with ``candidate_gradients`` forced to 'loop' or 'batched', by default 'loop' on CUDA, where 'auto'
  is batched), on uniform random images labelled with the model's predictions, with the mean number of unrolled
  DeepFool iterations;
- the harden loop, ``dd_hub.training.loop.train`` for one epoch with ``DataConfig(workers=--workers)``, with Deep Defense and
  with plain cross-entropy, on a generated ImageNet-layout folder (``--folder-batches`` batches of random 256x256
  JPEGs in DIR/train/<class>/ and DIR/val/<class>/, read by ``dd_hub.data.datasets.create_dataset('imagenet', ...)`` with
  the model's timm data config): images/s over the epoch loop, and the share of it spent waiting for data, measured
  by wrapping the loop's batch iterator: time inside ``next()`` (the loader, Accelerate's look-ahead included)
  divided by the loop's wall time (first ``next()`` to the end of the last step; model and optimizer setup
  excluded). The first batch's wait (worker start-up) is also printed on its own;
- evaluation, ``dd_hub.evaluation.report.evaluate`` on the folder's val split with a small ``EvalConfig`` (3 DeepFool
  steps, one FGS eps, epsilon_ref given, PGD, sanity checks and AutoAttack off): images/s over the whole call;
- one DeepFool iteration on one image, dd-hub (top 10 candidates) against adv-lib (every one of the 999 other
  classes: it has no candidate limit), so that the cost of its all-classes gradients at 1000 classes is stated.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator
from unittest import mock

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dd_hub.training.deep_defense  # noqa: E402
from dd_hub import create_model, deepfool  # noqa: E402
from dd_hub.training.deep_defense import DeepDefenseLoss  # noqa: E402
from naive_unroll import naive_deepfool_unrolled  # noqa: E402
from dd_hub.attacks.result import ratio  # noqa: E402

DEEPFOOL = dict(steps=50, candidates=10, overshoot=0.02)
MODELS = {  # name: (timm/dd-hub model, batch, input shape, classes); batch None: --imagenet-batch
    "lenet": ("dd_lenet_mnist", 100, (1, 28, 28), 10),
    "resnet18": ("resnet18", 32, (3, 32, 32), 10),
    "resnet18-224": ("resnet18", 32, (3, 224, 224), 1000),
    "resnet18-imagenet": ("resnet18", None, (3, 224, 224), 1000),
    "vit-s16-imagenet": ("vit_small_patch16_224", None, (3, 224, 224), 1000),
}
IMAGENET_MODELS = tuple(name for name, entry in MODELS.items() if entry[1] is None)
TRAINED = "dir:"   # a model folder (e.g. a trained reference), evaluated on 100 MNIST-5k test images: dir:PATH


def spec(name: str) -> tuple[str, int | None, tuple[int, ...], int]:
    """``(architecture, batch, input shape, classes)`` of a benchmark model, a model folder's read from its config."""
    if not name.startswith(TRAINED):
        return MODELS[name]
    config = json.loads((Path(name[len(TRAINED):]) / "config.json").read_text())
    return config["architecture"], 100, tuple(config["pretrained_cfg"]["input_size"]), config["num_classes"]
IMAGENET_BATCH = {"cpu": 4, "cuda": 32}


def batch_size(name: str, imagenet_batch: int | None = None) -> int:
    batch = spec(name)[1]
    return batch if batch is not None else imagenet_batch or IMAGENET_BATCH["cuda" if torch.cuda.is_available()
                                                                              else "cpu"]


def create_bench_model(name: str) -> nn.Module:
    """The model of ``name`` with seeded random weights (fused attention off, as dd-hub's runs build it)."""
    import timm

    arch, _, _, classes = spec(name)
    timm.layers.set_fused_attn(False)  # double backward needs the math attention kernel, chosen at construction
    torch.manual_seed(0)
    if name.startswith(TRAINED):
        from dd_hub import load

        return load(name[len(TRAINED):])
    return create_model(arch, num_classes=classes)


def build(name: str, device: torch.device, weights: Path | None = None,
          imagenet_batch: int | None = None) -> tuple[nn.Module, Tensor, Tensor]:
    """The model (eval mode), a batch in [0, 1] and its labels."""
    _, _, shape, _ = spec(name)
    batch = batch_size(name, imagenet_batch)
    model = create_bench_model(name)
    if name.startswith(TRAINED):
        from dd_hub.data.datasets import create_dataset

        images, labels = create_dataset("mnist-5k", "test").tensors
        inputs, labels = images[:batch], labels[:batch]
    elif name == "lenet":
        from dd_hub.data.datasets import create_dataset

        if weights is not None and weights.exists():
            from safetensors.torch import load_model

            load_model(model, weights)
        else:
            from dd_hub.training.loop import TrainConfig
            from dd_hub.training.loop import train

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


def adv_lib_df() -> Callable | None:
    """adv-lib's ``df``, or None when adv-lib is not installed. Its ``adv_lib.attacks`` package imports every attack
    and with them ``visdom`` (for a logger): the module of ``df`` is loaded on its own, so visdom is not needed."""
    import importlib.util

    try:
        import adv_lib.utils.attack_utils  # noqa: F401  (what deepfool.py imports)
    except ImportError:
        return None
    spec = importlib.util.spec_from_file_location("adv_lib_deepfool", Path(adv_lib.__path__[0]) / "attacks" /
                                                  "deepfool.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.df


def bench_deepfool(model: nn.Module, inputs: Tensor, repeats: int, ta_rows: int) -> list[dict]:
    import foolbox as fb
    import torchattacks

    device = inputs.device
    with torch.no_grad():
        predictions = model(inputs).argmax(1)

    def ours() -> tuple[Tensor, Tensor]:
        result = deepfool(model, inputs, **DEEPFOOL, bounds=(0.0, 1.0))
        return result.perturbation, result.success

    df = adv_lib_df()

    def adv_lib() -> tuple[Tensor, Tensor]:  # every other class is a candidate: here the same 9 as dd-hub's
        adversarial = df(model, inputs, predictions, steps=DEEPFOOL["steps"], overshoot=DEEPFOOL["overshoot"])
        with torch.no_grad():
            return adversarial - inputs, model(adversarial).argmax(1) != predictions

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

    fns = {"dd-hub": ours, **({"adv-lib": adv_lib} if df else {}), "foolbox": foolbox, "torchattacks": torchattacks_}
    timings = timed(fns, device, {**dict.fromkeys(fns, repeats), "torchattacks": 0})
    rows = []
    for label, x in (("dd-hub", inputs), *((("adv-lib", inputs),) if df else ()), ("foolbox", inputs),
                     ("torchattacks", ta_inputs)):
        seconds, cpu_seconds, (perturbation, success) = timings[label]
        rows.append({"impl": label, "images": len(x), "seconds": seconds, "cpu_seconds": cpu_seconds,
                     "images_per_s": len(x) / seconds, "rho2": ratio(perturbation, x).mean().item(),
                     "success": success.float().mean().item()})
    ours_on_ta_rows = ours()[0][:ta_rows]
    rows[-1]["rho2_dd_hub_same_rows"] = ratio(ours_on_ta_rows, ta_inputs).mean().item()
    return rows


def step_fn(kind: str, model: nn.Module, inputs: Tensor, labels: Tensor,
            stats: dict | None = None) -> Callable[[], None]:
    """One training step's forward + backward: ``plain`` (cross-entropy), ``deep-defense`` or ``naive``;
    ``deep-defense/loop`` and ``deep-defense/batched`` pick the candidate-gradient strategy (``deep-defense``:
    'auto'). ``stats`` receives the Deep Defense loss's statistics of the last step."""
    strategy = kind.split("/")[1] if "/" in kind else "auto"
    loss_fn = DeepDefenseLoss(candidate_gradients=strategy)  # 5 unrolled iterations, 10 candidates, paper's lambda/c/d

    def step() -> None:
        model.zero_grad(set_to_none=True)
        if kind == "plain":
            F.cross_entropy(model(inputs), labels).backward()
        elif kind.startswith("deep-defense"):
            loss_fn(model, inputs, labels).backward()
            if stats is not None:
                stats.update(loss_fn.stats)
        else:
            with mock.patch.object(dd_hub.training.deep_defense, "deepfool_unrolled", naive_deepfool_unrolled):
                loss_fn(model, inputs, labels).backward()

    return step


STEPS = ("plain", "deep-defense", "naive")


def bench_steps(model: nn.Module, inputs: Tensor, labels: Tensor, repeats: int,
                kinds: tuple[str, ...] = STEPS) -> dict[str, dict[str, float]]:
    stats: dict[str, dict] = {kind: {} for kind in kinds}
    timings = timed({kind: step_fn(kind, model, inputs, labels, stats[kind]) for kind in kinds}, inputs.device,
                    repeats)
    return {kind: {"seconds": wall, "cpu_seconds": cpu, **({"df_iters": stats[kind]["df_iters"]}
                                                           if "df_iters" in stats[kind] else {})}
            for kind, (wall, cpu, _) in timings.items()}


def peak_memory_mib(name: str, kind: str, device: torch.device, weights: Path | None,
                    imagenet_batch: int | None = None) -> float:
    """Peak memory of one step above what was held before it, in MiB (see the module docstring)."""
    if device.type == "cuda":
        model, inputs, labels = build(name, device, weights, imagenet_batch)
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
    if imagenet_batch is not None:
        command += ["--imagenet-batch", str(imagenet_batch)]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def _memory_child(name: str, kind: str, weights: Path | None, imagenet_batch: int | None = None) -> None:
    model, inputs, labels = build(name, torch.device("cpu"), weights, imagenet_batch)
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


def write_imagenet_folder(root: Path, train_images: int, val_images: int, classes: int = 4, size: int = 256) -> Path:
    """Random ``size`` x ``size`` JPEGs in the ImageNet layout: root/train/<class>/*.JPEG, root/val/<class>/*.JPEG."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", train_images), ("val", val_images)):
        for i in range(count):
            folder = root / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (rng.random((size, size, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{split}_{i}.JPEG", quality=90)
    return root


class _WaitClock:
    """Times the training loop's batch iterator: seconds inside ``next()`` and the loop's wall time."""

    def __init__(self) -> None:
        self.wait = self.first = 0.0
        self.start: float | None = None
        self.end = 0.0
        self.batches = 0

    def wrap(self, batches) -> Iterator:
        iterator = iter(batches)
        while True:
            start = time.perf_counter()
            if self.start is None:
                self.start = start
            try:
                batch = next(iterator)
            except StopIteration:
                self.end = time.perf_counter()
                self.wait += self.end - start
                return
            waited = time.perf_counter() - start
            self.first = waited if self.batches == 0 else self.first
            self.wait += waited
            self.batches += 1
            yield batch


@contextmanager
def _clocked_epochs(clock: _WaitClock):
    """``dd_hub.training.loop``'s per-epoch batch iterator, wrapped by ``clock``."""
    from dd_hub.training import loop as train_module

    original = train_module._Run.epoch_batches

    def epoch_batches(self, epoch, progress):
        return clock.wrap(original(self, epoch, progress))

    with mock.patch.object(train_module._Run, "epoch_batches", epoch_batches):
        yield


def bench_harden_loop(name: str, folder: Path, batch: int, workers: int, objective: str) -> dict:
    """One epoch of ``dd_hub.training.loop.train`` on the folder's train split: images/s and the data-wait share."""
    import timm
    from dd_hub.data.datasets import DataConfig, create_dataset
    from dd_hub.training.objectives import LossModuleObjective, cross_entropy
    from dd_hub.models.normalized import unwrap
    from dd_hub.training.loop import TrainConfig, train

    model = create_bench_model(name)
    dataset = create_dataset("imagenet", "train", data_dir=folder,
                             data_config=timm.data.resolve_model_data_config(unwrap(model)))
    loss = LossModuleObjective(DeepDefenseLoss()) if objective == "deep-defense" else cross_entropy
    clock = _WaitClock()
    with _clocked_epochs(clock):
        history = train(model, dataset, TrainConfig(epochs=1, batch_size=batch, lr=1e-4, lr_milestones=[]), loss,
                        progress=False, data=DataConfig(workers=workers))
    wall = clock.end - clock.start
    return {"objective": objective, "images": len(dataset), "batches": clock.batches, "workers": workers,
            "seconds": wall, "images_per_s": len(dataset) / wall, "data_wait_s": clock.wait,
            "data_wait_share": clock.wait / wall, "first_batch_wait_s": clock.first,
            "df_iters": history[-1].get("df_iters")}


def bench_evaluation(name: str, folder: Path, batch: int, workers: int, device: torch.device) -> dict:
    """``dd_hub.evaluation.report.evaluate`` on the folder's val split with a small config: images/s over the whole call."""
    import timm
    from dd_hub.data.datasets import DataConfig, create_dataset
    from dd_hub.evaluation.report import EvalConfig, evaluate
    from dd_hub.models.normalized import unwrap

    model = create_bench_model(name).to(device)
    dataset = create_dataset("imagenet", "test", data_dir=folder,
                             data_config=timm.data.resolve_model_data_config(unwrap(model)))
    config = EvalConfig(deepfool_steps=3, fgs_eps=[0.01], fgs_fractions=[1.0], batch_size=batch, pgd_steps=0,
                        sanity=False, autoattack=[])
    _sync(device)
    start = time.perf_counter()
    report = evaluate(model, dataset, config, eps_ref=0.01, progress=False, data=DataConfig(workers=workers))
    _sync(device)
    wall = time.perf_counter() - start
    return {"images": len(dataset), "workers": workers, "seconds": wall, "images_per_s": len(dataset) / wall,
            "deepfool_mean_iterations": report.deepfool["mean_iterations"]}


def bench_iteration(name: str, device: torch.device) -> dict | None:
    """One DeepFool iteration on one image, dd-hub (10 candidates) and adv-lib (all classes); None without adv-lib."""
    df = adv_lib_df()
    if df is None:
        return None
    model, inputs, labels = build(name, device, imagenet_batch=1)
    classes = spec(name)[3]
    timings = timed({"dd-hub": lambda: deepfool(model, inputs, steps=1, candidates=10, overshoot=0.02),
                     "adv-lib": lambda: df(model, inputs, labels, steps=1, overshoot=0.02)}, device, 1)
    return {"classes": classes, **{impl: {"seconds": wall, "cpu_seconds": cpu,
                                          "backward_passes": 9 if impl == "dd-hub" else classes - 1}
                                   for impl, (wall, cpu, _) in timings.items()}}


def bench_imagenet(name: str, device: torch.device, args: argparse.Namespace, folder: Path) -> dict:
    """The ImageNet-scale rows of ``name`` (module docstring)."""
    batch = batch_size(name, args.imagenet_batch)
    model, inputs, labels = build(name, device, imagenet_batch=args.imagenet_batch)
    kinds = ("plain", *(f"deep-defense/{s}" if s != "auto" else "deep-defense" for s in args.dd_strategies))
    step_seconds = bench_steps(model, inputs, labels, args.repeats, kinds)
    del model, inputs, labels
    memory = {} if args.no_memory else {k: peak_memory_mib(name, k, device, None, args.imagenet_batch)
                                        for k in kinds}
    print(_step_table(step_seconds, memory, kinds))
    loops = [bench_harden_loop(name, folder, batch, args.workers, objective)
             for objective in ("deep-defense", "plain")]
    evaluation = bench_evaluation(name, folder, batch, args.workers, device)
    print(_pipeline_table(loops, evaluation))
    iteration = bench_iteration(name, device)
    if iteration:
        print(f"| one DeepFool iteration, 1 image, {iteration['classes']} classes | s | backward passes |\n|---|---|---|")
        for impl in ("dd-hub", "adv-lib"):
            print(f"| {impl} | {iteration[impl]['seconds']:.2f} | {iteration[impl]['backward_passes']} |")
    return {"batch": batch, "step_seconds": step_seconds, "step_peak_mib": memory, "harden_loop": loops,
            "evaluation": evaluation, "deepfool_iteration": iteration}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=None, help="comma-separated: lenet, resnet18, resnet18-224, "
                        "resnet18-imagenet, vit-s16-imagenet, or dir:PATH (a trained MNIST model folder) (default: "
                        "lenet,resnet18; on GPU also resnet18-224 and the two ImageNet-scale models)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: stable on shared machines)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the median is reported")
    parser.add_argument("--torchattacks-rows", type=int, default=10)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--imagenet-batch", type=int, default=None,
                        help=f"batch of the ImageNet-scale models (default {IMAGENET_BATCH['cpu']} on CPU, "
                        f"{IMAGENET_BATCH['cuda']} on GPU)")
    parser.add_argument("--workers", type=int, default=1, help="loader workers of the harden and evaluation rows")
    parser.add_argument("--dd-strategies", default=None,
                        help="ImageNet-scale rows: candidate_gradients strategies of the Deep Defense step to time, "
                        "comma-separated among auto, loop, batched (default: auto on CPU; auto,loop on GPU)")
    parser.add_argument("--folder-batches", type=int, default=4,
                        help="generated folder: this many batches of training images, two thirds as many of val")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        return _memory_child(*args.memory_child, args.weights, args.imagenet_batch)

    device = torch.device(args.device)
    if args.imagenet_batch is None:
        args.imagenet_batch = IMAGENET_BATCH[device.type]
    args.dd_strategies = (args.dd_strategies or ("auto,loop" if device.type == "cuda" else "auto")).split(",")
    gpu_default = ",".join(("lenet", "resnet18", "resnet18-224", *IMAGENET_MODELS))
    names = (args.models or (gpu_default if device.type == "cuda" else "lenet,resnet18")).split(",")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} thread(s)"
    print(f"# dd-hub benchmark on {where}; torch {torch.__version__}; median of {args.repeats} runs")
    results = {"device": where, "torch": torch.__version__, "repeats": args.repeats, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = None
        for name in names:
            if name in IMAGENET_MODELS:
                batch = batch_size(name, args.imagenet_batch)
                if folder is None:
                    train_images = args.folder_batches * batch
                    folder = write_imagenet_folder(Path(tmp) / "imagenet", train_images, max(1, 2 * train_images // 3))
                print(f"\n## {name}: 3x224x224, 1000 classes, batch {batch}, random weights; folder of "
                      f"{args.folder_batches * batch} train / {max(1, 2 * args.folder_batches * batch // 3)} val "
                      f"random 256x256 JPEGs, {args.workers} loader worker(s)")
                results["models"][name] = bench_imagenet(name, device, args, folder)
                continue
            weights = Path(tmp) / f"{name}.safetensors" if name == "lenet" else None
            model, inputs, labels = build(name, device)
            if weights is not None:
                from safetensors.torch import save_model

                save_model(model, str(weights))
            _, batch, shape, classes = spec(name)
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


def _step_table(seconds: dict[str, dict[str, float]], memory: dict[str, float],
                kinds: tuple[str, ...] = STEPS) -> str:
    lines = ["| training step | ms | / plain step | CPU-time ratio | peak MiB | / plain peak |",
             "|---|---|---|---|---|---|"]
    plain = seconds["plain"]
    for kind in kinds:
        peak = f"{memory[kind]:.1f} | {memory[kind] / memory['plain']:.1f}x" if memory else "- | -"
        lines.append(f"| {kind} | {1000 * seconds[kind]['seconds']:.1f} | "
                     f"{seconds[kind]['seconds'] / plain['seconds']:.1f}x | "
                     f"{seconds[kind]['cpu_seconds'] / plain['cpu_seconds']:.1f}x | {peak} |")
    iters = [f"{kind} {seconds[kind]['df_iters']:.2f}" for kind in kinds if "df_iters" in seconds[kind]]
    if iters and kinds != STEPS:
        lines.append("(mean unrolled DeepFool iterations per image: " + ", ".join(iters) + ")")
    return "\n".join(lines)


def _pipeline_table(loops: list[dict], evaluation: dict) -> str:
    lines = ["| pipeline | images | workers | s | images/s | data wait | wait share | first-batch wait | DeepFool iters |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in loops:
        iters = "-" if row["df_iters"] is None else f"{row['df_iters']:.2f} (unrolled)"
        lines.append(f"| harden loop, {row['objective']} | {row['images']} | {row['workers']} | {row['seconds']:.1f} "
                     f"| {row['images_per_s']:.2f} | {row['data_wait_s']:.2f} s | {row['data_wait_share']:.1%} | "
                     f"{row['first_batch_wait_s']:.2f} s | {iters} |")
    lines.append(f"| evaluation | {evaluation['images']} | {evaluation['workers']} | {evaluation['seconds']:.1f} | "
                 f"{evaluation['images_per_s']:.2f} | - | - | - | "
                 f"{evaluation['deepfool_mean_iterations']:.2f} (attack) |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
