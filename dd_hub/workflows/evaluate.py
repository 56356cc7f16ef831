"""``dd-hub eval``: a saved model evaluated again, by default with the settings its metrics.json records, so that
the figures of its card come out again; the same function re-measures a published checkpoint for ``dd-hub verify``.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch

from ..attacks.threat_models import standard_threat_models
from ..data.datasets import create_dataset, first_examples, mean_image
from ..errors import DDHubError, first_line
from ..evaluation.report import Report, evaluate
from ..hub.loading import cache_root, resolve
from ..models import unwrap
from ..models.directory import load_directory
from ..names import CONFIG_NAME, WEIGHTS_NAME
from ..recipes import eval_config_from_dict
from ..storage.metrics import read_metrics


def evaluate_saved(name_or_path: str | Path, *, dataset: str | None = None, data_dir: str | Path | None = None,
                   overrides: dict | None = None, eps_ref: float | None = None, rho_space: str | None = None,
                   device: str | None = None, progress: bool = True) -> Report:
    """Evaluate a saved model (directory or Hub id) on a test split, on ``device`` (default: the GPU if any).

    A dd-hub checkpoint is evaluated on its dataset with the evaluation settings its metrics.json records (rho
    space, DeepFool budget, epsilons, subset, and epsilon_ref when the run gave it from another model; every budget
    range-checked like a recipe's), so the figures of its card come out again; ``overrides`` (recipe ``evaluation``
    keys) and ``rho_space`` change them.
    """
    folder = resolve(name_or_path, metrics=True)
    links_within = cache_root(folder)  # a Hub snapshot holds the weights, config and metrics only
    metrics = read_metrics(folder, required=False, links_within=links_within,
                           only=None if links_within is None else (CONFIG_NAME, WEIGHTS_NAME))
    model = load_directory(folder, links_within=links_within)
    measured = metrics["recipe"] if metrics else {}
    dataset = dataset or measured.get("dataset")
    if not isinstance(dataset, str):
        raise DDHubError(f"{name_or_path} records no dataset (no dd-hub metrics.json); pass --dataset NAME")
    config = eval_config_from_dict({**measured.get("evaluation", {}), **(overrides or {})})
    rho_space = rho_space or measured.get("rho_space", "pixel")
    if config.autoattack is None:
        config.autoattack = standard_threat_models(dataset)
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if torch.device(target).type not in ("cpu", "cuda", "mps", "xpu"):
            raise RuntimeError(f"a {torch.device(target).type} device holds no data to evaluate on; use cpu or cuda")
        model.to(torch.device(target))
    except (RuntimeError, AssertionError) as exc:
        raise DDHubError(f"cannot use device '{target}': {first_line(exc)}") from None
    data_config = timm.data.resolve_model_data_config(unwrap(model))
    test_set = create_dataset(dataset, "test", data_dir=data_dir, data_config=data_config)
    train_count = measured.get("max_train_examples")
    train_images = first_examples(create_dataset(dataset, "train", data_dir=data_dir, data_config=data_config),
                                  train_count if isinstance(train_count, int) else None)  # the run's center's images
    center = mean_image(train_images) if rho_space == "centered" else None
    recorded = metrics["hardened"] if metrics else {}
    if eps_ref is None and recorded.get("eps_ref_source") == "given":
        eps_ref = recorded.get("eps_ref")    # another model's epsilon_ref (dd-hub reproduce): the card's budgets
    if eps_ref is not None and not (isinstance(eps_ref, (int, float)) and 0 < eps_ref <= 1):
        raise DDHubError(f"epsilon_ref must be in (0, 1], not {str(eps_ref)[:40]}")
    return evaluate(model, test_set, config, center=center, eps_ref=eps_ref, progress=progress)
