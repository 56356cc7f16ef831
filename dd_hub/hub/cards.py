"""Model cards as the boards read them: from local folders or from the Hub, parsed under limits, validated.

Cards are written by anyone, so a card is read like any input from outside:

- its text is size-capped before parsing (:data:`MAX_CARD_BYTES`), its YAML front matter parsed without aliases
  (no "billion laughs") and under a depth and node limit, and nothing else of it is interpreted;
- its figures (the ``model-index`` entries dd-hub writes: clean ``accuracy``, ``robust_accuracy`` and ``rho2``) are
  validated: accuracies are fractions in [0, 1], every number finite, norms known, budgets in range. A card whose
  figures are invalid is left out with a one-line notice; one bad card never stops the others;
- claims that cannot be true are flagged (:attr:`Card.problems`): robust accuracy above clean accuracy, an
  AutoAttack figure measured on fewer images than :data:`MIN_AUTOATTACK_EXAMPLES`;
- text that reaches a terminal or a Markdown table goes through :func:`dd_hub.text.one_line`;
- images are read only inside the card's folder (or from its repo), only PNGs, size-capped; links are not followed.

Whether a figure was re-measured by someone else is not the card's to say: verification records
(:mod:`dd_hub.hub.verification`) are attached to cards when they are collected (:mod:`dd_hub.hub.collection`).
"""
from __future__ import annotations

import math
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import DDHubError
from ..storage.limited_yaml import YAMLLimitError, load_yaml as load_limited_yaml
from ..text import one_line
from .client import validate_repo_id

HUB_URL = "https://huggingface.co"
MAX_CARD_BYTES = 512 << 10
MAX_IMAGE_BYTES = 5 << 20
MAX_IMAGES = 8
MAX_FIGURES = 200
MAX_YAML_DEPTH = 16
MAX_YAML_NODES = 20_000
MAX_TEXT = 200                       # characters of any string field kept from a card
MAX_EPS = {"linf": 1.0, "l2": 1000.0}  # [0, 1] pixel space: an L-infinity budget above 1 means nothing
MAX_EXAMPLES = 10_000_000
#: the fewest test images an AutoAttack figure must rest on to be ranked without a flag (sampling error at 100
#: images is about +-5 points at 50%)
MIN_AUTOATTACK_EXAMPLES = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?")
MARKDOWN_IMAGE_ALT = re.compile(r"!\[([^\]]{0,300})\]\(\s*<?([^)\s>]+)>?")
FRONT_MATTER = re.compile(r"\A\s*---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
FIGURE_TYPES = ("accuracy", "robust_accuracy", "rho2")
NORMS = ("linf", "l2")


def figure_key(metric_type: str, args: dict) -> str:
    """A figure's name across dd-hub: ``clean_accuracy``, ``rho2``, ``autoattack@<threat model>``,
    ``<attack>@<fraction>eps_ref`` or ``<attack>@<eps>`` (attack fgs, pgd)."""
    def number(value) -> str:
        return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)[:40]

    if metric_type == "accuracy":
        return "clean_accuracy"
    if metric_type == "rho2":
        return "rho2"
    attack = str(args.get("attack", metric_type))[:40]
    if "threat_model" in args:
        return f"{attack}@{str(args['threat_model'])[:40]}"
    if "fraction" in args:
        return f"{attack}@{number(args['fraction'])}eps_ref"
    if "eps" in args:
        return f"{attack}@{number(args['eps'])}"
    return attack


class InvalidCard(ValueError):
    """A card that breaks the rules above; its message is one line."""


@dataclass(frozen=True)
class Figure:
    """One validated ``model-index`` metric of a card."""

    kind: str                        # 'accuracy' (clean), 'robust_accuracy' or 'rho2'
    value: float
    name: str
    args: dict
    dataset: str
    split: str

    @property
    def key(self) -> str:
        """The figure's name across dd-hub (``clean_accuracy``, ``autoattack@mnist-l2``, ...)."""
        return figure_key(self.kind, self.args)

    @property
    def threat_model(self) -> tuple[str, float] | None:
        """``(norm, eps)`` of an AutoAttack figure, else None."""
        if self.kind == "robust_accuracy" and self.args.get("attack") == "autoattack":
            return self.args["norm"], self.args["eps"]
        return None


