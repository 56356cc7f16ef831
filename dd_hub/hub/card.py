"""Model cards: YAML front matter with ``model-index`` (huggingface_hub's ``ModelCardData``/``EvalResult``) and a
Markdown body, rendered deterministically from ``metrics.json`` (no timestamps, sorted keys)."""
from __future__ import annotations

import re

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..text import markdown_table
from .cards import figure_key  # noqa: F401  (a figure's name; defined with the card reader)
from ..registration import is_own_architecture
from ..settings import is_finite_number

_TIMM_USAGE = """```python
import timm
{registration}
# pretrained=True is required: without it timm builds the architecture with random weights and no error
model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()
config = timm.data.resolve_model_data_config(model)  # input size, mean/std, interpolation of this checkpoint
```

Inputs are normalized with the `mean`/`std` in `config.json` (timm's `resolve_model_data_config`). {plain}
With dd-hub, a model that takes [0, 1] images with the normalization inside (and never random weights):

```python
import dd_hub

model = dd_hub.load("{repo_id}")
```
"""
_REGISTRATION = "import dd_hub  # registers dd-hub's own architecture `{architecture}` with timm\n"
_PLAIN_TIMM = "`{architecture}` is timm's own architecture: plain timm loads it, dd-hub is not needed."
_TORCHVISION_USAGE = """This torchvision architecture has no timm twin, so `timm.create_model` cannot build it; load it with dd-hub:

```python
import dd_hub

model = dd_hub.load("{repo_id}")  # takes [0, 1] images, normalization (mean/std of config.json) inside
```
"""

TAGS = ["timm", "image-classification", "adversarial-robustness", "deep-defense", "dd-hub"]
CITATION = """@inproceedings{yan2018deep,
  title     = {Deep Defense: Training DNNs with Improved Adversarial Robustness},
  author    = {Yan, Ziang and Guo, Yiwen and Zhang, Changshui},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2018}
}"""


ATTACK_NAMES = {"fgs": "FGS", "pgd": "PGD", "autoattack": "AutoAttack"}
ARXIV = "https://arxiv.org/abs/1803.00404"


def _dataset_fields(metrics: dict) -> dict:
    info = metrics["model"]
    return dict(task_type="image-classification", dataset_type=info["dataset_hub_id"],
                dataset_name=info.get("dataset_card_name", info["dataset"]),
                dataset_split=info.get("dataset_split", "test"))


def autoattack_results(metrics: dict) -> list[EvalResult]:
    """The hardened model's AutoAttack robust accuracy at each threat model, with every setting in ``args``."""
    results = []
    for name, figure in sorted(metrics["hardened"].get("autoattack", {}).items()):
        args = {"attack": "autoattack", "threat_model": name, "norm": figure["norm"], "eps": figure["eps"],
                "version": figure.get("version", "standard"), "attacks": figure.get("attacks", []),
                "implementation": figure.get("implementation", ""), "n_examples": figure["n_examples"],
                "seed": figure.get("seed", 0), "flags": figure.get("flags", []),
                **({"skipped": figure["skipped"]} if figure.get("skipped") else {})}
        results.append(EvalResult(metric_type="robust_accuracy", metric_value=figure["accuracy"],
                                  metric_name=f"AutoAttack robust accuracy, {name} ({figure['norm']}, "
                                              f"eps={figure['eps']:.4g})",
                                  metric_args=args, **_dataset_fields(metrics)))
    return results


