"""Any timm or torchvision classifier on an ImageNet-layout folder, hardened by two processes under
``accelerate launch --cpu``, offline, with data-loader workers: killed with SIGKILL once its first checkpoint exists
and resumed, it ends with the same weights bit for bit as the uninterrupted run; the export loads in plain timm in
a process that never imports dd_hub.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from helpers import free_port
from test_data import make_imagenet_folder

pytestmark = pytest.mark.slow
CLASSES = ("n01440764", "n01443537", "n01484850", "n01491361")
FAST = ["--set", "data.workers=1", "--set", "evaluation.max_examples=20", "--set", "harden.batch_size=4",
        "--set", "evaluation.deepfool_steps=3", "--set", "evaluation.minimal_norm_steps=3", "--set", "evaluation.pgd_steps=0",
        "--set", "evaluation.sanity=false",
        "--set", "evaluation.autoattack=[]",
        "--set", "evaluation.fgs_eps=[0.01]", "--checkpoint-every", "1", "--quiet"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    make_imagenet_folder(root / "data", classes=CLASSES, per_class=4, size=40)
    for cls in CLASSES:  # 5 validation images per class: a class-balanced subset of 20 has all of them
        shutil.rmtree(root / "data" / "val" / cls)
    make_imagenet_folder(root / "val5", classes=CLASSES, per_class=5, size=40)
    shutil.copytree(root / "val5" / "train", root / "data" / "val", dirs_exist_ok=True)
    return root / "data"


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _launch(model: str, data: Path, out: Path, *extra: str, epochs: int = 2) -> subprocess.Popen:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
               "--main_process_port", str(free_port()), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dd_hub",
               "harden", model, "--dataset", "imagenet", "--data-dir", str(data), "--allow-random-init",
               "--epochs", str(epochs), "--out", str(out), *FAST, *extra]
    return subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    return output


def _loads_in_plain_timm(out: Path) -> None:
    code = ("import sys, timm, torch; m = timm.create_model(sys.argv[1], pretrained=True).eval(); "
            "size = m.pretrained_cfg['input_size']; y = m(torch.rand(1, *size)); "
            "assert 'dd_hub' not in sys.modules and y.shape == (1, 4), y.shape")
    done = subprocess.run([sys.executable, "-c", code, f"local-dir:{out}"], env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("model", ["test_resnet"])  # checkpointing is the same code for every architecture
def test_killed_two_process_run_resumes_to_the_same_weights(folder, tmp_path, model):
    whole = tmp_path / "whole"
    _finish(_launch(model, folder, whole))
    metrics = json.loads((whole / "metrics.json").read_text())
    assert metrics["hardened"]["n_examples"] == 20 and metrics["reference"]["n_examples"] == 20
    _loads_in_plain_timm(whole)

    killed = tmp_path / "killed"
    process = _launch(model, folder, killed)
    deadline = time.time() + 600
    while not (killed / "checkpoints" / "latest").is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists()
    _finish(_launch(model, folder, killed, "--resume"))
    expected, resumed = load_file(str(whole / "model.safetensors")), load_file(str(killed / "model.safetensors"))
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert expected[key].equal(resumed[key]), f"{key} differs after kill -9 and --resume"


@pytest.mark.parametrize("model, extra", [("test_vit", []), ("test_convnext", []),
                                          ("tv:resnet18", ["--input-size", "32"])])
def test_other_architectures_harden_under_two_processes(folder, tmp_path, model, extra):
    out = tmp_path / "out"
    _finish(_launch(model, folder, out, *extra, epochs=1))
    config = json.loads((out / "config.json").read_text())
    assert json.loads((out / "metrics.json").read_text())["hardened"]["n_examples"] == 20
    if model.startswith("tv:"):  # resnet18 has a timm twin: exported as timm's resnet18 with torchvision's preprocessing
        assert config["architecture"] == "resnet18" and config["pretrained_cfg"]["crop_pct"] == 0.875
    else:
        _loads_in_plain_timm(out)
