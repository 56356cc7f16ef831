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
