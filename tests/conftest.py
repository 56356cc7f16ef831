"""Shared fixtures. Models are trained once per session on the embedded MNIST-5k data and kept small."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from accelerate.utils import set_seed

from dd_hub import create_model
from dd_hub.data.datasets import create_dataset
from dd_hub.training.loop import TrainConfig
from dd_hub.training.loop import train

# benchmarks/naive_unroll.py is the naive unrolling the gradient tests compare dd-hub's against
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.fixture(scope="session")
def mnist_train():
    return create_dataset("mnist-5k", "train")


@pytest.fixture(scope="session")
def mnist_test():
    return create_dataset("mnist-5k", "test")


@pytest.fixture(scope="session")
def trained_lenet(mnist_train):
    """A LeNet trained for 2 epochs on MNIST-5k (about 96% test accuracy), in eval mode."""
    set_seed(0)
    model = create_model("dd_lenet_mnist")
    train(model, mnist_train, TrainConfig(epochs=2, batch_size=64, lr=0.01, lr_milestones=[], freeze_bn=False),
          progress=False)
    return model.eval()
