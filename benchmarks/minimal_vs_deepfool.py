"""DeepFool's rho_2 against the minimal L2 perturbation's, on trained weights that have no model folder yet (e.g. a
`dd-hub reproduce` run's phase checkpoints), with the evaluation's own code and only those two passes.

    python benchmarks/minimal_vs_deepfool.py MODEL DATASET WEIGHTS [...] [--max-examples N] [--set KEY=VALUE ...]

MODEL and DATASET choose the recipe as `dd-hub harden` does (``resnet18 mnist-5k``); each WEIGHTS is a ``model.safetensors`` of that recipe's network
(a phase checkpoint of ``OUT/checkpoints/seed<S>/<phase>/``, which holds the normalizing wrapper's state), given with ``--set`` the recipe overrides it was
trained with. Prints, per weights: clean accuracy, DeepFool's rho_2 (the paper's: 50 steps, unclipped, source =
prediction) and the minimal rho_2 (DDN, 100 steps, or DeepFool's point clipped to [0, 1], valid points only), in
the recipe's rho space, on a class-balanced subset of the test split (``evaluation.subset_seed``), and the ratio.
"""
from __future__ import annotations

import argparse
import dataclasses

from safetensors.torch import load_file

from dd_hub.evaluation.report import evaluate
from dd_hub.recipes import find_recipe, parse_override
from dd_hub.workflows.start import prepare_start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("dataset")
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    recipe = find_recipe(args.model, args.dataset, dict(parse_override(text) for text in args.sets))
    config = dataclasses.replace(recipe.evaluation, max_examples=args.max_examples, autoattack=[], pgd_steps=0,
                                 sanity=False, fgs_eps=[], fgs_fractions=[])
    print("| weights | clean | DeepFool rho_2 | minimal rho_2 | DeepFool / minimal | found | images |")
    print("|---|---|---|---|---|---|---|")
    start = prepare_start(recipe)   # the recipe's network, data and center; its weights come from each file
    for weights in args.weights:
        start.model.load_state_dict(load_file(weights))   # a phase checkpoint holds the whole wrapped model
        report = evaluate(start.model, start.test_set, config, center=start.center, eps_ref=0.1, progress=False)
        minimal = report.minimal_norm
        print(f"| `{weights}` | {report.clean_accuracy:.1%} | {report.rho2:.3f} | {minimal['rho2']:.3f} | "
              f"{report.rho2 / minimal['rho2']:.2f} | {minimal['found']:.1%} | {report.n_examples} |")


if __name__ == "__main__":
    main()
