"""Writing a result: manifest.json, masks/, summaries/, run.toml, report.html.

A sink: it takes a :class:`visum.result.Result` that the pipeline computed in memory and
writes it, each file atomically, the manifest last. Nothing here computes a finding.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from visum.atomic import atomic_write, write_text_atomic
from visum.config import dump_config
from visum.manifest import Manifest
from visum.result import Result, relative_to

if TYPE_CHECKING:
    from visum.evaluate.summaries import GroundTruthScores

__all__ = ["save_result", "write_manifest"]


def _moved(manifest: Manifest, old: Path, new: Path) -> Manifest:
    """The manifest with its image paths made relative to ``new`` instead of ``old``."""
    if Path(old).resolve() == Path(new).resolve():
        return manifest
    images = [im.model_copy(update={"path": relative_to(Path(old) / im.path, new)}) for im in manifest.images]
    return manifest.model_copy(update={"images": images})


def save_result(result: Result, out: Path, *, ground_truth: GroundTruthScores | None = None) -> Path:
    """Write ``result`` into ``out``; returns report.html (masks/ for a masks-only result)."""
    from visum.report import save_png, write_report

    start = time.perf_counter()
    out = Path(out)
    manifest = _moved(result.manifest, result.out_dir, out)
    for image_id, mask in result.masks.items():
        path = out / "masks" / f"{image_id:04d}.png"
        with atomic_write(path, "wb") as fh:
            Image.fromarray((mask * 255).round().astype(np.uint8)).save(fh, format="PNG")
        with atomic_write(path.with_suffix(".npy"), "wb") as fh:
            np.save(fh, result.view_masks[image_id])
    (out / "masks").mkdir(parents=True, exist_ok=True)
    if not result.complete:
        write_manifest(manifest, out)
        return out / "masks"
    (out / "summaries").mkdir(parents=True, exist_ok=True)
    for s in manifest.summaries:
        save_png(result.summary_pictures[s.id], out / s.image)
    dump_config(result.config, out / "run.toml")
    report = write_report(manifest, out, summary_pictures=result.summary_pictures, masks=result.masks,
                          thumbnails=result.thumbnails, inputs=result.inputs, ground_truth=ground_truth)
    manifest.timings["output"] = round(time.perf_counter() - start, 4)
    write_manifest(manifest, out)
    return report


def write_manifest(manifest: Manifest, out: Path) -> Path:
    return write_text_atomic(Path(out) / "manifest.json", json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
