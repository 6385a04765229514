"""Tables (Markdown, JSON) and the figure of the experiments."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from visum.atomic import atomic_write, write_text_atomic
from visum.experiments.accuracy import PAPER_TABLE3, spearman
from visum.experiments.run import AccuracyReport, SpecialiseResult


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def accuracy_markdown(report: AccuracyReport) -> str:
    """Our table beside the paper's Table 3, with Spearman's rho of each."""
    names = [c.name for c in report.rows[0].classes] if report.rows else []
    head = ("| model | parameters | held-out accuracy | mean kept summaries | mean clusters | "
            "mean kept, explained classes | salient area | " + " | ".join(f"kept: {n}" for n in names) + " |")
    lines = [head, "|" + "---|" * (7 + len(names))]
    for r in report.rows:
        per = " | ".join(f"{c.kept} ({c.images} im.)" for c in r.classes)
        lines.append(f"| {r.label} | {r.parameters:,} | {r.accuracy:.3f} | {r.mean_kept:.2f} | {r.mean_clusters:.2f} | "
                     f"{_f(r.mean_kept_explained, 2)} | {_f(r.salient_area)} | {per} |")
    k, c, e = report.kept_vs_accuracy, report.clusters_vs_accuracy, report.explained_vs_accuracy
    a = report.explained_vs_salient_area
    paper = spearman([a for _, _, a in PAPER_TABLE3], [s for _, s, _ in PAPER_TABLE3])
    lines += [
        "",
        (f"Spearman's rho (accuracy, mean kept summaries) = {_f(k.rho)} (p = {_f(k.p_value)}, n = {k.n}); "
         f"(accuracy, mean clusters before scoring) = {_f(c.rho)} (p = {_f(c.p_value)}); "
         f"(accuracy, mean kept over explained classes) = {_f(e.rho)} (p = {_f(e.p_value)}); "
         f"(salient area, mean kept over explained classes) = {_f(a.rho)} (p = {_f(a.p_value)}). "
         "p: exact two-sided permutation p-value."),
        "",
        "Paper, Table 3 (ImageNet, 18 classes):",
        "",
        "| network | mean summaries | top-1 accuracy |",
        "|---|---|---|",
        *(f"| {n} | {s} | {a * 100:.1f}% |" for n, s, a in PAPER_TABLE3),
        "",
        f"Spearman's rho of the paper's table = {_f(paper.rho)} (p = {_f(paper.p_value)}, n = {paper.n}).",
    ]
    return "\n".join(lines)


def specialise_markdown(results: Sequence[SpecialiseResult]) -> str:
    lines = [
        ("| model | features | summaries (per class) | positives / summary | lambda | val. net | val. chosen | "
         "test net | test specialised | test SVMs only | fixed / broken (McNemar p) | control: one SVM per class (lambda, test) |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        per = ", ".join(str(v) for v in r.summaries_per_class.values())
        lines.append(
            f"| {r.label} | {r.feature_layer}, {r.feature_dim}-d | {sum(r.summaries_per_class.values())} ({per}) | "
            f"{r.positives_per_summary:.1f} | {r.weight:.2f} | {r.validation['network']:.4f} | "
            f"{r.validation['chosen']:.4f} | {r.test['network']:.4f} | {r.test['specialised']:.4f} | "
            f"{r.test['svm_only']:.4f} | {r.fixed} / {r.broken} ({r.mcnemar_p:.2g}) | "
            f"{r.class_svms['weight']:.2f}, {r.class_svms['test_specialised']:.4f} |"
        )
    if results:
        s = results[0].split_sizes
        lines += ["", f"Images: train {s['train']}, validation {s['validation']}, test {s['test']} (per model)."]
    return "\n".join(lines)


def write_json(data: dict | list, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(data, indent=1, default=str) + "\n")
    return path


def accuracy_figure(report: AccuracyReport, path: Path) -> Path:
    """Mean kept summaries against accuracy: the models of ``report`` beside the paper's Table 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    ax = axes[0]
    xs = [r.accuracy * 100 for r in report.rows]
    ax.plot(xs, [r.mean_kept for r in report.rows], "o-", label="kept summaries")
    ax.plot(xs, [r.mean_kept_explained for r in report.rows], "^:", label="kept, explained classes only")
    ax.plot(xs, [r.mean_clusters for r in report.rows], "s--", alpha=0.6, label="clusters before scoring")
    for r, x in zip(report.rows, xs):
        ax.annotate(r.label, (x, r.mean_kept), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("held-out accuracy (%)")
    ax.set_ylabel("per class (mean)")
    ax.set_title(f"parts benchmark (rho = {_f(report.kept_vs_accuracy.rho, 2)})", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[1]
    px = [a * 100 for _, _, a in PAPER_TABLE3]
    ax.plot(px, [s for _, s, _ in PAPER_TABLE3], "o-", color="C2")
    for (n, s, _), x in zip(PAPER_TABLE3, px):
        ax.annotate(n, (x, s), textcoords="offset points", xytext=(5, 2), fontsize=7)
    ax.set_xlabel("ImageNet top-1 (%)")
    ax.set_title("paper, Table 3", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
