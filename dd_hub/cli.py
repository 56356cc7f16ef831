"""The ``dd-hub`` command line: parsing and printing only; the work is done by the Python API.

Every command that runs a recipe (``harden``, ``reproduce``, ``sweep``) takes one shared option set
(:func:`recipe_options`), and every command that writes a folder follows the same rules: locked while it writes,
a previous run refused unless ``--overwrite``, final files committed together (:mod:`dd_hub.storage.run_dir`).
Text that came from outside (cards, notices) is printed one safe line at a time.
"""
from __future__ import annotations

import functools
import inspect
import sys
from pathlib import Path
from typing import Callable

import click

from .errors import DDHubError


class _Group(click.Group):
    """Turns :class:`DDHubError` and bad command-line values into a one-line ``error: ...`` and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DDHubError as exc:
            from .text import one_line

            click.echo(f"error: {one_line(exc, 2000)}", err=True)
            sys.exit(2)
        except click.UsageError as exc:
            command = f"dd-hub {exc.ctx.info_name}" if exc.ctx is not None else "dd-hub"
            click.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
            sys.exit(2)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command with its whole first sentence (click cuts it to the terminal's width)."""
        rows = [(name, command.get_short_help_str(limit=1000)) for name in self.list_commands(ctx)
                if (command := self.get_command(ctx, name)) is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class CommaList(click.ParamType):
    """A comma-separated list of numbers of one type: ``--seeds 1234,1235`` (``1.5`` is no seed)."""

    def __init__(self, kind: type) -> None:
        self.kind = kind
        self.name = f"{kind.__name__},..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        items = [item.strip() for item in str(value).split(",") if item.strip()]
        try:
            converted = [self.kind(item) for item in items]
        except ValueError:
            self.fail(f"expected comma-separated {self.kind.__name__}s, e.g. "
                      f"{'1234,1235' if self.kind is int else '5,15,25'}, got '{value}'", param, ctx)
        if not converted:
            self.fail("expected at least one value", param, ctx)
        return converted


COUNT = click.IntRange(min=0)
POSITIVE_INT = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
INTS, FLOATS = CommaList(int), CommaList(float)


@click.group(cls=_Group)
@click.version_option(package_name="dd-hub")
def main() -> None:
    """Harden image classifiers with Deep Defense, measure their robustness, publish them to the Hub."""


device_option = click.option("--device", help="cpu, cuda, cuda:1, ... (default: the GPU when there is one).")


def recipe_options(*, refused: dict[str, str] | None = None) -> Callable[[Callable], Callable]:
    """The one option set of every command that runs a recipe (harden, reproduce, sweep); the command receives
    ``recipe`` (overrides, shortcuts and ``--smoke`` applied) and ``run`` (the options its workflow takes) instead
    of them. ``refused`` maps an option a command cannot honour to the reason, given in one line when it is used."""

    def decorate(command: Callable) -> Callable:
        options = [
            click.argument("model"),
            click.option("--dataset", required=True, help="Dataset name (any case): mnist-5k (embedded), mnist, "
                         "cifar10, imagenet, folder, or a timm dataset (hfds/NAME, ...)."),
            click.option("--recipe", "recipe_file", type=click.Path(dir_okay=False),
                         help="Recipe YAML (default: the built-in recipe for MODEL on DATASET, see recipes/ and "
                         "--show-recipe)."),
            click.option("--show-recipe", is_flag=True, help="Print the recipe this command would run (every "
                         "default, with the options below applied) as YAML, and stop."),
            click.option("--smoke", is_flag=True, help="Try the whole pipeline in about a minute: every phase and "
                         "evaluation kind on 500 training and 40 test images (one hardening epoch, at most 20 "
                         "reference epochs); the outputs say 'smoke' and are never published or listed."),
            click.option("--checkpoint", type=click.Path(), help="Starting weights (.safetensors file or model "
                         "directory) instead of pretrained or reference-trained ones."),
            click.option("--data-dir", type=click.Path(), help="Where the dataset lives (not needed for mnist-5k)."),
            click.option("--allow-random-init", is_flag=True, help="Start from random weights when there are no "
                         "pretrained or reference weights (never asks the Hub for any)."),
            click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder "
                         "(default: runs/<recipe name>[-reproduce|-sweep])."),
            click.option("--overwrite", is_flag=True, help="Replace a previous run in the output folder (refused "
                         "otherwise)."),
            click.option("--resume", is_flag=True, help="Continue a killed or failed run from OUT/checkpoints "
                         "without training again what it finished (same settings; more epochs and other "
                         "evaluation settings allowed)."),
            click.option("--method", help="Training method (see `dd-hub methods`; default: the recipe's)."),
            click.option("--epochs", type=COUNT, help="Hardening epochs: shortcut for --set harden.epochs=N "
                         "(the reference's: --set reference.epochs=N)."),
            click.option("--lr", type=POSITIVE_FLOAT, help="Shortcut for --set harden.lr=X."),
            click.option("--seed", type=click.IntRange(0, 2**32 - 1), help="Shortcut for --set seed=N (0 to "
                         "2**32-1)."),
            click.option("--max-examples", type=POSITIVE_INT, help="Shortcut for --set evaluation.max_examples=N: "
                         "a class-balanced subset of N test images."),
            click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                         help="Override a recipe key, e.g. --set defense.c=15 --set evaluation.pgd_steps=50 --set "
                         "max_train_examples=1000 (see --show-recipe for every key)."),
            click.option("--input-size", type=POSITIVE_INT, help="Resize folder and timm datasets to this square "
                         "size (default: the model's); refused for datasets read at their native size."),
            click.option("--mixed-precision", type=click.Choice(["no", "bf16", "fp16"]), default="no",
                         show_default=True, help="Autocast precision (fp16 needs a GPU)."),
            click.option("--checkpoint-every", type=COUNT, default=0, metavar="N",
                         help="Also checkpoint every N batches (always at each epoch's end)."),
            device_option,
            click.option("--quiet", is_flag=True, help="Only errors and the final table: no progress bars or "
                         "phase lines."),
        ]

        @functools.wraps(command)
        def wrapper(model, dataset, recipe_file, show_recipe, smoke, checkpoint, data_dir, allow_random_init,
                    out_dir, overwrite, resume, method, epochs, lr, seed, max_examples, sets, input_size,
                    mixed_precision, checkpoint_every, device, quiet, **specific):
            from .recipes import find_recipe, load_recipe, parse_override

            given = {"--method": method, "--input-size": input_size, "--resume": resume or None,
                     "--mixed-precision": None if mixed_precision == "no" else mixed_precision,
                     "--checkpoint-every": checkpoint_every or None, "--device": device}
            for option, reason in (refused or {}).items():
                if given.get(option) is not None:
                    raise DDHubError(f"{option} does not apply to `dd-hub {command.__name__}`: {reason}")
            overrides = dict(parse_override(text) for text in sets)
            for key, value in (("harden.epochs", epochs), ("harden.lr", lr), ("seed", seed),
                               ("evaluation.max_examples", max_examples), ("method", method)):
                if value is not None:
                    overrides[key] = value
            if method is not None:
                check_choice("--method", method, _methods())
            recipe = (load_recipe(recipe_file, overrides, smoke=smoke) if recipe_file
                      else find_recipe(model, dataset, overrides, smoke=smoke))
            if show_recipe:
                click.echo(recipe_yaml(recipe), nl=False)
                return None
            run = {"checkpoint": checkpoint, "data_dir": data_dir, "allow_random_init": allow_random_init,
                   "progress": not quiet, "echo": (lambda _line: None) if quiet else click.echo,
                   "overwrite": overwrite, "resume": resume, "mixed_precision": mixed_precision,
                   "checkpoint_every": checkpoint_every, "input_size": input_size, "device": device}
            return command(recipe=recipe, run=run, out_dir=out_dir, **specific)

        wrapper.__doc__ = (f"{inspect.cleandoc(command.__doc__ or '')}\n\nEvery default not shown below is the recipe's: add --show-recipe to "
                           "see the recipe this command would run, with the options applied (docs/cli.md).")
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate


