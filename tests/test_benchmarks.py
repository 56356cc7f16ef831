"""The benchmark scripts' own behaviour (their figures are printed by running them, never asserted here)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_gpu_check_stops_at_once_with_one_line_without_cuda(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--out", str(tmp_path / "report")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: gpu_check needs a CUDA GPU")
    assert not (tmp_path / "report").exists()


def test_adv_lib_deepfool_loads_without_its_logger_dependency():
    pytest.importorskip("adv_lib", reason="adv-lib is a benchmark peer: pip install --no-deps adv-lib")
    import bench

    df = bench.adv_lib_df()
    assert df is not None and df.__name__ == "df"


def test_compare_folders_finds_one_changed_weight_and_one_changed_figure(tmp_path):
    import json

    import torch
    from safetensors.torch import save_file

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        save_file({"w": torch.ones(3)}, str(tmp_path / name / "model.safetensors"))
        (tmp_path / name / "metrics.json").write_text(json.dumps(
            {"hardened": {"clean_accuracy": 0.9, "seconds": {"fgs": 1.0 if name == "a" else 2.0}}}))

    def compare() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(BENCHMARKS / "compare_folders.py"), str(tmp_path / "a"),
                               str(tmp_path / "b")], capture_output=True, text=True)

    same = compare()  # the seconds each part took are no figure
    assert same.returncode == 0 and "0 differ (torch.equal" in same.stdout and "1 numbers in both, 0 differ" in same.stdout
    save_file({"w": torch.tensor([1.0, 1.0, 1.0 + 1e-7])}, str(tmp_path / "b" / "model.safetensors"))
    (tmp_path / "b" / "metrics.json").write_text(json.dumps({"hardened": {"clean_accuracy": 0.901}}))
    changed = compare()
    assert changed.returncode == 1 and "1 differ: w" in changed.stdout and "clean_accuracy: 0.9 vs 0.901" in changed.stdout
