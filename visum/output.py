"""Writing a result: manifest.json, masks/, summaries/, run.toml, report.html.

A sink: it takes a :class:`visum.result.Result` that the pipeline computed in memory and
writes it, each file atomically, the manifest last. Nothing here computes a finding.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from visum.atomic import atomic_write, write_bytes_atomic, write_text_atomic
from visum.config import RunConfig, config_to_dict, dump_config
from visum.manifest import Manifest
from visum.result import Result, relative_to

if TYPE_CHECKING:
    from visum.evaluate.summaries import GroundTruthScores

__all__ = ["save_result", "write_manifest"]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _moved(result: Result, new: Path) -> tuple[Manifest, RunConfig]:
    """The manifest and configuration of ``result`` for a copy in ``new``: images that live in the
    result's folder are copied to the same place in ``new`` (their paths stay relative), the others'
    paths made relative to ``new`` (or absolute)."""
    old = Path(result.out_dir)
    manifest, config = result.manifest, result.config
    if old.resolve() == new.resolve():
        return manifest, config
    images = []
    for im in manifest.images:
        src = old / im.path
        if not Path(im.path).is_absolute() and _inside(src, old) and src.is_file():
            write_bytes_atomic(new / im.path, src.read_bytes())
            images.append(im)
        else:
            images.append(im.model_copy(update={"path": relative_to(src, new)}))
    if config.images is not None and _inside(Path(config.images), old):
        config = config.model_copy(update={"images": (new / Path(config.images).resolve().relative_to(old.resolve()))})
    data = {"images": images, "config": config_to_dict(config)}
    return manifest.model_copy(update=data), config


def save_result(result: Result, out: Path, *, ground_truth: GroundTruthScores | None = None) -> Path:
    """Write ``result`` into ``out``; returns report.html (masks/ for a masks-only result)."""
    from visum.report import save_png, write_report

    out = Path(out)
    manifest, config = _moved(result, out)
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
    dump_config(config, out / "run.toml")
    report = write_report(manifest, out, summary_pictures=result.summary_pictures, masks=result.masks,
                          thumbnails=result.thumbnails, inputs=result.inputs, ground_truth=ground_truth)
    write_manifest(manifest, out)
    return report


def write_manifest(manifest: Manifest, out: Path) -> Path:
    return write_text_atomic(Path(out) / "manifest.json", json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