def eval_results(metrics: dict) -> list[EvalResult]:
    """The hardened model's figures as ``EvalResult``s, comparable ones first: clean accuracy and AutoAttack at
    the standard threat models, then rho_2 with its space, then the paper's protocol (FGS and PGD at fractions of
    epsilon_ref) and fixed-epsilon curves. Accuracies are fractions, exactly as in metrics.json."""
    from .figures import attack_curves  # (matplotlib and torch stay out of the browsing commands)

    report = metrics["hardened"]
    common = _dataset_fields(metrics)
    n, seed = report["n_examples"], metrics.get("seed")
    df = report["deepfool"]
    results = [EvalResult(metric_type="accuracy", metric_value=report["clean_accuracy"], metric_name="clean accuracy",
                          metric_args={"n_examples": n}, **common)]
    results += autoattack_results(metrics)
    results.append(EvalResult(metric_type="rho2", metric_value=report["rho2"],
                              metric_name=f"DeepFool rho_2 ({report['rho_space']} space)",
                              metric_args={"attack": "deepfool", "norm": "l2", "steps": df["steps"],
                                           "candidates": df["candidates"], "overshoot": df["overshoot"],
                                           "space": report["rho_space"], "n_examples": n}, **common))
    eps_ref = report.get("eps_ref")
    for attack, at_eps, at_ref, settings in attack_curves(report):
        norm = settings.get("norm", "linf")
        label = f"{ATTACK_NAMES.get(attack, attack)} accuracy"
        for fraction, accuracy in sorted(at_ref.items(), key=lambda kv: float(kv[0])):
            eps = float(fraction) * eps_ref
            results.append(EvalResult(
                metric_type="robust_accuracy", metric_value=accuracy,
                metric_name=f"{label} at {fraction} x eps_ref ({norm}, eps={eps:.4g})",
                metric_args={"attack": attack, **settings, "norm": norm, "eps": round(eps, 8), "eps_ref": eps_ref,
                             "fraction": float(fraction), "n_examples": n, "seed": seed}, **common))
        for eps, accuracy in sorted(at_eps.items(), key=lambda kv: float(kv[0])):
            results.append(EvalResult(
                metric_type="robust_accuracy", metric_value=accuracy, metric_name=f"{label} ({norm}, eps={eps})",
                metric_args={"attack": attack, **settings, "norm": norm, "eps": float(eps), "n_examples": n,
                             "seed": seed}, **common))
    return results


def comparison_table(metrics: dict) -> str:
    """The before/after Markdown table (reference vs hardened) of a metrics.json."""
    from ..evaluation.report import Report, format_comparison

    return format_comparison({"reference": Report.from_dict(metrics["reference"]),
                              "hardened": Report.from_dict(metrics["hardened"])})


def report_metrics(report: dict) -> dict[str, float]:
    """Figure name (:func:`figure_key`) -> value, read from one report of metrics.json (the names a card's
    reader gives its ``model-index`` figures, :meth:`dd_hub.hub.cards.Card.values`)."""
    from .figures import attack_curves

    figures = {"clean_accuracy": report["clean_accuracy"], "rho2": report["rho2"]}
    figures.update({f"autoattack@{name}": r["accuracy"] for name, r in report.get("autoattack", {}).items()})
    for attack, at_eps, at_ref, _ in attack_curves(report):
        figures.update({f"{attack}@{float(f):g}eps_ref": a for f, a in at_ref.items()})
        figures.update({f"{attack}@{float(e):g}": a for e, a in at_eps.items()})
    return figures


def render_card(metrics: dict, comparison: str | None = None, *, curve_file: str | None = None,
                training_file: str | None = None, repo_id: str | None = None) -> str:
    """README.md text for a hardened checkpoint described by ``metrics`` (the content of metrics.json).

    ``comparison`` defaults to :func:`comparison_table`; ``curve_file`` and ``training_file`` are the figures
    beside the card; ``repo_id`` goes into the usage snippet (``ORG/NAME`` and ``published: false`` in the metadata
    while the weights are not on the Hub).
    """
    published = repo_id is not None
    repo_id = repo_id or f"ORG/{metrics['model']['repo_name']}"
    comparison = comparison if comparison is not None else comparison_table(metrics)
    body = "\n".join([
        _title_section(metrics),
        _standard_section(metrics),
        _minimal_norm_section(metrics),
        _robustness_section(metrics, comparison, curve_file),
        _training_section(metrics, training_file),
        _rebuild_section(metrics),
        _usage_section(metrics, repo_id),
        LIMITATIONS,
        f"## Citation\n\n```bibtex\n{CITATION}\n```\n",
    ])
    return ModelCard(f"---\n{card_data(metrics, repo_id, published).to_yaml()}\n---\n{body}").content


def timm_loadable(metrics: dict) -> bool:
    """Whether plain timm can build the architecture (torchvision networks without a timm twin cannot)."""
    from ..models.torchvision_compat import split_prefix

    return split_prefix(metrics["model"]["architecture"]) is None


