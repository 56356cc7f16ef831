"""Hub integration: timm-format export and loading, model cards, publish, list/show, model_cards index.

The Hub here is ``tests/hub_server.py``: a loopback HTTP server that is a test double of the Hugging Face Hub's API
(create, commit, download and listing routes), started on a free port per test and stopped after it. The real
huggingface_hub and timm client code talks to it through ``HF_ENDPOINT``: in this process by monkeypatching
``huggingface_hub.constants`` (the way huggingface_hub's own tests do, because the constants are read at import),
and in fresh processes through the environment.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from click.testing import CliRunner
from huggingface_hub import ModelCard, ModelCardData

import dd_hub
from dd_hub.hub.card import render_card, report_metrics
from dd_hub.hub.cards import parse_card
from dd_hub.cli import main
from dd_hub.data.datasets import get_spec
from dd_hub.errors import DDHubError
from dd_hub.evaluation.report import Report
from dd_hub.hub.boards import write_index
from dd_hub.hub.catalogue import add_card
from dd_hub.hub.loading import load
from dd_hub.models.directory import save_model
from dd_hub.workflows.harden import write_outputs
from dd_hub.hub.figures import render_curve
from dd_hub.names import CURVE_NAME
from dd_hub.storage.metrics import read_metrics
from dd_hub.hub.upload import publish
from dd_hub.recipes import find_recipe

from helpers import run_cli, run_python
from hub_server import FakeHub, Repo, point_client_at

ALICE, BOB = "hf_test_alice_secret", "hf_test_bob_secret"
REPO = "alice/dd_lenet_mnist-mnist-5k-deepdefense"


def card_values(data: ModelCardData) -> dict[str, float]:
    """The figures dd-hub's card reader (the leaderboard's and the site's) finds in a card with ``data``."""
    return parse_card(f"---\n{data.to_yaml()}\n---\n", name="m").values()


# --- fixtures --------------------------------------------------------------------------------------------------
@pytest.fixture
def hub():
    server = FakeHub(tokens={ALICE: "alice", BOB: "bob"}, orgs={"alice": ["dd-org"]}).start()
    yield server
    server.stop()


@pytest.fixture
def hub_env(hub, tmp_path, monkeypatch) -> dict[str, str]:
    """Point huggingface_hub at the test double, with an empty cache and alice's token; returns the env."""
    env = point_client_at(hub, tmp_path / "hf_home", monkeypatch, ALICE)
    return {**os.environ, **env}


def fake_report(clean: float, rho2: float, eps_ref: float | None, fgs_scale: float) -> dict:
    """A synthetic evaluation report (made-up figures: these tests check plumbing, not robustness)."""
    return Report(
        n_examples=200, clean_accuracy=clean, rho2=rho2, rho_space="centered",
        deepfool={"steps": 50, "candidates": 10, "overshoot": 0.02, "norm": "l2", "clip": False,
                  "source": "prediction", "success_rate": 1.0, "mean_iterations": 2.5},
        fgs={"0.05": 0.9 * fgs_scale, "0.1": 0.6 * fgs_scale, "0.2": 0.2 * fgs_scale},
        eps_ref=eps_ref, eps_ref_source="self",
        fgs_at_ref={"0.2": 0.85 * fgs_scale, "0.5": 0.7 * fgs_scale, "1": 0.5 * fgs_scale},
        pgd={"0.1": 0.4 * fgs_scale}, pgd_at_ref={"0.5": 0.6 * fgs_scale, "1": 0.3 * fgs_scale},
        pgd_settings={"norm": "linf", "steps": 20, "restarts": 1, "step_size": "2.5 * eps / steps",
                      "random_start": True},
    ).to_dict()


def fake_metrics(rho2: float = 0.2, clean: float = 0.97, architecture: str = "dd_lenet_mnist") -> dict:
    recipe = find_recipe("lenet", "mnist-5k", {})
    spec = get_spec("mnist-5k")
    return {
        "dd_hub_version": dd_hub.__version__, "seed": 1234,
        "model": {"architecture": architecture, "repo_name": f"{architecture}-mnist-5k-deepdefense",
                  "dataset": "mnist-5k", "dataset_hub_id": spec.hub_id, "base_model": None, "num_classes": 10,
                  "license": "apache-2.0", "method": "deep_defense"},
        "recipe": recipe.to_dict(),
        "hardened": fake_report(clean, rho2, 0.123, 1.0),
        "reference": fake_report(clean + 0.01, rho2 / 2, 0.123, 0.8),
        "training": [],
    }


