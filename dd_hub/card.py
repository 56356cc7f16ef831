"""Model cards: YAML front matter with ``model-index`` (huggingface_hub's ``ModelCardData``/``EvalResult``) and a
Markdown body, rendered deterministically from ``metrics.json`` (no timestamps, sorted keys)."""
from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .evaluate import Report, format_comparison
from .models.torchvision_compat import split_prefix
from .plots import CURVE_NAME, attack_curves

_TIMM_USAGE = """```python
import timm
import dd_hub.models  # registers dd-hub's own architectures (dd_lenet_mnist, ...); not needed for standard timm ones

# pretrained=True is required: without it timm builds the architecture with random weights and no error
model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()
config = timm.data.resolve_model_data_config(model)  # input size, mean/std, interpolation of this checkpoint

# or: a model that takes [0, 1] images with the normalization inside, never random weights
model = dd_hub.load("{repo_id}")
```

Inputs are normalized with the `mean`/`std` in `config.json` (timm's `resolve_model_data_config`).
"""
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


def eval_results(metrics: dict) -> list[EvalResult]:
    """The hardened model's figures as ``EvalResult``s (accuracies as fractions, exactly as in metrics.json)."""
    report, info = metrics["hardened"], metrics["model"]
    common = dict(task_type="image-classification", dataset_type=info["dataset_hub_id"],
                  dataset_name=info["dataset"], dataset_split="test")
    n, seed = report["n_examples"], metrics.get("seed")
    df = report["deepfool"]
    results = [
        EvalResult(metric_type="accuracy", metric_value=report["clean_accuracy"], metric_name="clean accuracy",
                   metric_args={"n_examples": n}, **common),
        EvalResult(metric_type="rho2", metric_value=report["rho2"], metric_name="DeepFool rho_2",
                   metric_args={"attack": "deepfool", "norm": "l2", "steps": df["steps"],
                                "candidates": df["candidates"], "overshoot": df["overshoot"],
                                "space": report["rho_space"], "n_examples": n}, **common),
    ]
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
    return format_comparison({"reference": Report.from_dict(metrics["reference"]),
                              "hardened": Report.from_dict(metrics["hardened"])})


def card_metrics(card_data: ModelCardData) -> dict[str, float]:
    """Metric name -> value from a card's ``model-index`` (the inverse of :func:`eval_results`).

    Names: ``clean_accuracy``, ``rho2``, ``<attack>@<fraction>eps_ref`` and ``<attack>@<eps>`` (attack fgs, pgd,
    autoattack).
    """
    figures = {}
    for result in card_data.eval_results or []:
        args = result.metric_args or {}
        if result.metric_type == "accuracy":
            figures["clean_accuracy"] = result.metric_value
        elif result.metric_type == "rho2":
            figures["rho2"] = result.metric_value
        elif result.metric_type == "robust_accuracy" and "fraction" in args:
            figures[f"{args['attack']}@{args['fraction']:g}eps_ref"] = result.metric_value
        elif result.metric_type == "robust_accuracy" and "eps" in args:
            figures[f"{args['attack']}@{args['eps']:g}"] = result.metric_value
    return figures


def report_metrics(report: dict) -> dict[str, float]:
    """The same names as :func:`card_metrics`, read from one report of metrics.json."""
    figures = {"clean_accuracy": report["clean_accuracy"], "rho2": report["rho2"]}
    for attack, at_eps, at_ref, _ in attack_curves(report):
        figures.update({f"{attack}@{float(f):g}eps_ref": a for f, a in at_ref.items()})
        figures.update({f"{attack}@{float(e):g}": a for e, a in at_eps.items()})
    return figures


def render_card(metrics: dict, comparison: str | None = None, *, curve_file: str | None = None,
                repo_id: str | None = None) -> str:
    """README.md text for a hardened checkpoint described by ``metrics`` (the content of metrics.json).

    ``comparison`` defaults to :func:`comparison_table`; ``repo_id`` goes into the usage snippet (``ORG/NAME``
    when not yet known).
    """
    repo_id = repo_id or f"ORG/{metrics['model']['repo_name']}"
    comparison = comparison if comparison is not None else comparison_table(metrics)
    body = "\n".join([
        _title_section(metrics),
        _training_section(metrics),
        _robustness_section(metrics, comparison, curve_file),
        _usage_section(metrics, repo_id),
        LIMITATIONS,
        f"## Citation\n\n```bibtex\n{CITATION}\n```\n",
    ])
    return ModelCard(f"---\n{card_data(metrics, repo_id).to_yaml()}\n---\n{body}").content


