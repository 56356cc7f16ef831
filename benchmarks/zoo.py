"""The zoo: every stage of a hardening run, checked in process on one network per timm family and on torchvision
builders, for MNIST-5k's grey 28x28 images; writes docs/zoo.md (and docs/zoo.json, the raw records).

    OMP_NUM_THREADS=1 python benchmarks/zoo.py                          # every network: regenerates docs/zoo.md
    OMP_NUM_THREADS=1 python benchmarks/zoo.py --only resnet10t,tv:alexnet   # those rows again, the others kept

Each network runs in a fresh process (``--check NAME``), through the project's own code, as ``dd-hub harden NAME
--dataset mnist-5k --allow-random-init`` would:

1. **prepare** (nothing slow has started: a failure here is a refusal, with its one line): the recipe
   ``find_recipe(NAME, "mnist-5k")`` (the family's own, else the generic MNIST one), the starting point
   ``prepare_start`` (the model built by ``dd_hub.create_model`` for 1x28x28 images: the channels and, where the
   network cannot take 28x28, the size it is resized to) and harden's ``preflight`` (one batch of each phase's
   objective; the export saved, reloaded and compared);
2. **reference**: a short run of the recipe's reference training (96 images, cross-entropy, BatchNorm training),
   whose end recomputes BatchNorm's running statistics exactly over those images (as every phase that trains
   BatchNorm does), so that they describe the data when hardening freezes them;
3. **objective**: a plain cross-entropy step and a Deep Defense step (the recipe's ``defense``: forward, the unrolled
   DeepFool iterations, backward) on one batch of 8 training images, BatchNorm frozen as in training, each after
   the preflight ran the same step on a copy (warm): its CPU time (at one thread, its wall time on an idle machine;
   the CPU time does not count the time other jobs held the shared cores) and its peak resident memory above what
   the process held before it (``VmHWM`` after resetting it; ``MALLOC_MMAP_THRESHOLD_`` is fixed so that freed
   tensors leave the resident set);
4. **update**: one optimizer step of the project's training loop (``dd_hub.training.loop.train``, the recipe's
   ``harden`` settings, one batch of 8) with Deep Defense; every weight must stay finite and some must change;
5. **export**: ``save_model``, ``dd_hub.load`` (same logits as the trained model), and plain timm (``local-dir:``)
   or plain torchvision (the config's builder and arguments) in a process that never imports dd_hub, whose logits
   must equal ``dd_hub.load``'s (the images resized and normalized as the config says);
6. **evaluation**: ``dd_hub.evaluation.report.evaluate`` on 8 test images (clean accuracy, DeepFool rho_2 with 5
   steps, FGS and PGD (2 steps) at epsilon_ref 0.1; AutoAttack and the gradient-masking checks left out for time).

A network passes when all six stages ran. ``--jobs 2`` checks two networks at a time. Networks are random-init (no weights can be downloaded here), so the
accuracies say nothing; the table is about what runs, and at which cost.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: one network per timm family: a smallest variant (tiny, nano, atto, ...) of each
FAMILIES = {
    "ResNet": "resnet10t", "ResNeXt": "resnext26ts", "EfficientNet": "efficientnet_b0",
    "MobileNetV2": "mobilenetv2_050", "MobileNetV3": "mobilenetv3_small_050",
    "MobileNetV4": "mobilenetv4_conv_small_050", "RegNet": "regnetx_002", "DenseNet": "densenet121",
    "ConvNeXt": "convnext_atto", "ViT": "vit_tiny_patch16_224", "DeiT": "deit_tiny_patch16_224",
    "Swin": "swin_tiny_patch4_window7_224", "LeViT": "levit_128s", "MobileViT": "mobilevit_xxs",
    "PoolFormer": "poolformer_s12", "GhostNet": "ghostnet_050", "ReXNet": "rexnet_100",
    "HRNet": "hrnet_w18_small", "Inception": "inception_v3", "Xception": "xception41", "DLA": "dla46_c",
    "CSPNet": "cs3darknet_focus_s", "ResNeSt": "resnest14d", "FastViT": "fastvit_t8",
    "EdgeNeXt": "edgenext_xx_small", "MLP-Mixer": "mixer_s32_224", "ResMLP": "resmlp_12_224",
    "CaiT": "cait_xxs24_224", "XCiT": "xcit_nano_12_p16_224", "PiT": "pit_ti_224", "EVA": "eva02_tiny_patch14_224",
    "BEiT": "beit_base_patch16_224", "MaxViT": "maxvit_pico_rw_256", "CoAtNet": "coatnet_pico_rw_224",
    "GCViT": "gcvit_xxtiny", "EfficientFormerV2": "efficientformerv2_s0", "TinyViT": "tiny_vit_5m_224",
    "RepVGG": "repvgg_a0", "MobileOne": "mobileone_s0", "ConViT": "convit_tiny",
    "PVTv2": "pvt_v2_b0", "LCNet": "lcnet_050",
}
#: torchvision builders (``tv:NAME``)
TORCHVISION = ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "vit_b_16", "alexnet",
               "squeezenet1_1", "shufflenet_v2_x0_5", "regnet_x_400mf", "densenet121", "googlenet", "mnasnet0_5"]
BATCH = 8
STAGES = ("prepare", "reference", "objective", "update", "export", "evaluation")
REFERENCE_IMAGES = 96

# ---------------------------------------------------------------------------------------------- one network (child)

def check(name: str, work: str) -> dict:
    """Run the five stages on ``name`` (the export goes into folder ``work``); the record says how far it got
    (see the module docstring)."""
    record: dict = {"name": name, "status": "refused", "stage": "prepare", "work": work}
    try:
        start, recipe = _prepare(name, record)
    except Exception as exc:  # noqa: BLE001 - a refusal is reported as its one line, whatever raised it
        record["reason"] = _one_line(exc)
        if not _is_refusal(exc):
            record["status"] = "failed"
            record["traceback"] = traceback.format_exc()[-3000:]
        return record
    record["status"] = "failed"
    try:
        for stage in STAGES[1:]:
            record["stage"] = stage
            began = time.perf_counter()
            STAGE_FUNCTIONS[stage](start, recipe, record)
            record.setdefault("seconds", {})[stage] = round(time.perf_counter() - began, 2)
    except Exception as exc:  # noqa: BLE001 - reported in the table: the target is that none happens
        record["reason"] = _one_line(exc)
        record["traceback"] = traceback.format_exc()[-3000:]
        return record
    record["status"] = "ran"
    return record


def _prepare(name: str, record: dict):
    import torch

    from dd_hub.models import unwrap
    from dd_hub.recipes import find_recipe
    from dd_hub.workflows.start import preflight, prepare_start

    began = time.perf_counter()
    recipe = find_recipe(name, "mnist-5k")
    start = prepare_start(recipe, allow_random_init=True)
    preflight(start, recipe, ["deep_defense"])   # harden's own checks before training, the export's included
    bare = unwrap(start.model)
    record.update(recipe=recipe.name, module=type(bare).__module__, params_m=round(sum(
        p.numel() for p in bare.parameters()) / 1e6, 2), resize_to=start.model.resize_to,
        seconds={"prepare": round(time.perf_counter() - began, 2)})
    torch.manual_seed(0)
    return start, recipe


def _is_refusal(exc: BaseException) -> bool:
    from dd_hub.errors import DDHubError

    return isinstance(exc, DDHubError)


def _one_line(exc: BaseException) -> str:
    from dd_hub.errors import first_line

    return f"{type(exc).__name__}: {first_line(exc)}" if not _is_refusal(exc) else first_line(exc)


def _batch(dataset, count: int):
    import torch

    images, labels = zip(*(dataset[i] for i in range(count)))
    return torch.stack(images), torch.tensor(labels)


def _reference(start, recipe, record: dict) -> None:
    """A short run of the recipe's reference training (cross-entropy, BatchNorm training): as after the real one,
    BatchNorm's running statistics then describe the data when hardening freezes them (the training loop recomputes
    them at the phase's end, ``recalibrate_bn_batches``)."""
    from torch.utils.data import Subset

    from dd_hub.training.loop import train

    if recipe.reference is None:
        return
    config = replace(recipe.reference, epochs=1, batch_size=32, grad_accumulation=1)
    images = Subset(start.train_set, range(REFERENCE_IMAGES))
    history = train(start.model, images, config, center=start.center, progress=False)
    record["reference_accuracy"] = history[-1].get("acc")