def card_data(metrics: dict, repo_id: str, published: bool = True) -> ModelCardData:
    """The card's YAML metadata: library, license, tags (dataset and threat models, for Hub-side filtering),
    dataset, base model, ``model-index`` and the ``dd_hub`` block."""
    info, recipe = metrics["model"], metrics["recipe"]
    loadable = timm_loadable(metrics)
    threat_models = sorted(metrics["hardened"].get("autoattack", {}))
    return ModelCardData(
        model_name=info["repo_name"],
        library_name="timm" if loadable else "pytorch",
        pipeline_tag="image-classification",
        license=info.get("license") or "other",
        tags=[tag for tag in TAGS if loadable or tag != "timm"] + search_tags(info["dataset"], threat_models)
        + (["dd-hub-smoke"] if is_smoke(metrics) else []),
        datasets=[info["dataset_hub_id"]],
        base_model=info.get("base_model"),
        eval_results=eval_results(metrics),
        dd_hub={"architecture": info["architecture"], "dataset": info["dataset"], "recipe": recipe["name"],
                "method": recipe.get("method", "deep_defense"), "rho_space": recipe["rho_space"],
                "threat_models": threat_models, "version": metrics.get("dd_hub_version"), "published": published,
                **({"repo_id": repo_id} if published else {}), **reference_block(metrics),
                **({"weights_sha256": metrics["files"]["model.safetensors"]}   # once sealed: publish, cards --add
                   if isinstance(metrics.get("files"), dict) and "model.safetensors" in metrics["files"] else {}),
                **({"smoke": True} if is_smoke(metrics) else {})},
    )


def reference_block(metrics: dict) -> dict:
    """``{"reference": {...}}``: the reference model's clean accuracy and AutoAttack robust accuracy per threat model,
    measured on the same images (so the boards show each model's gain over it); empty without a reference."""
    reference = metrics.get("reference") or {}
    figures = {"clean_accuracy": reference.get("clean_accuracy"),
               "autoattack": {name: r.get("accuracy") for name, r in sorted(reference.get("autoattack", {}).items())
                              if is_finite_number(r.get("accuracy"))}}
    if not is_finite_number(figures["clean_accuracy"]):
        return {}
    return {"reference": figures if figures["autoattack"] else {"clean_accuracy": figures["clean_accuracy"]}}


def search_tags(dataset: str, threat_models: list[str]) -> list[str]:
    """The Hub tags ``dd-hub list`` filters on: one for the dataset, one per evaluated threat model."""
    return [f"dd-hub-dataset-{dataset}"] + [f"dd-hub-threat-model-{name}" for name in threat_models]


def is_smoke(metrics: dict) -> bool:
    """Whether ``metrics`` (a metrics.json) comes from a smoke run (``--smoke``), which is never published."""
    return metrics.get("smoke") is True or (metrics.get("recipe") or {}).get("smoke") is True


SMOKE_NOTE = ("**A smoke run** (`--smoke`): the whole pipeline on a few hundred training and a few dozen test images, "
              "one epoch per phase, to show that this network runs end to end. Its figures say nothing about the "
              "network's robustness; it is not published.\n")


def _title_section(metrics: dict) -> str:
    info = metrics["model"]
    method = METHOD_TITLES.get(info.get("method", "deep_defense"), info.get("method"))
    smoke = is_smoke(metrics)
    return f"""
# {info['repo_name']}{' (smoke run)' if smoke else ''}

{SMOKE_NOTE if smoke else ''}
`{info['architecture']}` {'trained' if info.get('method') == REFERENCE else 'fine-tuned'} with **{method}** by dd-hub on `{info['dataset']}` ({info.get(
        'dataset_card_name', info['dataset'])}). Deep Defense: Yan, Guo, Zhang, *Deep Defense: Training DNNs with
Improved Adversarial Robustness*, NeurIPS 2018 ([arXiv:1803.00404]({ARXIV})).
"""


METHOD_TITLES = {"deep_defense": "Deep Defense", "reference": "standard training (the undefended reference)",
                 "clean": "clean fine-tuning (no defense)",
                 "parseval": "Parseval training (Par. Train)", "deepfool_adv": "DeepFool adversarial training (Adv. "
                 "Train I)", "fgs_adv": "FGS adversarial training (Adv. Train II)",
                 "pgd_adv": "PGD adversarial training", "trades": "TRADES"}


#: the method name of a reference model's folder (``dd-hub reproduce`` writes one beside the methods')
REFERENCE = "reference"