def _methods() -> list[str]:
    from .training.objectives import list_methods

    return list(list_methods())


def check_choice(option: str, value: str, choices: list[str]) -> None:
    """A one-line error naming the command-line ``option`` (with "did you mean") unless ``value`` is a choice."""
    from .errors import did_you_mean

    if value not in choices:
        raise DDHubError(f"{option} must be one of {', '.join(choices)}, got '{value}'"
                         f"{did_you_mean(value, choices)}")


def recipe_yaml(recipe) -> str:
    """The recipe a command would run, as YAML a ``--recipe`` file can hold."""
    import yaml

    return (f"# the recipe {recipe.name} for {recipe.model} on {recipe.dataset}, as this command would run it\n"
            + yaml.safe_dump(recipe.to_dict(), sort_keys=False))


@main.command()
@recipe_options()
def harden(recipe, run, out_dir) -> None:
    """Fine-tune MODEL with Deep Defense on DATASET, evaluate before/after, save a timm-format checkpoint."""
    from .workflows.harden import harden as run_harden

    out_dir = Path(out_dir or f"runs/{recipe.name}")
    result = run_harden(recipe, out_dir, **run)
    if result.hardened is None:  # a non-main process of `accelerate launch`
        return
    click.echo(result.table)
    click.echo(f"Saved to {out_dir}/ (model.safetensors, config.json, metrics.json, README.md)"
               + (" -- a smoke run: try the real one without --smoke" if recipe.smoke else ""))