def _objective(start, recipe, record: dict) -> None:
    """Time and peak memory of a plain step and of a Deep Defense step, on one batch, BatchNorm frozen."""
    import torch.nn.functional as F

    from dd_hub.training.loop import freeze_batchnorm
    from dd_hub.training.objectives import create_objective

    model = start.model.train()
    freeze_batchnorm(model)
    inputs, labels = _batch(start.train_set, BATCH)
    objective = create_objective(replace(recipe, method="deep_defense"))

    def plain() -> None:
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()

    def deep_defense() -> None:
        model.zero_grad(set_to_none=True)
        x = inputs.detach().requires_grad_(objective.wants_input_graph(model))
        out = objective(model, x, labels, logits=model(x), center=start.center)
        if not out.loss.isfinite():
            raise FloatingPointError(f"the Deep Defense loss is {out.loss.item()}")
        out.loss.backward()

    for kind, step in (("plain", plain), ("deep_defense", deep_defense)):  # warm: preflight ran both on a copy
        record[f"{kind}_peak_mib"], record[f"{kind}_s"] = _peak_mib_and_cpu_seconds(step)
    model.zero_grad(set_to_none=True)


def _peak_mib_and_cpu_seconds(step) -> tuple[float, float]:
    """Peak resident memory of ``step`` above the resident memory before it, in MiB, and its CPU time (at one
    thread, its wall time on an idle machine; unlike the wall time, it does not count the time other jobs held the
    shared cores)."""
    from bench import _status_kib

    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = _status_kib("VmRSS")
    began = time.process_time()
    step()
    seconds = time.process_time() - began
    return round((_status_kib("VmHWM") - before) / 1024, 1), seconds