def _standard_section(metrics: dict) -> str:
    """Clean and AutoAttack robust accuracy at the dataset's standard threat models, reference and this model."""
    hardened, reference = metrics["hardened"], metrics.get("reference", {})
    rows = [["clean accuracy", f"{reference.get('clean_accuracy', float('nan')):.2%}",
             f"{hardened['clean_accuracy']:.2%}", hardened["n_examples"]]]
    for name, figure in sorted(hardened.get("autoattack", {}).items()):
        before = reference.get("autoattack", {}).get(name, {}).get("accuracy")
        rows.append([f"AutoAttack, {name} ({figure['norm']}, eps={figure['eps']:.4g})",
                     "–" if before is None else f"{before:.2%}", f"{figure['accuracy']:.2%}", figure["n_examples"]])
    settings = next(iter(hardened.get("autoattack", {}).values()), None)
    if settings is None:
        note = "No standard threat model was evaluated for this dataset (no AutoAttack figure)."
    else:
        flags = sorted({f for r in hardened["autoattack"].values() for f in r.get("flags", [])})
        skipped = {a: why for r in hardened["autoattack"].values() for a, why in r.get("skipped", {}).items()}
        left_out = "".join(f" {name} was not run: it {why}." for name, why in sorted(skipped.items()))
        note = (f"AutoAttack by its authors ({settings.get('implementation', 'pyautoattack')}), version "
                f"`{settings.get('version')}`: {', '.join(settings.get('attacks', [])) or 'its standard attacks'}; "
                f"seed {settings.get('seed', 0)}, on a class-balanced subset of the test images.{left_out} "
                f"AutoAttack's own checks: {'; '.join(flags) if flags else 'no warning'}.")
    return f"""## Robustness at standard threat models

{markdown_table(["metric", "reference", "this model", "images"], rows)}
{note} Perturbation sizes are in [0, 1] pixel space.
"""


def _minimal_norm_section(metrics: dict) -> str:
    """The minimal L2 perturbation of each test image beside DeepFool's rho_2 (empty for metrics without it)."""
    hardened, reference = metrics["hardened"], metrics.get("reference", {})
    minimal = hardened.get("minimal_norm")
    if not minimal:
        return ""
    before = reference.get("minimal_norm") or {}

    def number(figures: dict, key: str) -> str:
        return "–" if figures.get(key) is None else f"{figures[key]:.4g}"

    rows = [["minimal L2 rho_2 (valid points)", number(before, "rho2"), number(minimal, "rho2")],
            ["DeepFool rho_2 (the paper's, unclipped)", number(reference, "rho2"), number(hardened, "rho2")],
            ["mean minimal L2 norm", number(before, "mean_l2"), number(minimal, "mean_l2")]]
    for eps, accuracy in minimal["accuracy"].items():
        rows.append([f"robust accuracy, L2 eps={eps}",
                     f"{before['accuracy'][eps]:.2%}" if eps in before.get("accuracy", {}) else "–", f"{accuracy:.2%}"])
    ratio = hardened["rho2"] / minimal["rho2"] - 1 if minimal.get("rho2") else None
    relation = ("not comparable (no valid perturbation found)" if ratio is None else
                f"{ratio:.0%} above it: DeepFool overstates the minimal perturbation" if ratio > 0 else
                f"{-ratio:.0%} below it: DeepFool's unclipped point may leave [0, 1], where no image is")
    return f"""## Minimal L2 perturbations

For each of the {minimal['n_examples']} test images, the smallest L2 perturbation found that changes the
prediction: DDN's (Rony et al., CVPR 2019; {minimal['steps']} steps) or DeepFool's point clipped to [0, 1], whichever
is smaller, counting only valid adversarial images (inside [0, 1], misclassified): found for {minimal['found']:.1%}
of the images, DDN's the smaller for {minimal['ddn_share']:.1%} of them. Each norm is an upper bound on the image's
true minimal distance, so the robust accuracies below are upper bounds too; compare AutoAttack's at the same
budget above. The minimal rho_2 is {_space(hardened['rho_space'])}, as DeepFool's, which is {relation}. The L2
panel of the figure below draws the whole curve.

{markdown_table(["metric", "reference", "this model"], rows)}
"""


