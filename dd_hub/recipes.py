"""Recipes: one YAML file per dataset/network setting, loaded into dataclasses and validated strictly.

A recipe is data. Unknown keys and wrong types are errors that name the key; CLI overrides use dotted keys
(``--set harden.lr=0.01``) and go through the same validation.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .attacks.threat_models import standard_threat_models
from .data import DataConfig
from .defense import DeepDefenseConfig
from .errors import DDHubError
from .evaluate import EvalConfig
from .methods import AdversarialConfig, ParsevalConfig, list_methods
from .train import TrainConfig


@dataclass
class Recipe:
    """Everything `dd-hub harden` needs: model, data, reference training, Deep Defense, evaluation."""

    name: str
    model: str
    dataset: str
    description: str = ""
    aliases: list[str] = field(default_factory=list)
    any_model: bool = False                 # used for any model on `dataset` that no recipe names (see find_recipe)
    method: str = "deep_defense"
    seed: int = 1234
    pretrained: bool = False                # start from the library's pretrained weights
    model_args: dict[str, Any] = field(default_factory=dict)  # constructor arguments (timm's model_args)
    license: str | None = None              # the card's license; None: the starting model's (timm's pretrained_cfg)
    channels_last: bool | None = None       # conv weights in NHWC; None: on a GPU for networks with 2-D convolutions
    rho_space: str = "pixel"                # space of ||r||/||x|| in the regularizer and in rho_2
    max_train_examples: int | None = None   # train on the first N training images only (smoke tests, sweeps)
    reference: TrainConfig | None = None    # trains the starting model when no weights are given
    data: DataConfig = field(default_factory=DataConfig)
    harden: TrainConfig = field(default_factory=TrainConfig)
    defense: DeepDefenseConfig = field(default_factory=DeepDefenseConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)  # baselines' settings
    parseval: ParsevalConfig = field(default_factory=ParsevalConfig)

    def __post_init__(self) -> None:
        if self.method not in list_methods():
            raise DDHubError(f"unknown method '{self.method}'; available: {', '.join(list_methods())}")
        if self.rho_space not in ("pixel", "centered"):
            raise DDHubError(f"rho_space must be 'pixel' or 'centered', not '{self.rho_space}'")
        if self.evaluation.autoattack is None:
            self.evaluation.autoattack = standard_threat_models(self.dataset)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Range:
    """Valid values of a number (or of every number in a list): ``low <= x`` (``low < x`` when ``open_low``) and
    ``x <= high`` (``x < high`` when ``open_high``); None leaves that side unbounded."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, x: float) -> bool:
        above = self.low is None or (x > self.low if self.open_low else x >= self.low)
        below = self.high is None or (x < self.high if self.open_high else x <= self.high)
        return above and below and x == x  # NaN is in no range

    def __str__(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {self.high:g}")
        return " and ".join(parts)


POSITIVE, NON_NEGATIVE, AT_LEAST_ONE, AT_LEAST_TWO = Range(0, open_low=True), Range(0), Range(1), Range(2)
FRACTION = Range(0, 1, open_low=True)
#: the valid range of every numeric recipe setting, checked when a recipe is loaded, before any work
RANGES: dict[type, dict[str, Range]] = {
    TrainConfig: {"epochs": NON_NEGATIVE, "batch_size": AT_LEAST_ONE, "lr": POSITIVE,
                  "momentum": Range(0, 1, open_high=True), "weight_decay": NON_NEGATIVE, "lr_milestones": AT_LEAST_ONE, "lr_decay": FRACTION,
                  "grad_accumulation": AT_LEAST_ONE},
    DeepDefenseConfig: {"lam": NON_NEGATIVE, "c": POSITIVE, "d": POSITIVE, "steps": AT_LEAST_ONE,
                        "candidates": AT_LEAST_TWO, "overshoot": NON_NEGATIVE, "authors_eps": POSITIVE},
    EvalConfig: {"deepfool_steps": AT_LEAST_ONE, "candidates": AT_LEAST_TWO, "overshoot": NON_NEGATIVE,
                 "fgs_eps": NON_NEGATIVE, "fgs_fractions": POSITIVE, "eps_ref_tolerance": POSITIVE,
                 "batch_size": AT_LEAST_ONE, "max_examples": AT_LEAST_ONE, "pgd_steps": NON_NEGATIVE,
                 "pgd_restarts": AT_LEAST_ONE, "pgd_eps": NON_NEGATIVE, "sanity_max_examples": AT_LEAST_ONE,
                 "autoattack_max_examples": AT_LEAST_ONE},
    AdversarialConfig: {"eps": NON_NEGATIVE, "steps": AT_LEAST_ONE, "step_size": POSITIVE,
                        "fgs_weight": Range(0, 1), "trades_beta": NON_NEGATIVE, "deepfool_steps": AT_LEAST_ONE,
                        "deepfool_overshoot": NON_NEGATIVE},
    ParsevalConfig: {"beta": NON_NEGATIVE, "fraction": FRACTION},
    Recipe: {"seed": NON_NEGATIVE, "max_train_examples": AT_LEAST_ONE},
    DataConfig: {"workers": NON_NEGATIVE},
}


def _check_ranges(cls: type, values: dict[str, Any], where: str) -> None:
    for key, valid in RANGES.get(cls, {}).items():
        value = values.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, (int, float)) and not isinstance(item, bool) and item not in valid:
                raise DDHubError(f"recipe key '{_join(where, key)}' must be {valid}, got {item!r}")


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types with a clear message."""
    if not isinstance(data, dict):
        raise DDHubError(f"{where or 'recipe'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise DDHubError(f"unknown recipe key '{_join(where, unknown[0])}'; valid keys here: {', '.join(sorted(names))}")
    kwargs = {key: _coerce(hints[key], value, _join(where, key)) for key, value in data.items()}
    _check_ranges(cls, kwargs, where)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise DDHubError(f"recipe {where or 'top level'}: {exc}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, where)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise DDHubError(f"recipe key '{where}' must be a mapping of names to values, got {value!r}")
        for key, item in value.items():
            _check_plain(item, f"{where}.{key}")
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            raise DDHubError(f"recipe key '{where}' must be a list, got {value!r}")
        return [_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads '1e6' (no dot) as a string
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise DDHubError(f"recipe key '{where}' must be {hint.__name__}, got {value!r}")


def _check_plain(value: Any, where: str) -> None:
    """Model arguments are plain data (numbers, strings, booleans, null and lists of them), as config.json holds."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise DDHubError(f"recipe key '{where}' must be a number, string, boolean or list, got {value!r}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


