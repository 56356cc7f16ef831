"""Model cards: YAML front matter with ``model-index`` (huggingface_hub's ``ModelCardData``/``EvalResult``) and a
Markdown body, rendered deterministically from ``metrics.json`` (no timestamps, sorted keys)."""
from __future__ import annotations

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TAGS = ["timm", "image-classification", "adversarial-robustness", "deep-defense", "dd-hub"]
CITATION = """@inproceedings{yan2018deep,
  title     = {Deep Defense: Training DNNs with Improved Adversarial Robustness},
  author    = {Yan, Ziang and Guo, Yiwen and Zhang, Changshui},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2018}
}"""


def eval_results(metrics: dict) -> list[EvalResult]:
    """The hardened model's figures as ``EvalResult``s (accuracies as fractions, exactly as in metrics.json)."""
    report, info = metrics["hardened"], metrics["model"]
    common = dict(task_type="image-classification", dataset_type=info["dataset_hub_id"],
                  dataset_name=info["dataset"], dataset_split="test")
    n = report["n_examples"]
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
    for fraction, accuracy in sorted(report.get("fgs_at_ref", {}).items(), key=lambda kv: float(kv[0])):
        eps = float(fraction) * eps_ref
        results.append(EvalResult(
            metric_type="robust_accuracy", metric_value=accuracy,
            metric_name=f"FGS accuracy at {fraction} x eps_ref (Linf, eps={eps:.4g})",
            metric_args={"attack": "fgs", "norm": "linf", "eps": round(eps, 8), "eps_ref": eps_ref,
                         "fraction": float(fraction), "n_examples": n, "seed": metrics.get("seed")},
            **common))
    for eps, accuracy in sorted(report.get("fgs", {}).items(), key=lambda kv: float(kv[0])):
        results.append(EvalResult(
            metric_type="robust_accuracy", metric_value=accuracy, metric_name=f"FGS accuracy (Linf, eps={eps})",
            metric_args={"attack": "fgs", "norm": "linf", "eps": float(eps), "n_examples": n,
                         "seed": metrics.get("seed")}, **common))
    return results


def render_card(metrics: dict, comparison_table: str, *, curve_file: str | None = None) -> str:
    """README.md text for a hardened checkpoint described by ``metrics`` (the content of metrics.json)."""
    info, recipe = metrics["model"], metrics["recipe"]
    name = info["repo_name"]
    data = ModelCardData(
        model_name=name,
        library_name="timm",
        pipeline_tag="image-classification",
        license="apache-2.0",
        tags=TAGS,
        datasets=[info["dataset_hub_id"]],
        base_model=info.get("base_model"),
        eval_results=eval_results(metrics),
    )
    defense, harden = recipe["defense"], recipe["harden"]
    curve = f"\n![Accuracy under FGS versus epsilon]({curve_file})\n" if curve_file else ""
    body = f"""
# {name}

`{info['architecture']}` hardened against adversarial examples with **Deep Defense** (Yan, Guo, Zhang, NeurIPS
2018) by [dd-hub](https://github.com/dd-hub/dd-hub), on `{info['dataset']}`.

## How it was hardened

Fine-tuned from {info.get('base_model') or 'a reference model trained by dd-hub (`reference/`)'} with
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

## Robustness, before and after

Test split of `{info['dataset']}`, {metrics['hardened']['n_examples']} images. Perturbation sizes are in [0, 1]
pixel space. rho_2 is the mean DeepFool ratio (L2, source = predicted class, all test images). epsilon_ref is the
smallest FGS epsilon at which the hardened model's accuracy falls to 50% (the paper's protocol); both models are
evaluated at the same epsilons.

{comparison_table}{curve}
## Usage

```python
import timm
import dd_hub  # registers dd-hub's own architectures; not needed for standard timm ones

model = timm.create_model("hf-hub:ORG/{name}", pretrained=True)  # pretrained=True, or the weights are random
model.eval()
# or, with [0, 1] inputs and the normalization inside: model = dd_hub.load("ORG/{name}")
```

Inputs are normalized with the `mean`/`std` in `config.json` (timm's `resolve_model_data_config`).

## Limitations

These figures are empirical: DeepFool and FGS are not the strongest attacks, and accuracy under them is an upper
bound on the true robust accuracy. Nothing here is a certificate. Deep Defense targets minimal L2 perturbations;
robustness to other threat models is not claimed.

## Citation

```bibtex
{CITATION}
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").content