def timm_loadable(metrics: dict) -> bool:
    """Whether plain timm can build the architecture (torchvision networks without a timm twin cannot)."""
    return split_prefix(metrics["model"]["architecture"]) is None


def card_data(metrics: dict, repo_id: str) -> ModelCardData:
    """The card's YAML metadata: library, tags, dataset, base model, ``model-index`` and the ``dd_hub`` block."""
    info, recipe = metrics["model"], metrics["recipe"]
    loadable = timm_loadable(metrics)
    return ModelCardData(
        model_name=info["repo_name"],
        library_name="timm" if loadable else "pytorch",
        pipeline_tag="image-classification",
        license="apache-2.0",
        tags=[tag for tag in TAGS if loadable or tag != "timm"],
        datasets=[info["dataset_hub_id"]],
        base_model=info.get("base_model"),
        eval_results=eval_results(metrics),
        dd_hub={"architecture": info["architecture"], "dataset": info["dataset"], "recipe": recipe["name"],
                "method": recipe.get("method", "deep_defense"), "rho_space": recipe["rho_space"],
                "version": metrics.get("dd_hub_version"),
                **({"repo_id": repo_id} if not repo_id.startswith("ORG/") else {})},
    )


def _title_section(metrics: dict) -> str:
    info = metrics["model"]
    return f"""
# {info['repo_name']}

`{info['architecture']}` hardened against adversarial examples with **Deep Defense** (Yan, Guo, Zhang, NeurIPS
2018) by dd-hub, on `{info['dataset']}`.
"""


def _training_section(metrics: dict) -> str:
    info, recipe = metrics["model"], metrics["recipe"]
    defense, harden = recipe["defense"], recipe["harden"]
    start = info.get("provenance") or info.get("base_model") or "a reference model trained by dd-hub"
    return f"""## How it was hardened

Fine-tuned from {start} with
cross-entropy plus the Deep Defense regularizer `lambda * exp(-c * rho)` (correctly classified) and
`lambda * exp(d * rho)` (misclassified), `rho = ||r||_2 / ||x||_2` of an unrolled DeepFool perturbation r,
measured in {recipe['rho_space']} space.

| setting | value |
|---|---|
| recipe | `{recipe['name']}` |
| lambda, c, d | {defense['lam']}, {defense['c']}, {defense['d']} |
| unrolled DeepFool | {defense['steps']} steps, {defense['candidates']} candidates, overshoot {defense['overshoot']} |
| optimizer | {harden['optimizer']}, lr {harden['lr']}, momentum {harden['momentum']}, weight decay {harden['weight_decay']} |
| schedule | {harden['epochs']} epochs, batch {harden['batch_size']}, lr x{harden['lr_decay']} after epochs {harden['lr_milestones']} |
| BatchNorm | {'frozen (eval mode, out of the optimizer)' if harden['freeze_bn'] else 'trained'} |
| seed | {metrics.get('seed')} |
"""


def _robustness_section(metrics: dict, comparison: str, curve_file: str | None) -> str:
    curve = f"\n![Accuracy under FGS versus epsilon]({curve_file})\n" if curve_file else ""
    skipped = (metrics["model"].get("skipped_images") or {}).get("test")
    left_out = f" ({skipped} unreadable test images were left out: `data.skip_corrupt`)" if skipped else ""
    return f"""## Robustness, before and after

Test split of `{metrics['model']['dataset']}`, {metrics['hardened']['n_examples']} images{left_out}. Perturbation sizes are in
[0, 1] pixel space. rho_2 is the mean DeepFool ratio (L2, source = predicted class, all test images). epsilon_ref is
the smallest FGS epsilon at which the hardened model's accuracy falls to 50% (the paper's protocol); both models
are evaluated at the same epsilons. The `model-index` in this card's metadata holds the same figures with their
attack settings (norm, epsilon, steps, number of examples, seed).

{comparison}{curve}"""


def _usage_section(metrics: dict, repo_id: str) -> str:
    usage = _TIMM_USAGE if timm_loadable(metrics) else _TORCHVISION_USAGE
    return f"## Usage\n\n{usage.format(repo_id=repo_id)}"


LIMITATIONS = """## Limitations

These figures are empirical: DeepFool and FGS are not the strongest attacks, and accuracy under them is an upper
bound on the true robust accuracy. Nothing here is a certificate. Deep Defense targets minimal L2 perturbations;
robustness to other threat models is not claimed.
"""
