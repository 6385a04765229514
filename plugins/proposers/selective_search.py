"""``selective-search``: object proposals of Uijlings et al. (IJCV 2013), through OpenCV.

The paper (Godi et al. 2018, Sec. 3.2) extracts the parts of a region with selective
search, 500 proposals per image. We wrap ``cv2.ximgproc.segmentation``'s implementation:
Felzenszwalb-Huttenlocher graph segmentations of the image in a few colour spaces, merged
hierarchically by colour/texture/size/fill similarity; every merged region's bounding box
is a proposal.

Determinism. OpenCV ranks the regions as ``rank = rand() * level`` (the "pseudo-random
ranking" of Uijlings et al., Sec. 3.3) with the C library's ``rand()``, so the *set* of
boxes is a function of the image but their *order* — and therefore which ones survive
``max_proposals`` — changes from call to call. We seed the C library's generator with
``seed`` (``srand``) right before each ``process()`` call, under a lock, which makes the
output a function of (image, options). Where the C library cannot be reached through
:mod:`ctypes` we fall back to a deterministic order (smaller boxes first, then by
coordinates), which approximates OpenCV's bias towards low hierarchy levels. Everything
else in OpenCV's selective search is single-threaded and deterministic.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from visum import Component, Options, hookimpl

__all__ = [
    "SelectiveSearchOptions",
    "SelectiveSearch",
    "opencv_selective_search",
    "xywh_to_xyxy",
    "clean_boxes",
    "register_proposers",
]

_LOCK = threading.Lock()


def _find_srand():
    """The C library's ``srand``, which seeds the ``rand()`` OpenCV ranks regions with, or None."""
    candidates = []
    if sys.platform == "win32":
        candidates = ["ucrtbase", "msvcrt"]
    else:
        candidates = [None, ctypes.util.find_library("c")]
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            fn = lib.srand
        except (OSError, AttributeError, TypeError):
            continue
        fn.argtypes = [ctypes.c_uint]
        fn.restype = None
        return fn
    return None


_SRAND = _find_srand()


def opencv_selective_search(
    bgr: np.ndarray,
    mode: str = "fast",
    base_k: int = 150,
    inc_k: int = 150,
    sigma: float = 0.8,
    seed: int = 0,
) -> np.ndarray:
    """Run OpenCV's selective search on a BGR image; returns ``[M, 4]`` int ``(x, y, w, h)``.

    ``mode``: ``"single"`` (one HSV graph segmentation with ``k = base_k``, one strategy),
    ``"fast"`` (HSV and Lab, ``k in {base_k, base_k + inc_k, base_k + 2 inc_k}``, two
    strategies) or ``"quality"`` (five colour spaces, five ``k``, four strategies) — the
    settings of Uijlings et al. 2013, Sec. 5. ``sigma`` is the Gaussian smoothing of the
    graph segmentation. OpenCV's order (its ranking, best first) is kept, deduplicated.
    """
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    if mode == "fast":
        ss.switchToSelectiveSearchFast(int(base_k), int(inc_k), float(sigma))
    elif mode == "quality":
        ss.switchToSelectiveSearchQuality(int(base_k), int(inc_k), float(sigma))
    elif mode == "single":
        ss.switchToSingleStrategy(int(base_k), float(sigma))
    else:
        raise ValueError(f"unknown selective search mode {mode!r}")
    if _SRAND is None:
        rects = np.asarray(ss.process(), dtype=np.int64).reshape(-1, 4)
        order = np.lexsort((rects[:, 3], rects[:, 2], rects[:, 1], rects[:, 0], rects[:, 2] * rects[:, 3]))
        return rects[order]
    with _LOCK:
        _SRAND(int(seed) & 0xFFFFFFFF)
        rects = ss.process()
    return np.asarray(rects, dtype=np.int64).reshape(-1, 4)


def xywh_to_xyxy(rects: np.ndarray) -> np.ndarray:
    """``(x, y, w, h)`` -> ``[x0, y0, x1, y1]`` with exclusive ends: ``x1 = x + w``. ``[M, 4]`` int64."""
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)


def clean_boxes(boxes: np.ndarray, width: int, height: int, min_size: int, max_boxes: int) -> np.ndarray:
    """Clip ``[M, 4]`` boxes to a ``width x height`` image, drop those narrower or shorter than
    ``min_size`` px (and empty ones), drop repeats (first occurrence wins), keep the order,
    keep at most ``max_boxes``. Returns ``[M', 4]`` int64, ``M' <= max_boxes``."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    boxes = boxes[(w >= max(1, min_size)) & (h >= max(1, min_size))]
    if len(boxes):
        _, first = np.unique(boxes, axis=0, return_index=True)
        boxes = boxes[np.sort(first)]
    return boxes[:max_boxes]


class SelectiveSearchOptions(Options):
    """Options of :class:`SelectiveSearch`."""

    mode: Literal["fast", "quality", "single"] = Field(
        default="fast",
        description=(
            "Uijlings et al.'s setting: 'single' (1 segmentation, 1 strategy), 'fast' "
            "(2 colour spaces x 3 k x 2 strategies) or 'quality' (5 x 5 x 4, much slower)."
        ),
    )
    max_proposals: int = Field(
        default=500, ge=0, description="Keep at most this many proposals, best ranked first (the paper uses 500)."
    )
    min_size: int = Field(
        default=8, ge=0, description="Drop proposals narrower or shorter than this many pixels."
    )
    base_k: int = Field(
        default=150,
        gt=0,
        description="k of the first graph segmentation (larger k, larger initial regions); 'single' uses it as its only k.",
    )
    inc_k: int = Field(
        default=150, gt=0, description="Increment of k between the graph segmentations of 'fast' and 'quality'."
    )
    sigma: float = Field(
        default=0.8, gt=0.0, description="Gaussian smoothing (pixels) applied before the graph segmentation."
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="Seed of OpenCV's pseudo-random region ranking; fixed so the same image always gives the same boxes.",
    )


class SelectiveSearch(Component):
    """Selective search proposals (OpenCV), as ``[x0, y0, x1, y1]`` boxes best first."""

    name = "selective-search"
    summary = "Uijlings et al. 2013 selective search (OpenCV ximgproc), up to 500 boxes per image"
    Options = SelectiveSearchOptions

    def propose(self, image: np.ndarray) -> np.ndarray:
        """``image [H, W, 3]`` uint8 RGB -> ``boxes [M, 4]`` int64, exclusive ends, best first."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        o = self.options
        if height == 0 or width == 0 or o.max_proposals == 0:
            return np.zeros((0, 4), dtype=np.int64)
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        rects = opencv_selective_search(bgr, o.mode, o.base_k, o.inc_k, o.sigma, o.seed)
        return clean_boxes(xywh_to_xyxy(rects), width, height, o.min_size, o.max_proposals)


@hookimpl
def register_proposers():
    return [SelectiveSearch]
