"""Make docs/img/worlds.png: every world, one row, images of each class with the parts outlined.

    python scripts/worlds_figure.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from visum.data.worlds import make_samples, worlds

ROOT = Path(__file__).resolve().parents[1]
TILE = 112
PER_ROW = 7
LABEL_WIDTH = 150


def outlined(sample) -> np.ndarray:
    image = sample.image.copy()
    for mask in sample.part_masks.values():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(image, contours, -1, (255, 0, 255), 1)
    return cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)


def main() -> None:
    rows = []
    for w in worlds():
        classes = len(w.class_names)
        per_class = max(1, PER_ROW // classes)
        tiles = [outlined(s) for k in range(classes) for s in make_samples(w, per_class, labels=[k])][:PER_ROW]
        tiles += [np.full((TILE, TILE, 3), 255, np.uint8)] * (PER_ROW - len(tiles))
        label = Image.new("RGB", (LABEL_WIDTH, TILE), "white")
        draw = ImageDraw.Draw(label)
        rule = {"all": "all parts needed", "k_of_n": f"any {w.rule.k} of {len(w.ruled_parts)}",
                "dominant": f"dominant: {w.rule.part}"}[w.rule.kind]
        extra = "shortcut tag" if w.tag else (f"distractor: {w.distractor}" if w.distractor else "")
        draw.multiline_text((6, 8), f"{w.name} ({w.split})\n{len(w.parts)} parts, {w.size} px\n{rule}\n{extra}",
                            fill="black", spacing=4)
        rows.append(np.concatenate([np.asarray(label)] + tiles, axis=1))
    out = ROOT / "docs" / "img" / "worlds.png"
    Image.fromarray(np.concatenate(rows, axis=0)).quantize(256).save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    main()
