"""``slic-segments``: the segments of ACE (Ghorbani et al., NeurIPS 2019, Sec. 3) as proposals.

ACE finds a class's concepts by segmenting each image at several resolutions with SLIC
(Achanta et al., TPAMI 2012: k-means on colour and position, seeded on a grid of
``n_segments`` cells, with ``compactness`` weighting position against colour), so that a
segment is a part at one scale and an object at another. ACE uses three resolutions of 15,
50 and 80 segments. A segment becomes a proposal through its bounding box; segments smaller
than ``min_area`` of the image are dropped (ACE drops tiny segments too), and a box found at
several resolutions is kept once.

Order: coarse resolutions first, and within one resolution larger segments first — SLIC has
no objectness score, and a proposer returns boxes best first.

Deterministic: SLIC's seeds lie on a regular grid; there is no random start.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from skimage.segmentation import slic

from visum import Component, Options, hookimpl

__all__ = ["SLICSegmentsOptions", "SLICSegments", "segment_boxes", "register_proposers"]


def segment_boxes(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """Bounding box of every segment of a label map with at least ``min_pixels`` pixels, largest first.

    Shapes: ``labels [H, W]`` int (any ids) -> ``[M, 4]`` int64 ``[x0, y0, x1, y1]``, exclusive ends.
    """
    labels = np.asarray(labels)
    ids, flat = np.unique(labels, return_inverse=True)
    flat = flat.reshape(labels.shape)
    count = np.bincount(flat.ravel(), minlength=len(ids))
    ys, xs = np.indices(labels.shape)
    big = np.iinfo(np.int64).max
    x0 = np.full(len(ids), big)
    y0 = np.full(len(ids), big)
    x1 = np.full(len(ids), -1)
    y1 = np.full(len(ids), -1)
    np.minimum.at(x0, flat.ravel(), xs.ravel())
    np.minimum.at(y0, flat.ravel(), ys.ravel())
    np.maximum.at(x1, flat.ravel(), xs.ravel())
    np.maximum.at(y1, flat.ravel(), ys.ravel())
    keep = np.flatnonzero(count >= max(1, min_pixels))
    keep = keep[np.argsort(-count[keep], kind="stable")]
    return np.stack([x0[keep], y0[keep], x1[keep] + 1, y1[keep] + 1], axis=1).astype(np.int64).reshape(-1, 4)


class SLICSegmentsOptions(Options):
    """Options of :class:`SLICSegments`."""

    n_segments: tuple[int, ...] = Field(default=(15, 50, 80), min_length=1,
                                        description="SLIC resolutions (segments per image), as in ACE.")
    compactness: float = Field(default=20.0, gt=0, description="SLIC's weight of position against colour (ACE: 20).")
    sigma: float = Field(default=1.0, ge=0, description="Gaussian smoothing before SLIC, pixels (ACE: 1).")
    min_area: float = Field(default=0.01, ge=0, lt=1, description="Smallest segment kept, as a share of the image area.")


class SLICSegments(Component):
    """Bounding boxes of multi-resolution SLIC segments, coarse to fine (ACE's segmentation)."""

    name = "slic-segments"
    summary = "ACE (Ghorbani et al. 2019): bounding boxes of SLIC segments at 15, 50 and 80 segments per image"
    Options = SLICSegmentsOptions

    def propose(self, image: np.ndarray) -> np.ndarray:
        """``image [H, W, 3]`` uint8 RGB -> ``[M, 4]`` int64 boxes, coarse resolutions first."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be [H, W, 3], got {image.shape}")
        o = self.options
        h, w = image.shape[:2]
        min_pixels = int(np.ceil(o.min_area * h * w))
        seen: set[tuple[int, ...]] = set()
        out = []
        for n in sorted(o.n_segments):
            labels = slic(image, n_segments=n, compactness=o.compactness, sigma=o.sigma, start_label=0,
                          channel_axis=-1)
            for box in segment_boxes(labels, min_pixels):
                key = tuple(int(v) for v in box)
                if key not in seen:
                    seen.add(key)
                    out.append(box)
        return np.stack(out).astype(np.int64) if out else np.zeros((0, 4), dtype=np.int64)


@hookimpl
def register_proposers():
    return [SLICSegments]