def write_model_dir(directory: Path, metrics: dict, seed: int = 0) -> torch.nn.Module:
    """What `dd-hub harden` writes (weights, config, metrics, curve, card), for a random LeNet."""
    torch.manual_seed(seed)
    model = dd_hub.create_model("dd_lenet_mnist").eval()
    write_outputs(directory, model, metrics, label_names=get_spec("mnist-5k").label_names)
    return model


@pytest.fixture
def model_dir(tmp_path) -> tuple[Path, torch.nn.Module]:
    directory = tmp_path / "lenet"
    return directory, write_model_dir(directory, fake_metrics())


LOAD_WITH_TIMM = """
import sys, torch, timm
import dd_hub.models  # registers dd_lenet_mnist in timm's registry
model = timm.create_model(sys.argv[1], pretrained=True).eval()
x = torch.load(sys.argv[2])
torch.save(model(x), sys.argv[3])
"""


def probe(tmp_path: Path, model: torch.nn.Module) -> tuple[Path, torch.Tensor]:
    """An input batch saved for a subprocess and the bare network's logits on it."""
    x = torch.rand(4, 1, 28, 28)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        return tmp_path / "x.pt", dd_hub.unwrap(model)(x)


# --- export and load -------------------------------------------------------------------------------------------
def test_export_is_timm_format_and_loads_bit_identical(model_dir, tmp_path):
    directory, model = model_dir
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "metrics.json",
                                                           "model.safetensors", CURVE_NAME]
    config = json.loads((directory / "config.json").read_text())
    assert config["architecture"] == "dd_lenet_mnist" and config["num_classes"] == 10
    assert config["label_names"] == [str(i) for i in range(10)]
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [1, 28, 28] and cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 1.0
    assert cfg["mean"] == [0.1307] and cfg["std"] == [0.3081]
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        expected = model(x)
        via_timm = timm.create_model(f"local-dir:{directory}", pretrained=True).eval()
        assert torch.equal(via_timm((x - 0.1307) / 0.3081), dd_hub.unwrap(model)((x - 0.1307) / 0.3081))
        assert torch.equal(load(directory)(x), expected)
        assert torch.equal(load(f"local-dir:{directory}")(x), expected)