@main.command()
@recipe_options(refused={"--method": "it compares several methods: use --methods NAME,NAME"})
@click.option("--methods", type=click.STRING, default="clean,parseval,deepfool_adv,fgs_adv,deep_defense",
              show_default=True, help="Comma-separated training methods compared with the reference.")
@click.option("--seeds", type=INTS, help="Comma-separated seeds (default: the recipe's); >1 reports mean +- std.")
@click.option("--eps-ref-from", default="deep_defense", show_default=True,
              help="Model whose epsilon_ref is used for all (the paper: deep_defense; or reference, clean, ...).")
@click.option("--fractions", type=FLOATS, help="Fractions of epsilon_ref, e.g. 0.2,0.5,1,2 (default: recipe's).")
def reproduce(recipe, run, out_dir, methods, seeds, eps_ref_from, fractions) -> None:
    """The paper's Table 1 for MODEL on DATASET: reference, baselines and Deep Defense, with the paper's rows."""
    import dataclasses

    from .workflows.reproduce import reproduce as run_reproduce

    if fractions is not None:
        recipe = dataclasses.replace(recipe, evaluation=dataclasses.replace(recipe.evaluation,
                                                                            fgs_fractions=fractions))
    methods = [m.strip() for m in methods.split(",") if m.strip()]
    for method in methods:
        check_choice("--methods", method, _methods())
    out_dir = Path(out_dir or f"runs/{recipe.name}-reproduce")
    result = run_reproduce(recipe, out_dir, methods=methods, seeds=seeds, eps_ref_from=eps_ref_from, **run)
    click.echo(result.table)
    click.echo(f"Saved to {out_dir}/ (table.md, results.json, seed*/<method>/ models)")


@main.command()
@recipe_options(refused={"--method": "a sweep varies Deep Defense's c, lambda and layers (use harden or reproduce "
                                     "for other methods)"})
@click.option("--c", "c_values", type=FLOATS, default="5,15,25,35,45", show_default=True, help="Values of c.")
@click.option("--lam", "lam_values", type=FLOATS, help="Values of lambda (default: the recipe's).")
@click.option("--regularize-layers", "layer_sets", multiple=True, metavar="L1[,L2]",
              help="Regularize only these layers (repeat for several sweeps, e.g. conv1 / fc1); default all.")
def sweep(recipe, run, out_dir, c_values, lam_values, layer_sets) -> None:
    """Sweep Deep Defense's c, lambda and regularized layers; plot accuracy against rho_2 (the paper's figures 3
    and 4)."""
    from .workflows.sweep import sweep as run_sweep

    out_dir = Path(out_dir or f"runs/{recipe.name}-sweep")
    result = run_sweep(recipe, out_dir, c_values=c_values, lam_values=lam_values,
                       layer_sets=[[x.strip() for x in s.split(",") if x.strip()] for s in layer_sets] or None, **run)
    click.echo(result.table)
    click.echo(f"Saved to {out_dir}/ (sweep.md, sweep.json, sweep.png)")


