"""The static leaderboard site (``dd-hub site``): boards, pages, sanitising, no external load, Hub loading, and a real
headless browser (Debian ``chromium`` + ``chromium-driver`` driven by selenium) clicking through it over file://.

Model-card folders are made with dd-hub's own ``render_card`` on small hand-written metrics (made-up figures: these
tests check the site, not robustness), plus one card written with huggingface_hub's ``ModelCardData`` directly.
"""
from __future__ import annotations

import shutil
import socket
import struct
import tempfile
import time
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import EvalResult, ModelCard, ModelCardData, constants

from dd_hub.errors import DDHubError
from dd_hub.hub.boards import NO_THREAT_MODEL, boards
from dd_hub.hub.collection import load_hub_cards, load_local_cards
from dd_hub.hub.site import build_site, render_markdown


ORG = "dd-test"


# --- card folders -------------------------------------------------------------------------------------------------
def tiny_png(rgb: tuple[int, int, int] = (200, 60, 40), size: int = 8) -> bytes:
    """A valid size x size PNG of one colour (standard library only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def report(clean: float, rho2: float, autoattack: dict | None = None) -> dict:
    """A hardened report with the keys of ``dd_hub.evaluation.report.Report.to_dict``."""
    return {
        "n_examples": 1000, "clean_accuracy": clean, "rho2": rho2, "rho_space": "centered",
        "deepfool": {"steps": 50, "candidates": 10, "overshoot": 0.02, "norm": "l2", "clip": False,
                     "source": "prediction", "success_rate": 1.0, "mean_iterations": 2.5},
        "fgs": {"0.1": clean * 0.7, "0.2": clean * 0.4}, "eps_ref": 0.12, "eps_ref_source": "self",
        "fgs_at_ref": {"0.5": clean * 0.8, "1": 0.5}, "version": 1, "pgd": {}, "pgd_at_ref": {},
        "pgd_settings": {}, "sanity": [], "autoattack": autoattack or {},
    }


def metrics(name: str, architecture: str, clean: float, rho2: float, autoattack: dict | None = None) -> dict:
    return {
        "dd_hub_version": "0.1.0", "seed": 1234,
        "model": {"architecture": architecture, "repo_name": name, "dataset": "mnist-5k", "dataset_hub_id": "mnist",
                  "base_model": None, "num_classes": 10},
        "recipe": {"name": "mnist_lenet", "method": "deep_defense", "rho_space": "centered",
                   "defense": {"lam": 15.0, "c": 15.0, "d": 5.0, "steps": 5, "candidates": 10, "overshoot": 0.02},
                   "harden": {"epochs": 10, "batch_size": 100, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9,
                              "weight_decay": 0.0005, "lr_milestones": [8], "lr_decay": 0.5, "freeze_bn": True}},
        "hardened": report(clean, rho2, autoattack),
        "reference": report(clean + 0.002, rho2 / 2),
        "training": [],
    }


def aa(eps: float, accuracy: float, norm: str = "linf", n: int = 100, **args) -> dict:
    return {"norm": norm, "eps": eps, "accuracy": accuracy, "n_examples": n, "implementation": "pyautoattack 0.2.0",
            **args}


#: name -> (architecture, clean, rho2, autoattack); robust ranking at mnist linf 0.3: gamma, alpha, beta
MODELS = {
    "lenet-alpha": ("dd_lenet_mnist", 0.990, 0.21, {"mnist-linf": aa(0.3, 0.62)}),
    "resnet-beta": ("resnet18", 0.995, 0.18, {"mnist-linf": aa(0.3, 0.41, version="custom", attacks=["apgd-ce", "apgd-t"]), "mnist-l2": aa(2.0, 0.55, "l2")}),
    "tvresnet-gamma": ("tv:resnet18", 0.970, 0.25, {"mnist-linf": aa(0.3, 0.83)}),
    "lenet-delta": ("dd_lenet_mnist", 0.985, 0.30, None),
}
HOSTILE = "hostile-card"


def write_cards(root: Path) -> Path:
    """A model_cards/ folder: four cards by dd-hub's render_card (three with a curve PNG) and one hand-written."""
    from dd_hub.hub.card import render_card

    for index, (name, (arch, clean, rho2, autoattack)) in enumerate(MODELS.items()):
        folder = root / name
        folder.mkdir(parents=True)
        curve = "robustness_curve.png" if autoattack else None
        text = render_card(metrics(name, arch, clean, rho2, autoattack), comparison="| metric | value |\n|---|---|\n",
                           curve_file=curve, repo_id=f"{ORG}/{name}")
        (folder / "README.md").write_text(text)
        if curve:
            (folder / curve).write_bytes(tiny_png((40 * index, 90, 200)))
    common = dict(task_type="image-classification", dataset_type="mnist", dataset_name="mnist-5k",
                  dataset_split="test")
    data = ModelCardData(
        model_name=HOSTILE, library_name="pytorch", tags=["dd-hub"],
        eval_results=[
            EvalResult(metric_type="accuracy", metric_value=0.93, metric_name="clean accuracy", **common),
            EvalResult(metric_type="robust_accuracy", metric_value=0.77, metric_name="AutoAttack <b>x</b>",
                       metric_args={"attack": "autoattack", "norm": "linf", "eps": 0.3, "n_examples": 50,
                                    "version": "standard"}, **common),
        ],
        dd_hub={"architecture": "<img src=x onerror=alert(1)>", "dataset": "mnist-5k", "recipe": "custom",
                "method": "trades", "published": False, "repo_id": f"{ORG}/{HOSTILE}"},
    )
    body = ("# hostile\n\n<script>alert('card')</script>\n\n![remote](https://example.com/track.png)\n\n"
            "![curve](figs/curve.png)\n\n[click](javascript:alert(1)) and [docs](https://example.com/docs)\n\n"
            "<iframe src=\"https://example.com\"></iframe>\n")
    folder = root / HOSTILE
    (folder / "figs").mkdir(parents=True)
    (folder / "figs" / "curve.png").write_bytes(tiny_png((10, 160, 60)))
    ModelCard(f"---\n{data.to_yaml()}\n---\n{body}").save(folder / "README.md")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("site")
    cards, notices = load_local_cards(write_cards(root / "model_cards"))
    assert notices == []
    build_site(cards, root / "out")
    return root / "out"


