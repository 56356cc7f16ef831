"""Data: ImageNet-layout folders through timm, CIFAR-10 through torchvision, and clear errors for bad data dirs."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dd_hub.cli import main
from dd_hub.data.datasets import CIFAR10_CLASSES, create_dataset, get_spec
from dd_hub.errors import DDHubError

FAST_EVAL = ["--set", "evaluation.deepfool_steps=3", "--set", "evaluation.minimal_norm_steps=10", "--set", "evaluation.pgd_steps=0", "--set",
             "evaluation.sanity=false", "--set", "evaluation.fgs_eps=[0.01]", "--set", "evaluation.autoattack=[]", "--quiet"]


def make_imagenet_folder(root, classes=("n01440764", "n01443537", "n01484850"), per_class=2, size=48,
                         val_classes=None):
    rng = np.random.default_rng(0)
    for split, names in (("train", classes), ("val", val_classes or classes)):
        for name in names:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = (rng.random((size, size + 8, 3)) * 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{name}_{i}.JPEG")
    return root


def make_cifar10_dir(root, per_batch=10):
    """torchvision's on-disk CIFAR-10 (cifar-10-batches-py pickles), ``per_batch`` random images per file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": (rng.random((per_batch, 3072)) * 255).astype(np.uint8),
                 "labels": [int(i) % 10 for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR10_CLASSES}))
    return root


DATA_CONFIG = {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 0.875, "crop_mode": "center"}


def test_imagenet_folder_gives_unnormalized_images_at_the_models_size(tmp_path):
    root = make_imagenet_folder(tmp_path)
    spec = get_spec("imagenet", root)
    assert spec.label_names == ["n01440764", "n01443537", "n01484850"] and spec.num_classes == 3
    for split in ("train", "test"):
        dataset = create_dataset("imagenet", split, data_dir=root, data_config=DATA_CONFIG)
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
        assert len(dataset) == 6 and images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
        assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5  # [0, 1], not normalized
        assert sorted(dataset[i][1] for i in range(len(dataset))) == [0, 0, 1, 1, 2, 2]


def test_validation_labels_follow_the_training_classes(tmp_path):
    root = make_imagenet_folder(tmp_path, val_classes=("n01443537",))
    dataset = create_dataset("imagenet", "test", data_dir=root, data_config=DATA_CONFIG)
    assert [dataset[i][1] for i in range(len(dataset))] == [1, 1]  # not re-numbered from 0 on the val split


def test_cifar10_directory_in_torchvisions_format(tmp_path):
    root = make_cifar10_dir(tmp_path)
    train, test = create_dataset("cifar10", "train", data_dir=root), create_dataset("cifar10", "test", data_dir=root)
    assert (len(train), len(test)) == (50, 10)
    image, label = train[3]
    assert image.shape == (3, 32, 32) and 0.0 <= image.min() and image.max() <= 1.0 and label == 3


@pytest.mark.parametrize("breakage, message", [
    (lambda root: root / "missing", "does not exist; dataset 'imagenet' expects DIR/train/<class>/<image>"),
    (lambda root: (root / "flat").mkdir() or root / "flat", "no train/training folder in"),
    (lambda root: (root / "a" / "train").mkdir(parents=True) or root / "a", "has no class sub-folders"),
    (lambda root: [(root / "b" / s / "n1").mkdir(parents=True) for s in ("train", "val")] and root / "b",
     "cannot read train split"),
])
def test_malformed_imagenet_dir_names_the_expected_layout(tmp_path, breakage, message):
    with pytest.raises(DDHubError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_dataset("imagenet", "train", data_dir=breakage(tmp_path), data_config=DATA_CONFIG)


def test_missing_or_corrupt_cifar10_dir(tmp_path):
    with pytest.raises(DDHubError, match="cifar-10-batches-py"):
        create_dataset("cifar10", "train", data_dir=tmp_path)
    root = make_cifar10_dir(tmp_path / "corrupt")
    (root / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DDHubError, match="expected DIR/cifar-10-batches-py"):
        create_dataset("cifar10", "train", data_dir=root)


def test_cli_reports_a_bad_data_dir_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["harden", "resnet18", "--dataset", "imagenet", "--data-dir",
                                       str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]   # after the phase's start line
    assert last.startswith("error: data dir") and "DIR/train/<class>/<image>" in last
    assert "Traceback" not in result.output


def test_no_starting_weights_is_an_error_unless_asked(tmp_path):
    root = make_imagenet_folder(tmp_path / "data")
    result = CliRunner().invoke(main, ["harden", "resnet18", "--dataset", "imagenet", "--data-dir", str(root),
                                       "--set", "pretrained=false", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no starting weights for 'resnet18.tv_in1k'" in result.output


@pytest.mark.slow
def test_harden_resnet18_on_a_tiny_imagenet_folder(tmp_path):
    root = make_imagenet_folder(tmp_path / "data")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["harden", "resnet18", "--dataset", "imagenet", "--data-dir", str(root),
                                       "--out", str(out), "--set", "pretrained=false", "--allow-random-init",
                                       "--set", "harden.grad_accumulation=1", "--set", "harden.batch_size=3",
                                       "--input-size", "32", *FAST_EVAL])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 3
    assert config["label_names"] == ["n01440764", "n01443537", "n01484850"]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["phase"] == "harden" and log[-1]["epoch"] == 1 and "reg" in log[-1]
    assert (out / "model.safetensors").is_file() and (out / "checkpoints" / "latest").read_text() == "harden-e1-s0"


@pytest.mark.slow
def test_harden_convnet_on_a_cifar10_directory(tmp_path):
    root = make_cifar10_dir(tmp_path / "data", per_batch=4)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["harden", "convnet", "--dataset", "cifar10", "--data-dir", str(root),
                                       "--out", str(out), "--set", "reference.epochs=1", "--epochs", "1",
                                       *FAST_EVAL])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["architecture"] == "dd_convnet_cifar10" and metrics["recipe"]["defense"]["c"] == 25.0
    assert (out / "reference" / "model.safetensors").is_file()