@main.command("eval")
@click.argument("model_dir")
@click.option("--dataset", help="Dataset name (default: the one in MODEL_DIR's metrics.json).")
@click.option("--data-dir", type=click.Path(), help="Where the dataset lives (not needed for mnist-5k).")
@click.option("--eps-ref", type=POSITIVE_FLOAT, help="Evaluate FGS at fractions of this epsilon instead of finding it.")
@click.option("--rho-space", type=click.Choice(["pixel", "centered"]), help="Space of rho_2 (default: as measured).")
@click.option("--steps", type=POSITIVE_INT, help="DeepFool iterations (default: as measured, else 50).")
@click.option("--max-examples", type=POSITIVE_INT, help="A class-balanced subset of N test images.")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override an evaluation setting (recipe 'evaluation' keys), e.g. pgd_steps=50, sanity=false.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def eval_cmd(model_dir, dataset, data_dir, eps_ref, rho_space, steps, max_examples, device, as_json, sets,
             quiet) -> None:
    """Evaluate a saved model (directory or Hub id); a dd-hub directory is evaluated with the settings its
    metrics.json records, so the card's figures come out again."""
    import json

    from .evaluation.report import format_comparison
    from .recipes import parse_override
    from .workflows.evaluate import evaluate_saved

    overrides = dict(parse_override(text) for text in sets)
    for key, value in (("deepfool_steps", steps), ("max_examples", max_examples)):
        if value is not None:
            overrides[key] = value
    report = evaluate_saved(model_dir, dataset=dataset, data_dir=data_dir, overrides=overrides, eps_ref=eps_ref,
                            rho_space=rho_space, device=device, progress=not quiet)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_comparison({model_dir: report}))


@main.command()
@click.argument("model")
@click.option("--max-examples", type=click.IntRange(min=100), help="Re-measure on a class-balanced subset of N "
              ">= 100 test images (default: all the images the card was measured on).")
@click.option("--tolerance", type=click.FloatRange(0, 0.05), default=0.02, show_default=True,
              help="Absolute tolerance on accuracies, at most 0.05 (widened by two standard errors of a smaller "
              "subset, never beyond 0.10; boards recompute every verdict themselves).")
