"""Make docs/img/summaries-ablation.png from an ablation folder of `visum ablate` on the parts benchmark.

    python scripts/summaries_figure.py ABLATION_DIR [SEEDS_DIR]

Left: in which share of the images each saliency method's regions hold each ground-truth
part (the ceiling of the parts any summary can recover). Right: purity x coverage of every
configuration in ABLATION_DIR, best first; with SEEDS_DIR (an ablation over seeds with
gradient saliency) the mean and range over its seeds are drawn as well.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"gradient": "#4c8bf5", "iebb": "#f0a030", "crisp": "#d1242f"}


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = json.loads((Path(sys.argv[1]) / "ablation.json").read_text())
    seeds = json.loads((Path(sys.argv[2]) / "ablation.json").read_text()) if len(sys.argv) > 2 else []

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2), gridspec_kw={"width_ratios": [1, 1.6]})
    by_saliency = {}
    for r in rows:
        if r["scores"] and r["scores"]["region_coverage"] and r["saliency"] not in by_saliency:
            by_saliency[r["saliency"]] = r["scores"]["region_coverage"]
    parts = list(next(iter(by_saliency.values())))
    width = 0.8 / len(by_saliency)
    for k, (saliency, cover) in enumerate(sorted(by_saliency.items(), key=lambda kv: list(COLOURS).index(kv[0]))):
        x = np.arange(len(parts)) + (k - (len(by_saliency) - 1) / 2) * width
        left.bar(x, [cover[p] for p in parts], width, label=saliency, color=COLOURS.get(saliency))
    left.set_xticks(np.arange(len(parts)), parts)
    left.set_ylim(0, 1.05)
    left.set_ylabel("share of images whose salient regions hold the part")
    left.set_title("What the masks mark (parts benchmark, 30 images)")
    left.legend(title="saliency")
    left.grid(axis="y", alpha=0.3)

    scored = [r for r in rows if r["scores"]]
    scored.sort(key=lambda r: -r["purity_x_coverage"])
    labels = [f"{r['saliency']} + {r['matcher']} + {r['clusterer']}" for r in scored]
    y = np.arange(len(scored))[::-1]
    right.barh(y, [r["purity_x_coverage"] for r in scored], color=[COLOURS.get(r["saliency"]) for r in scored])
    if seeds:
        runs = defaultdict(list)
        for r in seeds:
            if r["scores"]:
                runs[(r["saliency"], r["matcher"], r["clusterer"])].append(r["purity_x_coverage"])
        for yy, r in zip(y, scored):
            values = runs.get((r["saliency"], r["matcher"], r["clusterer"]))
            if values and len(values) > 1:
                right.plot([min(values), max(values)], [yy, yy], color="black", lw=1.2)
                right.plot([np.mean(values)], [yy], "o", color="black", ms=4)
    right.set_yticks(y, labels, fontsize=8)
    for yy, r in zip(y, scored):
        if (r["saliency"], r["matcher"], r["clusterer"]) == ("crisp", "proposal-flow", "ap"):
            right.get_yticklabels()[list(y).index(yy)].set_fontweight("bold")
    right.set_xlim(0, 1.05)
    right.set_xlabel("mean purity x part coverage (seed 0)" + ("; black: mean and range over seeds 0-2" if seeds else ""))
    right.set_title("Every configuration, best first (bold: the paper's)")
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "summaries-ablation.png"
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
