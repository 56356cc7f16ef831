"""docs/results.md's catalogue tables, printed from the catalogue's folders themselves (``model_cards/``, whose
complete folders ``dd-hub cards model_cards --complete --add RUN/seed1234/METHOD`` adds).

    python benchmarks/catalogue.py [--cards-dir model_cards]      # print them
    python benchmarks/catalogue.py --write docs/results.md         # replace the marked block there with them

It reads every folder's metrics.json, verification record and file sizes, computing nothing the runs did not
measure: one row per folder (clean accuracy, AutoAttack at each threat model, DeepFool's rho_2 beside the minimal
L2 rho_2, the minimal-norm robust accuracy at L2 2.0, verification), then each folder's rebuild command, then the
folders without weights (cards only) and the catalogue's size.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from dd_hub.hub.verification import entry_verdict, local_verifications
from dd_hub.names import CARD_NAME, METRICS_NAME, WEIGHTS_NAME
from dd_hub.text import markdown_table

METHODS = {"reference": "reference (standard training)", "clean": "clean fine-tune", "parseval": "Par. Train", "deepfool_adv": "Adv. Train I (DeepFool)",
           "fgs_adv": "Adv. Train II (FGS)", "pgd_adv": "PGD adv. training", "trades": "TRADES",
           "deep_defense": "Deep Defense"}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def verification(folder: Path) -> str:
    """'agrees (n figures)', 'DISAGREES: ...' or 'not verified', from the record beside the folder's card."""
    records, problems = local_verifications(folder)
    if problems:
        return f"record not used ({problems[0]})"
    if not records:
        return "not verified"
    record = records[0]
    verdicts = {identity: entry_verdict(entry, record.tolerance)[0] for identity, entry in record.figures.items()}
    disputed = sorted(identity.split("|")[0] + " " + "|".join(identity.split("|")[2:4]).strip("|")
                      for identity, verdict in verdicts.items() if verdict != "agrees")
    if disputed:
        return f"DISPUTED: {', '.join(disputed)} ({len(verdicts) - len(disputed)} of {len(verdicts)} agree)"
    return f"agrees ({len(verdicts)} figures, {record.date})"


def rows(cards_dir: Path) -> tuple[list[list[str]], list[list[str]], list[str], float]:
    """(figures rows, rebuild rows, folders without weights, total MB of the complete folders)."""
    figures, rebuild, partial, total = [], [], [], 0.0
    for folder in sorted(p for p in cards_dir.iterdir() if p.is_dir()):
        if not (folder / WEIGHTS_NAME).is_file() or not (folder / METRICS_NAME).is_file():
            if (folder / CARD_NAME).is_file():
                partial.append(folder.name)
            continue
        metrics = json.loads((folder / METRICS_NAME).read_text())
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) / 1e6
        total += size
        report = metrics["hardened"]
        autoattack = report.get("autoattack", {})
        minimal = report.get("minimal_norm") or {}
        overstated = report["rho2"] / minimal["rho2"] - 1 if minimal.get("rho2") else None
        l2 = minimal.get("accuracy", {}).get("2")
        figures.append([f"`{folder.name}`", METHODS.get(metrics["model"]["method"], metrics["model"]["method"]),
                        _percent(report["clean_accuracy"]),
                        _percent(autoattack.get("mnist-l2", {}).get("accuracy")),
                        _percent(autoattack.get("mnist-linf", {}).get("accuracy")),
                        str(next(iter(autoattack.values()))["n_examples"]) if autoattack else "–",
                        f"{report['rho2']:.3f}", f"{minimal['rho2']:.3f}" if minimal else "–",
                        "–" if overstated is None else f"{overstated:+.0%}", _percent(l2),
                        verification(folder), f"{size:.2f}"])
        run = metrics.get("run") or {}
        command = (f"`OMP_NUM_THREADS={run['threads']} {run['command']}`" if run.get("command")
                   else "not recorded (run before dd-hub recorded its command)")
        rebuild.append([f"`{folder.name}`", command, str(run.get("source", "not recorded")), str(run.get("torch", "–"))])
    return figures, rebuild, partial, total


def tables(cards_dir: Path) -> str:
    figures, rebuild, partial, total = rows(cards_dir)
    text = [markdown_table(["folder", "method", "clean", "AutoAttack L2 2.0", "AutoAttack Linf 0.3", "AA images",
                            "DeepFool rho_2", "minimal rho_2", "DeepFool over minimal", "minimal-norm acc. L2 2.0",
                            "dd-hub verify", "MB"], figures),
            f"{len(figures)} complete folders, {total:.1f} MB in all.\n",
            markdown_table(["folder", "the command that produced it", "dd-hub source commit", "torch"], rebuild)]
    if partial:
        text.append("\nCards without their model folder (no weights: not loadable, not verifiable): "
                    + ", ".join(f"`{name}`" for name in partial) + ".")
    return "\n".join(text) + "\n"


START, END = "<!-- python benchmarks/catalogue.py -->\n", "<!-- end of python benchmarks/catalogue.py -->\n"


def write_block(document: Path, text: str) -> None:
    """Replace the block between START and END in ``document`` with ``text`` (the markers stay)."""
    content = document.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(content):
        raise SystemExit(f"error: {document} has no block between '{START.strip()}' and '{END.strip()}'")
    document.write_text(pattern.sub(lambda _: START + text + END, content, count=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards-dir", type=Path, default=Path("model_cards"))
    parser.add_argument("--write", type=Path, help="replace the marked block of this Markdown file")
    args = parser.parse_args()
    text = tables(args.cards_dir)
    if args.write:
        write_block(args.write, text)
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
