"""A sweep's report: ``index.html`` linking every cell's report, ``sweep.json``, a plot per model.

Per model, a table of its cells (class, saliency method, images, the share the model predicts
as the class, kept summaries, a link to the cell's ``report.html``) and the paper's Sec. 4.3
question — do classes the model gets right have fewer summaries? — as Spearman's rho between
accuracy and kept summaries over the classes, with a scatter plot (``plots/<model>.png``).
Takes records (:class:`visum.sweep.CellRecord`); computes nothing.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
from pathlib import Path

from visum.atomic import write_bytes_atomic, write_text_atomic
from visum.sweep import CELLS, CellRecord, correlation, records_json, slug

__all__ = ["write_sweep_report"]

_CSS = """
body { font: 15px/1.5 system-ui, sans-serif; color: #1f2328; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid #d8dee4; padding: 4px 10px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.err { color: #d1242f; }
.sub { color: #656d76; }
img { max-width: 420px; border: 1px solid #d8dee4; }
"""


def _plot_name(model: str) -> str:
    """A file name for a model spec: its slug and a short hash (``timm:x`` and ``timm/x`` differ)."""
    return f"{slug(model)}-{hashlib.sha256(model.encode()).hexdigest()[:6]}"


def _plot(records: list[CellRecord], model: str) -> bytes | None:
    """Accuracy against kept summaries, one point per class and method, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.error is None and r.images]
    if not ok:
        return None
    fig, ax = plt.subplots(figsize=(4.2, 3.2), dpi=100)
    for saliency in sorted({r.saliency for r in ok}):
        rs = [r for r in ok if r.saliency == saliency]
        ax.scatter([r.accuracy for r in rs], [r.kept for r in rs], label=saliency.replace("$", r"\$"), s=24)
    ax.set_xlabel("accuracy on the class")
    ax.set_ylabel("kept summaries")
    ax.set_title(model.replace("$", r"\$"), fontsize=10)  # no math text
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def write_sweep_report(records: list[CellRecord], out: Path) -> Path:
    """Write ``out/index.html``, ``out/sweep.json`` and ``out/plots/*.png``; returns the index's path."""
    out = Path(out)
    write_text_atomic(out / "sweep.json", json.dumps(records_json(records), indent=1))
    r_of = correlation(records)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>visum sweep</title><style>{_CSS}</style>"
             f"</head><body><main><h1>visum sweep</h1><p class='sub'>{len(records)} cells; "
             f"{sum(r.error is not None for r in records)} failed. Data: <code>sweep.json</code>.</p>"]
    for model in sorted({r.model for r in records}):
        rs = [r for r in records if r.model == model]
        parts.append(f"<h2>{html.escape(model)}</h2>")
        for (m, saliency), c in sorted(r_of.items()):
            if m == model:
                text = "n/a (fewer than 3 classes, or a constant)" if c is None else \
                    f"{c.rho:+.2f} (p = {c.p_value:.2g}, {c.n} classes)"
                parts.append(f"<p>{html.escape(saliency)}: Spearman's rho between accuracy and kept summaries "
                             f"over classes: <b>{text}</b></p>")
        png = _plot(rs, model)
        if png is not None:
            name = f"plots/{_plot_name(model)}.png"
            write_bytes_atomic(out / name, png)
            parts.append(f"<img src='{html.escape(name)}' alt='accuracy against kept summaries'>")
        parts.append("<table><tr><th>class</th><th>saliency</th><th>images</th><th>accuracy</th>"
                     "<th>kept summaries</th><th>report</th></tr>")
        for r in sorted(rs, key=lambda r: (r.klass, r.saliency)):
            if r.error is not None:
                parts.append(f"<tr><td>{html.escape(r.klass)}</td><td>{html.escape(r.saliency)}</td>"
                             f"<td colspan='4' class='err'>failed: {html.escape(r.error)}</td></tr>")
                continue
            acc = "" if math.isnan(r.accuracy) else f"{r.accuracy:.2f}"
            link = f"{CELLS}/{r.name}/report.html"
            parts.append(f"<tr><td>{html.escape(r.klass)}</td><td>{html.escape(r.saliency)}</td>"
                         f"<td class='n'>{r.images}</td><td class='n'>{acc}</td><td class='n'>{r.kept}</td>"
                         f"<td><a href='{html.escape(link)}'>{html.escape(r.name)}</a></td></tr>")
        parts.append("</table>")
    parts.append("</main></body></html>")
    index = out / "index.html"
    write_text_atomic(index, "".join(parts))
    return index
