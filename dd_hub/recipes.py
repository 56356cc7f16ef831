"""Recipes: one YAML file per dataset/network setting, loaded into dataclasses and validated strictly.

A recipe is data. The rules of its keys are the annotations of the settings dataclasses (:mod:`dd_hub.settings`):
unknown keys, wrong types and out-of-range values are one-line errors that name the key, before any work. CLI
overrides use dotted keys (``--set harden.lr=0.01``) and go through the same checks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from .attacks.threat_models import standard_threat_models
from .data.datasets import DATASETS, DataConfig
from .errors import DDHubError, first_line
from .evaluation.report import EvalConfig
from .storage.atomic_io import read_text_limited
from .storage.limited_yaml import YAMLLimitError, load_yaml
from .settings import AT_LEAST_ONE, SEED, OneOf, Settings, build
from .training.deep_defense import DeepDefenseConfig
from .training.loop import TrainConfig
from .training.objectives import AdversarialConfig, ParsevalConfig, list_methods

NOUN = "recipe key"
MAX_RECIPE_BYTES = 512 << 10


@dataclass
class Recipe(Settings):
    """Everything `dd-hub harden` needs: model, data, reference training, Deep Defense, evaluation."""

    name: str
    model: str
    dataset: str
    description: str = ""
    aliases: list[str] = field(default_factory=list)
    any_model: bool = False                 # used for any model on `dataset` that no recipe names (see find_recipe)
    method: Annotated[str, OneOf(list_methods)] = "deep_defense"
    seed: Annotated[int, SEED] = 1234
    pretrained: bool = False                # start from the library's pretrained weights
    model_args: dict[str, Any] = field(default_factory=dict)  # constructor arguments (timm's model_args)
    license: str | None = None              # the card's license; None: the starting model's (timm's pretrained_cfg)
    channels_last: bool | None = None       # conv weights in NHWC; None: on a GPU for networks with 2-D convolutions
    rho_space: Literal["pixel", "centered"] = "pixel"  # space of ||r||/||x|| in the regularizer and in rho_2
    max_train_examples: Annotated[int, AT_LEAST_ONE] | None = None  # train on the first N training images only
    smoke: bool = False                     # a smoke run (--smoke, :func:`smoke_overrides`): never published
    reference: TrainConfig | None = None    # trains the starting model when no weights are given
    data: DataConfig = field(default_factory=DataConfig)
    harden: TrainConfig = field(default_factory=TrainConfig)
    defense: DeepDefenseConfig = field(default_factory=DeepDefenseConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)  # baselines' settings
    parseval: ParsevalConfig = field(default_factory=ParsevalConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.evaluation.autoattack is None:
            self.evaluation.autoattack = standard_threat_models(self.dataset)

    def to_dict(self) -> dict:
        return asdict(self)


#: keys older metrics.json files record in their evaluation section that now live elsewhere (rho_space: the recipe's)
LEGACY_EVALUATION_KEYS = ("rho_space",)


def eval_config_from_dict(data: dict) -> EvalConfig:
    """An :class:`EvalConfig` from plain data, validated like a recipe's ``evaluation`` section."""
    return build(EvalConfig, {k: v for k, v in data.items() if k not in LEGACY_EVALUATION_KEYS}, "evaluation",
                 noun=NOUN)


#: a smoke run (``--smoke``): the whole pipeline on this many training and test images, one hardening epoch and
#: at most this many reference epochs (on 500 images they cost little). The reference must be decent: hardening a
#: poor one says little, and its many misclassified images make the exp(d * rho) term dominate (measured on LeNet:
#: 300 images and 10 epochs gave a 75% reference that one hardening epoch took to 7.5%; 500 and 20 give 87.5%,
#: kept by hardening, at one thread, and 85% -> 77.5% at two; 39 s wall on 2 cores, ResNet-18's 52 s)
SMOKE_TRAIN_EXAMPLES = 500
SMOKE_TEST_EXAMPLES = 40
SMOKE_REFERENCE_EPOCHS = 20