def _update(start, recipe, record: dict) -> None:
    """One optimizer step of the project's training loop with Deep Defense: weights finite, and changed."""
    import torch
    from torch.utils.data import Subset

    from dd_hub.training.loop import train
    from dd_hub.training.objectives import create_objective

    before = {k: v.detach().clone() for k, v in start.model.state_dict().items()}
    config = replace(recipe.harden, epochs=1, batch_size=BATCH, grad_accumulation=1)
    history = train(start.model, Subset(start.train_set, range(BATCH)), config,
                    create_objective(replace(recipe, method="deep_defense")), center=start.center, progress=False)
    after = start.model.state_dict()
    if not all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point()):
        raise FloatingPointError("a weight is not finite after one Deep Defense step")
    changed = sum(not torch.equal(before[k], after[k]) for k in before)
    if changed == 0:
        raise RuntimeError(f"no weight changed in one Deep Defense step (epoch record: {history[-1]})")
    record["tensors_changed"] = f"{changed}/{len(before)}"


def _export(start, recipe, record: dict) -> None:
    """save_model into the work folder and dd_hub.load: the same logits; the images and dd_hub.load's logits are
    left beside the export for the plain check, which the parent process (that never imports dd_hub) makes."""
    import torch
    from safetensors.torch import save_file

    import dd_hub
    from dd_hub.models.directory import save_model

    inputs, _ = _batch(start.test_set, 4)
    model = start.model.eval()
    folder = Path(record["work"]) / "model"
    save_model(model, folder, label_names=start.spec.label_names)
    record["export"] = json.loads((folder / "config.json").read_text())["architecture"]
    with torch.no_grad():
        trained, loaded = model(inputs), dd_hub.load(folder)(inputs)
    record["load_gap"] = _gap(loaded, trained)
    if record["load_gap"] > 1e-4:
        raise RuntimeError(f"dd_hub.load gives other logits than the trained model (gap {record['load_gap']})")
    save_file({"x": inputs.contiguous(), "logits": loaded.contiguous()}, str(Path(record["work"]) / "x.safetensors"))


