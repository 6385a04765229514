"""Files for evaluation results: Markdown table, JSON, and a curves figure."""

from __future__ import annotations

import json
from pathlib import Path

from visum.atomic import atomic_write, write_text_atomic


def write_deletion_report(report, out: Path) -> Path:
    """``deletion.md``, ``deletion.json`` and ``curves.png`` in ``out``; returns the Markdown path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic((out / "deletion.md"), report.markdown())
    data = {
        "model": report.model, "reference": report.reference, "rows": report.rows(),
        "images": report.images, "targets": report.targets, "p_clean": report.p_clean,
        "per_image": {m.method: {"drop": m.drops, "area": m.areas, "binary": m.binary} for m in report.methods},
        "curves": {k: {"fractions": f.tolist(), "deletion": d.tolist(), "insertion": i.tolist()}
                   for k, (f, d, i) in report.curves.items()},
    }
    write_text_atomic((out / "deletion.json"), json.dumps(data, indent=1))
    plot_curves(report.curves, out / "curves.png")
    return out / "deletion.md"


def plot_curves(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for method, (f, d, i) in curves.items():
        axes[0].plot(f, d, label=method)
        axes[1].plot(f, i, label=method)
    for ax, title in zip(axes, ["deletion (lower is better)", "insertion (higher is better)"]):
        ax.set_title(title)
        ax.set_xlabel("fraction of pixels blurred / restored, most salient first")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("target probability")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, dpi=110, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
