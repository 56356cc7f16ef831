"""Figures: the card's robustness curve and the sweep's accuracy-vs-rho_2 plot, as PNGs written atomically.

Figures are built with matplotlib's object API (no pyplot state) and saved without a timestamp or software version
in the PNG metadata, so the same figures give the same bytes.
"""
from __future__ import annotations

import io
from pathlib import Path

from ..storage.atomic_io import write_bytes_atomic



def save_figure(figure, path: str | Path) -> Path:
    """Write ``figure`` to ``path`` as PNG, atomically and deterministically."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    path = Path(path)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def attack_curves(report: dict) -> list[tuple[str, dict, dict, dict]]:
    """(attack, {eps: acc}, {fraction of eps_ref: acc}, settings) of the epsilon-curve attacks a report holds (FGS,
    PGD); AutoAttack's figures are per threat model (``report['autoattack']``)."""
    attacks = [("fgs", report.get("fgs", {}), report.get("fgs_at_ref", {}), {"norm": "linf"})]
    if report.get("pgd") or report.get("pgd_at_ref"):
        settings = {k: v for k, v in report.get("pgd_settings", {}).items() if k in ("norm", "steps", "restarts")}
        attacks.append(("pgd", report.get("pgd", {}), report.get("pgd_at_ref", {}), settings))
    return attacks


def curve_points(report: dict, attack: str = "fgs") -> list[tuple[float, float]]:
    """(epsilon, accuracy under ``attack``) pairs of one report, epsilon 0 being the clean accuracy, sorted."""
    points = {0.0: report["clean_accuracy"]}
    points.update({float(eps): acc for eps, acc in report.get(attack, {}).items()})
    if report.get("eps_ref"):
        points.update({float(f) * report["eps_ref"]: acc for f, acc in report.get(f"{attack}_at_ref", {}).items()})
    return sorted(points.items())


def render_curve(metrics: dict, path: str | Path) -> Path:
    """Accuracy versus epsilon, measured points only (no interpolation), reference and hardened: an Linf panel
    (FGS, PGD, AutoAttack) and an L2 panel (AutoAttack, L2 PGD). Written atomically; the same metrics give the
    same bytes."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.5), dpi=100)
    panels = dict(zip(("linf", "l2"), figure.subplots(1, 2)))
    markers = {"fgs": "o", "pgd": "s", "autoattack": "*"}
    # a reference model's own card: its figures are both reports, drawn once
    series = ((("hardened", "reference model", "tab:blue"),) if metrics["model"].get("method") == "reference" else
              (("reference", "reference", "tab:blue"), ("hardened", "hardened", "tab:orange")))
    for key, key_label, color in series:
        report = metrics.get(key)
        if report is None:
            continue
        for norm, axes in panels.items():
            for attack, points in _measured(report, norm).items():
                eps, accuracy = zip(*points)
                axes.plot(eps, [100 * a for a in accuracy], linestyle="none", marker=markers[attack], color=color,
                          markersize=9 if attack == "autoattack" else 5, label=f"{key_label}, {attack.upper()}")
        minimal = report.get("minimal_norm")
        if minimal:
            panels["l2"].step(*_minimal_curve(minimal), where="post", color=color, linewidth=1,
                              label=f"{key_label}, minimal L2 (DDN)")
    for norm, axes in panels.items():
        axes.set_xlabel(f"epsilon ({'Linf' if norm == 'linf' else 'L2'}, [0, 1] pixel space)")
        axes.set_ylabel("accuracy (%)")
        axes.set_ylim(-2, 102)
        axes.grid(alpha=0.3)
        if axes.has_data():
            axes.legend(fontsize=7)
    eps_ref = metrics["hardened"].get("eps_ref")
    if eps_ref:
        panels["linf"].axvline(eps_ref, color="grey", linewidth=0.8, linestyle=":")
    figure.suptitle(f"{metrics['model']['architecture']} on {metrics['model']['dataset']}: measured points")
    return save_figure(figure, path)


def _minimal_curve(minimal: dict) -> tuple[list[float], list[float]]:
    """(L2 epsilons, accuracies in %) of the minimal-norm curve: a step down at each image's minimal norm."""
    n, curve = minimal["n_examples"], minimal["curve"]
    eps = [0.0] + list(curve)
    accuracy = [100 * (len(curve) - i + minimal["never_broken"]) / n for i in range(len(curve) + 1)]
    return eps, accuracy


def _measured(report: dict, norm: str) -> dict[str, list[tuple[float, float]]]:
    """attack -> sorted (eps, accuracy) points of one norm, each attack's list starting at the clean accuracy."""
    clean = (0.0, report["clean_accuracy"])
    points: dict[str, list[tuple[float, float]]] = {}
    for attack, _, _, settings in attack_curves(report):
        if settings.get("norm", "linf") == norm:
            points[attack] = [clean] + [p for p in curve_points(report, attack) if p[0] > 0]
    autoattack = [(r["eps"], r["accuracy"]) for r in report.get("autoattack", {}).values() if r["norm"] == norm]
    if autoattack:
        points["autoattack"] = [clean] + sorted(autoattack)
    return points


def render_training(metrics: dict, path: str | Path) -> Path | None:
    """The paper's Fig. 2 from the training log: accuracy and mean unrolled-DeepFool rho_2 of the training batches
    per hardening epoch (per reference training epoch on a reference model's card). None (nothing written) when the
    log holds no epoch."""
    records = [r for r in metrics.get("training", []) if "acc" in r]
    if not records:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 3.5), dpi=100)
    accuracy_axes = figure.add_subplot()
    epochs = [r["epoch"] for r in records]
    accuracy_axes.plot(epochs, [100 * r["acc"] for r in records], "o-", color="tab:orange", label="accuracy")
    reference_only = all(r.get("phase") == "reference" for r in records)
    accuracy_axes.set_xlabel("reference training epoch" if reference_only else "hardening epoch")
    accuracy_axes.set_ylabel("training-batch accuracy (%)", color="tab:orange")
    if any("rho" in r for r in records):
        rho_axes = accuracy_axes.twinx()
        rho_axes.plot([r["epoch"] for r in records if "rho" in r], [r["rho"] for r in records if "rho" in r],
                      "s--", color="tab:green", label="rho_2")
        rho_axes.set_ylabel("mean rho_2 of the unrolled DeepFool", color="tab:green")
    accuracy_axes.set_xticks(epochs)
    accuracy_axes.grid(alpha=0.3)
    figure.suptitle(f"{metrics['model']['architecture']}: training log per epoch")
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