def test_torchvision_twin_exports_as_timm(tmp_path):
    tv_model = dd_hub.create_model("tv:resnet18", num_classes=10).eval()
    save_model(tv_model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "resnet18" and config["num_classes"] == 10
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = tv_model(x)
        timm_model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
        torch.testing.assert_close(timm_model((x - tv_model.mean) / tv_model.std), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(load(tmp_path)(x), expected, rtol=1e-5, atol=1e-5)


def test_export_of_a_resized_model_trained_from_scratch_claims_nothing_of_the_default_weights(tmp_path):
    model = dd_hub.create_model("resnet18", num_classes=10, in_chans=1, input_size=(1, 28, 28), mean=(0.13,),
                                std=(0.31,), channels=(8, 8, 8, 8), stem_width=8)
    save_model(model, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())["pretrained_cfg"]
    assert cfg["input_size"] == [1, 28, 28] and cfg["mean"] == [0.13]
    assert not {"test_input_size", "test_crop_pct", "tag", "origin_url", "paper_ids"} & set(cfg)
    timm_model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert timm.data.resolve_model_data_config(timm_model, use_test_size=True)["input_size"] == (1, 28, 28)


def test_torchvision_without_twin_gets_dd_hub_config(tmp_path):
    tv_model = dd_hub.create_model("tv:squeezenet1_1", num_classes=7).eval()
    save_model(tv_model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "tv:squeezenet1_1" and config["num_classes"] == 7
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load(tmp_path)(x), tv_model(x))
    with pytest.raises(RuntimeError, match="Unknown model"):  # timm refuses it instead of building random weights
        timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    card = render_card(fake_metrics(architecture="tv:squeezenet1_1"))
    assert "library_name: pytorch" in card and "- timm\n" not in card
    assert 'timm.create_model("hf-hub' not in card and "dd_hub.load(" in card


def test_loading_refuses_pickles_truncated_weights_and_unknown_architectures(model_dir, tmp_path):
    directory, model = model_dir
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_bytes((directory / "config.json").read_bytes())
    torch.save(dd_hub.unwrap(model).state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(DDHubError, match="pickle"):
        load(pickled)

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "config.json").write_bytes((directory / "config.json").read_bytes())
    data = (directory / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(DDHubError, match="truncated"):
        load(truncated)

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    config = json.loads((directory / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "architecture": "no_such_net"}))
    (unknown / "model.safetensors").write_bytes(data)
    with pytest.raises(DDHubError, match="unknown architecture 'no_such_net'"):
        load(unknown)
    result = CliRunner().invoke(main, ["show", str(tmp_path / "nowhere" / "x")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output


def test_loading_a_config_that_does_not_fit_the_weights_is_clear(model_dir, tmp_path):
    directory, _ = model_dir
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "architecture": "dd_mlp_mnist"}))
    with pytest.raises(DDHubError, match="config.json is not the file metrics.json was measured on"):
        load(directory)
    (directory / "metrics.json").unlink()  # a plain timm folder: timm's own strict load decides
    with pytest.raises(DDHubError, match="do not fit"):
        load(directory)


def test_loading_a_missing_relative_folder_says_there_is_no_such_folder(hub, hub_env, tmp_path, monkeypatch):
    """``runs/lenet`` reads as a folder and as a Hub id: with neither there, the error says both."""
    monkeypatch.chdir(tmp_path)
    hub.stop()
    with pytest.raises(DDHubError, match=r"no model directory runs/lenet here \(and as a Hub id: .*cannot reach"):
        load("runs/lenet")


# --- model card ------------------------------------------------------------------------------------------------
def test_card_front_matter_and_model_index_round_trip(model_dir):
    directory, _ = model_dir
    metrics = json.loads((directory / "metrics.json").read_text())
    card = ModelCard.load(directory / "README.md")
    data = card.data
    assert data.library_name == "timm" and data.pipeline_tag == "image-classification"
    assert set(data.tags) >= {"timm", "image-classification", "adversarial-robustness", "deep-defense", "dd-hub"}
    assert data.datasets == ["mnist"] and data.license == "apache-2.0"
    assert "base_model" in data.to_dict() or metrics["model"]["base_model"] is None
    assert card_values(data) == report_metrics(metrics["hardened"])
    by_type = {}
    for result in data.eval_results:
        by_type.setdefault(result.metric_type, []).append(result)
    rho = by_type["rho2"][0].metric_args
    assert (rho["steps"], rho["candidates"], rho["overshoot"], rho["norm"]) == (50, 10, 0.02, "l2")
    attacks = {}
    for result in by_type["robust_accuracy"]:
        args = result.metric_args
        attacks[args["attack"]] = attacks.get(args["attack"], 0) + 1
        assert args["norm"] == "linf" and args["n_examples"] == 200 and args["seed"] == 1234 and args["eps"] > 0
        assert args["attack"] == "fgs" or (args["steps"], args["restarts"]) == (20, 1)
    assert attacks == {"fgs": 6, "pgd": 3}
    text = card.text
    for section in ("## Robustness at standard threat models", "## DeepFool rho_2 and the paper's protocol",
                    "## How it was trained", "## Usage", "## Limitations", "arxiv.org/abs/1803.00404", "pip install",
                    "## Citation", f"]({CURVE_NAME})", "pretrained=True", "| reference | hardened |"):
        assert section in text


def test_card_states_gradient_clipping_and_how_often_it_clipped():
    metrics = fake_metrics()
    assert "gradient clipping" not in render_card(metrics)  # the paper's setting: no row
    metrics["recipe"]["harden"]["max_grad_norm"] = 1.0
    metrics["training"] = [{"epoch": 1, "clipped": 1.0}, {"epoch": 2, "clipped": 0.5}, {"epoch": 3, "clipped": "x"}]
    assert "| gradient clipping | global L2 norm at most 1.0; 75% of the steps clipped |" in render_card(metrics)
    metrics["training"] = "not a list"
    assert "| gradient clipping | global L2 norm at most 1.0 |" in render_card(metrics)


def test_card_and_curve_render_identically(tmp_path):
    metrics = fake_metrics()
    assert render_card(metrics, curve_file=CURVE_NAME) == render_card(json.loads(json.dumps(metrics)),
                                                                      curve_file=CURVE_NAME)
    render_curve(metrics, tmp_path / "a.png")
    render_curve(metrics, tmp_path / "b.png")
    first = (tmp_path / "a.png").read_bytes()
    assert first.startswith(b"\x89PNG") and first == (tmp_path / "b.png").read_bytes()
    other = fake_metrics(rho2=0.3)
    other["hardened"]["fgs"]["0.1"] = 0.1
    render_curve(other, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes() != first


# --- publish, load from the Hub, list --------------------------------------------------------------------------
def test_round_trip_publish_then_timm_loads_in_fresh_process(model_dir, hub, hub_env, tmp_path):
    directory, model = model_dir
    done = run_python("from dd_hub.cli import main; main()", hub_env, "publish", str(directory))
    assert done.returncode == 0, done.stderr
    assert f"Published {REPO}@main" in done.stdout and ALICE not in done.stdout + done.stderr
    assert sorted(hub.files(REPO)) == [".gitattributes", "README.md", "config.json", "metrics.json",
                                       "model.safetensors", CURVE_NAME]
    assert hub.files(REPO)["model.safetensors"] == (directory / "model.safetensors").read_bytes()
    assert f'hf-hub:{REPO}"' in hub.files(REPO)["README.md"].decode()

    x_path, expected = probe(tmp_path, model)
    loaded = run_python(LOAD_WITH_TIMM, hub_env, f"hf-hub:{REPO}", str(x_path), str(tmp_path / "y.pt"))
    assert loaded.returncode == 0, loaded.stderr
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)

    card = ModelCard.load(REPO)
    metrics = json.loads((directory / "metrics.json").read_text())
    assert card_values(card.data) == report_metrics(metrics["hardened"])
    listed = json.loads(run_cli("list", "--json").output)
    assert [r["model"] for board in listed for r in board["rows"]] == [REPO]


def test_offline_loading_from_a_populated_cache(model_dir, hub, hub_env, tmp_path):
    directory, model = model_dir
    publish(directory)
    x_path, expected = probe(tmp_path, model)
    with torch.no_grad():
        assert torch.equal(load(REPO)(torch.load(x_path)), model(torch.load(x_path)))  # fills the cache
    # a populated cache suffices: the server is gone, and offline mode forbids any request
    hub.stop()
    offline = {**hub_env, "HF_HUB_OFFLINE": "1"}
    also_dd_hub = """
torch.save(dd_hub.load(sys.argv[1][len("hf-hub:"):])(x), sys.argv[3] + ".dd_hub")
try:
    dd_hub.load("alice/never-downloaded")
except dd_hub.DDHubError as exc:
    print(exc)
"""
    loaded = run_python(LOAD_WITH_TIMM + also_dd_hub, offline, f"hf-hub:{REPO}", str(x_path), str(tmp_path / "y.pt"))
    assert loaded.returncode == 0, loaded.stderr
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "y.pt.dd_hub"), model(torch.load(x_path)))
    assert "not in the local Hub cache" in loaded.stdout


