"""``hog``: appearance-only matching of proposals by HOG descriptors (a baseline).

Each proposal is cropped from the grayscale image with a little context around it, resized
to a fixed ``cells x cells`` grid of ``pixels_per_cell``-pixel cells, and described by a
histogram of oriented gradients (Dalal & Triggs 2005; scikit-image's ``hog``), L2-normalised.
Two proposals match as well as their descriptors point the same way::

    Q_ij(k, l) = max(0, <f_ik, f_jl>)        (cosine similarity, clamped at 0)

Unlike Proposal Flow (the paper's matcher, Sec. 3.2) there is no geometric consistency
term: a proposal's position, scale and its neighbours play no part, so this is a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import Field
from skimage.feature import hog

from visum import Component, Options, cacheable, hookimpl

__all__ = [
    "HOGOptions",
    "HOGDescription",
    "HOG",
    "padded_crops",
    "hog_descriptors",
    "cosine_similarity_nonneg",
    "hog_dimension",
    "register_matchers",
]


def hog_dimension(cells: int, cells_per_block: int, orientations: int) -> int:
    """Length of one descriptor: ``orientations * cells_per_block**2 * (cells - cells_per_block + 1)**2``."""
    blocks = cells - cells_per_block + 1
    return orientations * cells_per_block * cells_per_block * blocks * blocks


def padded_crops(gray: np.ndarray, boxes: np.ndarray, padding: float, side: int) -> np.ndarray:
    """Crop every box enlarged by ``padding`` of its width/height on each side, resize to ``side``².

    Context outside the image is filled by replicating the border pixels, so a box at the
    edge keeps its place in its crop. Resizing uses area averaging when shrinking (no
    aliasing) and bilinear interpolation when enlarging.
    Shapes: ``gray [H, W]`` uint8, ``boxes [M, 4]`` -> ``[M, side, side]`` float32.
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    out = np.empty((len(boxes), side, side), dtype=np.float32)
    if len(boxes) == 0:
        return out
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    pad_x = np.ceil(padding * w).astype(np.int64)
    pad_y = np.ceil(padding * h).astype(np.int64)
    margin = int(max(pad_x.max(), pad_y.max(), 0))
    src = cv2.copyMakeBorder(gray, margin, margin, margin, margin, cv2.BORDER_REPLICATE) if margin else gray
    x0 = boxes[:, 0] - pad_x + margin
    x1 = boxes[:, 2] + pad_x + margin
    y0 = boxes[:, 1] - pad_y + margin
    y1 = boxes[:, 3] + pad_y + margin
    for m in range(len(boxes)):
        crop = src[y0[m] : y1[m], x0[m] : x1[m]]
        if crop.size == 0:
            out[m] = 0.0
            continue
        shrink = crop.shape[0] >= side and crop.shape[1] >= side
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out[m] = cv2.resize(crop, (side, side), interpolation=interp)
    return out


def hog_descriptors(
    crops: np.ndarray, orientations: int, pixels_per_cell: int, cells_per_block: int
) -> np.ndarray:
    """HOG of each crop (scikit-image, L2-Hys blocks), then L2-normalised as a whole.

    A flat crop has no gradient and gets the zero vector (it then matches nothing).
    Shapes: ``crops [M, s, s]`` float -> ``[M, D]`` float32, unit norm or zero.
    """
    feats = [
        hog(
            crop,
            orientations=orientations,
            pixels_per_cell=(pixels_per_cell, pixels_per_cell),
            cells_per_block=(cells_per_block, cells_per_block),
            block_norm="L2-Hys",
            feature_vector=True,
        )
        for crop in crops
    ]
    if not feats:
        return np.zeros((0, 0), dtype=np.float32)
    f = np.stack(feats).astype(np.float32)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return np.divide(f, norm, out=np.zeros_like(f), where=norm > 1e-12)


def cosine_similarity_nonneg(f_i: np.ndarray, f_j: np.ndarray) -> np.ndarray:
    """``clip(f_i @ f_j.T, 0, 1)`` for unit-norm (or zero) rows: ``[M_i, D], [M_j, D] -> [M_i, M_j]`` float32.

    The upper clip only removes float rounding above 1.
    """
    q = np.asarray(f_i, dtype=np.float32) @ np.asarray(f_j, dtype=np.float32).T
    np.maximum(q, 0.0, out=q)
    return np.minimum(q, 1.0, out=q)


@cacheable
@dataclass(frozen=True)
class HOGDescription:
    """What :meth:`HOG.describe` computes once per image."""

    features: np.ndarray  # [M, D] float32, unit rows (zero for a flat crop)
    boxes: np.ndarray  # [M, 4] int64, the boxes described


class HOGOptions(Options):
    """Options of :class:`HOG`."""

    cells: int = Field(default=4, ge=1, description="Each proposal is described on a cells x cells grid of HOG cells.")
    pixels_per_cell: int = Field(
        default=8, ge=2, description="Side in pixels of a HOG cell; a crop is resized to cells * pixels_per_cell pixels."
    )
    orientations: int = Field(default=9, ge=1, description="Unsigned orientation bins per cell histogram.")
    cells_per_block: int = Field(
        default=2, ge=1, description="Side in cells of the (overlapping) blocks HOG normalises over; at most `cells`."
    )
    padding: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Context added around each box before cropping, as a fraction of its width/height per side.",
    )


class HOG(Component):
    """Matches proposals by the cosine similarity of their HOG descriptors."""

    name = "hog"
    summary = "Appearance-only baseline: cosine similarity of HOG descriptors of the proposals"
    Options = HOGOptions

    def __init__(self, options: HOGOptions | None = None) -> None:
        super().__init__(options)
        if self.options.cells_per_block > self.options.cells:
            raise ValueError("cells_per_block must not exceed cells")

    @property
    def dimension(self) -> int:
        o = self.options
        return hog_dimension(o.cells, o.cells_per_block, o.orientations)

    def describe(self, image: np.ndarray, boxes: np.ndarray) -> HOGDescription:
        """``image [H, W, 3]`` uint8 RGB, ``boxes [M, 4]`` -> features ``[M, D]`` float32."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be [H, W, 3], got {image.shape}")
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        o = self.options
        if len(boxes) == 0:
            return HOGDescription(np.zeros((0, self.dimension), dtype=np.float32), boxes)
        gray = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
        crops = padded_crops(gray, boxes, o.padding, o.cells * o.pixels_per_cell)
        feats = hog_descriptors(crops, o.orientations, o.pixels_per_cell, o.cells_per_block)
        return HOGDescription(feats, boxes)

    def match(self, description_i: HOGDescription, description_j: HOGDescription) -> np.ndarray:
        """``Q[M_i, M_j]`` float32 in ``[0, 1]``: clamped cosine similarity of the descriptors."""
        return cosine_similarity_nonneg(description_i.features, description_j.features)


@hookimpl
def register_matchers():
    return [HOG]