# --- boards and pages ---------------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """Rows of each board table, links, and every URL the page would load."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.loaded: list[str] = []
        self.links: list[str] = []
        self.rows: dict[str, list[list[str]]] = {}
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "video", "audio", "embed", "input") and attrs.get("src"):
            self.loaded.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.loaded.append(attrs["href"])
        if tag == "object" and attrs.get("data"):
            self.loaded.append(attrs["data"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "table" and "board" in (attrs.get("class") or ""):
            self._table = attrs["id"]
            self.rows[self._table] = []
        if tag == "tr" and self._table:
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        if tag == "tr" and self._row:
            self.rows[self._table].append(self._row)
            self._row = None
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def board_data(site: Path) -> dict[str, list[dict]]:
    """Each board's rows as the site's data scripts hold them (dicts keyed by ``ROW_FIELDS``), by board anchor."""
    import json

    from dd_hub.hub.site import ROW_FIELDS

    boards_ = {}
    for path in (site / "data").glob("board-*.js"):
        text = path.read_text(encoding="ascii")
        assert text.startswith("DDHUB.board(") and text.endswith(");\n")
        anchor, rows = json.loads(f"[{text[len('DDHUB.board('):-3]}]")
        boards_[anchor] = [dict(zip(ROW_FIELDS, row)) for row in rows]
    return boards_


def site_index(site: Path) -> dict:
    import json

    text = (site / "data" / "index.js").read_text(encoding="ascii")
    return json.loads(text[len("DDHUB.index("):-3])


def test_index_has_a_row_per_card_on_each_board(site):
    rows = board_data(site)
    linf = rows["mnist-5k-linf-0.3"]
    # by robust accuracy 83, 62, 41 %; the hostile card's 77 % rests on 50 images: flagged, ranked last
    assert [r["model"] for r in linf] == [f"{ORG}/tvresnet-gamma", f"{ORG}/lenet-alpha", f"{ORG}/resnet-beta",
                                          f"{ORG}/hostile-card"]
    assert [r["rank"] for r in linf] == [1, 2, 3, 4]
    gamma = linf[0]
    assert (gamma["clean"], gamma["robust"], gamma["status"], gamma["architecture"], gamma["method"]) == \
        (0.97, 0.83, "self-reported", "tv:resnet18", "deep_defense")
    assert gamma["repo"] == f"{ORG}/tvresnet-gamma" and gamma["published"] == 1 and gamma["n"] == 100
    assert gamma["gain"] is None                                        # the reference's figure: not measured here
    hostile = linf[3]
    assert (hostile["method"], hostile["n"], hostile["evaluation"], hostile["published"]) == ("trades", 50,
                                                                                               "standard", 0)
    assert "fewer than the 100 a board requires" in hostile["flags"]
    assert linf[2]["evaluation"] == "custom (apgd-ce, apgd-t)"          # a custom version names its attacks
    assert [r["model"] for r in rows["mnist-5k-l2-2"]] == [f"{ORG}/resnet-beta"]
    untested = rows["no-threat-model"]
    assert [r["model"] for r in untested] == [f"{ORG}/lenet-delta"] and untested[0]["rho2"] == 0.3
    every = {r["model"] for board in rows.values() for r in board}
    assert every == {f"{ORG}/{name}" for name in [*MODELS, HOSTILE]}   # nothing silently disappears
    index = site_index(site)
    assert index["first"] == "mnist-5k-linf-0.3"                       # the board with the most distinct figures
    assert [b["anchor"] for b in index["boards"]] == ["mnist-5k-linf-0.3", "mnist-5k-l2-2", "no-threat-model"]
    assert index["facets"]["method"] == ["deep_defense", "trades"]
    assert (site / "index.html").stat().st_size < 20_000               # rows live in the data scripts


def test_the_first_board_is_not_one_where_every_row_is_zero(tmp_path):
    from dd_hub.hub.boards import informative_board

    cards_dir = write_cards(tmp_path / "cards")
    zero = with_robust(cards_dir, 0.0)                                    # every linf row at 0%
    assert all(r.robust_accuracy == 0.0 for r in boards(zero)[0].rows)
    assert informative_board(boards(zero)).anchor == "mnist-5k-l2-2"


def with_robust(cards_dir: Path, value: float) -> list:
    """The cards of ``cards_dir`` with every L-infinity AutoAttack figure set to ``value``."""
    import dataclasses

    cards, _ = load_local_cards(cards_dir)
    for card in cards:
        card.figures = [dataclasses.replace(f, value=value) if f.threat_model and f.threat_model[0] == "linf" else f
                        for f in card.figures]
        card.problems = []
    return cards


def test_no_external_url_is_loaded(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == 1 + len(MODELS) + 1
    for path in pages:
        page = parse(path)
        assert page.loaded, path
        for url in page.loaded:
            assert not url.lower().startswith(("http:", "https:", "//", "data:", "javascript:")), (path, url)
            assert (path.parent / url).resolve().is_file(), (path, url)  # relative and present
    for asset in ("site.css", "site.js"):
        text = (site / "assets" / asset).read_text()
        assert "http" not in text and "@import" not in text and "url(" not in text
    assert "XMLHttpRequest" not in (site / "assets" / "site.js").read_text()


def test_model_page_load_line_figures_and_hub_link(site):
    gamma = (site / "models" / f"{ORG}--tvresnet-gamma.html").read_text()
    assert "dd_hub.load(&#39;dd-test/tvresnet-gamma&#39;)" in gamma          # torchvision: not timm-loadable
    assert 'href="https://huggingface.co/dd-test/tvresnet-gamma"' in gamma
    alpha = (site / "models" / f"{ORG}--lenet-alpha.html").read_text()
    assert "timm.create_model(&#39;hf-hub:dd-test/lenet-alpha&#39;, pretrained=True)" in alpha
    assert 'src="dd-test--lenet-alpha/robustness_curve.png"' in alpha
    assert (site / "models" / f"{ORG}--lenet-alpha" / "robustness_curve.png").read_bytes().startswith(b"\x89PNG")
    assert "<table>" in alpha and "Deep Defense" in alpha                 # the card body, rendered
    assert "<h3>Figures (model-index)</h3>" in alpha and "AutoAttack robust accuracy, mnist-linf (linf, eps=0.3)" in alpha
    assert alpha.count("Test images: ") == 1 and "<th>dataset</th>" not in alpha   # one dataset: said once


def test_hostile_card_is_escaped_and_not_published(site):
    page = (site / "models" / f"{ORG}--{HOSTILE}.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert "<iframe" not in page and "onerror=alert" not in page.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    assert "javascript:" not in page
    assert 'href="https://example.com/docs"' in page                         # plain outbound links stay
    assert "image not shown: remote" in page
    assert not [url for url in parse(site / "models" / f"{ORG}--{HOSTILE}.html").loaded if "example.com" in url]
    assert f'src="{ORG}--{HOSTILE}/figs__curve.png"' in page
    assert "not published yet" in page and 'href="https://huggingface.co/dd-test/hostile-card"' not in page
    assert "dd_hub.load(" not in page and "ORG/" not in page               # no id yet: no load line at all


def test_render_markdown_whitelist():
    html = render_markdown('| a | b |\n|:--|--:|\n| <b>1</b> | [x](data:text/html,hi "t") |\n\n'
                           '```python\nprint("<hi>")\n```\n', images={})
    assert '<td style="text-align: left;">&lt;b&gt;1&lt;/b&gt;</td>' in html
    assert "data:" not in html and '<code class="language-python">' in html and "&lt;hi&gt;" in html


def test_broken_card_and_missing_figure_are_reported_not_dropped(tmp_path):
    cards_dir = write_cards(tmp_path / "cards")
    (cards_dir / "lenet-alpha" / "robustness_curve.png").unlink()
    (cards_dir / "broken").mkdir()
    (cards_dir / "broken" / "README.md").write_text("---\nmodel-index: [unclosed\n---\nbody\n")
    cards, notices = load_local_cards(cards_dir)
    assert len(cards) == len(MODELS) + 1 and len(notices) == 1 and "broken" in notices[0]
    alpha = next(c for c in cards if c.name == "lenet-alpha")
    assert alpha.missing_images == ["robustness_curve.png"] and alpha.images == {}
    result = build_site(cards, tmp_path / "out", notices=notices)
    index = result.index.read_text()
    assert "broken" in index and "not listed" in index
    assert "was not" in (tmp_path / "out" / "models" / f"{ORG}--lenet-alpha.html").read_text()


def test_rebuild_replaces_its_own_site_but_never_a_foreign_directory(tmp_path):
    cards, _ = load_local_cards(write_cards(tmp_path / "cards"))
    out = tmp_path / "out"
    build_site(cards, out)
    build_site(cards[:1], out)                                            # replaced: stale pages go away
    assert len(list((out / "models").glob("*.html"))) == 1
    foreign = tmp_path / "precious"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DDHubError, match="not a dd-hub site"):
        build_site(cards, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_output_is_deterministic(tmp_path):
    cards, _ = load_local_cards(write_cards(tmp_path / "cards"))
    build_site(cards, tmp_path / "a")
    build_site(list(reversed(cards)), tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_boards_of_an_empty_collection(tmp_path):
    assert boards([]) == []
    result = build_site([], tmp_path / "out")
    assert "No model cards found" in result.index.read_text()


def test_cli_site_from_local_cards(tmp_path):
    from dd_hub.cli import main

    cards_dir = write_cards(tmp_path / "cards")
    result = CliRunner().invoke(main, ["site", str(tmp_path / "out"), "--from", str(cards_dir)])
    assert result.exit_code == 0, result.output
    assert f"{len(MODELS) + 1} model(s), 3 board(s)" in result.output
    assert (tmp_path / "out" / "index.html").is_file()
    missing = CliRunner().invoke(main, ["site", str(tmp_path / "out2"), "--from", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "error:" in missing.output and "not a directory" in missing.output


# --- from the Hub (tests/hub_server.py, a loopback test double of the Hub's API) -----------------------------------
@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    from hub_server import FakeHub, point_client_at

    server = FakeHub().start()
    point_client_at(server, tmp_path / "hf_home", monkeypatch, None)
    yield server
    server.stop()


def publish_cards(hub, cards_dir: Path) -> None:
    """Every card folder of ``cards_dir`` as a repo ``ORG/<folder>`` of the Hub double."""
    from hub_server import Repo

    for folder in sorted(p for p in cards_dir.iterdir() if p.is_dir()):
        repo_id = f"{ORG}/{folder.name}"
        hub.repos[repo_id] = Repo(owner=ORG, private=False)
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        hub.commit(repo_id, "main", files, "upload")


def test_hub_cards_come_from_the_listing_pages_not_a_request_per_card(fake_hub, tmp_path, monkeypatch):
    import hub_server

    monkeypatch.setattr(hub_server, "PAGE_SIZE", 2)                     # 5 models: 3 pages
    publish_cards(fake_hub, write_cards(tmp_path / "cards"))
    fake_hub.requests.clear()
    cards, notices = load_hub_cards(verifications=False)
    assert notices == []
    assert sorted(c.repo_id for c in cards) == sorted(f"{ORG}/{n}" for n in [*MODELS, HOSTILE])
    assert fake_hub.requests == [("GET", "/api/models")] * 3            # the pages, nothing per card
    alpha = next(c for c in cards if c.repo_id == f"{ORG}/lenet-alpha")
    assert alpha.hub_images == ["robustness_curve.png"] and alpha.images == {}   # linked, never downloaded
    assert alpha.revision == fake_hub.repos[f"{ORG}/lenet-alpha"].branches["main"]
    assert [f.key for f in alpha.figures] == [f.key for f in load_local_cards(tmp_path / "cards")[0][1].figures]
    hostile = next(c for c in cards if c.repo_id == f"{ORG}/{HOSTILE}")
    assert hostile.hub_images == ["figs/curve.png"]
    assert len(load_hub_cards(verifications=False, limit=3)[0]) == 3   # --limit stops the pages


def test_unreachable_hub_fails_in_seconds_with_one_line(monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)                                  # accepts connections, never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    from dd_hub.hub import client

    monkeypatch.setattr(client, "HUB_TIMEOUT_S", 1.0)
    start = time.monotonic()
    try:
        with pytest.raises(DDHubError, match="no complete answer from the Hub within 1 s") as info:
            load_hub_cards()
    finally:
        silent.close()
    assert time.monotonic() - start < 15
    assert "\n" not in str(info.value)


# --- a real headless browser ----------------------------------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("no chromium/chromedriver installed (Debian: apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    profile = tempfile.mkdtemp(prefix="dd-hub-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})   # DevTools network events
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    except Exception as exc:  # a broken browser install is an environment problem, not a site bug
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"chromium does not start here: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def requested(driver) -> list[str]:
    """Every URL the site's pages requested since the last call: DevTools ``Network.requestWillBeSent`` events of
    documents opened from file:// (the browser's own new-tab page, chrome://, is not the site)."""
    import json

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent" and \
                (params.get("documentURL", "").startswith("file://") or params.get("type") == "Document"):
            urls.append(params["request"]["url"])
    return [url for url in urls if not url.startswith("chrome://")]


def _models(browser) -> list[str]:
    """The model names of the rows shown, top to bottom."""
    return browser.execute_script("return Array.prototype.map.call(document.querySelectorAll("
                                  "'#table tbody td.model'), function (c) { return c.textContent; });")


def _wait(browser, condition, timeout: float = 20.0):
    """``condition(browser)``'s first truthy value, polled (the boards are drawn by scripts loaded on demand)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.05,
                         ignored_exceptions=[StaleElementReferenceException]).until(condition)


def _no_overflow(browser) -> bool:
    return browser.execute_script("var d = document.documentElement, t = document.getElementById('table');"
                                  "return d.scrollWidth <= d.clientWidth && (!t || t.scrollWidth <= "
                                  "t.parentNode.clientWidth);")


def _click_header(browser, label: str) -> None:
    from selenium.webdriver.common.by import By

    header = next(th for th in browser.find_elements(By.CSS_SELECTOR, "#table thead th") if th.text.startswith(label))
    header.find_element(By.TAG_NAME, "button").click()


def test_browser_sorts_filters_searches_and_opens_a_model(site, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    requested(browser)
    browser.get((site / "index.html").as_uri())
    assert browser.title == "dd-hub leaderboard"
    by_robust = [f"{ORG}/tvresnet-gamma", f"{ORG}/lenet-alpha", f"{ORG}/resnet-beta", f"{ORG}/hostile-card"]
    assert _wait(browser, lambda b: _models(b) == by_robust)             # the first, most informative board
    assert browser.find_element(By.ID, "view-title").text == "mnist-5k · L∞, ε = 0.3"
    assert _no_overflow(browser)

    _click_header(browser, "Clean")                                     # best clean accuracy first
    by_clean = [f"{ORG}/resnet-beta", f"{ORG}/lenet-alpha", f"{ORG}/tvresnet-gamma", f"{ORG}/hostile-card"]
    assert _models(browser) == by_clean                                 # 99.5, 99.0, 97.0, 93.0 %
    _click_header(browser, "Clean")                                     # and back up
    assert _models(browser) == list(reversed(by_clean))
    _click_header(browser, "Model")                                     # text: A to Z
    assert _models(browser) == sorted(by_robust)
    _click_header(browser, "#")                                         # rank 1 first: back to the ranking
    assert _models(browser) == by_robust

    Select(browser.find_element(By.ID, "f-architecture")).select_by_value("resnet18")
    assert _models(browser) == [f"{ORG}/resnet-beta"]
    Select(browser.find_element(By.ID, "f-architecture")).select_by_value("")
    Select(browser.find_element(By.ID, "f-method")).select_by_value("trades")
    assert _models(browser) == [f"{ORG}/hostile-card"]
    Select(browser.find_element(By.ID, "f-method")).select_by_value("")

    Select(browser.find_element(By.ID, "board")).select_by_value("mnist-5k-l2-2")   # another board
    assert _wait(browser, lambda b: _models(b) == [f"{ORG}/resnet-beta"])

    box = browser.find_element(By.ID, "search")                         # across every board
    box.send_keys("delta")
    assert _wait(browser, lambda b: _models(b) == [f"{ORG}/lenet-delta"])
    box.clear()
    box.send_keys("tv:resnet18")                                        # by architecture
    assert _wait(browser, lambda b: _models(b) == [f"{ORG}/tvresnet-gamma"])
    box.clear()
    box.send_keys("no such model")
    assert _wait(browser, lambda b: b.find_element(By.ID, "page-info").text == "no rows")

    browser.get((site / "index.html").as_uri())
    link = _wait(browser, lambda b: b.find_element(By.LINK_TEXT, f"{ORG}/lenet-alpha"))
    link.click()
    assert browser.current_url.endswith(f"/models/{ORG}--lenet-alpha.html")
    assert browser.find_element(By.TAG_NAME, "h2").text == f"{ORG}/lenet-alpha"
    image = browser.find_element(By.CSS_SELECTOR, ".figures img")
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) == 8
    caption = browser.find_element(By.CSS_SELECTOR, ".figures figcaption").text
    assert caption.startswith("Robustness curve: accuracy against ε")  # not a file name
    assert _no_overflow(browser)
    loaded = requested(browser)
    assert any(url.endswith("/assets/site.js") for url in loaded) and any(url.endswith(".png") for url in loaded)
    assert any(url.endswith("/data/search.js") for url in loaded)       # loaded for the first search only
    assert all(url.startswith("file://") for url in loaded), loaded


def test_browser_ten_thousand_models(browser, tmp_path):
    """10,000 generated models: the index stays small, the first board renders a page of rows, and a search finds
    one model by name among all."""
    from selenium.webdriver.common.by import By

    import generated_cards

    out = tmp_path / "site"
    build_site(many_cards(10_000), out)
    assert (out / "index.html").stat().st_size < 20_000
    requested(browser)
    browser.get((out / "index.html").as_uri())
    _wait(browser, lambda b: len(_models(b)) == 50, timeout=60)
    assert "10,000" in browser.find_element(By.ID, "page-info").text or \
        "of 3," in browser.find_element(By.ID, "page-info").text
    assert _no_overflow(browser)
    target = generated_cards.repo_id(7777)
    browser.find_element(By.ID, "search").send_keys(generated_cards.name(7777))
    assert _wait(browser, lambda b: _models(b) == [target], timeout=60)
    browser.find_element(By.LINK_TEXT, target).click()
    assert browser.find_element(By.TAG_NAME, "h2").text == target
    assert f"hf-hub:{target}" in browser.find_element(By.CSS_SELECTOR, "pre code").text   # its real id
    assert all(url.startswith("file://") for url in requested(browser))


def many_cards(n: int) -> list:
    """``n`` cards made from 40 parsed generated cards under ``n`` names (parsing 10,000 would take seconds)."""
    import copy

    import generated_cards
    from dd_hub.hub.cards import parse_card

    base = [parse_card(generated_cards.card_text(i), name=generated_cards.name(i)) for i in range(40)]
    cards = []
    for i in range(n):
        card = copy.copy(base[i % len(base)])
        card.name, card.repo_id = generated_cards.name(i), generated_cards.repo_id(i)
        cards.append(card)
    return cards


def test_browser_loads_nothing_remote_on_the_hostile_page(site, browser):
    requested(browser)
    browser.get((site / "models" / f"{ORG}--{HOSTILE}.html").as_uri())
    loaded = requested(browser)
    assert any(url.endswith("figs__curve.png") for url in loaded)
    assert all(url.startswith("file://") for url in loaded), loaded
    assert browser.execute_script("return document.querySelectorAll('script').length") == 1


def test_browsing_never_imports_torch(tmp_path):
    """`list --from`, `show DIR`, `show NAME`, `cards` and `site --from` read Markdown: no torch, timm or torchvision
    (which take seconds to import), checked in a fresh process."""
    import subprocess
    import sys

    cards_dir = write_cards(tmp_path / "model_cards")
    script = f"""
import sys
from dd_hub.cli import main
for args in (["list", "--from", "model_cards"], ["list", "--from", "model_cards", "--json"],
             ["show", "model_cards/lenet-alpha"], ["show", "lenet-alpha"], ["cards", "model_cards"],
             ["site", "out", "--from", "model_cards"]):
    try:
        main(args, standalone_mode=False)
    except SystemExit as exc:
        assert not exc.code, (args, exc.code)
heavy = sorted(m for m in ("torch", "timm", "torchvision", "matplotlib") if m in sys.modules)
assert not heavy, heavy
print("no torch")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=cards_dir.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("no torch"), done.stderr[-2000:]


def test_verification_marks_cost_one_listing_page_whatever_the_number_of_models(fake_hub, monkeypatch):
    """The boards read the verifiers' record indexes (hub/record_index.py) from one listing page, never a request
    per model."""
    import hub_server

    import generated_cards
    from dd_hub.hub.record_index import index_card, index_repo
    from hub_server import Repo

    monkeypatch.setattr(hub_server, "PAGE_SIZE", 10)
    fake_hub.tokens["bob-token"] = "bob"
    for account in ("bob", "eve"):                                      # a trusted verifier, and another one
        fake_hub.repos[index_repo(account)] = Repo(owner=account, private=False)
        fake_hub.commit(index_repo(account), "main", {"README.md": index_card([], account).encode()}, "index")
    for n in (6, 60):
        generated_cards.publish(fake_hub, n - len(fake_hub.repos) + 2, start=len(fake_hub.repos) - 2)
        fake_hub.requests.clear()
        cards, notices = load_hub_cards(trusted=frozenset({"bob"}), limit=n)
        assert len(cards) == n and notices == []
        assert fake_hub.requests == [("GET", "/api/models")] * (-(-n // 10) + 1)   # the pages, and one of indexes


def test_list_from_a_folder_limits_fits_the_terminal_and_names_what_exists(tmp_path, monkeypatch):
    from dd_hub.cli import main

    cards_dir = write_cards(tmp_path / "cards")
    monkeypatch.setenv("COLUMNS", "72")
    table = CliRunner().invoke(main, ["list", "--from", str(cards_dir)])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0] == "mnist-5k · L∞, ε = 0.3" and all(len(line) <= 72 for line in lines)
    limited = CliRunner().invoke(main, ["list", "--from", str(cards_dir), "--limit", "2", "--json"])
    assert {row["model"] for board in __import__("json").loads(limited.output) for row in board["rows"]} == \
        {f"{ORG}/{HOSTILE}", f"{ORG}/lenet-alpha"}                      # the first two folders by name
    empty = CliRunner().invoke(main, ["list", "--from", str(cards_dir), "--dataset", "cifar10"])
    assert empty.exit_code == 0 and "for dataset cifar10" in empty.output
    assert "mnist-5k · L∞, ε = 0.3" in empty.output                    # what there is instead


def test_show_finds_a_folder_by_path_or_name_and_says_what_it_needs(tmp_path, monkeypatch):
    from dd_hub.cli import main

    cards_dir = write_cards(tmp_path / "model_cards")
    monkeypatch.chdir(tmp_path)
    by_name = CliRunner().invoke(main, ["show", "lenet-alpha"])
    by_path = CliRunner().invoke(main, ["show", str(cards_dir / "lenet-alpha")])
    assert by_name.exit_code == 0 and by_path.exit_code == 0 and "autoattack@mnist-linf" in by_name.output
    elsewhere = CliRunner().invoke(main, ["show", "lenet-alpha", "--from", str(tmp_path / "nowhere")])
    assert elsewhere.exit_code == 2 and elsewhere.output.startswith("error: no folder 'lenet-alpha'")
    assert elsewhere.output.count("\n") == 1 and "ORG/NAME" in elsewhere.output


def test_a_card_states_its_reference_and_the_boards_show_the_gain(tmp_path):
    """dd-hub's cards carry the reference model's figures (``dd_hub.reference``); a row's gain is its robust accuracy
    minus the reference's at the same threat model, in the JSON, the terminal table and the site's data."""
    from dd_hub.hub.boards import board_json, board_text
    from dd_hub.hub.card import render_card
    from dd_hub.hub.cards import parse_card

    data = metrics("gain", "resnet18", 0.99, 0.2, {"mnist-linf": aa(0.3, 0.62)})
    data["reference"]["autoattack"] = {"mnist-linf": aa(0.3, 0.12)}
    card = parse_card(render_card(data, repo_id=f"{ORG}/gain"), name="gain")
    assert card.reference == {"clean_accuracy": pytest.approx(0.992), "autoattack": {"mnist-linf": 0.12}}
    (board,) = boards([card])
    assert board.rows[0].gain == pytest.approx(0.50)
    assert board_json(board)["rows"][0]["gain"] == pytest.approx(0.50)
    assert "+50.00 pp" in board_text(board, 120)
    build_site([card], tmp_path / "site")
    assert board_data(tmp_path / "site")["mnist-5k-linf-0.3"][0]["gain"] == pytest.approx(0.50)
    page = (tmp_path / "site" / "models" / f"{ORG}--gain.html").read_text()
    assert "12.00%" in page and "+50.00 pp" in page                    # the reference and the gain, per figure
    bad = render_card(data, repo_id=f"{ORG}/gain").replace("mnist-linf: 0.12", "mnist-linf: 7.5")
    with pytest.raises(ValueError, match="reference"):                 # validated like every figure
        parse_card(bad, name="gain")


def test_thousands_of_index_repos_cannot_hide_a_trusted_verifiers_records(fake_hub, monkeypatch):
    """Index repos beyond what the listing returns (here 2 pages of 2) do not push a trusted account's index out:
    it is then asked for by its author."""
    import hub_server

    import generated_cards
    from dd_hub.hub import record_index
    from dd_hub.hub.record_index import index_card, index_repo
    from hub_server import Repo

    monkeypatch.setattr(record_index, "INDEX_PAGE", 2)
    monkeypatch.setattr(record_index, "MAX_PAGES", 2)
    generated_cards.publish(fake_hub, 3)
    for account in ("aaa", "bbb", "ccc", "ddd", "zed"):                  # zed, trusted, sorts last
        fake_hub.repos[index_repo(account)] = Repo(owner=account, private=False)
        fake_hub.commit(index_repo(account), "main", {"README.md": index_card([], account).encode()}, "index")
    fake_hub.requests.clear()
    load_hub_cards(trusted=frozenset({"zed"}))
    assert any("author=zed" in query for query in fake_hub.queries)