def test_hub_checkpoint_with_only_a_pickle_is_refused(model_dir, hub, hub_env):
    directory, model = model_dir
    hub.repos["alice/pickled"] = Repo(owner="alice", private=False)
    torch.save(dd_hub.unwrap(model).state_dict(), directory / "pytorch_model.bin")
    hub.commit("alice/pickled", "main", {"config.json": (directory / "config.json").read_bytes(),
                                         "pytorch_model.bin": (directory / "pytorch_model.bin").read_bytes()}, "up")
    with pytest.raises(DDHubError, match=r"pickle weights \(pytorch_model.bin\)"):
        load("alice/pickled")


def test_republish_adds_a_commit_with_updated_files(model_dir, hub, hub_env):
    directory, _ = model_dir
    first = publish(directory)
    card_before = hub.files(REPO)["README.md"]
    write_outputs(directory, dd_hub.load(directory), fake_metrics(rho2=0.25))
    second = publish(directory)
    assert first.commit_url != second.commit_url and len(hub.repos[REPO].history) == 3  # create + 2 uploads
    assert hub.files(REPO)["README.md"] != card_before
    assert card_values(ModelCard.load(REPO).data)["rho2"] == 0.25


def test_publish_private_to_a_branch_and_dry_run(model_dir, hub, hub_env):
    directory, _ = model_dir
    dry = run_cli("publish", str(directory), "--dry-run")  # contacts nothing, so the user is not known yet
    assert "Dry run" in dry.output and "<user>/" + REPO.split("/")[1] in dry.output and not hub.requests
    result = run_cli("publish", str(directory), "--repo-id", "dd-org/lenet-robust", "--private", "--revision", "dev")
    assert result.exit_code == 0 and "dd-org/lenet-robust@dev" in result.output
    repo = hub.repos["dd-org/lenet-robust"]
    assert repo.private and "README.md" in hub.files("dd-org/lenet-robust", "dev")
    assert "README.md" not in hub.files("dd-org/lenet-robust", "main")
    assert not hub.may_read("bob", "dd-org/lenet-robust")


