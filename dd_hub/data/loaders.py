"""DataLoaders: the training order, per-sample seeded augmentation, worker processes, the class-balanced evaluation
subset and evaluation sharded across processes.

Why not ``timm.data.create_loader``: it normalizes inside the loader (dd-hub keeps [0, 1] images and normalizes
inside the model), owns the sampler (dd-hub's order must be a function of (seed, epoch) for exact resume) and
draws augmentation from the workers' running RNG (which a resumed run cannot replay). The loader here keeps timm's
datasets and transforms and only changes those three things.
"""
from __future__ import annotations

import os
import random
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset, TensorDataset

from .datasets import CheckedImages, CIFAR10Batches, DataConfig


class EpochOrder(Sampler):
    """Yields ``(epoch, index)`` for every example in this epoch's order, a function of (seed, epoch) only."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        return ((self.epoch, int(i)) for i in order)


class SeededSamples(Dataset):
    """``dataset[i]`` for an ``(epoch, i)`` key, with Python's, NumPy's and torch's RNGs seeded from
    (seed, epoch, i) while it is read and restored afterwards: random augmentation depends on the example only, not
    on the worker that reads it, on what was read before, or on a resume; the caller's RNG streams are untouched."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        sample_seed = ((self.seed * 1_000_003 + epoch) * 1_000_003 + index) % (2**63)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            random.seed(sample_seed)
            np.random.seed(sample_seed % 2**32)
            try:
                return self.dataset[index]
            finally:
                random.setstate(python_state)
                np.random.set_state(numpy_state)


def in_memory(dataset: Dataset) -> bool:
    """Whether reading an example costs no I/O or decoding (then worker processes only add overhead)."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return isinstance(dataset, (TensorDataset, CIFAR10Batches))


def loader_workers(config: DataConfig, dataset: Dataset) -> int:
    """``config.workers``, or by default none for in-memory data and ``min(8, CPUs - 1)`` for files to decode."""
    if config.workers is not None:
        return config.workers
    return 0 if in_memory(dataset) else max(1, min(8, (os.cpu_count() or 2) - 1))


def _loader_options(config: DataConfig, dataset: Dataset) -> dict:
    workers = loader_workers(config, dataset)
    return {"num_workers": workers, "pin_memory": config.pin_memory and torch.cuda.is_available(),
            "persistent_workers": config.persistent_workers and workers > 0}


def training_loader(dataset: Dataset, batch_size: int, seed: int, config: DataConfig | None = None) -> DataLoader:
    """All epochs' batches (``loader.set_epoch(e)`` picks the order), with workers and seeded augmentation."""
    config = config or DataConfig()
    return DataLoader(SeededSamples(dataset, seed), batch_size=batch_size, sampler=EpochOrder(len(dataset), seed),
                      generator=torch.Generator().manual_seed(seed), **_loader_options(config, dataset))


def dataset_labels(dataset: Dataset) -> list[int]:
    """The label of every example, read without decoding images where the dataset allows it."""
    if isinstance(dataset, Subset):
        labels = dataset_labels(dataset.dataset)
        return [labels[i] for i in dataset.indices]
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].tolist()
    if isinstance(dataset, CIFAR10Batches):
        return dataset.labels.tolist()
    if isinstance(dataset, CheckedImages) and hasattr(dataset.images.reader, "samples"):
        return [int(dataset.images.reader.samples[i][1]) for i in dataset.indices]
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == len(dataset):
        return [int(t) for t in targets]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def balanced_subset(dataset: Dataset, count: int | None, seed: int = 0) -> Dataset:
    """``count`` examples spread evenly over the classes (round robin over the classes, each class's examples in
    a seeded random order; a class that runs out leaves its turn to the others), in dataset order. The same
    dataset, count and seed give the same subset, whatever the model. All of it when ``count`` is None or not
    smaller than the dataset."""
    if count is None or count >= len(dataset):
        return dataset
    generator = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(dataset_labels(dataset)):
        by_class.setdefault(label, []).append(index)
    queues = [[members[i] for i in torch.randperm(len(members), generator=generator)]
              for _, members in sorted(by_class.items())]
    chosen: list[int] = []
    while len(chosen) < count:
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return Subset(dataset, sorted(chosen))


class EvalBatches:
    """A fixed evaluation set cut into fixed batches, of which this process evaluates every ``num_processes``-th
    (launched with ``accelerate launch``; one process evaluates all). Every batch is the same batch whatever the
    number of processes, so per-batch results are too, and :meth:`total` and :meth:`concat` put the processes'
    shares back together: a sharded evaluation equals a single-process one."""

    def __init__(self, dataset: Dataset, batch_size: int, config: DataConfig | None = None) -> None:
        from accelerate import PartialState

        # cpu=True: without a GPU, PartialState() alone would not see a `torchrun`/`accelerate launch --cpu` group
        self.dataset, self.state = dataset, PartialState(cpu=not torch.cuda.is_available())
        starts = range(0, len(dataset), batch_size)
        batches = [list(range(start, min(start + batch_size, len(dataset)))) for start in starts]
        self.indices = list(range(self.state.process_index, len(batches), self.state.num_processes))
        self.loader = DataLoader(dataset, batch_sampler=[batches[i] for i in self.indices],
                                 **_loader_options(config or DataConfig(), dataset))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[tuple[int, tuple[torch.Tensor, torch.Tensor]]]:
        """``(batch index, (images, labels))`` of this process's batches."""
        return zip(self.indices, self.loader)

    def gather(self, items: list) -> list:
        """Every process's ``items``, concatenated (this process's alone when it is the only one)."""
        if self.state.num_processes == 1:
            return items
        from accelerate.utils import gather_object

        return gather_object(items)

    def total(self, value: float) -> float:
        """The sum over processes of ``value``."""
        return sum(self.gather([value]))

    def concat(self, per_batch: Sequence[tuple[int, torch.Tensor]]) -> torch.Tensor:
        """The (batch index, tensor) pairs of every process, concatenated in batch order (tensors on the CPU)."""
        pairs = self.gather([(i, t.cpu()) for i, t in per_batch])
        return torch.cat([t for _, t in sorted(pairs, key=lambda pair: pair[0])])
