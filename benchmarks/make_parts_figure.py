"""Draw docs/img/parts-examples.png: example images of every parts-benchmark class with their ground truth.

    python benchmarks/make_parts_figure.py [--out docs/img/parts-examples.png]

One row per class; each example is shown as the image and, beside it, its ground-truth
part masks (colour-coded) with the object box.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from visum.data.parts import CLASS_CHANGES, CLASS_NAMES, PART_NAMES, make_dataset  # noqa: E402

PART_COLOURS = {"eye": (1.0, 1.0, 1.0), "beak": (1.0, 0.6, 0.0), "tail": (0.1, 0.4, 1.0), "wing": (0.1, 0.8, 0.1)}


def label_map_rgb(sample) -> np.ndarray:
    out = np.zeros(sample.image.shape, dtype=np.float32)
    for p in PART_NAMES:
        out[sample.part_masks[p]] = PART_COLOURS.get(p, (1, 0, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img" / "parts-examples.png")
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--seed", type=int, default=2024)
    a = ap.parse_args()

    k = a.per_class
    data = make_dataset(k, seed=a.seed)
    fig, axes = plt.subplots(len(CLASS_NAMES), 2 * k, figsize=(2 * k * 1.2 + 2.2, len(CLASS_NAMES) * 1.25 + 0.4))
    for c, name in enumerate(CLASS_NAMES):
        for j in range(k):
            s = data[c * k + j]
            ax_img, ax_gt = axes[c, 2 * j], axes[c, 2 * j + 1]
            ax_img.imshow(s.image)
            ax_gt.imshow(label_map_rgb(s))
            x0, y0, x1, y1 = s.object_box
            ax_gt.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=0.8))
            for ax in (ax_img, ax_gt):
                ax.set_xticks([])
                ax.set_yticks([])
        change = CLASS_CHANGES.get(c)
        title = f"{name}\n(all parts)" if change is None else f"{name}\n({change[0]} {change[1]})"
        axes[c, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=7)
    handles = [Patch(color=PART_COLOURS[p], label=p) for p in PART_NAMES]
    handles.append(Patch(fill=False, ec="yellow", label="object box"))
    leg = fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=True,
                     facecolor="black", labelcolor="white")
    leg.get_frame().set_edgecolor("black")
    fig.subplots_adjust(left=0.2, right=0.995, top=0.995, bottom=0.07, wspace=0.04, hspace=0.05)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=110)
    # a 256-colour palette keeps the file small (~170 kB instead of ~700 kB)
    img = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    img.save(a.out, optimize=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
