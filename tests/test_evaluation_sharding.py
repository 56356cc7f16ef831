"""The evaluation subset is class-balanced and the same for every run and model, and an evaluation shared by two
processes (torchrun, gloo, CPU) gives exactly the report of one process: rho_2, FGS and epsilon_ref, PGD, the
gradient-masking checks and AutoAttack.

The ``__main__`` side is the worker: each rank evaluates a fixed random LeNet on a class-balanced subset of the
mnist-5k test split and rank 0 writes the report.
"""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dd_hub.data.datasets import create_dataset
from dd_hub.data.loaders import balanced_subset, dataset_labels

from test_data import make_imagenet_folder
from helpers import free_port


def _config():
    from dd_hub.evaluation.report import EvalConfig

    return EvalConfig(max_examples=40, batch_size=12, deepfool_steps=4, minimal_norm_steps=10, fgs_eps=[0.1], pgd_steps=3,
                      sanity=True, sanity_max_examples=20, autoattack=["mnist-linf"], autoattack_max_examples=16,
                      autoattack_version="custom")


def _model():
    import dd_hub

    torch.manual_seed(0)
    return dd_hub.create_model("dd_lenet_mnist").eval()


def _report() -> dict:
    """The report's figures (its stage timings aside: they are the one thing that differs run to run)."""
    from dd_hub.evaluation.report import evaluate

    report = evaluate(_model(), create_dataset("mnist-5k", "test"), _config(), progress=False).to_dict()
    return {key: value for key, value in report.items() if key != "seconds"}


def test_the_subset_is_class_balanced_seeded_and_independent_of_the_model(tmp_path):
    test = create_dataset("mnist-5k", "test")
    subset = balanced_subset(test, 50, seed=0)
    assert collections.Counter(dataset_labels(subset)) == {digit: 5 for digit in range(10)}
    assert subset.indices == balanced_subset(test, 50, seed=0).indices != balanced_subset(test, 50, seed=1).indices
    assert balanced_subset(test, None) is test and balanced_subset(test, 5000) is test
    # timm lists a folder class by class: the first N images would be the first classes only
    root = make_imagenet_folder(tmp_path / "data", classes=("a", "b", "c", "d"), per_class=3, size=16)
    folder = create_dataset("imagenet", "test", data_dir=root)
    assert sorted(dataset_labels(balanced_subset(folder, 8))) == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), __file__, str(tmp_path)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    shared = [json.loads((tmp_path / f"report-{rank}.json").read_text()) for rank in range(2)]
    torch.set_num_threads(1)
    single = json.loads(json.dumps(_report()))
    assert shared[0] == shared[1] == single
    assert single["n_examples"] == 40 and single["autoattack"]["mnist-linf"]["n_examples"] == 16


if __name__ == "__main__":
    from accelerate import PartialState

    state = PartialState(cpu=True)
    report = _report()
    (Path(sys.argv[1]) / f"report-{state.process_index}.json").write_text(json.dumps(report))
