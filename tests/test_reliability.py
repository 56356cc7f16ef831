"""Never lose or mix a user's work: every case of the reliability review, rerun.

Runs use the MLP recipe on a few MNIST-5k images with a minimal evaluation, so each takes seconds.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import dd_hub
from dd_hub.storage import run_dir
from dd_hub.errors import DDHubError

from test_data import make_cifar10_dir, make_imagenet_folder
from helpers import assert_one_line_error, run_cli

TINY = ["--set", "reference.epochs=1", "--epochs", "1", "--set", "max_train_examples=40",
        "--set", "evaluation.max_examples=20", "--set", "evaluation.deepfool_steps=3", "--set", "evaluation.minimal_norm_steps=10", "--set",
        "evaluation.pgd_steps=0", "--set", "evaluation.sanity=false", "--set", "evaluation.fgs_eps=[0.05]",
        "--set", "evaluation.autoattack=[]",
        "--quiet"]


def harden(out: Path, *extra: str):
    return run_cli("harden", "mlp", "--dataset", "mnist-5k", "--out", str(out), *TINY, *extra)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "mlp"
    result = harden(out)
    assert result.exit_code == 0, result.output
    return out


def _copy(folder: Path, target: Path) -> Path:
    """A copy of ``folder`` (every file, as the finished run left it) at ``target``."""
    shutil.copytree(folder, target)
    return target


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# 1. nothing is deleted before the inputs are checked; 4. no silent reuse of a folder -------------------------------
def test_a_failing_run_deletes_nothing_and_a_finished_folder_is_not_overwritten(finished):
    before = _snapshot(finished)
    assert_one_line_error(run_cli("harden", "resnet18", "--dataset", "imagenet", "--out", str(finished), "--data-dir",
                       str(finished / "nowhere"), "--allow-random-init", "--overwrite"), "does not exist")
    assert_one_line_error(harden(finished), "holds a previous run")
    for command in ("reproduce", "sweep"):  # another command's outputs, but harden's checkpoints are still a run's
        assert_one_line_error(run_cli(command, "mlp", "--dataset", "mnist-5k", "--out", str(finished)),
                              "holds a previous run", "checkpoints")
    assert _snapshot(finished) == before


def test_python_harden_refuses_a_previous_run_before_any_work(finished, monkeypatch):
    """``dd_hub.harden`` keeps the command line's folder rules, checked before the data or the model is touched, with
    the Python spelling of the way out."""
    from dd_hub.recipes import find_recipe
    from dd_hub.workflows import harden as workflow

    monkeypatch.setattr(workflow, "prepare_start", lambda *a, **k: pytest.fail("started work on a used folder"))
    with pytest.raises(DDHubError, match="holds a previous run.*overwrite=True"):
        dd_hub.harden(find_recipe("mlp", "mnist-5k", {}), finished)


def test_overwrite_replaces_and_resume_with_other_settings_is_refused(tmp_path, finished):
    out = _copy(finished, tmp_path / "copy")
    assert_one_line_error(harden(out, "--resume", "--lr", "0.5"), "harden.lr changed")
    assert_one_line_error(harden(out, "--resume", "--set", "harden.optimizer=adam"), "harden.optimizer")
    assert_one_line_error(harden(out, "--resume", "--seed", "7"), "seed")
    assert_one_line_error(harden(out, "--resume", "--epochs", "0"), "at least that many epochs")
    assert harden(out, "--resume", "--epochs", "2").exit_code == 0  # more epochs: allowed, and recorded
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_with_changes"] == ["harden.epochs"] and len(metrics["training"]) == 2
    result = harden(out, "--overwrite", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["seed"] == 7


def test_a_second_run_on_a_locked_folder_stops_at_once_and_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / run_dir.LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        assert_one_line_error(harden(out), f"in use by another dd-hub run (pid {sleeper.pid}")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert harden(out).exit_code == 0  # the holder is gone: its lock is stale
    assert not (out / run_dir.LOCK_NAME).exists()



def test_two_runs_taking_over_one_stale_lock_never_both_hold_the_folder(tmp_path):
    lock = tmp_path / run_dir.LOCK_NAME
    stale = {"pid": 2**22 + 1, "host": socket.gethostname()}
    # the second run read the stale holder, but the first has already replaced it with its own, live lock
    live = {"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}
    lock.write_text(json.dumps(live))
    with pytest.raises(DDHubError, match=f"in use by another dd-hub run \\(pid {os.getpid()}"):
        with run_dir.locked(tmp_path):   # finds the live lock: refuses
            pass
    run_dir._remove_stale(lock, stale)   # the second run's late takeover: the live lock survives it
    assert json.loads(lock.read_text()) == live
    lock.write_text(json.dumps(stale))
    run_dir._remove_stale(lock, stale)
    assert not lock.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []   # nothing moved aside is left behind

# 3. a run killed while writing its final files leaves the previous folder or the new one, never a mix ----------
@pytest.mark.parametrize("stage", ["before_marker", "after_marker"])
def test_an_interrupted_commit_leaves_a_whole_folder(tmp_path, finished, monkeypatch, stage):
    out = _copy(finished, tmp_path / "out")
    before = _snapshot(out)

    class Killed(Exception):
        pass

    def die(*_):
        raise Killed

    metrics = json.loads((out / "metrics.json").read_text())
    metrics["seed"] = 99
    model = dd_hub.load(out)
    from dd_hub.workflows.harden import write_outputs

    if stage == "before_marker":  # dies writing the marker: nothing of the new run is in place
        monkeypatch.setattr(run_dir, "write_text_atomic", die)
    else:  # dies right after the marker, before any file moved
        monkeypatch.setattr(run_dir, "recover", die)
    with pytest.raises(Killed):
        write_outputs(out, model, metrics)
    monkeypatch.undo()
    if stage == "before_marker":
        assert {k: v for k, v in _snapshot(out).items() if not k.startswith(".staging")} == before
        dd_hub.load(out)  # still the previous complete folder
    else:
        with pytest.raises(DDHubError, match="interrupted while its files were being replaced"):
            dd_hub.load(out)
        assert_one_line_error(run_cli("publish", str(out), "--dry-run"), "interrupted")
        run_dir.recover(out)  # what the next run does first
        assert json.loads((out / "metrics.json").read_text())["seed"] == 99
        dd_hub.load(out)


def test_weights_beside_metrics_of_another_run_and_edited_metrics_are_refused(tmp_path, finished):
    out = _copy(finished, tmp_path / "mixed")
    state = load_file(str(out / "model.safetensors"))
    save_file({k: v + 0.01 if v.is_floating_point() else v for k, v in state.items()}, str(out / "model.safetensors"))
    assert_one_line_error(run_cli("publish", str(out), "--dry-run", "--repo-id", "me/x"), "not the file metrics.json was")
    save_file(state, str(out / "model.safetensors"))
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["hardened"]["rho2"] = 0.9
    (out / "metrics.json").write_text(json.dumps(metrics))
    assert_one_line_error(run_cli("publish", str(out), "--dry-run", "--repo-id", "me/x"), "changed after the run")


# 5. non-finite weights are refused everywhere ------------------------------------------------------------------
def test_nan_weights_are_refused_at_load_eval_and_harden(tmp_path, finished):
    nan_file = tmp_path / "nan.safetensors"
    state = load_file(str(finished / "model.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) for k, v in state.items()}, str(nan_file))
    assert_one_line_error(run_cli("harden", "mlp", "--dataset", "mnist-5k", "--checkpoint", str(nan_file), "--epochs", "0",
                       "--out", str(tmp_path / "o"), *TINY[4:]), "non-finite weights")
    plain = tmp_path / "plain"  # a plain timm folder (no metrics.json) with NaN weights
    plain.mkdir()
    (plain / "config.json").write_bytes((finished / "config.json").read_bytes())
    save_file({k: torch.full_like(v, float("nan")) for k, v in state.items()}, str(plain / "model.safetensors"))
    assert_one_line_error(run_cli("eval", str(plain), "--dataset", "mnist-5k"), "non-finite weights")
    from dd_hub.storage.atomic_io import write_json_atomic

    with pytest.raises(DDHubError, match="non-finite"):  # metrics.json is strict JSON: no bare NaN
        write_json_atomic(tmp_path / "m.json", {"rho2": float("nan")})


# 6. --checkpoint with a pretrained recipe never downloads ---------------------------------------------------------
def test_checkpoint_wins_over_pretrained_weights_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = dd_hub.create_model("test_resnet", num_classes=3)
    save_file(dd_hub.unwrap(source).state_dict(), str(tmp_path / "w.safetensors"))
    model = dd_hub.create_model("test_resnet", num_classes=3, pretrained=True,
                                checkpoint_path=tmp_path / "w.safetensors")
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(model.eval()(x), source.eval()(x))


# 7. values that make no sense are refused before any work, in one line ----------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--set", "defense.c=-1"], "'defense.c' must be > 0"),
    (["--set", "defense.steps=0"], "'defense.steps' must be >= 1"),
    (["--set", "defense.candidates=1"], "'defense.candidates' must be >= 2"),
    (["--set", "evaluation.deepfool_steps=0"], "'evaluation.deepfool_steps' must be >= 1"),
    (["--set", "evaluation.eps_ref_tolerance=0"], "'evaluation.eps_ref_tolerance' must be > 0"),
    (["--set", "evaluation.batch_size=0"], "'evaluation.batch_size' must be >= 1"),
    (["--set", "max_train_examples=0"], "'max_train_examples' must be >= 1"),
    (["--set", "harden.lr=-0.1"], "'harden.lr' must be > 0"),
    (["--set", "harden.momentum=-1"], "'harden.momentum' must be >= 0"),
    (["--set", "harden.lr=[1"], "cannot read the value of --set"),
    (["--set", "nokey"], "must look like KEY=VALUE"),
    (["--seed", "-1"], "--seed"),
    (["--input-size", "0"], "--input-size"),
    (["--lr", "-1"], "--lr"),
    (["--checkpoint-every", "-2"], "--checkpoint-every"),
])
def test_bad_values_get_one_line_errors(tmp_path, args, message):
    out = tmp_path / "never"
    assert_one_line_error(run_cli("harden", "mlp", "--dataset", "mnist-5k", "--out", str(out), *args), message)
    assert not out.exists()


@pytest.mark.parametrize("config, message", [
    ([1, 2], "must hold a JSON object"),
    ({"architecture": "dd_mlp_mnist", "num_classes": "abc"}, "num_classes must be an integer from 1"),
])
def test_malformed_config_json_is_one_line(tmp_path, finished, config, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((finished / "model.safetensors").read_bytes())
    assert_one_line_error(run_cli("eval", str(folder), "--dataset", "mnist-5k"), message)


def test_torchvision_prefix_and_mistyped_paths(tmp_path, monkeypatch):
    assert_one_line_error(run_cli("harden", "tv:resnet1", "--dataset", "mnist-5k", "--out", str(tmp_path / "o")),
                   "unknown torchvision model 'resnet1'")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(DDHubError, match="there is a local folder runs/; for the Hub model of that name write hf-hub:"):
        dd_hub.load("runs/lenett")  # a typo of a local folder is not looked up on the Hub


# 8. publish: the dry run checks what the real one checks; a silent endpoint times out ------------------------------
def test_publish_dry_run_refuses_what_the_real_publish_would_crash_on(tmp_path, finished):
    out = tmp_path / "pub"
    out.mkdir()
    for name in ("config.json", "model.safetensors"):
        (out / name).write_bytes((finished / name).read_bytes())
    assert_one_line_error(run_cli("publish", str(out), "--dry-run", "--repo-id", "me/x"), "has no metrics.json")
    (out / "metrics.json").write_text("")
    assert_one_line_error(run_cli("publish", str(out), "--dry-run", "--repo-id", "me/x"), "not valid JSON")
    (out / "metrics.json").write_text("{}")
    assert_one_line_error(run_cli("publish", str(out), "--dry-run"), "is not a dd-hub metrics file")


def test_a_hub_that_never_answers_times_out(tmp_path, monkeypatch, finished):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():  # accepts connections and never answers
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    from huggingface_hub import constants

    from dd_hub.hub import client as hub_client
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
    monkeypatch.setattr(hub_client, "HUB_TIMEOUT_S", 1.0)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        result = run_cli("publish", str(finished), "--repo-id", "me/x")
    finally:
        stop.set()
        thread.join()
        server.close()
    assert_one_line_error(result, "no complete answer from the Hub within 1 s")
    assert "hf_test_token_not_real" not in result.output


# 9. data: unreadable images, class mismatches, hostile pickles ------------------------------------------------------
def test_unreadable_images_stop_the_run_with_their_path_or_are_skipped_and_counted(tmp_path):
    from dd_hub.data.datasets import create_dataset

    root = make_imagenet_folder(tmp_path / "data")
    broken = next((root / "val" / "n01443537").iterdir())
    broken.write_bytes(b"not an image")
    config = {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 1.0}
    test = create_dataset("imagenet", "test", data_dir=root, data_config=config)
    with pytest.raises(DDHubError, match=f"cannot read image {broken}"):
        [test[i] for i in range(len(test))]
    skipping = create_dataset("imagenet", "test", data_dir=root, data_config=config, skip_corrupt=True)
    assert skipping.skipped == [str(broken)] and len(skipping) == len(test) - 1
    assert all(skipping[i][0].shape == (3, 32, 32) for i in range(len(skipping)))


def test_class_mismatches_between_splits_and_empty_classes_are_errors(tmp_path):
    from dd_hub.data.datasets import create_dataset

    root = make_imagenet_folder(tmp_path / "data")
    (root / "val" / "n09999999").mkdir()
    with pytest.raises(DDHubError, match="class folders that the training split lacks"):
        create_dataset("imagenet", "test", data_dir=root)
    root = make_imagenet_folder(tmp_path / "data2")
    (root / "train" / "n00000000").mkdir()
    with pytest.raises(DDHubError, match="has no images"):
        create_dataset("imagenet", "train", data_dir=root)


def test_a_hostile_cifar_pickle_is_refused_not_run(tmp_path):
    from dd_hub.data.datasets import create_dataset

    root = make_cifar10_dir(tmp_path)
    marker = tmp_path / "pwned"

    class Hostile:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (root / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({"data": Hostile(), "labels": []}))
    with pytest.raises(DDHubError, match="refusing to load"):
        create_dataset("cifar10", "train", data_dir=root)
    assert not marker.exists()
    assert np.asarray(create_dataset("cifar10", "test", data_dir=root)[0][0]).shape == (3, 32, 32)


# 10. provenance tells the truth -----------------------------------------------------------------------------------
def test_the_card_names_the_checkpoint_a_run_started_from(tmp_path, finished):
    out = tmp_path / "from-file"
    result = run_cli("harden", "mlp", "--dataset", "mnist-5k", "--checkpoint", str(finished / "model.safetensors"),
                 "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    assert "the weights of `model.safetensors` (sha256" in card and "reference/" not in card
    assert not (out / "reference").exists()