@dataclass
class Card:
    """One card, parsed and validated, with the PNGs its body shows and the verification records found for it."""

    name: str                        # folder name (local) or repo name (Hub)
    repo_id: str | None
    info: dict                       # the ``dd_hub`` metadata block, strings made safe
    library: str | None
    figures: list[Figure]
    body: str
    source: str = ""                 # where it was read from, for messages
    revision: str | None = None      # the Hub commit the card was read at
    images: dict[str, bytes] = field(default_factory=dict)
    missing_images: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)        # claims that cannot be true
    verifications: list = field(default_factory=list)         # dd_hub.hub.verification.Verification
    reference: dict = field(default_factory=dict)             # the reference model's figures (``_reference``)
    base_model: str | None = None    # the Hub id of the starting weights, as the card states it
    hub_images: list[str] = field(default_factory=list)       # PNGs of its Hub repo (linked, never copied)
    trusted: frozenset = frozenset()                         # accounts whose records rank as verified
    verification_complete: bool = True                       # False when not every pull request could be read
    weights_sha256: str | None = None                         # of model.safetensors, as the Hub computed it (LFS)

    @property
    def published(self) -> bool:
        """False when the card says its weights are not on the Hub yet (``dd_hub.published: false``)."""
        return self.info.get("published", True) is not False

    @property
    def timm_loadable(self) -> bool:
        return self.library == "timm"

    @property
    def title(self) -> str:
        return self.repo_id or self.name

    def figure(self, kind: str) -> Figure | None:
        return next((f for f in self.figures if f.kind == kind), None)

    def values(self) -> dict[str, float]:
        """Figure name -> value (the names of :func:`dd_hub.hub.card.report_metrics`)."""
        return {f.key: f.value for f in self.figures}

    def add_image(self, ref: str, data: bytes | None) -> None:
        """Keep the PNG ``data`` the card shows as ``ref``; anything else (absent, not a PNG, too big) is missing."""
        if data is not None and data.startswith(PNG_SIGNATURE) and len(data) <= MAX_IMAGE_BYTES:
            self.images[ref] = data
        else:
            self.missing_images.append(ref)


# --- parsing ------------------------------------------------------------------------------------------------------
def load_yaml(text: str) -> Any:
    """``text`` as YAML under :mod:`dd_hub.storage.limited_yaml`'s limits (no alias, :data:`MAX_YAML_DEPTH` levels,
    :data:`MAX_YAML_NODES` nodes, nothing built before they are checked), or :class:`InvalidCard`."""
    try:
        return load_limited_yaml(text, max_depth=MAX_YAML_DEPTH, max_nodes=MAX_YAML_NODES)
    except YAMLLimitError as exc:
        raise InvalidCard(str(exc)) from None


def check_metadata_limits(data: Any) -> None:
    """The same depth and node limits as :func:`load_yaml`, for card metadata that arrives as JSON (the Hub's
    listing): :class:`InvalidCard` when it breaks them. Walks without recursion."""
    stack, nodes = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if depth > MAX_YAML_DEPTH or nodes > MAX_YAML_NODES:
            raise InvalidCard(f"its metadata is deeper than {MAX_YAML_DEPTH} or larger than {MAX_YAML_NODES} nodes")
        if isinstance(value, dict):
            stack += [(item, depth + 1) for item in value.values()]
        elif isinstance(value, list):
            stack += [(item, depth + 1) for item in value]


def parse_card(text: str, *, name: str, repo_id: str | None = None, source: str = "") -> Card:
    """A :class:`Card` from a README's text, or :class:`InvalidCard` with a one-line reason."""
    if len(text) > MAX_CARD_BYTES or len(text.encode("utf-8", errors="replace")) > MAX_CARD_BYTES:
        raise InvalidCard(f"it is larger than {MAX_CARD_BYTES:,} bytes")
    match = FRONT_MATTER.match(text)
    if match is None:
        raise InvalidCard("it has no YAML front matter")
    return card_from_metadata(load_yaml(match.group(1)), name=name, repo_id=repo_id, source=source,
                              body=text[match.end():])