def plain_check(work: str) -> dict:
    """Plain timm or torchvision (this process never imports dd_hub) loads the export the check left in folder
    ``work``: the same logits as ``dd_hub.load``, else the record fails at 'export'."""
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file

    record: dict = {}
    folder = Path(work) / "model"
    try:
        config = json.loads((folder / "config.json").read_text())
        saved = load_file(str(Path(work) / "x.safetensors"))
        if config["architecture"].startswith("tv:"):
            import torchvision

            model = torchvision.models.get_model(config["architecture"][3:], num_classes=config["num_classes"],
                                                 **config.get("model_args", {}))
            weights = OrderedDict(load_file(str(folder / "model.safetensors")))
            weights._metadata = {"": {"version": model._version}}  # MNASNet refuses weights without its version
            model.load_state_dict(weights)
        else:
            import timm

            model = timm.create_model(f"local-dir:{folder}", pretrained=True)
        cfg, x = config["pretrained_cfg"], saved["x"]
        if config.get("resize_input"):
            x = F.interpolate(x, size=tuple(cfg["input_size"][1:]), mode="bilinear", align_corners=False)
        mean, std = torch.tensor(cfg["mean"]).view(-1, 1, 1), torch.tensor(cfg["std"]).view(-1, 1, 1)
        with torch.no_grad():
            logits = model.eval()((x - mean) / std)
        assert "dd_hub" not in sys.modules, "the plain check imported dd_hub"
        record["plain_gap"] = _gap(logits, saved["logits"])
        if record["plain_gap"] > 1e-4:
            raise RuntimeError(f"plain timm/torchvision gives other logits than dd_hub.load "
                               f"(gap {record['plain_gap']})")
    except Exception as exc:  # noqa: BLE001 - reported in the table
        record.update(status="failed", stage="export", reason=f"plain load: {type(exc).__name__}: "
                      + (str(exc).strip().splitlines() or ["?"])[0][:300])
    return record


def _gap(a, b) -> float:
    """Largest logit difference, relative to the logits' scale."""
    return float((a - b).abs().max() / (1 + b.abs().max()))


def _evaluation(start, recipe, record: dict) -> None:
    from torch.utils.data import Subset

    from dd_hub.evaluation.report import EvalConfig, evaluate

    config = EvalConfig(deepfool_steps=5, fgs_eps=[0.1], pgd_steps=2, sanity=False, autoattack=[],
                        batch_size=BATCH, max_examples=BATCH)
    report = evaluate(start.model.eval(), Subset(start.test_set, range(4 * BATCH)), config, center=start.center,
                      eps_ref=0.1, progress=False)
    record["clean_accuracy"], record["rho2"] = report.clean_accuracy, report.rho2


STAGE_FUNCTIONS = {"reference": _reference, "objective": _objective, "update": _update, "export": _export, "evaluation": _evaluation}


# --------------------------------------------------------------------------------------------- the sweep (parent)

def networks() -> list[tuple[str, str]]:
    """``(family, name)`` of every network of the zoo: the timm families, then the torchvision builders."""
    return list(FAMILIES.items()) + [("torchvision", "tv:" + name) for name in TORCHVISION]