@pytest.mark.parametrize("case", ["no token", "bad token", "no permission", "invalid name", "network down"])
def test_publish_errors_are_clear_and_claim_nothing(case, model_dir, hub, hub_env, monkeypatch):
    directory, _ = model_dir
    args = ["publish", str(directory)]
    expected = {"no token": "no Hugging Face token", "bad token": "rejected the token",
                "no permission": "no write permission for bob/x", "invalid name": "invalid repo name",
                "network down": "cannot reach the Hub"}[case]
    if case == "no token":
        monkeypatch.delenv("HF_TOKEN")
    elif case == "bad token":
        monkeypatch.setenv("HF_TOKEN", "hf_wrong_secret")
    elif case == "no permission":
        args += ["--repo-id", "bob/x"]
    elif case == "invalid name":
        args += ["--repo-id", "alice/not a name!"]
    else:
        hub.stop()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and expected in result.output, result.output
    assert "Published" not in result.output and "Traceback" not in result.output
    assert ALICE not in result.output and "hf_wrong_secret" not in result.output
    assert not any(method == "POST" and "/commit/" in path for method, path in hub.requests)


def with_autoattack(metrics: dict, **robust: float) -> dict:
    """``metrics`` whose hardened report holds AutoAttack figures at the given threat models (made-up values)."""
    from dd_hub.attacks import threat_model

    metrics["hardened"]["autoattack"] = {
        name.replace("_", "-"): {"norm": threat_model(name.replace("_", "-"))[0],
                                 "eps": threat_model(name.replace("_", "-"))[1], "accuracy": value, "n_examples": 100,
                                 "version": "custom", "attacks": ["apgd-ce", "apgd-t"],
                                 "implementation": "pyautoattack 0.2.0", "seed": 0, "flags": []}
        for name, value in robust.items()}
    return metrics