def card_from_metadata(data: Any, *, name: str, repo_id: str | None = None, source: str = "",
                       body: str = "") -> Card:
    """A :class:`Card` from a card's parsed metadata (its front matter, or the ``cardData`` of the Hub's listing),
    validated like :func:`parse_card`; ``body`` is the Markdown after the front matter, when it was read."""
    if not isinstance(data, dict):
        raise InvalidCard("its front matter is not a mapping")
    info = _info(data.get("dd_hub"))
    if repo_id is None:
        repo_id = _repo_id(info.get("repo_id"))
    library = data.get("library_name") if isinstance(data.get("library_name"), str) else None
    block = data.get("dd_hub") if isinstance(data.get("dd_hub"), dict) else {}
    card = Card(name=one_line(name, MAX_TEXT), repo_id=repo_id, info=info, library=one_line(library or "", 40) or None,
                figures=_figures(data.get("model-index"), info), body=body, source=source,
                reference=_reference(block.get("reference")),
                base_model=_repo_id(data.get("base_model")) if isinstance(data.get("base_model"), str) else None)
    card.problems = impossible_claims(card)
    return card


def _reference(block: Any) -> dict:
    """The ``dd_hub.reference`` block (the reference model's clean and AutoAttack accuracies on the same images),
    validated: ``{"clean_accuracy": x, "autoattack": {threat model: y}}``, or empty."""
    if not isinstance(block, dict):
        return {}
    reference: dict = {"autoattack": {}}
    if block.get("clean_accuracy") is not None:
        reference["clean_accuracy"] = _number(block["clean_accuracy"], "the reference's clean accuracy", 0.0, 1.0)
    autoattack = block.get("autoattack") if isinstance(block.get("autoattack"), dict) else {}
    for key, value in list(autoattack.items())[:20]:
        if isinstance(key, str):
            reference["autoattack"][one_line(key, 60)] = _number(value, f"the reference's {key[:40]!r}", 0.0, 1.0)
    return reference


def _info(block: Any) -> dict:
    """The ``dd_hub`` block with plain values only, strings made one safe line."""
    if not isinstance(block, dict):
        return {}
    info: dict = {}
    for key, value in list(block.items())[:50]:
        if not isinstance(key, str):
            continue
        if isinstance(value, bool) or value is None:
            info[key] = value
        elif isinstance(value, (int, float, str)):
            info[key] = one_line(value, MAX_TEXT) if isinstance(value, str) else value
        elif isinstance(value, list):
            info[key] = [one_line(v, MAX_TEXT) for v in value[:20] if isinstance(v, (str, int, float))]
    return info


def _repo_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return validate_repo_id(value)
    except DDHubError:
        return None