#: keys older metrics.json files record in their evaluation section that now live elsewhere (rho_space: the recipe's)
LEGACY_EVALUATION_KEYS = ("rho_space",)


def eval_config_from_dict(data: dict) -> EvalConfig:
    """An :class:`EvalConfig` from plain data, validated like a recipe's ``evaluation`` section."""
    return _build(EvalConfig, {k: v for k, v in data.items() if k not in LEGACY_EVALUATION_KEYS}, "evaluation")


def recipe_from_dict(data: dict, overrides: dict[str, Any] | None = None) -> Recipe:
    data = _with_overrides(data, overrides or {})
    return _build(Recipe, data, "")


def _with_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    data = yaml.safe_load(yaml.safe_dump(data))  # deep copy of plain data
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise DDHubError(f"cannot override '{dotted}': '{key}' is not a section")
        node[leaf] = value
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``'harden.lr=0.01'`` -> ``('harden.lr', 0.01)``; values are parsed as YAML scalars/lists."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise DDHubError(f"override '{text}' must look like KEY=VALUE, e.g. harden.lr=0.01")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise DDHubError(f"cannot read the value of --set {text}: {str(exc).splitlines()[0]}; quote it or write "
                         "it as YAML, e.g. harden.lr_milestones=[4]") from None


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DDHubError(f"cannot read recipe {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DDHubError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return recipe_from_dict(data, overrides)
    except DDHubError as exc:
        raise DDHubError(f"{path.name}: {exc}") from None


def builtin_recipes() -> dict[str, Path]:
    """Name -> path of every recipe shipped in ``recipes/``."""
    root = resources.files("dd_hub.recipe_files")
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".yaml")}


def find_recipe(model: str, dataset: str, overrides: dict[str, Any] | None = None) -> Recipe:
    """The built-in recipe for ``model`` (name or alias) on ``dataset``; else the recipe for any model on that
    dataset (``any_model: true``), else ``generic``; in the last two the model (and the name) become ``model``'s."""
    recipes = {name: (path, yaml.safe_load(path.read_text())) for name, path in sorted(builtin_recipes().items())}
    for path, data in recipes.values():
        if data.get("dataset") == dataset and model in [data.get("model"), *data.get("aliases", [])] \
                and not data.get("any_model"):
            return load_recipe(path, overrides)
    fallback = [path for path, data in recipes.values() if data.get("any_model") and data.get("dataset") == dataset]
    path = fallback[0] if fallback else recipes.get("generic", (None, None))[0]
    if path is None:
        raise DDHubError(f"no recipe for '{model}' on '{dataset}'; pass --recipe FILE (see recipes/)")
    return load_recipe(path, {"model": model, "dataset": dataset, "name": f"{model}-{dataset}", **(overrides or {})})