def run_one(name: str, timeout: float) -> dict:
    """The check of ``name`` in a fresh process, then the plain load of its export here."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dd-hub-zoo-") as work:
        try:
            done = subprocess.run([sys.executable, __file__, "--check", name, "--work", work], capture_output=True,
                                  text=True, timeout=timeout, env=env, cwd=ROOT)
        except subprocess.TimeoutExpired:
            return {"name": name, "status": "failed", "stage": "?", "reason": f"took over {timeout:.0f} s"}
        lines = done.stdout.strip().splitlines()
        try:
            record = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            record = {"name": name, "status": "failed", "stage": "?", "reason": f"the check died: {tail}"}
        if record["status"] == "ran":  # plain timm/torchvision, in a process that never imports dd_hub
            done = subprocess.run([sys.executable, __file__, "--plain", work], capture_output=True, text=True,
                                  timeout=timeout, env={**os.environ, "PYTHONPATH": ""}, cwd=work)
            try:
                record.update(json.loads(done.stdout.strip().splitlines()[-1]))
            except (IndexError, json.JSONDecodeError):
                tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
                record.update(status="failed", stage="export", reason=f"the plain load died: {tail}")
    record.pop("work", None)
    record["wall_s"] = round(time.perf_counter() - began, 1)
    return record


def _run_and_print(name: str, timeout: float) -> dict:
    record = run_one(name, timeout)
    print(f"{name}: {record['status']} {record.get('reason', '')}", flush=True)
    print(json.dumps(record), file=sys.stderr, flush=True)  # the records as they come, for a run that is cut short
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated names: run those again, keep the other rows")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per network")
    parser.add_argument("--out", type=Path, default=DOCS / "zoo.md")
    parser.add_argument("--jobs", type=int, default=1, help="networks checked at the same time (each at the "
                        "threads OMP_NUM_THREADS gives; timings are CPU time, peak memory per process)")
    parser.add_argument("--check", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--plain", help=argparse.SUPPRESS)
    parser.add_argument("--render", action="store_true", help="only write the page again from its .json records")
    args = parser.parse_args()
    if args.plain:
        print(json.dumps(plain_check(args.plain)))
        return
    if args.check:
        print(json.dumps(check(args.check, args.work)))
        return
    raw = args.out.with_suffix(".json")
    if args.render:
        saved = json.loads(raw.read_text())
        args.out.write_text(render(saved["networks"], saved["meta"]))
        print(summary(saved["networks"]))
        return
    saved = json.loads(raw.read_text()) if raw.exists() else {"meta": {}, "networks": []}
    previous = {r["name"]: {"commit": saved["meta"].get("commit", "?"), "jobs": saved["meta"].get("jobs", 1), **r}
                for r in saved["networks"]}
    wanted = set(args.only.split(",")) if args.only else None
    unknown = wanted - {name for _, name in networks()} if wanted else set()
    if unknown:
        sys.exit(f"error: not in the zoo: {', '.join(sorted(unknown))}; add them to FAMILIES or TORCHVISION")
    chosen = [(family, name) for family, name in networks() if wanted is None or name in wanted or name in previous]
    with ThreadPoolExecutor(args.jobs) as pool:
        fresh = {name: pool.submit(_run_and_print, name, args.timeout) for family, name in chosen
                 if wanted is None or name in wanted}
        commit = _commit()
        records = [{**(fresh[name].result() | {"commit": commit, "jobs": args.jobs} if name in fresh
                       else previous[name]), "family": family} for family, name in chosen]
    meta = {"date": datetime.date.today().isoformat(), "threads": os.environ.get("OMP_NUM_THREADS", "all"),
            "jobs": args.jobs, "commit": commit, **({"note": saved["meta"]["note"]} if "note" in saved["meta"] else {}),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "versions": _versions()}
    raw.write_text(json.dumps({"meta": meta, "networks": records}, indent=1) + "\n")
    args.out.write_text(render(records, meta))
    print(summary(records))


def _commit() -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def _versions() -> str:
    import timm
    import torch
    import torchvision

    return f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}"


# ------------------------------------------------------------------------------------------------------ the page

def summary(records: list[dict]) -> str:
    lines = []
    for label, rows in (("timm families", [r for r in records if r["family"] != "torchvision"]),
                        ("torchvision builders", [r for r in records if r["family"] == "torchvision"])):
        if not rows:
            continue
        counts = {status: sum(r["status"] == status for r in rows) for status in ("ran", "refused", "failed")}
        lines.append(f"{label}: {counts['ran']} of {len(rows)} ran end to end ({counts['ran'] / len(rows):.0%}), "
                     f"{counts['refused']} refused up front, {counts['failed']} failed after work started")
    return "\n".join(lines)


def _cell(value, fmt: str = "{}") -> str:
    return "–" if value is None else fmt.format(value)


def _row(r: dict) -> str:
    name = f"`{r['name']}`"
    if r["status"] != "ran":
        what = "refused" if r["status"] == "refused" else f"**failed** at {r['stage']}"
        reason = str(r.get("reason", "")).replace("|", "\\|").replace("\n", " ")
        return f"| {r['family']} | {name} | {what}: {reason} | | | | | |"
    size = f"resized to {r['resize_to'][0]}x{r['resize_to'][1]}" if r.get("resize_to") else "28x28"
    step = f"{r['deep_defense_s']:.2f} s / {r['plain_s']:.2f} s = {r['deep_defense_s'] / r['plain_s']:.1f}x"
    peak = (f"{r['deep_defense_peak_mib']:.0f} / {r['plain_peak_mib']:.0f} MiB"
            + (f" = {r['deep_defense_peak_mib'] / r['plain_peak_mib']:.1f}x" if r["plain_peak_mib"] > 0 else ""))
    plain = "plain timm" if not r["export"].startswith("tv:") else "plain torchvision"
    return (f"| {r['family']} | {name} | ran | {r['params_m']:.1f} M, {size} | {step} | {peak} | "
            f"`{r['export']}`: {plain}, same logits | {r['wall_s']:.0f} s |")


def _about_failures(records: list[dict]) -> str:
    overflow = [r["name"] for r in records if r["status"] == "failed"
                and any(word in str(r.get("reason", "")) for word in ("non-finite", "loss is inf", "loss is nan"))]
    if not overflow:
        return ""
    return (f"\n{', '.join(f'`{name}`' for name in overflow)}: the Deep Defense loss or its gradient was not finite "
            "(`harden` stops such a phase with the one line shown). The regularizer `lambda * exp(d * rho)` of a "
            "misclassified image overflows float32 once `d * rho` passes 88.7 (at d = 5, a DeepFool perturbation "
            "17.7 times the image's norm), which a barely trained network reaches: the zoo's reference training "
            "is 3 steps. Whether the full reference training avoids it is not measured here.\n")


def _not_run(meta: dict) -> str:
    missing = meta.get("not_run")
    if not missing:
        return ""
    return (f"\nNot in this table: {', '.join(f'`{name}`' for name in missing)} (this pass was stopped before it "
            "reached them; the command above runs every network).\n")


def _commits(records: list[dict], meta: dict) -> str:
    """Which commit (and how many networks at a time) produced how many rows: ``--only`` re-runs keep the others."""
    runs: dict[tuple, int] = {}
    for r in records:
        key = (r.get("commit", meta.get("commit", "?")), r.get("jobs", meta.get("jobs", 1)))
        runs[key] = runs.get(key, 0) + 1
    return "; ".join(f"{count} rows from commit {commit} ({jobs} network{'s' * (jobs > 1)} at a time)"
                     for (commit, jobs), count in runs.items())


def render(records: list[dict], meta: dict) -> str:
    header = ("| family | network | result | parameters, input | Deep Defense step / plain step | peak memory "
              "(DD / plain) | export loads without dd_hub | wall |\n|---|---|---|---|---|---|---|---|")
    timm_rows = [r for r in records if r["family"] != "torchvision"]
    tv_rows = [r for r in records if r["family"] == "torchvision"]
    return f"""# The zoo: which networks harden, and at which cost