def _plain(value: Any, depth: int = 0) -> Any:
    """A metric's args made plain and safe (strings one line, finite numbers, short lists), or None to drop it."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return one_line(value, MAX_TEXT)
    if isinstance(value, list) and depth < 2:
        return [v for v in (_plain(item, depth + 1) for item in value[:20]) if v is not None]
    if isinstance(value, dict) and depth < 2:
        return {one_line(k, 50): v for k, v in ((k, _plain(item, depth + 1)) for k, item in list(value.items())[:20])
                if v is not None}
    return None


def _number(value: Any, what: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise InvalidCard(f"{what} must be a number in [{low:g}, {high:g}], not {str(value)[:40]!r}")
    return float(value)


def _figures(model_index: Any, info: dict) -> list[Figure]:
    """The validated figures of a ``model-index`` (entries of other metric types are ignored)."""
    if model_index is None:
        return []
    if not isinstance(model_index, list) or not model_index or not isinstance(model_index[0], dict):
        raise InvalidCard("its model-index is not a list of models")
    results = model_index[0].get("results") or []
    if not isinstance(results, list):
        raise InvalidCard("its model-index results are not a list")
    figures: list[Figure] = []
    for result in results:
        if not isinstance(result, dict):
            raise InvalidCard("a model-index result is not a mapping")
        dataset = result.get("dataset") if isinstance(result.get("dataset"), dict) else {}
        metrics = result.get("metrics") or []
        if not isinstance(metrics, list):
            raise InvalidCard("a model-index result's metrics are not a list")
        for metric in metrics:
            if not isinstance(metric, dict) or metric.get("type") not in FIGURE_TYPES:
                continue
            if len(figures) >= MAX_FIGURES:
                raise InvalidCard(f"it has more than {MAX_FIGURES} figures")
            figures.append(_figure(metric, dataset, info))
    return figures


def _figure(metric: dict, dataset: dict, info: dict) -> Figure:
    kind = metric["type"]
    args = _plain(metric.get("args")) if isinstance(metric.get("args"), dict) else {}
    label = f"{kind} ({one_line(metric.get('name') or '', 60)})"
    high = 100.0 if kind == "rho2" else 1.0
    value = _number(metric.get("value"), f"the value of {label}", 0.0, high)
    if kind == "robust_accuracy" and args.get("attack") == "autoattack":
        norm = str(args.get("norm", "")).lower()
        if norm not in NORMS:
            raise InvalidCard(f"{label}: norm must be one of {', '.join(NORMS)}, not {str(args.get('norm'))[:20]!r}")
        eps = _number(args.get("eps"), f"{label}: eps", 0.0, MAX_EPS[norm])
        if eps == 0:
            raise InvalidCard(f"{label}: eps must be positive")
        args = {**args, "norm": norm, "eps": eps}
    if "n_examples" in args:
        n = args["n_examples"]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_EXAMPLES:
            raise InvalidCard(f"{label}: n_examples must be a whole number from 1 to {MAX_EXAMPLES:,}")
    dataset_name = dataset.get("name") or info.get("dataset") or "?"
    return Figure(kind, value, one_line(metric.get("name") or kind, MAX_TEXT), args,
                  one_line(dataset_name, MAX_TEXT), one_line(dataset.get("split") or "", 40))


def impossible_claims(card: Card) -> list[str]:
    """The card's claims that cannot be true, or that a board cannot rank without a flag, one line each."""
    problems = []
    clean = card.figure("accuracy")
    for figure in card.figures:
        if figure.kind == "robust_accuracy" and clean is not None and figure.value > clean.value + 1e-9:
            problems.append(f"{figure.name}: robust accuracy {figure.value:.2%} is above the clean accuracy "
                            f"{clean.value:.2%}")
        n = figure.args.get("n_examples")
        if figure.threat_model is not None and isinstance(n, int) and n < MIN_AUTOATTACK_EXAMPLES:
            problems.append(f"{figure.name}: measured on {n} images, fewer than the {MIN_AUTOATTACK_EXAMPLES} a "
                            "board requires")
        if figure.threat_model is not None and n is None:
            problems.append(f"{figure.name}: it does not say how many images it was measured on")
    if clean is None and any(figure.threat_model is not None for figure in card.figures):
        problems.append("no clean accuracy stated beside the robust figures")
    return problems


# --- images -------------------------------------------------------------------------------------------------------
def referenced_images(body: str) -> list[str]:
    """Relative paths of the PNG images the Markdown ``body`` shows, normalised, in order, at most
    :data:`MAX_IMAGES`."""
    found = []
    for src in MARKDOWN_IMAGE.findall(body):
        path = local_path(src)
        if path is not None and path.lower().endswith(".png") and path not in found:
            found.append(path)
        if len(found) == MAX_IMAGES:
            break
    return found


def image_captions(body: str) -> dict[str, str]:
    """Normalised path -> alt text of the images the Markdown ``body`` shows (the first alt text of each)."""
    captions: dict[str, str] = {}
    for match in MARKDOWN_IMAGE_ALT.finditer(body):
        path = local_path(match.group(2))
        if path is not None and path not in captions:
            captions[path] = one_line(match.group(1), MAX_TEXT)
    return captions


def local_path(url: str) -> str | None:
    """``url`` as a normalised path inside the card's folder, or None (remote, absolute or escaping it)."""
    parts = urlsplit(url.strip())
    if parts.scheme or parts.netloc or not parts.path:
        return None
    path = posixpath.normpath(unquote(parts.path))
    if path.startswith(("/", "../")) or path in (".", "..") or "\\" in path or "\x00" in path:
        return None
    return path


def read_local_image(folder: Path, ref: str) -> bytes | None:
    """A PNG inside ``folder`` (no link anywhere on the way, nothing outside it), size-capped, or None."""
    target = folder / ref
    parts = [folder / Path(*Path(ref).parts[: i + 1]) for i in range(len(Path(ref).parts))]
    if any(p.is_symlink() for p in parts) or not target.is_file():
        return None
    try:
        resolved, root = target.resolve(), folder.resolve()
        if root not in resolved.parents or resolved.stat().st_size > MAX_IMAGE_BYTES:
            return None
        return resolved.read_bytes()
    except OSError:
        return None
