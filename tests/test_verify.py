"""Claims verified before they rank: `dd-hub verify` against the Hub double, end to end.

alice publishes a truthful model and a lying one (the same weights, a card claiming 100% under AutoAttack); before
anyone verifies them both are self-reported (the lie also flagged: robust above clean); bob re-measures both with
`dd-hub verify --publish`, which opens a pull request with his record on each repo; then a board that trusts bob
shows the truthful figures verified by bob and the lying ones disputed, in `dd-hub list --json` and on the site; a
board that does not trust him shows them re-measured. A record alice opens on her own repo does not count. A local
folder is verified the same way, its record beside it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dd_hub.hub.card import render_card
from dd_hub.hub.collection import load_hub_cards
from dd_hub.hub.site import build_site
from dd_hub.hub.verification import RECORD_NAME

from helpers import run_cli
from hub_server import FakeHub, Repo, point_client_at

pytestmark = pytest.mark.slow
ALICE, BOB = "hf_test_alice_secret", "hf_test_bob_secret"
TINY = ["--set", "reference.epochs=1", "--epochs", "1", "--set", "max_train_examples=200",
        "--set", "evaluation.max_examples=100", "--set", "evaluation.deepfool_steps=5", "--set", "evaluation.minimal_norm_steps=10",
        "--set", "evaluation.pgd_steps=3", "--set", "evaluation.sanity_max_examples=20",
        "--set", "evaluation.autoattack_max_examples=100", "--quiet"]


@pytest.fixture(scope="module")
def hardened(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("verify") / "mlp"
    result = run_cli("harden", "mlp", "--dataset", "mnist-5k", "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def hub(tmp_path, monkeypatch):
    server = FakeHub(tokens={ALICE: "alice", BOB: "bob"}).start()
    point_client_at(server, tmp_path / "hf_home", monkeypatch, ALICE)
    yield server
    server.stop()


def publish_lie(hub: FakeHub, hardened: Path, repo_id: str) -> None:
    """What a hostile publisher does: the honest weights and metrics.json, a card that claims 100% robustness."""
    metrics = json.loads((hardened / "metrics.json").read_text())
    for figure in metrics["hardened"]["autoattack"].values():
        figure["accuracy"] = 1.0
    hub.repos[repo_id] = Repo(owner=repo_id.split("/")[0], private=False)
    files = {name: (hardened / name).read_bytes() for name in ("config.json", "model.safetensors", "metrics.json")}
    files["README.md"] = render_card(metrics, repo_id=repo_id).encode()
    hub.commit(repo_id, "main", files, "upload")


def board_rows(*args: str) -> dict[str, dict]:
    result = run_cli("list", "--json", *args)
    assert result.exit_code == 0, result.output
    return {f"{row['model']} {board['board']}": row for board in json.loads(result.stdout) for row in board["rows"]}


def test_verify_round_trip_on_the_hub(hub, hardened, tmp_path, monkeypatch):
    trusted = tmp_path / "trusted.txt"
    trusted.write_text("# accounts this board trusts\nbob\n")
    assert run_cli("publish", str(hardened), "--repo-id", "alice/truthful").exit_code == 0
    publish_lie(hub, hardened, "alice/liar")

    before = board_rows()
    assert {row["status"] for row in before.values()} == {"self-reported"}
    assert all(any("above the clean accuracy" in flag for flag in row["flags"])
               for key, row in before.items() if key.startswith("alice/liar"))

    own = run_cli("verify", "alice/truthful", "--publish", "--quiet")   # alice verifying herself
    assert own.exit_code == 0, own.output
    assert {row["status"] for row in board_rows().values()} == {"self-reported"}

    monkeypatch.setenv("HF_TOKEN", BOB)
    truthful = run_cli("verify", "alice/truthful", "--publish", "--quiet")
    assert truthful.exit_code == 0, truthful.output
    assert "every figure agrees" in truthful.output and "Pull request:" in truthful.output
    lie = run_cli("verify", "alice/liar", "--publish", "--quiet")
    assert lie.exit_code == 0, lie.output
    assert "DISAGREES" in lie.output and "some figures DISAGREE" in lie.output
    assert [p["author"] for p in hub.repos["alice/truthful"].pulls] == ["alice", "bob"]
    record = json.loads(hub.files("alice/liar", "refs/pr/1")[RECORD_NAME])
    assert record["verified_by"] == "bob" and record["revision"] == hub.repos["alice/liar"].branches["main"]
    assert BOB not in json.dumps(record) and ALICE not in json.dumps(record)

    untrusted = board_rows()
    assert {row["status"] for row in untrusted.values()} == {"re-measured"}
    assert all("not on the trusted list" in row["status_text"] for row in untrusted.values())
    after = board_rows("--trusted-verifiers", str(trusted))
    assert all(row["also_named"] == ["alice/liar"] for row in after.values())    # bob measured one weights
    for key, row in after.items():
        if key.startswith("alice/truthful"):
            assert row["status"] == "verified" and row["verified_by"] == "bob", row
        else:
            assert row["status"] == "disputed" and row["verified_by"] == "bob", row

    cards, notices = load_hub_cards(trusted=frozenset({"bob"}))
    site = build_site(cards, tmp_path / "site", notices=notices)
    rows = "".join(p.read_text() for p in (site.index.parent / "data").glob("board-*.js"))   # the boards' rows
    assert '"verified"' in rows and "by bob" in rows and "alice/liar" in rows   # the same weights, one row
    assert '"self-reported"' not in rows and '"disputed"' not in rows         # one row per weights
    index = site.index.read_text() + rows
    liar = (tmp_path / "site" / "models" / "alice--liar.html").read_text()
    assert "status-disputed" in liar          # its AutoAttack figures (its clean accuracy is true)
    assert "ALICE" not in index and ALICE not in index


def test_a_re_published_model_is_no_longer_verified_by_an_old_record(hub, hardened, monkeypatch):
    assert run_cli("publish", str(hardened), "--repo-id", "alice/truthful").exit_code == 0
    monkeypatch.setenv("HF_TOKEN", BOB)
    assert run_cli("verify", "alice/truthful", "--publish", "--quiet").exit_code == 0
    monkeypatch.setenv("HF_TOKEN", ALICE)
    assert run_cli("publish", str(hardened), "--repo-id", "alice/truthful").exit_code == 0  # a new commit
    trusted = Path(os.environ["HF_HOME"]).parent / "trusted.txt"
    trusted.write_text("bob\n")
    rows = board_rows("--trusted-verifiers", str(trusted))
    assert {row["status"] for row in rows.values()} == {"re-measured"}
    assert all("older commit" in row["status_text"] for row in rows.values())


def test_verify_a_local_folder_writes_its_record_beside_the_card(hardened, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no_login"))
    record = tmp_path / "record.json"
    result = run_cli("verify", str(hardened), "--out", str(record), "--max-examples", "100", "--quiet")
    assert result.exit_code == 0, result.output
    data = json.loads(record.read_text())
    assert data["verified_by"] == "local" and data["repo_id"] is None and data["settings"]["max_examples"] == 100
    assert all(entry["n_examples"] == 100 for entry in data["figures"].values())
    assert "agrees" in result.output and "DISAGREES" not in result.output
    assert os.path.getsize(record) < 100_000