Generated by `OMP_NUM_THREADS=1 python benchmarks/zoo.py --jobs 4` (one command; `--only NAME,...`
reruns some rows and keeps the others; `--render` rewrites this page from `docs/zoo.json`) on {meta['date']}, {_commits(records, meta)},
at {meta['threads']} thread per process
({meta['machine']}, shared with the other developers' jobs: compare the ratios, not the seconds), {meta['versions']}.

{summary(records)}
{_about_failures(records)}{_not_run(meta)}{meta.get("note", "")}
## What is checked

For each network, in a fresh process, the stages a `dd-hub harden NAME --dataset mnist-5k --allow-random-init` run
goes through, with the project's own code (`benchmarks/zoo.py` says exactly how):

1. **prepare**: the recipe (the family's own, else the generic MNIST recipe), the model built by
   `dd_hub.create_model` for MNIST-5k's grey 28x28 images, and `harden`'s own checks before training
   (`preflight`: one batch of each phase's objective; the export saved, reloaded and compared). What fails here is
   *refused* with its one line, before any training;
2. **reference**: a short run (96 images) of the recipe's reference training, then BatchNorm's running statistics
   recomputed exactly over those images, so that they describe the data when hardening freezes them, as after a
   real reference training (after a few steps they still hold mostly their initial values);
3. **objective**: a plain cross-entropy step and a Deep Defense step (the recipe's lambda, c, d and 5 unrolled
   DeepFool iterations; forward and backward) on a batch of {BATCH} training images, BatchNorm frozen, each after
   the preflight ran it on a copy: its CPU time (at one thread, the wall time on an idle machine, without the time
   other jobs held the shared cores), and its peak resident memory above what the process held before it;
4. **update**: one optimizer step of the training loop with Deep Defense: every weight finite, some changed;
5. **export**: `save_model`, then `dd_hub.load` and, in a process that never imports dd_hub, plain timm
   (`timm.create_model("local-dir:DIR", pretrained=True)`) or plain torchvision
   (`torchvision.models.get_model(NAME, num_classes=..., **model_args)` + `load_state_dict`): the same logits
   (relative gap below 1e-4);
6. **evaluation**: `evaluate` on {BATCH} test images (clean accuracy, DeepFool rho_2, FGS and PGD at epsilon_ref 0.1;
   AutoAttack and the gradient-masking checks are left out here for time: the `harden` end-to-end tests run them).

The networks are randomly initialised (nothing can be downloaded here), so no accuracy is reported: this table
says what runs and what it costs, not how robust anything becomes.

## How networks are fitted to 28x28 grey images

- **Channels.** A timm network is built with `in_chans=1` (timm derives it from the input size dd-hub sets; with
  pretrained weights timm sums the first convolution's kernels over the colour channels). A torchvision network
  keeps its stock 3-channel first layer: the grey image enters as three equal channels (the normalization inside
  the model broadcasts it), which is the same function as a 1-channel first convolution whose kernel is the sum of
  the three, and keeps the export loadable by plain torchvision as it is.
- **Fixed sizes.** timm sets `img_size` from the input size for networks that need one (ViT, DeiT, Swin, ...); for
  torchvision, `image_size` (ViT) and `input_size` (MaxViT) follow it. Networks with auxiliary heads (GoogLeNet,
  Inception v3) are built with `aux_logits=False` (their training-mode output would be a tuple, not logits).
- **Too small.** A network that cannot classify 28x28 images (too much downsampling, or patches, windows and
  attention grids that do not fit) is built for the smallest side of 32, 48, 64, 96, 128, 160, 192, 224, 256, 320
  that it classifies, and the model resizes the images to it (bilinear, inside the model, so attacks and rho_2 stay
  in the 28x28 pixel space); the export's config.json says `"resize_input": true` with that `input_size`, and
  `dd_hub.load` does the same. Plain timm or torchvision users resize to `pretrained_cfg.input_size` themselves
  (timm's transforms from the data config do). Only a network that fits none of those sides is refused.
- **Layers without a double backward** are swapped for exact equivalents when the model is built: `hardsigmoid`
  becomes `relu6(x + 3) / 6`, and `nn.MultiheadAttention` (torchvision's ViT) runs on the math attention kernel
  (timm's attention likewise, `timm.layers.set_fused_attn(False)`); parameters and outputs stay the same.

## timm: one network per family (the smallest variant)

{header}
{chr(10).join(_row(r) for r in timm_rows)}

## torchvision builders (`tv:NAME`)

{header}
{chr(10).join(_row(r) for r in tv_rows)}
"""


if __name__ == "__main__":
    main()