@click.option("--data-dir", type=click.Path(), help="Where the dataset lives (not needed for mnist-5k).")
@device_option
@click.option("--publish", is_flag=True, help="Open a pull request with the record on the model's Hub repo.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the record to this file.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def verify(model, max_examples, tolerance, data_dir, device, publish, out, quiet) -> None:
    """Re-measure the figures of MODEL's card (ORG/NAME on the Hub, or a model directory) from its weights with
    the protocol its metrics.json records, and report agreement figure by figure."""
    from .text import one_line
    from .workflows.verify import verify as run_verify

    result = run_verify(model, max_examples=max_examples, tolerance=tolerance, data_dir=data_dir, device=device,
                        progress=not quiet, publish=publish, out=out)
    click.echo(result.table)
    if result.unmeasured:
        click.echo(f"Not re-measured by the recorded protocol on the threat model the card states: "
                   f"{', '.join(one_line(name, 60) for name in result.unmeasured)}")
    verdicts = set(result.verdicts.values())
    verdict = ("every figure agrees" if result.agrees else "some figures DISAGREE" if "disagrees" in verdicts
               else "no verdict (too few images)")
    click.echo(f"Re-measured by {result.record.verified_by}: {verdict}.")
    if result.written:
        click.echo(f"Record written to {result.written}")
    if result.pull_request:
        click.echo(f"Pull request: {result.pull_request}")


@main.command()
@click.argument("model_dir", type=click.Path(file_okay=False))
@click.option("--repo-id", help="ORG/NAME (default: <your user>/<arch>-<dataset>-deepdefense).")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--revision", help="Branch to commit to (created from main if missing; default main).")
@click.option("--dry-run", is_flag=True, help="Check the directory and show what would be uploaded; upload nothing.")
@click.option("--cards-dir", type=click.Path(file_okay=False), help="Also add the card to this model_cards/ folder.")
def publish(model_dir, repo_id, private, revision, dry_run, cards_dir) -> None:
    """Upload MODEL_DIR (written by `dd-hub harden`) to the Hugging Face Hub in one commit."""
    from .hub.boards import write_index
    from .hub.catalogue import add_card
    from .hub.upload import publish as run_publish

    result = run_publish(model_dir, repo_id, private=private, revision=revision, dry_run=dry_run)
    if result.dry_run:
        click.echo(f"Dry run: would upload {', '.join(result.files)} to {result.repo_id}@{result.revision}")
        return
    click.echo(f"Published {result.repo_id}@{result.revision}: {result.commit_url}")
    if cards_dir:
        add_card(model_dir, cards_dir, result.repo_id)
        click.echo(f"Updated {write_index(cards_dir)}")


trusted_option = click.option(
    "--trusted-verifiers", "trusted_file", type=click.Path(dir_okay=False),
    help="A file of Hub accounts (one a line) whose `dd-hub verify` records rank figures as verified; records of "
    "other accounts are shown as re-measured, not verified (default: nobody).")


def _trusted(path: str | None) -> frozenset[str]:
    from .hub.verification import read_trusted_verifiers

    return read_trusted_verifiers(path)


def _notices(notices: list[str]) -> None:
    from .text import one_line

    for notice in notices:
        click.echo(f"warning: {one_line(notice, 500)}", err=True)


@main.command("list")
@click.option("--dataset", help="Only checkpoints evaluated on this dataset (dd-hub name, e.g. mnist-5k).")
@click.option("--threat-model", help="Only this threat model (e.g. mnist-linf, cifar10-l2, imagenet-linf).")
@click.option("--author", help="Only this user or organization (from the Hub).")
@click.option("--limit", type=POSITIVE_INT, default=100, show_default=True,
              help="At most this many models (the first, by name, of a --from folder).")
@click.option("--from", "cards_dir", type=click.Path(file_okay=False),
              help="Rank local card folders DIR/*/README.md (e.g. model_cards) instead of the Hub's.")
@click.option("--json", "as_json", is_flag=True, help="Print the boards as JSON.")
@click.option("--markdown", "as_markdown", is_flag=True, help="Print the boards as Markdown tables.")
@trusted_option
def list_cmd(dataset, threat_model, author, limit, cards_dir, as_json, as_markdown, trusted_file) -> None:
    """Leaderboards of dd-hub checkpoints: one per dataset and threat model, ranked by AutoAttack robust accuracy,
    each figure marked verified or self-reported (filtered on the Hub side by dd-hub's dataset and threat-model
    tags), as a table that fits the terminal."""
    import json
    import shutil

    from .hub.boards import board_json, board_markdown, board_text, boards, select_boards

    if as_json and as_markdown:
        raise DDHubError("choose one of --json and --markdown")
    if threat_model:
        from .threat_models import threat_model as check_threat_model

        check_threat_model(threat_model)   # before any request
    trusted = _trusted(trusted_file)
    if cards_dir:
        from .hub.collection import load_local_cards

        cards, notices = load_local_cards(cards_dir, limit=limit, images=False)
    else:
        from .hub.collection import find_published

        cards, notices = find_published(dataset=dataset, threat_model=threat_model, author=author, limit=limit,
                                        trusted=trusted)
    all_boards = boards(cards)
    ranked = select_boards(all_boards, dataset=dataset, threat_model=threat_model)
    _notices(notices)
    if as_json:
        click.echo(json.dumps([board_json(b) for b in ranked], indent=2))
    elif not ranked:
        click.echo(_nothing_found(dataset, threat_model, author, cards_dir, all_boards))
    elif as_markdown:
        click.echo("\n".join(board_markdown(b) for b in ranked), nl=False)
    else:
        width = shutil.get_terminal_size((120, 24)).columns
        click.echo("\n".join(board_text(b, width) for b in ranked), nl=False)


def _nothing_found(dataset, threat_model, author, cards_dir, all_boards) -> str:
    """What an empty listing says: what was asked, and what there is instead."""
    asked = " and ".join(f"{k} {v}" for k, v in (("dataset", dataset), ("threat model", threat_model),
                                                 ("author", author)) if v)
    where = cards_dir or "the Hub"
    if not asked:
        return f"No dd-hub checkpoints in {where}."
    if cards_dir:
        exists = sorted({b.title for b in all_boards})
    else:
        from .hub.collection import hub_datasets

        exists = [f"dataset {name}" for name in hub_datasets(author=author)]
    there = f" There are boards for: {', '.join(exists)}." if exists else f" {where} has no dd-hub checkpoints."
    return f"No dd-hub checkpoints in {where} for {asked}.{there}"


@main.command()
@click.argument("model")
@click.option("--from", "cards_dir", type=click.Path(file_okay=False),
              help="Where to look for a card folder given by name (default: model_cards).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def show(model, cards_dir, as_json) -> None:
    """Robustness figures of one checkpoint: a local model or card folder (its path, or its name in model_cards/),
    or a published one (ORG/NAME), from its card."""
    import json

    from .hub.collection import show as read_card
    from .text import one_line

    card = read_card(model, cards_dir=cards_dir)
    title = one_line(f"{model}: {card.info.get('architecture', '?')} on {card.info.get('dataset', '?')}", 300)
    figures = card.values()
    if as_json:
        click.echo(json.dumps({"model": title, "figures": figures, "flags": card.problems}, indent=2))
        return
    click.echo(title)
    for name, value in figures.items():
        click.echo(f"  {one_line(name, 60):<24} {value:.4g}" if name == "rho2" else
                   f"  {one_line(name, 60):<24} {value:.2%}")
    for problem in card.problems:
        click.echo(f"  flag: {one_line(problem, 300)}")


@main.command()
@click.argument("cards_dir", default="model_cards", type=click.Path(file_okay=False))
@click.option("--add", "model_dirs", multiple=True, type=click.Path(file_okay=False),
              help="First add this model directory's card (repeatable).")
@click.option("--repo-id", help="The Hub id the (single) added model was published as; without it the card says "
              "its weights are not published yet.")
@click.option("--complete", is_flag=True, help="Add the whole model folder (weights, config.json, metrics.json, "
              "figures, card: what `dd-hub publish` uploads), so that the entry loads and verifies by itself.")
def cards(cards_dir, model_dirs, repo_id, complete) -> None:
    """Regenerate CARDS_DIR/index.md, the leaderboards of the cards this project keeps."""
    from .hub.boards import write_index

    if repo_id and len(model_dirs) != 1:
        raise DDHubError("--repo-id goes with exactly one --add DIR")
    if model_dirs:
        from .hub.catalogue import add_card   # reads model folders: torch (regenerating the index alone does not)
    for model_dir in model_dirs:
        click.echo(f"Added {add_card(model_dir, cards_dir, repo_id, complete=complete)}")
    click.echo(f"Wrote {write_index(cards_dir)}")


@main.command("methods")
def methods_cmd() -> None:
    """List the training methods usable with --method and in recipes."""
    from .training.objectives import list_methods

    for name, description in list_methods().items():
        click.echo(f"{name:<14} {description}")


@main.command("site")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--from", "cards_dir", type=click.Path(file_okay=False),
              help="Build from local card folders DIR/*/README.md (e.g. model_cards) instead of the Hub.")
@click.option("--author", help="From the Hub: only this user or organization.")
@click.option("--limit", type=POSITIVE_INT, default=100_000, show_default=True,
              help="At most this many models (the first, by name, of a --from folder).")
@trusted_option
def site_cmd(out_dir, cards_dir, author, limit, trusted_file) -> None:
    """Build a static leaderboard site (boards per dataset and AutoAttack threat model, one page per model) in
    OUT_DIR, from the Hub's dd-hub models or from local model cards; open OUT_DIR/index.html in a browser."""
    from .hub.collection import load_hub_cards, load_local_cards
    from .hub.site import build_site

    trusted = _trusted(trusted_file)
    if cards_dir:
        cards, notices = load_local_cards(cards_dir, limit=limit)
    else:
        cards, notices = load_hub_cards(limit=limit, author=author, trusted=trusted)
    result = build_site(cards, out_dir, notices=notices)
    _notices(notices)
    click.echo(f"Wrote {result.index} ({len(cards)} model(s), {len(result.boards)} board(s))")


if __name__ == "__main__":
    main()
