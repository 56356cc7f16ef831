"""Figures: the card's robustness curve and the sweep's accuracy-vs-rho_2 plot, as PNGs written atomically.

Figures are built with matplotlib's object API (no pyplot state) and saved without a timestamp or software version
in the PNG metadata, so the same figures give the same bytes.
"""
from __future__ import annotations

import io
from pathlib import Path

from .atomic_io import write_bytes_atomic

CURVE_NAME = "robustness_curve.png"


def save_figure(figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` as PNG, atomically and deterministically."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def attack_curves(report: dict) -> list[tuple[str, dict, dict, dict]]:
    """(attack, {eps: acc}, {fraction of eps_ref: acc}, settings) for the attacks a report holds."""
    attacks = [("fgs", report.get("fgs", {}), report.get("fgs_at_ref", {}), {"norm": "linf"})]
    if report.get("pgd") or report.get("pgd_at_ref"):
        settings = {k: v for k, v in report.get("pgd_settings", {}).items() if k in ("norm", "steps", "restarts")}
        attacks.append(("pgd", report.get("pgd", {}), report.get("pgd_at_ref", {}), settings))
    for norm in ("linf", "l2"):
        at_eps = {f"{r['eps']:.6g}": r["accuracy"] for r in report.get("autoattack", {}).values() if r["norm"] == norm}
        if at_eps:
            attacks.append(("autoattack", at_eps, {}, {"norm": norm, "version": "standard (torchattacks)"}))
    return attacks


def curve_points(report: dict, attack: str = "fgs") -> list[tuple[float, float]]:
    """(epsilon, accuracy under ``attack``) pairs of one report, epsilon 0 being the clean accuracy, sorted."""
    points = {0.0: report["clean_accuracy"]}
    points.update({float(eps): acc for eps, acc in report.get(attack, {}).items()})
    if report.get("eps_ref"):
        points.update({float(f) * report["eps_ref"]: acc for f, acc in report.get(f"{attack}_at_ref", {}).items()})
    return sorted(points.items())


def render_curve(metrics: dict, path: str | Path) -> Path:
    """Plot accuracy under FGS (and Linf PGD) versus epsilon, hardened and reference, to a PNG, atomically.

    The same metrics give the same bytes: no timestamp or software version goes into the PNG metadata.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5), dpi=100)
    axes = figure.add_subplot()
    linf_attacks = [a for a, _, _, settings in attack_curves(metrics["hardened"]) if settings.get("norm") == "linf"]
    for attack, line in zip(linf_attacks, ("-", "--")):
        for key, marker, color in (("reference", "o", "tab:blue"), ("hardened", "s", "tab:orange")):
            if key in metrics:
                eps, accuracy = zip(*curve_points(metrics[key], attack))
                axes.plot(eps, [100 * a for a in accuracy], marker=marker, linestyle=line, color=color,
                          label=f"{key}, {attack.upper()}")
    eps_ref = metrics["hardened"].get("eps_ref")
    if eps_ref:
        axes.axvline(eps_ref, color="grey", linewidth=0.8, linestyle=":", label=f"eps_ref = {eps_ref:.3g}")
    axes.set_xlabel("epsilon (Linf, [0, 1] pixel space)")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 100)
    axes.set_title(f"{metrics['model']['architecture']} on {metrics['model']['dataset']}")
    axes.grid(alpha=0.3)
    axes.legend()
    return save_figure(figure, path)


def plot_sweep(points: list[dict], reference: dict, path: str | Path) -> Path:
    """Clean accuracy against rho_2, one line per (layers, lambda), each point labelled with its c."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 4), dpi=120)
    ax = figure.add_subplot()
    groups: dict[tuple[str, float], list[dict]] = {}
    for p in points:
        groups.setdefault((",".join(p["layers"]) or "all", p["lam"]), []).append(p)
    for (layers, lam), members in groups.items():
        members = sorted(members, key=lambda p: p["c"])
        ax.plot([p["rho2"] for p in members], [p["accuracy"] for p in members], "o-",
                label=f"layers={layers}, lambda={lam:g}")
        for p in members:
            ax.annotate(f"c={p['c']:g}", (p["rho2"], p["accuracy"]), fontsize=7, textcoords="offset points",
                        xytext=(3, 3))
    ax.plot([reference["rho2"]], [reference["accuracy"]], "k*", markersize=10, label="reference")
    ax.set_xlabel("rho_2")
    ax.set_ylabel("clean accuracy")
    ax.legend(fontsize=7)
    return save_figure(figure, path)