def test_list_is_a_board_per_threat_model_ranked_by_autoattack(hub, hub_env, tmp_path, monkeypatch):
    figures = {"alice/a-robust": (0.40, 0.95), "alice/b-accurate": (0.10, 0.99), "dd-org/c-middle": (0.25, 0.97)}
    for seed, (repo_id, (robust, clean)) in enumerate(figures.items()):
        write_model_dir(tmp_path / repo_id, with_autoattack(fake_metrics(clean=clean), mnist_linf=robust), seed=seed)
        publish(tmp_path / repo_id, repo_id)
    other = with_autoattack(fake_metrics(), cifar10_linf=0.5)
    other["model"]["dataset"] = "cifar10"
    write_model_dir(tmp_path / "other", other)
    publish(tmp_path / "other", "alice/other-dataset")

    boards = json.loads(run_cli("list", "--dataset", "mnist-5k", "--json").output)
    assert [b["board"] for b in boards] == ["mnist-5k · L∞, ε = 0.3"]
    assert [r["model"] for r in boards[0]["rows"]] == ["alice/a-robust", "dd-org/c-middle", "alice/b-accurate"]
    assert [r["robust_accuracy"] for r in boards[0]["rows"]] == [0.40, 0.25, 0.10]
    assert boards[0]["rows"][0]["evaluation"] == "custom (apgd-ce, apgd-t)"
    table = run_cli("list", "--threat-model", "mnist-linf", "--markdown").output.splitlines()
    assert table[2].startswith("| # | model | clean | AutoAttack robust | status | architecture | method | eps | n_examples |")
    assert [row.split("|")[2].strip() for row in table[4:]] == ["alice/a-robust", "dd-org/c-middle",
                                                                "alice/b-accurate"]
    monkeypatch.setenv("COLUMNS", "80")
    aligned = run_cli("list", "--threat-model", "mnist-linf").output.splitlines()   # the terminal's table
    assert aligned[0] == "mnist-5k · L∞, ε = 0.3" and aligned[1].split()[:4] == ["#", "model", "clean", "robust"]
    assert [line.split()[1] for line in aligned[3:]] == ["alice/a-robust", "dd-org/c-middle", "alice/b-accurate"]
    assert all(len(line) <= 80 for line in aligned)                  # fits an 80-column terminal
    assert len({line.index("%") for line in aligned[3:]}) == 1       # aligned
    empty = run_cli("list", "--dataset", "imagenet").output
    assert "No dd-hub checkpoints in the Hub for dataset imagenet" in empty
    assert "dataset cifar10" in empty and "dataset mnist-5k" in empty  # names what exists
    assert [b["dataset"] for b in json.loads(run_cli("list", "--json").output)] == ["cifar10", "mnist-5k"]
    bad = CliRunner().invoke(main, ["list", "--threat-model", "svhn-linf"])
    assert bad.exit_code == 2 and "unknown threat model 'svhn-linf'" in bad.output

    shown = run_cli("show", "alice/a-robust")
    assert "alice/a-robust: dd_lenet_mnist on mnist-5k" in shown.output and "autoattack@mnist-linf" in shown.output
    assert json.loads(run_cli("show", "alice/a-robust", "--json").output)["figures"]["autoattack@mnist-linf"] == 0.4


def test_model_cards_index_is_regenerated_from_the_cards(tmp_path):
    cards = tmp_path / "model_cards"
    for seed, (name, robust) in enumerate((("low", 0.1), ("high", 0.3))):
        write_model_dir(tmp_path / name, with_autoattack(fake_metrics(), mnist_linf=robust), seed=seed)
    add_card(tmp_path / "low", cards, "dd-hub/low")
    add_card(tmp_path / "high", cards)  # not published: the card says so, and so does the board
    index = write_index(cards).read_text()
    assert index.index("dd_lenet_mnist-mnist-5k-deepdefense") < index.index("dd-hub/low")
    assert "not published yet" in index and "[Hub](https://huggingface.co/dd-hub/low)" in index
    assert (cards / "low" / CURVE_NAME).is_file()
    assert write_index(cards).read_text() == index
    assert run_cli("cards", str(cards)).exit_code == 0


def test_complete_catalogue_folder_loads_and_its_tables_come_from_it(tmp_path):
    """`dd-hub cards --complete`: the sealed folder as written (card included), so that it loads and passes the
    seal check; benchmarks/catalogue.py prints its figures and flags a card without weights."""
    import catalogue

    cards = tmp_path / "model_cards"
    metrics = with_autoattack(fake_metrics(), mnist_linf=0.0, mnist_l2=0.25)
    model = write_model_dir(tmp_path / "run", metrics)
    assert run_cli("cards", str(cards), "--complete", "--add", str(tmp_path / "run")).exit_code == 0
    folder = cards / metrics["model"]["repo_name"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (tmp_path / "run").iterdir())
    read_metrics(folder)                                      # every file is the one metrics.json hashed
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(dd_hub.load(folder)(x), model.eval()(x))
    (cards / "card-only").mkdir()                             # a card without its weights
    (cards / "card-only" / "README.md").write_bytes((folder / "README.md").read_bytes())
    text = catalogue.tables(cards)
    figures = text.split("\n\n")[0]
    assert f"`{folder.name}`" in figures and "25.0%" in figures and "not verified" in figures
    assert "`card-only`" not in figures and "without their model folder" in text and "`card-only`" in text