def _training_section(metrics: dict, training_file: str | None) -> str:
    info, recipe = metrics["model"], metrics["recipe"]
    method = recipe.get("method", "deep_defense")
    # a reference card's phase is the recipe's reference training, the others' its hardening
    defense, harden = recipe["defense"], recipe["reference" if method == REFERENCE else "harden"]
    start = info.get("provenance") or info.get("base_model") or "a reference model trained by dd-hub"
    if method == REFERENCE:
        objective, rows = "cross-entropy alone (standard training; every other model of its run starts from it)", []
    elif method == "deep_defense":
        objective = (f"cross-entropy plus the Deep Defense regularizer `lambda * exp(-c * rho)` (correctly "
                     f"classified) and `lambda * exp(d * rho)` (misclassified), `rho = ||r||_2 / ||x||_2` of an "
                     f"unrolled DeepFool perturbation r, {_space(recipe['rho_space'])}")
        rows = [["lambda, c, d", f"{defense['lam']}, {defense['c']}, {defense['d']}"],
                ["unrolled DeepFool", f"{defense['steps']} steps, {defense['candidates']} candidates, overshoot "
                                      f"{defense['overshoot']}, iterate: {defense.get('iterate', 'reference')}"]]
    else:
        objective = f"the {METHOD_TITLES.get(method, method)} objective (dd-hub method `{method}`)"
        rows = _adversarial_rows(method, recipe.get("adversarial") or {})
    if recipe.get("model_args"):
        rows.insert(0, ["network arguments", ", ".join(f"`{k}={v}`" for k, v in recipe["model_args"].items())])
    figure = (f"\n![Training accuracy and rho_2 per epoch (training batches)]({training_file})\n"
              if training_file else "")
    return f"""## How it was trained

{"Trained" if method == REFERENCE else "Fine-tuned"} from {start} with {objective}.

{markdown_table(["setting", "value"], [
        ["recipe", f"`{recipe['name']}`"], *rows,
        ["optimizer", f"{harden['optimizer']}, lr {harden['lr']}, momentum {harden['momentum']}, weight decay "
                      f"{harden['weight_decay']}"],
        ["schedule", f"{harden['epochs']} epochs, batch {harden['batch_size']}, lr x{harden['lr_decay']} after "
                     f"epochs {harden['lr_milestones']}"], *_step_rows(metrics.get("training")),
        *_clipping_rows(harden, metrics.get("training")), *_input_rows(info),
        ["BatchNorm", "frozen (eval mode, out of the optimizer)" if harden["freeze_bn"] else "trained"],
        ["seed", metrics.get("seed")]])}{figure}"""


def _rebuild_section(metrics: dict) -> str:
    """The command that produced these weights and how closely rerunning it gives them again (empty when the run
    was not started from the command line)."""
    run = metrics.get("run") or {}
    command, threads = run.get("command"), run.get("threads")
    if not isinstance(command, str) or not isinstance(threads, int):
        return ""
    return f"""## How to rebuild it

```bash
OMP_NUM_THREADS={threads} {command}
```

(dd-hub {metrics.get('dd_hub_version', '?')}{_source(run)}, torch {run.get('torch', '?')}, {threads} thread(s), {run.get(
        'platform', '?')}, on a CPU.) Every random choice (initialization, data order, PGD starts, evaluation subsets)
is seeded, so with the same dd-hub code, on the same kind of machine with the same thread count and torch version,
the command gives these weights bit for bit and every figure above exactly. Another thread count or CPU sums in another order, and the
training amplifies it: the figures then come out within sampling noise of these, not identically (dd-hub's
docs/results.md states the spreads measured between runs).
"""


def _source(run: dict) -> str:
    source = run.get("source")
    valid = isinstance(source, str) and re.fullmatch(r"[0-9a-f]{7,40}(-modified)?", source)
    return f" from source commit {source}" if valid else ""


