"""The report's ground-truth section, shown when the run's images carry parts-benchmark ground truth.

The numbers come from :mod:`visum.evaluate.summaries` (``visum evaluate summaries RUN_DIR``
prints the same); this module only renders them as HTML (escaped, no scripts, no links out).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the scores are computed by visum.evaluate; this module only shows them
    from visum.evaluate.summaries import GroundTruthScores, SummaryScore

__all__ = ["ground_truth_section", "summary_ground_truth"]


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _f(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.2f}"


def ground_truth_section(scores: GroundTruthScores) -> str:
    """Cards with the class-level scores of the kept summaries, and how they are defined."""
    cards = [
        (_f(scores.mean_purity), "mean purity of kept summaries"),
        (f"{len(scores.parts_recovered)} <small>/ {len(scores.parts_present)}</small>", "parts recovered"),
        (_f(scores.nmi), "NMI(summary, part)"),
        (f"{_f(scores.mu_s)} <small>vs {_f(scores.mu_r)}</small>", "&mu;<sub>S</sub> vs &mu;<sub>R</sub> (Jaccard)"),
    ]
    cards_html = "".join(f'<div class="card"><div class="v">{v}</div><div class="k">{k}</div></div>' for v, k in cards)
    recovered = ", ".join(scores.parts_recovered) or "none"
    share = scores.settings.get("share", 0.5)
    return (
        '<h2 id="ground-truth">Ground truth</h2>\n'
        '<p class="sub">The images carry the parts benchmark\'s ground truth, so each member is labelled with the '
        f"part its box shows (the part fills &ge; {_e(_f(share))} of the box or &ge; {_e(_f(share))} of the part lies "
        "in it; the one with most pixels in the box) or <i>background</i>. Purity: share of a summary's majority "
        f"label. Recovered: <b>{_e(recovered)}</b>. &mu;<sub>S</sub>/&mu;<sub>R</sub>: mean Jaccard distance of "
        "members' part tags within summaries / within as many random images of the class, each represented by "
        "one of its salient regions (the paper's Fig. 4; "
        "lower is more coherent). <span class=\"mono\">visum evaluate summaries RUN_DIR</span> prints the details.</p>\n"
        f'<div class="cards">{cards_html}</div>\n{_region_coverage(scores)}'
    )


def _region_coverage(scores: GroundTruthScores) -> str:
    if not scores.region_coverage:
        return ""
    held = ", ".join(f"{_e(part)} {share * 100:.0f}%" for part, share in scores.region_coverage.items())
    return (f'<p class="sub">Salient regions hold each part (&ge; half of it inside a region\'s box) in this share '
            f"of the images: {held}. A part the saliency method does not mark cannot become a summary.</p>")


def summary_ground_truth(score: SummaryScore | None) -> list[str]:
    """Stat spans for one summary card: its majority part and purity."""
    if score is None or not score.n_members:
        return []
    return [f"<span>ground truth <b>{_e(score.majority)}</b> &middot; purity <b>{_e(_f(score.purity))}</b></span>"]