def test_list_threat_model_keeps_only_that_board(tmp_path):
    cards = tmp_path / "model_cards"
    both = with_autoattack(fake_metrics(), mnist_linf=0.1, mnist_l2=0.4)
    cifar = with_autoattack(fake_metrics(), cifar10_linf=0.3)
    cifar["model"].update(dataset="cifar10", repo_name="cifar-model")
    for seed, (name, metrics) in enumerate((("both", both), ("cifar", cifar))):
        write_model_dir(tmp_path / name, metrics, seed=seed)
        add_card(tmp_path / name, cards)

    def titles(*args):
        return [b["board"] for b in json.loads(run_cli("list", "--from", str(cards), "--json", *args).output)]

    assert titles() == ["cifar10 · L∞, ε = 8/255 (0.03137)", "mnist-5k · L∞, ε = 0.3", "mnist-5k · L2, ε = 2"]
    assert titles("--threat-model", "mnist-l2") == ["mnist-5k · L2, ε = 2"]
    assert titles("--threat-model", "cifar10-linf") == ["cifar10 · L∞, ε = 8/255 (0.03137)"]
    assert titles("--threat-model", "imagenet-l2") == []


@pytest.mark.slow
def test_harden_publish_load_list_end_to_end(hub, hub_env, tmp_path):
    """The real `dd-hub harden` (tiny), `dd-hub publish`, timm in a fresh process, `dd-hub list`."""
    out = tmp_path / "run"
    cli = [sys.executable, "-m", "dd_hub"]
    tiny = ["reference.epochs=1", "max_train_examples=300", "evaluation.max_examples=100",
            "evaluation.deepfool_steps=10", "evaluation.minimal_norm_steps=10", "evaluation.sanity=false", "evaluation.pgd_steps=0",
            "evaluation.autoattack_max_examples=20"]  # AutoAttack stays on, on 20 of the 100 images
    harden = subprocess.run(cli + ["harden", "lenet", "--dataset", "mnist-5k", "--out", str(out), "--epochs", "1",
                                   "--quiet"] + [arg for key in tiny for arg in ("--set", key)],
                            env=hub_env, capture_output=True, text=True, timeout=900)
    assert harden.returncode == 0, harden.stderr
    assert (out / CURVE_NAME).is_file()
    published = subprocess.run(cli + ["publish", str(out)], env=hub_env, capture_output=True, text=True, timeout=300)
    assert published.returncode == 0, published.stderr

    model = load(out)
    x_path, expected = probe(tmp_path, model)
    loaded = run_python(LOAD_WITH_TIMM, hub_env, f"hf-hub:{REPO}", str(x_path), str(tmp_path / "y.pt"))
    assert loaded.returncode == 0, loaded.stderr
    assert torch.equal(torch.load(tmp_path / "y.pt"), expected)
    metrics = json.loads((out / "metrics.json").read_text())
    assert card_values(ModelCard.load(REPO).data) == report_metrics(metrics["hardened"])
    listed = subprocess.run(cli + ["list"], env=hub_env, capture_output=True, text=True, timeout=300)
    assert REPO in listed.stdout


