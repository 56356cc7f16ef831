"""benchmarks/zoo.py's own behaviour: a network that cannot run is refused in one line before any work, one that
can runs every stage (its figures are written to docs/zoo.md by running the sweep, never asserted here)."""
from __future__ import annotations

import pytest

import zoo


def test_a_network_that_cannot_be_built_is_refused_in_one_line(tmp_path):
    record = zoo.check("tv:resnet1", str(tmp_path))
    assert record["status"] == "refused" and record["stage"] == "prepare" and "traceback" not in record
    assert record["reason"].startswith("unknown torchvision model 'resnet1'") and "\n" not in record["reason"]
    row = zoo._row({**record, "family": "torchvision"})
    assert row.count("\n") == 0 and "refused: unknown torchvision model" in row
    assert "0 of 1 ran end to end (0%), 1 refused up front, 0 failed" in zoo.summary([{**record, "family": "x"}])


@pytest.mark.slow
def test_a_small_network_runs_every_stage_and_its_export_loads_without_dd_hub():
    record = zoo.run_one("test_resnet", timeout=600)
    assert record["status"] == "ran", record
    assert set(record["seconds"]) == set(zoo.STAGES)
    assert record["plain_gap"] <= 1e-4 and record["load_gap"] <= 1e-4
    assert record["deep_defense_s"] > 0 and record["plain_s"] > 0
    assert "| ran |" in zoo._row({**record, "family": "test"})