def smoke_overrides(data: dict) -> dict[str, Any]:
    """The overrides ``--smoke`` adds under the user's own (which win): every phase of the recipe in ``data`` (its
    reference training, hardening, every evaluation kind with AutoAttack's default attacks and the masking checks)
    kept, on :data:`SMOKE_TRAIN_EXAMPLES` training and :data:`SMOKE_TEST_EXAMPLES` test images, one hardening
    epoch and at most :data:`SMOKE_REFERENCE_EPOCHS` reference epochs."""
    limit = data.get("max_train_examples")
    overrides: dict[str, Any] = {
        "smoke": True, "harden.epochs": 1,
        "max_train_examples": min(limit, SMOKE_TRAIN_EXAMPLES) if isinstance(limit, int) else SMOKE_TRAIN_EXAMPLES,
        **{f"evaluation.{key}": SMOKE_TEST_EXAMPLES
           for key in ("max_examples", "autoattack_max_examples", "sanity_max_examples")}}
    reference = data.get("reference")
    if isinstance(reference, dict):
        epochs = reference.get("epochs")
        overrides["reference.epochs"] = min(epochs, SMOKE_REFERENCE_EPOCHS) if isinstance(epochs, int) else 1
    return overrides


def recipe_from_dict(data: dict, overrides: dict[str, Any] | None = None, *, smoke: bool = False) -> Recipe:
    """A :class:`Recipe` from plain data, ``overrides`` (dotted keys) applied, after :func:`smoke_overrides` when
    ``smoke``."""
    overrides = {**(smoke_overrides(data) if smoke and isinstance(data, dict) else {}), **(overrides or {})}
    data = _with_overrides(data, overrides)
    return build(Recipe, data, "", noun=NOUN)


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
        raise DDHubError(f"cannot read the value of --set {text}: {first_line(exc)}; quote it or write "
                         "it as YAML, e.g. harden.lr_milestones=[4]") from None


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None, *, smoke: bool = False) -> Recipe:
    path = Path(path)
    try:
        data = load_yaml(read_text_limited(path, MAX_RECIPE_BYTES))
    except OSError as exc:
        raise DDHubError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    except (YAMLLimitError, ValueError) as exc:   # too large, not UTF-8, aliases, too deep, not YAML
        raise DDHubError(f"recipe {path} is refused: {first_line(exc)}; recipes are read under the limits of "
                         "cards (512 KiB, no YAML aliases, 16 levels)") from None
    try:
        return recipe_from_dict(data, overrides, smoke=smoke)
    except DDHubError as exc:
        raise DDHubError(f"{path.name}: {exc}") from None


def builtin_recipes() -> dict[str, Path]:
    """Name -> path of every recipe shipped in ``recipes/``."""
    root = resources.files("dd_hub.recipe_files")
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir() if str(p).endswith(".yaml")}


def find_recipe(model: str, dataset: str, overrides: dict[str, Any] | None = None, *, smoke: bool = False) -> Recipe:
    """The built-in recipe for ``model`` (name or alias) on ``dataset``; else the recipe for any model on that
    dataset (``any_model: true``), else ``generic``; in the last two the model (and the name) become ``model``'s.
    Names are matched without regard to case, as datasets are (``MNIST-5k`` is ``mnist-5k``)."""
    dataset = canonical_dataset(dataset)
    recipes = {name: (path, yaml.safe_load(path.read_text())) for name, path in sorted(builtin_recipes().items())}

    def same(a: object, b: str) -> bool:
        return isinstance(a, str) and a.lower() == b.lower()

    for path, data in recipes.values():
        if same(data.get("dataset"), dataset) and any(same(name, model) for name in [data.get("model"),
                                                                                    *data.get("aliases", [])]) \
                and not data.get("any_model"):
            return load_recipe(path, overrides, smoke=smoke)
    fallback = [path for path, data in recipes.values() if data.get("any_model") and same(data.get("dataset"), dataset)]
    path = fallback[0] if fallback else recipes.get("generic", (None, None))[0]
    if path is None:
        raise DDHubError(f"no recipe for '{model}' on '{dataset}'; pass --recipe FILE (see recipes/)")
    return load_recipe(path, {"model": model, "dataset": dataset, "name": f"{model}-{dataset}", **(overrides or {})},
                       smoke=smoke)


def canonical_dataset(name: str) -> str:
    """dd-hub's own spelling of a dataset name it knows (``MNIST-5k`` -> ``mnist-5k``); other names unchanged
    (a timm dataset's path keeps its case)."""
    return name.lower() if name.lower() in DATASETS else name
