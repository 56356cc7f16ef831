"""Thousands of dd-hub model cards, made quickly for scale tests and ``benchmarks/hub_scale.py``: every card has the
front matter dd-hub writes (tags, the ``dd_hub`` block with its reference figures, a ``model-index`` with clean,
AutoAttack, rho_2 and FGS figures) and a short body with a figure; names, architectures, methods, datasets and
figures vary with the card's number (made-up values, seeded: the same ``i`` gives the same card).
"""
from __future__ import annotations

import random
from pathlib import Path

ARCHITECTURES = ["resnet18", "resnet50", "wide_resnet50_2", "vit_tiny_patch16_224", "convnext_atto", "dd_lenet_mnist",
                 "mobilenetv3_small_050", "efficientnet_b0", "tv:mobilenet_v2", "densenet121"]
METHODS = ["deep_defense", "clean", "parseval", "fgs_adv", "deepfool_adv", "pgd_adv"]
#: dataset -> its threat models (name, norm, eps), as dd_hub.threat_models names them
DATASETS = {"mnist-5k": [("mnist-linf", "linf", 0.3), ("mnist-l2", "l2", 2.0)],
            "cifar10": [("cifar10-linf", "linf", 8 / 255), ("cifar10-l2", "l2", 0.5)],
            "imagenet": [("imagenet-linf", "linf", 4 / 255)]}
ORGS = ["robust-lab", "acme-ai", "uni-vision", "hub-user"]


def name(i: int) -> str:
    """The repo name of card ``i`` (``ORG/NAME`` is :func:`repo_id`)."""
    return f"{ARCHITECTURES[i % len(ARCHITECTURES)].replace(':', '-')}-{METHODS[(i // 3) % len(METHODS)]}-{i:05d}"


def repo_id(i: int) -> str:
    return f"{ORGS[i % len(ORGS)]}/{name(i)}"


def card_text(i: int, *, published: bool = True) -> str:
    """README.md of card ``i``."""
    rng = random.Random(i)
    architecture = ARCHITECTURES[i % len(ARCHITECTURES)]
    method = METHODS[(i // 3) % len(METHODS)]
    dataset = list(DATASETS)[(i // 7) % len(DATASETS)]
    threats = DATASETS[dataset]
    clean = round(rng.uniform(0.7, 0.995), 4)
    robust = {tm: round(rng.uniform(0.0, clean), 4) for tm, _, _ in threats}
    reference = {tm: round(max(0.0, value - rng.uniform(0.0, 0.3)), 4) for tm, value in robust.items()}
    figures = [f"""    - type: accuracy
      value: {clean}
      name: clean accuracy
      args:
        n_examples: 1000"""]
    for tm, norm, eps in threats:
        figures.append(f"""    - type: robust_accuracy
      value: {robust[tm]}
      name: AutoAttack robust accuracy, {tm} ({norm}, eps={eps:.4g})
      args:
        attack: autoattack
        threat_model: {tm}
        norm: {norm}
        eps: {eps}
        version: standard
        attacks: []
        implementation: pyautoattack 0.2.0
        n_examples: 1000
        seed: 0
        flags: []""")
    figures.append(f"""    - type: rho2
      value: {round(rng.uniform(0.05, 0.5), 4)}
      name: DeepFool rho_2 (centered space)
      args:
        attack: deepfool
        norm: l2
        steps: 50
        n_examples: 1000""")
    for fraction in (0.2, 0.5, 1.0):
        figures.append(f"""    - type: robust_accuracy
      value: {round(clean * (1 - fraction / 2), 4)}
      name: FGS accuracy at {fraction} x eps_ref (linf, eps={0.1 * fraction:.4g})
      args:
        attack: fgs
        norm: linf
        eps: {0.1 * fraction}
        eps_ref: 0.1
        fraction: {fraction}
        n_examples: 1000""")
    repo = f"\n  repo_id: {repo_id(i)}" if published else ""
    threat_tags = "".join(f"\n- dd-hub-threat-model-{tm}" for tm, _, _ in threats)
    reference_lines = "".join(f"\n      {tm}: {value}" for tm, value in reference.items())
    nl = "\n"
    return f"""---
datasets:
- {dataset}
library_name: {'pytorch' if architecture.startswith('tv:') else 'timm'}
license: apache-2.0
pipeline_tag: image-classification
tags:
- image-classification
- adversarial-robustness
- dd-hub
- dd-hub-dataset-{dataset}{threat_tags}
dd_hub:
  architecture: {architecture}
  dataset: {dataset}
  recipe: generated
  method: {method}
  rho_space: centered
  version: 0.1.0
  published: {'true' if published else 'false'}{repo}
  reference:
    clean_accuracy: {round(clean + 0.01, 4) if clean < 0.985 else clean}
    autoattack:{reference_lines}
model-index:
- name: {name(i)}
  results:
  - task:
      type: image-classification
    dataset:
      name: {dataset}
      type: {dataset}
      split: test
    metrics:
{nl.join(figures)}
---

# {name(i)}

`{architecture}` trained with `{method}` on `{dataset}` (a generated card for scale tests).

![Accuracy versus epsilon](robustness_curve.png)
"""


def write_folders(root: Path, n: int, *, start: int = 0) -> Path:
    """``n`` card folders ``root/<name>/README.md`` (no figure files): a local catalogue of ``n`` cards."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        folder = root / name(i)
        folder.mkdir(exist_ok=True)
        (folder / "README.md").write_text(card_text(i, published=i % 5 != 0))
    return root


def publish(hub, n: int, *, start: int = 0, png: bytes | None = None) -> None:
    """``n`` repos on the Hub double ``hub`` (tests/hub_server.py), each with its card (and ``png`` as its
    robustness curve)."""
    from hub_server import Repo

    for org in ORGS:                                   # publishers the Hub knows as users (who can write their repos)
        hub.tokens.setdefault(f"hf_{org}", org)
    for i in range(start, start + n):
        rid = repo_id(i)
        hub.repos[rid] = Repo(owner=rid.split("/")[0], private=False)
        files = {"README.md": card_text(i).encode()}
        if png is not None:
            files["robustness_curve.png"] = png
        hub.commit(rid, "main", files, "upload")
