"""Hostile input: cards anyone can publish, model folders anyone can hand over, a Hub endpoint that misbehaves.

Every case ends in a one-line message (an error, or a notice that leaves the bad item out while the others are
still listed), in bounded time and memory, with nothing written outside its folder and no token sent anywhere but
the Hub's host.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import time
import tracemalloc
import types
from pathlib import Path

import pytest
import yaml
from huggingface_hub import constants

from dd_hub.errors import DDHubError
from dd_hub.hub import client
from dd_hub.hub.boards import boards, write_index
from dd_hub.hub.collection import load_hub_cards, load_local_cards
from dd_hub.hub.site import build_site, render_markdown
from dd_hub.storage.metrics import seal

from helpers import assert_one_line_error, run_cli
from hostile_hub import Elsewhere, HostileHub

TOKEN = "hf_hostile_test_token_not_real"


def card_text(*, clean=0.97, robust=0.5, eps=0.3, norm="linf", n=1000, architecture="resnet18", name="model",
              body="# a card\n", extra: dict | None = None) -> str:
    metrics = [{"type": "accuracy", "value": clean, "name": "clean accuracy", "args": {"n_examples": n}},
               {"type": "robust_accuracy", "value": robust, "name": "AutoAttack robust accuracy",
                "args": {"attack": "autoattack", "norm": norm, "eps": eps, "n_examples": n, "version": "custom",
                         "attacks": ["apgd-ce", "apgd-t"]}}]
    data = {"library_name": "timm", "tags": ["dd-hub"],
            "model-index": [{"name": name, "results": [{"task": {"type": "image-classification"},
                                                        "dataset": {"type": "mnist", "name": "mnist-5k"},
                                                        "metrics": metrics}]}],
            "dd_hub": {"architecture": architecture, "dataset": "mnist-5k", "method": "deep_defense"},
            **(extra or {})}
    return f"---\n{yaml.safe_dump(data)}---\n{body}"


def write_cards(root: Path, cards: dict[str, str]) -> Path:
    for name, text in cards.items():
        (root / name).mkdir(parents=True)
        (root / name / "README.md").write_text(text)
    return root


# --- cards ----------------------------------------------------------------------------------------------------------
ALIAS_BOMB = "---\na: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" \
             "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e]\n---\n"
BAD_CARDS = {
    "alias-bomb": (ALIAS_BOMB, "aliases"),
    "deep-yaml": ("---\n" + "a: " + "[" * 200 + "]" * 200 + "\n---\n", "deeper than"),
    "too-large": (card_text(body="x" * (600 << 10)), "larger than"),
    "above-one": (card_text(robust=1.5), "must be a number in [0, 1]"),
    "negative": (card_text(clean=-0.1), "must be a number in [0, 1]"),
    "boolean": (card_text(robust=True), "must be a number in [0, 1]"),
    "huge-eps": (card_text(eps=1e308), "eps must be a number"),
    "infinite-eps": (card_text().replace("eps: 0.3", "eps: .inf"), "eps must be a number"),
    "nan": (card_text().replace("value: 0.5", "value: .nan"), "must be a number in [0, 1]"),
    "unknown-norm": (card_text(norm="l7"), "norm must be one of"),
    "no-front-matter": ("# just text\n", "no YAML front matter"),
    "not-a-mapping": ("---\n- a\n- b\n---\n", "not a mapping"),
    "bad-model-index": (card_text(extra={"model-index": "lots"}), "model-index is not a list"),
}


def test_each_bad_card_is_one_notice_and_the_good_ones_are_still_listed(tmp_path):
    cards = {name: text for name, (text, _) in BAD_CARDS.items()}
    cards["good"] = card_text(name="good")
    tracemalloc.start()
    start = time.monotonic()
    loaded, notices = load_local_cards(write_cards(tmp_path / "cards", cards))
    elapsed, (_, peak) = time.monotonic() - start, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [card.name for card in loaded] == ["good"]
    assert elapsed < 10 and peak < 64 << 20, (elapsed, peak)
    for name, (_, reason) in BAD_CARDS.items():
        (notice,) = [n for n in notices if f"/{name}/README.md" in n]
        assert reason in notice and "\n" not in notice, notice


def test_impossible_claims_are_flagged_and_ranked_last(tmp_path):
    cards = {"honest": card_text(robust=0.5), "robust-above-clean": card_text(clean=0.6, robust=0.9),
             "ten-images": card_text(clean=0.995, robust=0.99, n=10)}
    loaded, notices = load_local_cards(write_cards(tmp_path / "cards", cards))
    assert notices == []
    (board,) = boards(loaded)
    assert [row.card.name for row in board.rows] == ["honest", "ten-images", "robust-above-clean"]
    flags = {row.card.name: row.flags for row in board.rows}
    assert flags["honest"] == [] and "fewer than the 100" in flags["ten-images"][0]
    assert "above the clean accuracy" in flags["robust-above-clean"][0]


def test_card_text_cannot_inject_rows_html_or_terminal_escapes(tmp_path):
    evil = "x |evil|\n| 1 | injected | row |\n<script>alert(1)</script>\x1b[31mred\x1b]0;title\x07\u202e"
    cards_dir = write_cards(tmp_path / "cards", {"evil": card_text(architecture=evil), "good": card_text()})
    index = write_index(cards_dir).read_text()
    table = [line for line in index.splitlines() if line.startswith("| ")]
    assert len(table) == 3                                # header + two models: no injected row
    assert "<script>" not in index and "\x1b" not in index and "\u202e" not in index
    result = run_cli("list", "--from", str(cards_dir))
    assert result.exit_code == 0 and "\x1b" not in result.output and "<script>" not in result.output


def test_page_names_never_collide_and_a_long_body_renders_in_bounded_time(tmp_path):
    cards = {"Model": card_text(name="Model"), "model": card_text(name="model"),
             "long": card_text(body="*a* " * 100_000)}
    loaded, _ = load_local_cards(write_cards(tmp_path / "cards", cards))
    start = time.monotonic()
    site = build_site(loaded, tmp_path / "site")
    assert time.monotonic() - start < 20
    assert len({page.name.lower() for page in site.pages}) == 3
    assert "longer than" in render_markdown("*a* " * 150_000)


def test_images_outside_the_card_folder_are_never_read(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n private")
    folder = tmp_path / "cards" / "sneaky"
    folder.mkdir(parents=True)
    (folder / "link.png").symlink_to(secret)
    (folder / "README.md").write_text(card_text(body="![a](link.png) ![b](../../secret.png) ![c](/etc/passwd.png)"))
    (card,), _ = load_local_cards(tmp_path / "cards")
    assert card.images == {} and card.missing_images == ["link.png"]


def test_show_of_a_malformed_card_is_one_line(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "README.md").write_text(ALIAS_BOMB)
    assert_one_line_error(run_cli("show", str(folder)), "aliases")


# --- model folders ----------------------------------------------------------------------------------------------
@pytest.fixture
def finished(tmp_path_factory) -> Path:
    """A small finished model folder (the reliability tests' tiny MLP run)."""
    from test_reliability import TINY  # noqa: F401  (same budget)

    out = tmp_path_factory.mktemp("hostile") / "mlp"
    result = run_cli("harden", "mlp", "--dataset", "mnist-5k", "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    return out


def reseal(folder: Path, change) -> None:
    """Edit metrics.json and seal it again, as a hostile publisher can (the digest is no signature)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    change(metrics)
    metrics.pop("files"), metrics.pop("digest")
    (folder / "metrics.json").write_text(json.dumps(seal(metrics, folder)))


@pytest.mark.slow
def test_hostile_model_folders(finished, tmp_path):
    import shutil

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(finished, target)
        return target

    outside = tmp_path / "catalogue"
    escape = copy("escape")
    reseal(escape, lambda m: m["model"].update(repo_name="../../pwned"))
    assert_one_line_error(run_cli("cards", str(outside), "--add", str(escape)), "cannot name a card folder")
    assert_one_line_error(run_cli("cards", str(outside), "--add", str(finished), "--repo-id", "alice/.."),
                          "invalid repo name")
    assert not (tmp_path / "pwned").exists() and not any(p.name == "pwned" for p in tmp_path.rglob("*"))

    linked = copy("linked")
    private = tmp_path / "private.png"
    private.write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    (linked / "robustness_curve.png").unlink()
    (linked / "robustness_curve.png").symlink_to(private)
    for command in (["publish", str(linked), "--dry-run", "--repo-id", "me/x"], ["cards", str(outside), "--add",
                                                                                     str(linked)]):
        assert_one_line_error(run_cli(*command), "a link")

    unlisted = copy("unlisted")
    reseal(unlisted, lambda m: None)
    metrics = json.loads((unlisted / "metrics.json").read_text())
    metrics["files"].pop("model.safetensors")
    metrics.pop("digest")
    from dd_hub.storage.metrics import digest
    (unlisted / "metrics.json").write_text(json.dumps({**metrics, "digest": digest(metrics)}))
    assert_one_line_error(run_cli("publish", str(unlisted), "--dry-run", "--repo-id", "me/x"),
                          "does not list model.safetensors")

    strict = copy("strict")
    config = json.loads((strict / "config.json").read_text())
    config["model_args"] = {**config.get("model_args", {}), "pretrained_strict": False}
    (strict / "config.json").write_text(json.dumps(config))
    reseal(strict, lambda m: None)
    assert_one_line_error(run_cli("eval", str(strict), "--quiet"), "may not set 'pretrained_strict'")

    budget = copy("budget")
    reseal(budget, lambda m: m["recipe"]["evaluation"].update(pgd_steps=10**9))
    assert_one_line_error(run_cli("eval", str(budget), "--quiet"), "'evaluation.pgd_steps' must be")
    epsilons = copy("epsilons")
    reseal(epsilons, lambda m: m["recipe"]["evaluation"].update(fgs_eps=[0.01] * 200_000))
    start = time.monotonic()
    for command in (["eval", str(epsilons), "--quiet"], ["verify", str(epsilons), "--quiet"]):
        assert_one_line_error(run_cli(*command), "at most 64 items")
    assert time.monotonic() - start < 60


def test_a_resized_vit_is_refused_not_resampled(tmp_path):
    import dd_hub
    from dd_hub.models.directory import load_directory, save_model

    model = dd_hub.create_model("vit_tiny_patch16_224", num_classes=3, input_size=(3, 32, 32), depth=1)
    save_model(model, tmp_path / "vit")
    config = json.loads((tmp_path / "vit" / "config.json").read_text())
    config["model_args"]["img_size"] = [64, 64]          # timm would resample the position embedding
    (tmp_path / "vit" / "config.json").write_text(json.dumps(config))
    with pytest.raises(DDHubError, match="do not fit the network its config.json describes"):
        load_directory(tmp_path / "vit")


# --- the Hub endpoint -----------------------------------------------------------------------------------------------
@pytest.fixture
def endpoint(monkeypatch):
    servers = []

    def start(**kwargs) -> HostileHub:
        elsewhere = Elsewhere()
        hub = HostileHub(elsewhere=elsewhere, **kwargs)
        servers.extend([hub, elsewhere])
        monkeypatch.setattr(constants, "ENDPOINT", hub.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setattr(client, "HUB_TIMEOUT_S", 2.0)
        monkeypatch.setattr(client, "RETRIES", 0)
        return hub

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("listing, reason", [("trickle", "no complete answer from the Hub within 2 s"),
                                             ("huge", "bytes allowed")])
def test_a_slow_or_huge_listing_ends_in_one_line(endpoint, listing, reason):
    endpoint(listing=listing, cards={"a/b": card_text()})
    start = time.monotonic()
    with pytest.raises(DDHubError, match=reason) as info:
        load_hub_cards()
    assert time.monotonic() - start < 15 and "\n" not in str(info.value)


def test_pagination_stays_on_the_hub_and_ends_on_a_loop(endpoint):
    hub = endpoint(listing="loop", cards={"a/b": card_text()})
    cards, _ = load_hub_cards(verifications=False)
    assert [c.repo_id for c in cards] == ["a/b"]
    assert hub.requests.count("/api/models") == 2     # the page, then its link to itself once: then it stops
    hub = endpoint(listing="elsewhere", cards={"a/b": card_text()})
    load_hub_cards(verifications=False)
    assert hub.elsewhere.seen == []                    # a next page on another host is not followed at all


def test_one_bad_repo_is_a_notice_and_no_token_leaves_the_hub(endpoint):
    hub = endpoint(cards={"a/forbidden": "forbidden", "a/redirect": "redirect", "a/huge": "huge",
                          "a/good": card_text()})
    cards, notices = load_hub_cards(images=False)
    assert [c.repo_id for c in cards] == ["a/good"]
    assert len(notices) == 3 and all("\n" not in n for n in notices)   # the redirect's target is no card
    assert any("a/forbidden" in n and "403" in n for n in notices)
    assert any("a/huge" in n and "bytes allowed" in n for n in notices)
    assert all("authorization" not in {k.lower() for k in headers} for headers in hub.elsewhere.seen)
    assert TOKEN not in json.dumps(hub.elsewhere.seen)



def test_decoded_bytes_are_capped_whatever_the_content_encoding(endpoint):
    endpoint(cards={"a/bomb": "gzip-bomb", "a/twice": "gzip-gzip", "a/good": card_text()})
    tracemalloc.start()
    cards, notices = load_hub_cards(images=False, verifications=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [c.repo_id for c in cards] == ["a/good"] and peak < 16 << 20, peak
    assert any("a/bomb" in n and "bytes allowed" in n for n in notices)
    assert any("a/twice" in n and "content encoding" in n for n in notices)


def test_a_huge_figure_is_a_missing_image_not_a_lost_card(endpoint):
    endpoint(cards={"a/good": card_text(body="# a card\n![curve](huge.png)\n")})
    cards, notices = load_hub_cards(verifications=False, images=True)   # no cardData listed: the card is read
    assert [c.repo_id for c in cards] == ["a/good"] and notices == []
    assert cards[0].missing_images == ["huge.png"] and cards[0].images == {}


def test_the_token_goes_to_the_endpoint_origin_only_never_to_its_host_over_plain_http(monkeypatch):
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.example")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    reader = client.HubReader(TOKEN)
    with pytest.raises(DDHubError, match="refusing to request http://hub.example"):
        reader.get("http://hub.example/api/models")
    sent = []

    class Recorder:   # stands in for the HTTP client: records the headers of each request and redirects once
        def __init__(self, **_):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        @contextlib.contextmanager
        def stream(self, method, url, params=None, headers=None):
            sent.append((url, dict(headers)))
            location = {"https://hub.example/a": "http://hub.example/b"}.get(url)
            yield types.SimpleNamespace(is_redirect=location is not None, headers={"location": location or ""},
                                        status_code=200, url=url, iter_raw=lambda _: iter([b"{}"]))

    import httpx2
    monkeypatch.setattr(httpx2, "Client", Recorder)
    reader._fetch("https://hub.example/a", None, 100, 5.0)
    assert [url for url, _ in sent] == ["https://hub.example/a", "http://hub.example/b"]
    assert "authorization" in sent[0][1] and "authorization" not in sent[1][1]

# --- the user's files ------------------------------------------------------------------------------------------------
def test_a_site_rebuild_keeps_the_files_it_did_not_write(tmp_path):
    loaded, _ = load_local_cards(write_cards(tmp_path / "cards", {"m": card_text()}))
    site = tmp_path / "site"
    build_site(loaded, site)
    (site / "CNAME").write_text("robust.example.org\n")
    (site / ".git").mkdir()
    (site / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    build_site(loaded, site)
    assert (site / "CNAME").read_text() == "robust.example.org\n" and (site / ".git" / "HEAD").is_file()
    (site / "index.html").unlink()
    (site / "models" / "m.html").unlink()
    (site / "models" / "m.html").write_text("mine")           # a user file where the site wants to write
    marker = (site / ".dd-hub-site").read_text().replace("models/m.html\n", "")
    (site / ".dd-hub-site").write_text(marker)
    with pytest.raises(DDHubError, match="was not written by dd-hub site"):
        build_site(loaded, site)
    assert (site / "models" / "m.html").read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DDHubError, match="is not a dd-hub site"):
        build_site(loaded, other)


def test_a_site_manifest_can_only_delete_unchanged_files_the_site_wrote(tmp_path):
    loaded, _ = load_local_cards(write_cards(tmp_path / "cards", {"m": card_text()}))
    site = tmp_path / "site"
    build_site(loaded, site)
    (site / ".git").mkdir()
    user = {".git/HEAD": "ref: refs/heads/main\n", "notes.txt": "mine", "CNAME": "robust.example.org\n"}
    for name, text in user.items():
        (site / name).write_text(text)
    import hashlib
    marker = site / ".dd-hub-site"
    marker.write_text(marker.read_text() + "".join(f"{hashlib.sha256(t.encode()).hexdigest()}  {n}\n{n}\n"
                                                   for n, t in user.items()))   # a hostile manifest
    (site / "models" / "m.html").write_text("edited by the user")          # a site file the user changed
    with pytest.raises(DDHubError, match="was not written by dd-hub site"):
        build_site(loaded, site)
    assert all((site / name).read_text() == text for name, text in user.items())
    assert (site / "models" / "m.html").read_text() == "edited by the user"


def test_a_site_rebuild_never_deletes_or_writes_through_a_link(tmp_path):
    loaded, _ = load_local_cards(write_cards(tmp_path / "cards", {"m": card_text()}))
    site, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    build_site(loaded, site)
    elsewhere.mkdir()
    (elsewhere / "m.html").write_text("not the site's")
    (elsewhere / "x.html").write_text("not the site's either")
    shutil.rmtree(site / "models")
    (site / "models").symlink_to(elsewhere)                      # e.g. in a cloned Pages repository
    marker = site / ".dd-hub-site"
    marker.write_text(marker.read_text() + "models/x.html\n")    # a manifest naming a file behind the link
    with pytest.raises(DDHubError, match="is a link or a file where the site needs a folder|was not written by"):
        build_site(loaded, site)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["m.html", "x.html"]
    (site / "models").unlink()
    (site / "models").write_text("a user file where the site needs a folder")
    with pytest.raises(DDHubError, match="is a link or a file"):
        build_site(loaded, site)
    assert (site / "models").read_text().startswith("a user file")


def test_an_empty_or_foreign_lock_is_left_alone(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".dd-hub.lock").write_text("")
    result = run_cli("harden", "mlp", "--dataset", "mnist-5k", "--out", str(out))
    assert_one_line_error(result, "names no run")
    assert (out / ".dd-hub.lock").exists()


@pytest.mark.parametrize("args, reason", [
    (["--set", "harden.lr=1e309"], "'harden.lr' must be a finite number"),
    (["--out", "PARENT_FILE/run"], "cannot create"),
    (["--out", "x" * 300], "cannot create"),
])
def test_bad_values_and_paths_are_one_line(tmp_path, args, reason, monkeypatch):
    (tmp_path / "PARENT_FILE").write_text("a file")
    args = [str(tmp_path / a) if a.startswith(("PARENT_FILE", "xxx")) else a for a in args]
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_cli("harden", "mlp", "--dataset", "mnist-5k", *args), reason)


@pytest.mark.parametrize("config, reason", [
    ({"architecture": "tv:resnet18", "pretrained_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}, "must give num_classes"),
    ({"architecture": "tv:resnet18", "num_classes": 3}, "pretrained_cfg must be a mapping"),
    ({"architecture": "tv:resnet18", "num_classes": 3, "pretrained_cfg": "x"}, "pretrained_cfg must be a mapping"),
    ({"architecture": "tv:resnet18", "num_classes": 3, "pretrained_cfg": {"std": [0.5] * 3}}, "must give mean"),
    ({"architecture": "resnet18", "num_classes": 3, "pretrained_cfg": [1]}, "pretrained_cfg must be a mapping"),
])
def test_a_torchvision_or_timm_config_missing_its_keys_is_one_line(tmp_path, config, reason):
    import torch
    from safetensors.torch import save_file

    from dd_hub.models.directory import load_directory

    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file({"w": torch.zeros(1)}, tmp_path / "model.safetensors")
    with pytest.raises(DDHubError, match=reason) as caught:
        load_directory(tmp_path)
    assert "\n" not in str(caught.value)


# --- verification records: what a determined publisher with several accounts tries --------------------------------
def hub_with_card(tmp_path, monkeypatch, *, card: str, repo_id: str = "alice/m", orgs: dict | None = None):
    """The Hub double holding one public repo with ``card`` (alice's token in the environment)."""
    from hub_server import FakeHub, Repo, point_client_at

    hub = FakeHub(tokens={"hf_alice": "alice", "hf_bob": "bob", "hf_carol": "carol", "hf_mallory": "mallory"},
                  orgs=orgs or {}).start()
    point_client_at(hub, tmp_path / "hf_home", monkeypatch, "hf_alice")
    hub.repos[repo_id] = Repo(owner=repo_id.split("/")[0], private=False)
    hub.commit(repo_id, "main", {"README.md": card.encode()}, "upload")
    return hub


def open_record(hub, repo_id: str, author: str, *, card: str | None = None, measured: float | None = None,
                n: int = 1000, status: str = "open", revision: str | None = None, text: str | None = None,
                title: str = "dd-hub verification") -> int:
    """A pull request by ``author`` holding a record of the robust figure of ``card`` (measured as ``measured``,
    the card's own value by default), or ``text`` as the record."""
    from dd_hub.hub.cards import parse_card
    from dd_hub.hub.verification import RECORD_NAME, Verification, card_dataset, figure_identity

    repo = hub.repos[repo_id]
    if text is None:
        parsed = parse_card(card, name="m", repo_id=repo_id)
        figures = {}
        for figure in parsed.figures:
            value = figure.value if measured is None or figure.kind != "robust_accuracy" else measured
            figures[figure_identity(figure, card_dataset(parsed, figure))] = {
                "kind": figure.kind, "card": figure.value, "measured": value, "n_examples": n,
                "card_n_examples": figure.args.get("n_examples")}
        record = Verification(verified_by=author, date="2026-01-01", dd_hub_version="test", repo_id=repo_id,
                              revision=revision or repo.branches["main"], tolerance=0.02,
                              weights_sha256="0" * 64, protocol="p", figures=figures)
        text = record.to_json()
    num = len(repo.pulls) + 1
    repo.branches[f"refs/pr/{num}"] = repo.branches["main"]
    hub.commit(repo_id, f"refs/pr/{num}", {RECORD_NAME: text.encode()}, title, author=author)
    repo.pulls.append({"num": num, "title": title, "author": author, "status": status})
    add_to_index(hub, author, text)
    return num


def add_to_index(hub, author: str, text: str) -> None:
    """What ``verify --publish`` also does: the record added to its author's record index (the boards read these,
    not each repo's pull requests; closing a pull request leaves the index as it was)."""
    from hub_server import Repo, card_data

    from dd_hub.hub.record_index import RECORDS_KEY, index_card, index_repo

    index = index_repo(author)
    if index not in hub.repos:
        hub.repos[index] = Repo(owner=author, private=False)
    records = (card_data(hub.files(index).get("README.md")) or {}).get(RECORDS_KEY, []) \
        if hub.repos[index].branches else []
    hub.commit(index, "main", {"README.md": index_card(records + [json.loads(text)], author).encode()}, "record")


def robust_status(trusted=("bob",)) -> tuple[str, str]:
    from dd_hub.hub.verification import figure_status

    (card,), _ = load_hub_cards(images=False, trusted=frozenset(trusted))
    (figure,) = [f for f in card.figures if f.threat_model is not None]
    status = figure_status(card, figure)
    return status.status, status.text


def test_a_figure_is_matched_by_its_threat_model_not_by_its_name():
    from dd_hub.hub.cards import parse_card
    from dd_hub.hub.verification import card_dataset, figure_identity

    honest = parse_card(card_text(norm="l2", eps=2.0), name="m")
    relabelled = parse_card(card_text(norm="linf", eps=0.0314).replace("dataset: mnist-5k", "dataset: cifar10"),
                            name="m")
    identity = [figure_identity(f, card_dataset(c, f)) for c in (honest, relabelled) for f in c.figures
                if f.threat_model is not None]
    assert identity[0] != identity[1] and "cifar10|linf|0.0314" in identity[1]
    noise = parse_card(card_text(eps=0.3000000001), name="m")
    assert [figure_identity(f, "mnist-5k") for f in noise.figures] == \
        [figure_identity(f, "mnist-5k") for f in parse_card(card_text(eps=0.3), name="m").figures]


@pytest.mark.parametrize("args, verdict", [
    (("robust_accuracy", 0.28, 0.10, 30, 100_000), "too few images"),     # a tiny sample: no verdict at all
    (("robust_accuracy", 0.50, 0.10, 2, 1000, 1.0), "too few images"),    # --max-examples 2 --tolerance 1
    (("robust_accuracy", 0.50, 0.10, 100, 1000, 1.0), "disagrees"),       # tolerance capped, margin bounded
    (("robust_accuracy", 0.28, 0.10, 100, 100_000), "disagrees"),         # the card's n_examples widens nothing
    (("robust_accuracy", 0.51, 0.50, 1000, 1000), "agrees"),
    (("rho2", 0.30, 0.20, 1000, 1000), "disagrees"),
])
def test_verdicts_come_from_the_verifiers_own_sample_within_bounded_tolerance(args, verdict):
    from dd_hub.hub.verification import MAX_MARGIN, judge

    result, margin = judge(*args)
    assert result == verdict and (margin is None or margin <= MAX_MARGIN)


def test_verify_refuses_a_wide_tolerance_or_a_tiny_sample_before_any_work(tmp_path):
    assert_one_line_error(run_cli("verify", "alice/m", "--tolerance", "1"), "--tolerance")
    assert_one_line_error(run_cli("verify", "alice/m", "--max-examples", "2"), "--max-examples")
    assert_one_line_error(run_cli("verify", "alice/m", "--out", str(tmp_path / "no" / "r.json")), "--out")
    from dd_hub.hub.verification import read_trusted_verifiers

    assert read_trusted_verifiers(Path(__file__).parents[1] / "model_cards" / "trusted-verifiers.txt") == frozenset()
    (tmp_path / "trusted.txt").write_text("bob\n<script>\n")
    assert_one_line_error(run_cli("list", "--from", str(tmp_path), "--trusted-verifiers", str(tmp_path / "trusted.txt")),
                          "no Hub account name")


def test_only_trusted_non_owner_records_on_the_current_commit_verify(tmp_path, monkeypatch):
    card = card_text()
    hub = hub_with_card(tmp_path, monkeypatch, card=card, repo_id="acme/m", orgs={"carol": ["acme"]})
    assert robust_status() == ("self-reported", "self-reported")
    open_record(hub, "acme/m", "carol", card=card)                  # a member of the owning organisation
    assert robust_status(trusted=("bob", "carol"))[0] == "self-reported"
    open_record(hub, "acme/m", "mallory", card=card)                # someone nobody trusts
    status, text = robust_status()
    assert status == "re-measured" and "re-measured by mallory" in text and "not on the trusted list" in text
    open_record(hub, "acme/m", "bob", card=card, revision="f" * 40)  # trusted, but another commit
    assert robust_status()[0] == "re-measured"
    open_record(hub, "acme/m", "bob", card=card)
    assert robust_status() == ("verified", "verified by bob")


def test_a_stated_verdict_or_name_is_never_trusted(tmp_path, monkeypatch):
    card = card_text(robust=0.5)
    hub = hub_with_card(tmp_path, monkeypatch, card=card)
    num = open_record(hub, "alice/m", "bob", card=card, measured=0.1)
    text = hub.files("alice/m", f"refs/pr/{num}")["dd-hub-verification.json"].decode()
    forged = json.loads(text)
    for entry in forged["figures"].values():
        entry.update(agrees=True, margin=1.0)                       # what it concludes is ignored
    forged["verified_by"] = "RobustBench team"
    hub.repos["alice/m"].pulls.clear()
    open_record(hub, "alice/m", "bob", text=json.dumps(forged))
    assert robust_status()[0] == "disputed"                          # recomputed from its numbers
    assert "RobustBench" not in robust_status()[1]


def test_the_owner_pushing_to_a_verifiers_pull_request_changes_nothing(tmp_path, monkeypatch):
    card = card_text(robust=0.5)
    hub = hub_with_card(tmp_path, monkeypatch, card=card)
    num = open_record(hub, "alice/m", "bob", card=card, measured=0.1)
    forged = json.loads(hub.files("alice/m", f"refs/pr/{num}")["dd-hub-verification.json"])
    for entry in forged["figures"].values():
        entry["measured"] = entry["card"]
    hub.commit("alice/m", f"refs/pr/{num}", {"dd-hub-verification.json": json.dumps(forged).encode()}, "fix",
               author="alice")                                       # the owner rewrites bob's record
    assert robust_status() == ("disputed", "disputed by bob")


def test_a_dispute_survives_closed_and_many_pull_requests_until_a_newer_trusted_record(tmp_path, monkeypatch):
    card = card_text(robust=0.5)
    hub = hub_with_card(tmp_path, monkeypatch, card=card)
    open_record(hub, "alice/m", "bob", card=card, measured=0.1, status="closed")
    for _ in range(60):                                              # more than a page of the owner's own PRs
        open_record(hub, "alice/m", "alice", card=card, title="dd-hub verification by alice")
    assert robust_status() == ("disputed", "disputed by bob")
    open_record(hub, "alice/m", "bob", card=card)                   # bob re-measures the current commit: settled
    assert robust_status() == ("verified", "verified by bob")


def test_a_local_record_is_checked_against_the_folders_weights_or_shown_unchecked(tmp_path):
    from dd_hub.hub.verification import RECORD_NAME, Verification, figure_status, local_verifications

    folder = write_cards(tmp_path / "cards", {"m": card_text()}) / "m"
    (card,), _ = load_local_cards(tmp_path / "cards")
    (figure,) = [f for f in card.figures if f.threat_model is not None]
    from dd_hub.hub.verification import card_dataset, figure_identity
    record = Verification(verified_by="RobustBench team", date="2026-01-01", dd_hub_version="x", repo_id=None,
                          revision=None, tolerance=0.02, weights_sha256="0" * 64, protocol="p",
                          figures={figure_identity(figure, card_dataset(card, figure)): {
                              "kind": figure.kind, "card": figure.value, "measured": figure.value,
                              "n_examples": 1000}})
    (folder / RECORD_NAME).write_text(record.to_json())
    (card,), _ = load_local_cards(tmp_path / "cards")
    status = figure_status(card, figure, trusted={"RobustBench team", "local"})
    assert status.status == "re-measured" and "unchecked" in status.text and "RobustBench" not in status.text
    (folder / "model.safetensors").write_bytes(b"weights")           # a model folder: the record is re-checked
    (folder / "metrics.json").write_text(json.dumps(seal(
        {"model": {}, "recipe": {}, "hardened": {}, "reference": {}}, folder)))
    records, problems = local_verifications(folder, card)
    assert records == [] and "other weights" in problems[0]


# --- boards that cannot be gamed -------------------------------------------------------------------------------------
def card_without(*, clean: bool = True, n: bool = True, weights: str | None = None, repo: str | None = None,
                 **kwargs) -> str:
    """``card_text`` without its clean figure or image counts, or stating a weights hash."""
    data = yaml.safe_load(card_text(**kwargs).split("---\n")[1])
    metrics = data["model-index"][0]["results"][0]["metrics"]
    if not clean:
        metrics[:] = [m for m in metrics if m["type"] != "accuracy"]
    if not n:
        for metric in metrics:
            metric["args"].pop("n_examples", None)
    if weights:
        data["dd_hub"]["weights_sha256"] = weights
    if repo:
        data["dd_hub"]["repo_id"] = repo
    return f"---\n{yaml.safe_dump(data, allow_unicode=True)}---\n# a card\n"


def test_boards_cannot_be_gamed_by_eps_noise_names_or_missing_figures(tmp_path):
    same = "ab" * 32
    cards = {"good": card_without(robust=0.5), "noise": card_without(robust=0.6, eps=0.3000000001),
             **{f"copy{i}": card_without(robust=0.9, weights=same) for i in range(5)},
             "g\u043eod": card_without(robust=0.95),                      # a Cyrillic o
             "GOOD": card_without(robust=0.96), "no-clean": card_without(robust=0.97, clean=False),
             "no-count": card_without(robust=0.98, n=False)}
    loaded, notices = load_local_cards(write_cards(tmp_path / "cards", cards))
    assert notices == []
    (board,) = boards(loaded)                                            # 0.3000000001 is 0.3: one board
    assert board.title.endswith("ε = 0.3") and board.anchor == "mnist-5k-linf-0.3"
    names = [row.card.name for row in board.rows]
    assert sum(name.startswith("copy") for name in names) == 1           # one row per weights
    (copy,) = [row for row in board.rows if row.card.name.startswith("copy")]
    assert len(copy.also_named) == 4
    flagged = {row.card.name for row in board.rows if row.flags}
    assert {"g\u043eod", "GOOD", "no-clean", "no-count"} <= flagged and "good" not in flagged
    assert names.index("good") < min(names.index(n) for n in flagged)     # flagged rows rank last
    reasons = {row.card.name: " ".join(row.flags) for row in board.rows}
    assert "looks like good" in reasons["g\u043eod"] and "looks like good" in reasons["GOOD"]
    assert "no clean accuracy" in reasons["no-clean"] and "how many images" in reasons["no-count"]


def test_a_stated_weights_hash_cannot_merge_another_publishers_row_away(tmp_path):
    victim = "cd" * 32
    cards = {"original": card_without(robust=0.5, weights=victim, repo="alice/original"),
             "griefer": card_without(robust=0.99, weights=victim, repo="mallory/copy")}
    loaded, _ = load_local_cards(write_cards(tmp_path / "cards", cards))
    (board,) = boards(loaded)
    assert sorted(row.card.title for row in board.rows) == ["alice/original", "mallory/copy"]
    assert all(row.also_named == [] for row in board.rows)


# --- one line, never a traceback --------------------------------------------------------------------------------------
@pytest.fixture
def lenet(tmp_path) -> Path:
    from test_hub import fake_metrics, write_model_dir

    write_model_dir(tmp_path / "lenet", fake_metrics())
    return tmp_path / "lenet"


@pytest.mark.parametrize("quirk, command, reason", [
    ("whoami", ["verify", "alice/m", "--quiet"], "cannot tell who you are"),
    ("create", ["publish", "LENET", "--repo-id", "alice/x"], "malformed"),
    ("model_info", ["eval", "alice/m", "--quiet"], "not JSON"),
])
def test_a_hub_answer_that_is_not_what_the_hub_sends_is_one_line(tmp_path, monkeypatch, lenet, quirk, command,
                                                                    reason):
    hub = hub_with_card(tmp_path, monkeypatch, card=card_text())
    hub.quirks[quirk] = {"whoami": b"<html>not json</html>", "create": b"{}",
                         "model_info": b"[" * 100_000 + b"]" * 100_000}[quirk]
    monkeypatch.setenv("HF_TOKEN", "hf_alice")
    assert_one_line_error(run_cli(*[str(lenet) if part == "LENET" else part for part in command]), reason)
    hub.stop()


def test_bad_local_input_is_one_line(tmp_path, lenet):
    assert_one_line_error(run_cli("harden", "mlp", "--dataset", "mnist-5k", "--seed", str(2**32)), "--seed")
    assert_one_line_error(run_cli("harden", "mlp", "--dataset", "mnist-5k", "--set", f"seed={2**32}"), "seed")
    assert_one_line_error(run_cli("eval", str(lenet), "--device", "meta", "--quiet"), "device")
    (tmp_path / "plain").write_text("a file")
    assert_one_line_error(run_cli("cards", str(tmp_path / "plain"), "--add", str(lenet)), "is a file")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "dd_lenet_mnist-mnist-5k-deepdefense").write_text("a file where the card folder goes")
    assert_one_line_error(run_cli("cards", str(tmp_path / "cat"), "--add", str(lenet)), "not a folder")
    for name, data in {"big": b"x" * (600 << 10), "latin1": b"---\n\xff\xfe\n---\n"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "README.md").write_bytes(data)
        assert_one_line_error(run_cli("show", str(tmp_path / name)), "cannot be read")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB.strip("-\n"))
    start = time.monotonic()
    assert_one_line_error(run_cli("harden", "mlp", "--dataset", "mnist-5k", "--recipe", str(bomb)), "aliases")
    assert time.monotonic() - start < 10


def test_a_recorded_protocol_is_bounded():
    from dd_hub.recipes import eval_config_from_dict

    with pytest.raises(DDHubError, match="at most 64 items"):
        eval_config_from_dict({"fgs_eps": [0.01] * 200_000})
    with pytest.raises(DDHubError, match="at most 1000 characters"):
        eval_config_from_dict({"autoattack_version": "x" * 10_000})


def test_a_network_is_sized_before_it_is_built(tmp_path):
    import dd_hub
    from dd_hub.models.directory import load_directory, save_model

    model = dd_hub.create_model("vit_tiny_patch16_224", num_classes=3, input_size=(3, 32, 32), depth=1)
    save_model(model, tmp_path / "vit")
    config = json.loads((tmp_path / "vit" / "config.json").read_text())
    config["model_args"].update(embed_dim=2048, num_heads=8, depth=12)   # 2.4 GB of weights asked by 300 bytes
    (tmp_path / "vit" / "config.json").write_text(json.dumps(config))
    start = time.monotonic()
    with pytest.raises(DDHubError, match="checked before building it"):
        load_directory(tmp_path / "vit")
    assert time.monotonic() - start < 10


def test_listed_files_are_size_capped_before_hashing_and_loaded_bytes_are_the_hashed_ones(tmp_path, lenet):
    import os
    import threading

    from dd_hub.storage.metrics import digest
    from dd_hub.storage.weights import read_weights

    sparse = tmp_path / "sparse"
    shutil.copytree(lenet, sparse)
    with open(sparse / "huge.bin", "wb") as fh:
        fh.truncate(1 << 40)                                     # a sparse 1 TiB file
    metrics = json.loads((sparse / "metrics.json").read_text())
    metrics["files"]["huge.bin"] = "0" * 64
    metrics.pop("digest")
    (sparse / "metrics.json").write_text(json.dumps({**metrics, "digest": digest(metrics)}))
    start = time.monotonic()
    assert_one_line_error(run_cli("publish", str(sparse), "--dry-run", "--repo-id", "me/x"), "not read")
    assert time.monotonic() - start < 10

    weights = lenet / "model.safetensors"
    good, expected = weights.read_bytes(), json.loads((lenet / "metrics.json").read_text())["files"]["model.safetensors"]
    from safetensors.torch import load as load_bytes, save as save_bytes
    evil = save_bytes({k: v + 1 for k, v in load_bytes(good).items()})
    stop = threading.Event()

    def swap() -> None:                                           # another process swapping the file all the time
        while not stop.is_set():
            for data in (evil, good):
                (lenet / "next").write_bytes(data)
                os.replace(lenet / "next", weights)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    try:
        loaded = refused = 0
        for _ in range(200):
            try:
                state = read_weights(weights, expected)
            except DDHubError:
                refused += 1
                continue
            assert save_bytes(state) == save_bytes(load_bytes(good))   # never the swapped-in weights
            loaded += 1
    finally:
        stop.set()
        swapper.join()
    assert loaded + refused == 200   # each load: the hashed weights, or a one-line refusal


def test_what_huggingface_hub_downloads_for_dd_hub_decodes_one_gzip_layer_under_the_cap(tmp_path, monkeypatch,
                                                                                           lenet):
    import gzip

    from hostile_hub import GZIP_BOMB, GZIP_TWICE
    from hub_server import Repo

    from dd_hub.hub.loading import load

    hub = hub_with_card(tmp_path, monkeypatch, card=card_text())
    files = {name: (lenet / name).read_bytes() for name in ("config.json", "model.safetensors")}
    for repo_id in ("alice/gzipped", "alice/twice", "alice/bomb"):
        hub.repos[repo_id] = Repo(owner="alice", private=False)
        hub.commit(repo_id, "main", files, "up")
    hub.encoded["model.safetensors"] = ("gzip", gzip.compress(files["model.safetensors"]))
    load("alice/gzipped")                                   # one honest layer: the real weights
    hub.encoded["model.safetensors"] = ("gzip, gzip", GZIP_TWICE)
    tracemalloc.start()
    with pytest.raises(DDHubError, match="cannot fetch alice/twice: .* content encoding 'gzip, gzip'") as refused:
        load("alice/twice")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "\n" not in str(refused.value) and peak < 16 << 20, peak
    assert_one_line_error(run_cli("eval", "alice/twice", "--quiet"), "content encoding")
    monkeypatch.setattr(client, "MAX_WEIGHTS_BYTES", 1 << 20)
    hub.encoded["model.safetensors"] = ("gzip", GZIP_BOMB)   # one layer, 20 MiB decoded: over the cap
    with pytest.raises(DDHubError, match="1,048,576 bytes allowed"):
        load("alice/bomb")
    blobs = [p.stat().st_size for p in (tmp_path / "hf_home" / "hub").rglob("*") if p.is_file()]
    assert max(blobs) <= 2 << 20, max(blobs)                # nothing near the decoded sizes reached the disk
    hub.stop()
