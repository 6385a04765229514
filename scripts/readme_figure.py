"""Make docs/img/default-summaries.png: the kept summaries of the paper's pipeline on the parts benchmark.

    python scripts/readme_figure.py [RUN_DIR]

Without RUN_DIR it first runs `visum run --saliency crisp --matcher proposal-flow --clusterer ap`
(the paper's crisp masks, proposal flow and affinity propagation, everything else default) into a
temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from visum.manifest import Manifest

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    if len(sys.argv) > 1:
        run = Path(sys.argv[1])
    else:
        from visum.cli import main as visum

        run = Path(tempfile.mkdtemp()) / "run"
        assert visum(["run", "--saliency", "crisp", "--matcher", "proposal-flow", "--clusterer", "ap",
                      "--out", str(run), "--quiet"]) == 0
    manifest = Manifest.model_validate_json((run / "manifest.json").read_text())
    kept = manifest.kept_summaries
    rows = [np.asarray(Image.open(run / s.image).convert("RGB")) for s in kept[:4]]
    width = max(r.shape[1] for r in rows)
    canvas = np.full((sum(r.shape[0] for r in rows) + 8 * len(rows), width, 3), 255, np.uint8)
    y = 0
    for r in rows:
        canvas[y : y + r.shape[0], : r.shape[1]] = r
        y += r.shape[0] + 8
    out = ROOT / "docs" / "img" / "default-summaries.png"
    Image.fromarray(canvas).quantize(256).save(out, optimize=True)  # palette PNG: a third of the size
    print(out)


if __name__ == "__main__":
    main()
