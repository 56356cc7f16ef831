"""The ``dd-hub`` command line: parsing and printing only; the work is done by the Python API."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import DDHubError


class _Group(click.Group):
    """Turns :class:`DDHubError` into a one-line ``error: ...`` and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DDHubError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="dd-hub")
def main() -> None:
    """Harden image classifiers with Deep Defense, measure their robustness, publish them to the Hub."""


def _overrides(pairs: tuple[str, ...]) -> dict:
    from .recipes import parse_override

    return dict(parse_override(p) for p in pairs)


@main.command()
@click.argument("model")
@click.option("--dataset", required=True, help="Dataset name, e.g. mnist-5k (embedded), mnist, cifar10, imagenet.")
@click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False), help="Recipe YAML (default: built-in).")
@click.option("--checkpoint", type=click.Path(), help="Starting weights: .safetensors file or model directory.")
@click.option("--data-dir", type=click.Path(), help="Where the dataset lives (not needed for mnist-5k).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--epochs", type=int, help="Shortcut for --set harden.epochs=N.")
@click.option("--lr", type=float, help="Shortcut for --set harden.lr=X.")
@click.option("--seed", type=int, help="Shortcut for --set seed=N.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a recipe key, e.g. defense.c=15.")
@click.option("--allow-random-init", is_flag=True, help="Harden even without pretrained or reference weights.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--resume", is_flag=True, help="Continue a killed run from OUT/checkpoints.")
@click.option("--mixed-precision", type=click.Choice(["no", "bf16", "fp16"]), default="no", show_default=True,
              help="Autocast precision (fp16 needs a GPU).")
@click.option("--checkpoint-every", type=int, default=0, metavar="N",
              help="Also checkpoint every N batches (always at each epoch's end).")
def harden(model, dataset, recipe_file, checkpoint, data_dir, out_dir, epochs, lr, seed, sets, allow_random_init,
           quiet, resume, mixed_precision, checkpoint_every) -> None:
    """Fine-tune MODEL with Deep Defense on DATASET, evaluate before/after, save a timm-format checkpoint."""
    from .pipeline import harden as run
    from .recipes import find_recipe, load_recipe

    overrides = _overrides(sets)
    for key, value in (("harden.epochs", epochs), ("harden.lr", lr), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    recipe = load_recipe(recipe_file, overrides) if recipe_file else find_recipe(model, dataset, overrides)
    out_dir = Path(out_dir or f"runs/{recipe.name}")
    result = run(recipe, out_dir, checkpoint=checkpoint, data_dir=data_dir, allow_random_init=allow_random_init,
                 progress=not quiet, echo=click.echo, resume=resume, mixed_precision=mixed_precision,
                 checkpoint_every=checkpoint_every)
    if result.hardened is None:  # a non-main process of `accelerate launch`
        return
    click.echo(result.table)
    click.echo(f"Saved to {out_dir}/ (model.safetensors, config.json, metrics.json, README.md)")


@main.command("eval")
@click.argument("model_dir")
@click.option("--dataset", required=True)
@click.option("--data-dir", type=click.Path())
@click.option("--eps-ref", type=float, help="Evaluate FGS at fractions of this epsilon instead of finding it.")
@click.option("--rho-space", type=click.Choice(["pixel", "centered"]), default="pixel", show_default=True)
@click.option("--steps", type=int, default=50, show_default=True, help="DeepFool iterations.")
@click.option("--max-examples", type=int, help="Evaluate on the first N test images only.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", is_flag=True)
def eval_cmd(model_dir, dataset, data_dir, eps_ref, rho_space, steps, max_examples, as_json, quiet) -> None:
    """Evaluate a saved model (directory or Hub id) on DATASET's test split."""
    import json

    from .data import create_dataset, mean_image
    from .evaluate import EvalConfig, evaluate, format_comparison
    from .hub import load

    model = load(model_dir)
    test_set = create_dataset(dataset, "test", data_dir=data_dir)
    center = mean_image(create_dataset(dataset, "train", data_dir=data_dir)) if rho_space == "centered" else None
    config = EvalConfig(deepfool_steps=steps, rho_space=rho_space, max_examples=max_examples)
    report = evaluate(model, test_set, config, center=center, eps_ref=eps_ref, progress=not quiet)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_comparison({model_dir: report}))


if __name__ == "__main__":
    main()