def test_autoattack_results_lead_the_model_index_with_their_threat_model_arguments(tmp_path):
    from dd_hub.hub.card import eval_results

    report = {"n_examples": 10, "clean_accuracy": 0.9, "rho2": 0.3, "rho_space": "centered", "eps_ref": 0.2,
              "deepfool": {"steps": 50, "candidates": 10, "overshoot": 0.02}, "fgs": {"0.3": 0.4},
              "fgs_at_ref": {"1": 0.5}, "autoattack": {
                  "mnist-linf": {"norm": "linf", "eps": 0.3, "accuracy": 0.1, "n_examples": 8, "version": "custom",
                                 "attacks": ["apgd-ce", "apgd-t"], "implementation": "pyautoattack 0.2.0",
                                 "seed": 0, "flags": []},
                  "mnist-l2": {"norm": "l2", "eps": 2.0, "accuracy": 0.2, "n_examples": 8, "version": "custom",
                               "attacks": ["apgd-ce", "apgd-t"], "implementation": "pyautoattack 0.2.0",
                               "seed": 0, "flags": ["some check fired"]}}}
    metrics = {"hardened": report, "seed": 1, "model": {"dataset_hub_id": "mnist", "dataset": "mnist-5k"}}
    results = eval_results(metrics)
    assert [r.metric_type for r in results[:3]] == ["accuracy", "robust_accuracy", "robust_accuracy"]
    autoattack = {r.metric_args["threat_model"]: r for r in results[1:3]}
    assert autoattack["mnist-l2"].metric_value == 0.2 and autoattack["mnist-l2"].metric_args["flags"] == [
        "some check fired"]
    for result in autoattack.values():
        assert {"norm", "eps", "version", "attacks", "n_examples", "seed", "flags"} <= set(result.metric_args)
    assert card_values(ModelCardData(model_name="m", eval_results=results)) == report_metrics(report)
    full = fake_metrics()
    full["hardened"]["autoattack"] = report["autoattack"]
    (tmp_path / "README.md").write_text(render_card(full))
    loaded = ModelCard.load(tmp_path / "README.md")  # huggingface_hub parses it back, args included
    args = {r.metric_args["threat_model"]: r.metric_args for r in loaded.data.eval_results
            if r.metric_args.get("attack") == "autoattack"}
    assert args["mnist-linf"]["eps"] == 0.3 and args["mnist-linf"]["version"] == "custom"
    assert "dd-hub-threat-model-mnist-linf" in loaded.data.tags and loaded.data.dd_hub["published"] is False


def test_hub_files_are_size_checked_before_download_and_a_moving_repo_is_refused(model_dir, hub, hub_env,
                                                                                   monkeypatch):
    directory, _ = model_dir
    files = {name: (directory / name).read_bytes() for name in ("config.json", "model.safetensors")}
    hub.repos["alice/huge-config"] = Repo(owner="alice", private=False)
    hub.commit("alice/huge-config", "main", {**files, "config.json": b" " * (2 << 20)}, "up")
    with pytest.raises(DDHubError, match=r"config.json is 2,097,152 bytes, over the 1,048,576 allowed"):
        load("alice/huge-config")

    hub.repos["alice/moving"] = Repo(owner="alice", private=False)
    hub.commit("alice/moving", "main", files, "up")
    listing = FakeHub.model_json

    def listing_then_a_push(self, repo_id, sha, *, siblings):
        described = listing(self, repo_id, sha, siblings=siblings)
        if repo_id == "alice/moving" and siblings:  # the repo changes right after its file list was read
            self.commit(repo_id, "main", {"README.md": b"new"}, "push")
        return described

    monkeypatch.setattr(FakeHub, "model_json", listing_then_a_push)
    with pytest.raises(DDHubError, match="changed while it was being fetched"):
        load("alice/moving")

    def listing_without_sizes(self, repo_id, sha, *, siblings):
        described = listing(self, repo_id, sha, siblings=siblings)
        for item in described.get("siblings", []):
            item.pop("size", None)
        return described

    monkeypatch.setattr(FakeHub, "model_json", listing_without_sizes)
    with pytest.raises(DDHubError, match="gives no size for config.json"):
        load("alice/moving")


def test_the_rebuild_section_names_the_command_threads_and_source_commit():
    from dd_hub.hub.card import _rebuild_section
    from dd_hub.workflows.harden import source_commit

    run = {"command": "dd-hub reproduce mlp --dataset mnist-5k --out runs/mlp", "threads": 1, "torch": "2.9",
           "platform": "Linux x86_64", "source": "32a2d45-modified"}
    section = _rebuild_section({"dd_hub_version": "0.1.0", "run": run})
    assert "OMP_NUM_THREADS=1 dd-hub reproduce mlp --dataset mnist-5k --out runs/mlp" in section
    assert "dd-hub 0.1.0 from source commit 32a2d45-modified, torch 2.9, 1 thread(s)" in section
    forged = _rebuild_section({"dd_hub_version": "0.1.0", "run": {**run, "source": "abc <img src=x>"}})
    assert "source commit" not in forged and "<img" not in forged
    here = source_commit()  # the tests run from a git checkout of dd-hub (an editable install)
    assert here is None or re.fullmatch(r"[0-9a-f]{7,40}(-modified)?", here)
