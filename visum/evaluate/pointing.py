"""``visum evaluate pointing``: per-image scores of saliency maps against the parts benchmark's truth.

For every image of a parts-benchmark folder and every saliency plugin (masks from
:func:`visum.evaluate.localisation.benchmark_masks`, i.e. from the shared cache):

* **pointing game** (Zhang et al. 2016): is the map's maximum inside the object? The object
  is the parrot's box (body and parts, ``object_box``); a second score asks for the true part
  masks themselves. Maps clipped to ``[0, 1]`` often peak on a plateau of tied pixels (a
  crisp mask is 1 over its whole region), so a hit counts the *share* of the maximal pixels
  that lie inside, i.e. the chance of a hit when ties are broken at random
  (:func:`pointing_hit`). ``tolerance`` grows the object by that many pixels first.
* **IoU** of the thresholded map with the union of the true part masks: thresholded as the
  regions stage of ``visum run`` does (crisp at 0.5; Otsu after a sigma-2 blur for the other
  methods), and at the true area (the ``|parts|`` most salient pixels), which compares the
  maps' rankings without a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from visum.cache import Cache
from visum.config import RunConfig
from visum.evaluate.deletion import threshold_to_area
from visum.evaluate.localisation import benchmark_masks
from visum.localize import mask_iou
from visum.pipeline import Reporter
from visum.stages.regions import binarize

__all__ = ["PointingReport", "PointingScores", "evaluate_pointing", "grow", "pointing_hit"]


def pointing_hit(saliency: np.ndarray, target: np.ndarray, atol: float = 1e-6) -> float:
    """Share of the maximal pixels of ``saliency [H, W]`` that fall in ``target [H, W]`` (bool), in [0, 1].

    The maximal pixels are those within ``atol`` of the maximum. With a single maximum this
    is the pointing game's 0/1 hit.
    """
    s = np.asarray(saliency, dtype=np.float64)
    if s.shape != np.shape(target):
        raise ValueError(f"saliency {s.shape} and target {np.shape(target)} differ in size")
    peak = s >= s.max() - atol
    return float(np.asarray(target, dtype=bool)[peak].mean())


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask [H, W]`` dilated by a disc of radius ``pixels`` (unchanged for 0)."""
    mask = np.asarray(mask, dtype=bool)
    if pixels <= 0:
        return mask
    yy, xx = np.mgrid[-pixels : pixels + 1, -pixels : pixels + 1]
    return ndimage.binary_dilation(mask, structure=(xx**2 + yy**2) <= pixels**2)


def box_mask(box, shape: tuple[int, int]) -> np.ndarray:
    """Bool ``[H, W]`` that is true inside ``box = (x0, y0, x1, y1)`` (exclusive ends)."""
    out = np.zeros(shape, dtype=bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    out[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return out


@dataclass
class PointingScores:
    method: str
    box_hits: list[float] = field(default_factory=list)
    part_hits: list[float] = field(default_factory=list)
    iou_threshold: list[float] = field(default_factory=list)
    iou_area: list[float] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)  # thresholded area / image area

    def row(self) -> dict:
        def mean(values):
            return float(np.mean(values)) if values else float("nan")

        return {
            "method": self.method, "n": len(self.box_hits), "pointing_box": mean(self.box_hits),
            "pointing_parts": mean(self.part_hits), "iou_threshold": mean(self.iou_threshold),
            "iou_true_area": mean(self.iou_area), "threshold_area": mean(self.areas),
        }


@dataclass
class PointingReport:
    model: str
    folder: str
    images: list[str]
    targets: list[int]
    parts_area: list[float]  # union of the true parts / image area
    methods: list[PointingScores]
    settings: dict

    def rows(self) -> list[dict]:
        return [m.row() for m in self.methods]

    def markdown(self) -> str:
        tol = self.settings["tolerance"]
        lines = [
            (f"model `{self.model}`, {len(self.images)} images of `{self.folder}`, pointing tolerance {tol} px; "
            f"true parts cover {100 * float(np.mean(self.parts_area)):.1f}% of an image on average"),
            "",
            ("| saliency | pointing: object box | pointing: parts | IoU with parts (regions threshold) | "
            "thresholded area | IoU with parts (true area) |"),
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows():
            lines.append(
                f"| {r['method']} | {100 * r['pointing_box']:.1f}% | {100 * r['pointing_parts']:.1f}% | "
                f"{r['iou_threshold']:.3f} | {100 * r['threshold_area']:.1f}% | {r['iou_true_area']:.3f} |"
            )
        return "\n".join(lines) + "\n"


def evaluate_pointing(
    config: RunConfig,
    methods: list[str],
    out_dir: Path,
    *,
    tolerance: int = 0,
    cache: Cache | None = None,
    reporter: Reporter | None = None,
) -> PointingReport:
    """Pointing game and IoU with the true parts, per method and image (module docstring)."""
    reporter = reporter or Reporter()
    bench = benchmark_masks(config, methods, out_dir, cache=cache, reporter=reporter)
    objects, parts = [], []
    for im, gt in zip(bench.images, bench.truths):
        w, h = im.view.original_size
        union = np.zeros((h, w), dtype=bool)
        for m in gt.part_masks.values():
            union |= m
        parts.append(union)
        objects.append(box_mask(gt.object_box, (h, w)))
    scores = []
    for method in methods:
        threshold, sigma = bench.binarisation[method]
        ps = PointingScores(method)
        for k, im in enumerate(bench.images):
            s = im.view.to_original(bench.masks[method][im.id])  # original pixels, 0 outside the view
            ps.box_hits.append(pointing_hit(s, grow(objects[k], tolerance)))
            ps.part_hits.append(pointing_hit(s, grow(parts[k], tolerance)))
            binary = binarize(s, threshold, sigma)
            ps.iou_threshold.append(mask_iou(binary, parts[k]))
            ps.areas.append(float(binary.mean()))
            ps.iou_area.append(mask_iou(threshold_to_area(s, float(parts[k].mean())) > 0.5, parts[k]))
        scores.append(ps)
    return PointingReport(
        model=bench.model.spec, folder=str(bench.folder), images=[str(im.path) for im in bench.images],
        targets=bench.targets, parts_area=[float(p.mean()) for p in parts], methods=scores,
        settings={"tolerance": tolerance, "binarisation": {m: list(b) for m, b in bench.binarisation.items()}},
    )