def _count(epoch: object, key: str) -> int | None:
    value = epoch.get(key) if isinstance(epoch, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12 else None


def _step_rows(history: object) -> list[list[str]]:
    """How many training steps the hardening took, and how many it skipped (non-finite) or clipped, from the
    epoch records that count them."""
    epochs = history if isinstance(history, list) else []
    counted = [e for e in epochs if _count(e, "steps") is not None and _count(e, "skipped_steps") is not None]
    if not counted:
        return []
    steps, skipped = sum(_count(e, "steps") for e in counted), sum(_count(e, "skipped_steps") for e in counted)
    clipped = [_count(e, "clipped_steps") for e in counted if _count(e, "clipped_steps") is not None]
    text = f"{steps + skipped} steps; {skipped} skipped (non-finite loss or gradient)"
    return [["training steps", text + (f"; {sum(clipped)} clipped" if clipped else "")]]


def _input_rows(info: dict) -> list[list[str]]:
    """The images the network saw: the dataset's native size, or resized (``--input-size`` or the model's)."""
    text = info.get("input")
    return [["input images", text]] if isinstance(text, str) and text else []


def _clipping_rows(harden: dict, history: object) -> list[list[str]]:
    """Gradient clipping, when the recipe set it, with the share of the training steps it clipped."""
    limit = harden.get("max_grad_norm")
    if limit is None:
        return []
    shares = [epoch["clipped"] for epoch in history if isinstance(epoch, dict)
              and is_finite_number(epoch.get("clipped")) and 0.0 <= epoch["clipped"] <= 1.0
              ] if isinstance(history, list) else []
    clipped = f"; {sum(shares) / len(shares):.0%} of the steps clipped" if shares else ""
    return [["gradient clipping", f"global L2 norm at most {limit}{clipped}"]]


def _adversarial_rows(method: str, adv: dict) -> list[list[str]]:
    """The training attack's settings of an adversarial-training method, as the recipe gave them."""
    pgd = f"PGD, {adv.get('norm')}, eps {adv.get('eps')}, {adv.get('steps')} steps"
    attack = {"pgd_adv": pgd, "trades": f"{pgd}, beta {adv.get('trades_beta')}",
              "fgs_adv": f"FGS, eps {adv.get('eps')}, clean-term weight {adv.get('fgs_weight')}",
              "deepfool_adv": f"DeepFool, {adv.get('deepfool_steps')} steps, overshoot {adv.get('deepfool_overshoot')}"}
    return [["training attack", attack[method]]] if method in attack else []


def _space(space: str) -> str:
    if space == "centered":
        return "measured in the paper's mean-subtracted space (x minus the training set's mean image)"
    return "measured in [0, 1] pixel space"


def _robustness_section(metrics: dict, comparison: str, curve_file: str | None) -> str:
    curve = (f"\n![Accuracy versus epsilon, Linf and L2, measured points]({curve_file})\n" if curve_file else "")
    skipped = (metrics["model"].get("skipped_images") or {}).get("test")
    left_out = f" ({skipped} unreadable test images were left out: `data.skip_corrupt`)" if skipped else ""
    return f"""## DeepFool rho_2 and the paper's protocol

Test split, {metrics['hardened']['n_examples']} images{left_out}. rho_2 is the mean DeepFool ratio
`||r||_2 / ||x||_2` (source = predicted class, all test images), {_space(metrics['hardened']['rho_space'])}.
{_eps_ref_text(metrics)} Both models are evaluated at the same epsilons. The `model-index` in this card's metadata
holds these figures with their attack settings.

{comparison}{curve}"""


def _eps_ref_text(metrics: dict) -> str:
    """Where epsilon_ref comes from: found on this model (50% there by construction) or given by the run."""
    hardened = metrics["hardened"]
    if hardened.get("eps_ref_source", "self") == "self":
        return ("epsilon_ref is the smallest FGS epsilon (Linf, [0, 1] pixels) at which this model's accuracy falls "
                "to 50% (the paper's protocol, so this model is at 50% there by construction; compare models at the "
                "fixed budgets above).")
    source = metrics.get("eps_ref_from")
    whose = (f"the {METHOD_TITLES.get(source, source)} model of the same `dd-hub reproduce` run" if source
             else "another model (`dd-hub reproduce` takes it from its Deep Defense model, as the paper's Table 1 does)")
    return (f"epsilon_ref ({hardened['eps_ref']:.4g}, an FGS epsilon in Linf, [0, 1] pixels) is the one at which "
            f"{whose} falls to 50% accuracy, so that the methods of that run are compared at one budget; it was not "
            "found on this model, which is not at 50% there by construction.")


def _usage_section(metrics: dict, repo_id: str) -> str:
    architecture = metrics["model"]["architecture"]
    install = ("dd-hub is needed only for `dd_hub.load` and for dd-hub's own architectures: install it from a "
               "clone of its repository with `pip install -e .`.\n\n")
    if not timm_loadable(metrics):
        return f"## Usage\n\n{install}{_TORCHVISION_USAGE.format(repo_id=repo_id)}"
    own = is_own_architecture(architecture)
    usage = _TIMM_USAGE.format(repo_id=repo_id,
                               registration=_REGISTRATION.format(architecture=architecture) if own else "",
                               plain="" if own else _PLAIN_TIMM.format(architecture=architecture))
    return f"## Usage\n\n{install}{usage}"


LIMITATIONS = """## Limitations

Every figure here is empirical: AutoAttack is the strongest of the attacks run, and accuracy under an attack is an
upper bound on the true robust accuracy; DeepFool and FGS are weaker still. Nothing here is a certificate. Deep
Defense targets small L2 perturbations; read the threat-model table above for what that buys at standard budgets.
"""
