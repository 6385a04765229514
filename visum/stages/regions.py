"""Regions, proposal pruning and the compatibility matrix (the paper's Sec. 3.2), as pure functions.

* :func:`binarize` and :func:`connected_regions` turn a saliency mask into *regions*, the
  connected components ``r_j^(i)`` of the binary mask;
* :func:`assign_to_regions` keeps the proposals lying inside a region (overlap > 75% of the
  region's box; :func:`assign_to_region_pixels` measures it on the region's pixels);
* :func:`assemble_corr` merges every pair's ``Q_ij`` into the sparse ``Corr`` over all kept
  proposals of all images;
* :func:`near_duplicates` drops, of two overlapping proposals of one image whose area
  ratio is below 2, the one that matches worse — giving ``Corr''``.

All boxes are ``[x0, y0, x1, y1]`` with exclusive ends, in the pixels of the mask's image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from skimage.filters import threshold_otsu

from visum.geometry import box_areas, intersection_areas


@dataclass(frozen=True)
class Regions:
    """Connected components of a binary mask."""

    labels: np.ndarray  # [H, W] int32, 0 = background, k = region k-1
    boxes: np.ndarray  # [R, 4] int64
    areas: np.ndarray  # [R] int64 pixel counts

    def __len__(self) -> int:
        return len(self.boxes)


def binarize(mask: np.ndarray, threshold: float | str = 0.5, smooth_sigma: float = 0.0) -> np.ndarray:
    """``[H, W]`` saliency in [0, 1] → bool ``[H, W]``: ``G_sigma * s >= t``.

    ``threshold="otsu"`` picks ``t`` per mask by Otsu's method (a constant mask gives no pixels).
    """
    s = np.asarray(mask, dtype=np.float32)
    if smooth_sigma > 0:
        s = ndimage.gaussian_filter(s, smooth_sigma)
    if threshold == "otsu":
        if float(s.max() - s.min()) < 1e-6:
            return np.zeros(s.shape, dtype=bool)
        t = float(threshold_otsu(s))
        return s > t
    return s >= float(threshold)


def connected_regions(binary: np.ndarray, min_area: int = 1) -> Regions:
    """8-connected components of ``binary`` with at least ``min_area`` pixels, largest first."""
    labels, n = ndimage.label(binary, structure=np.ones((3, 3), dtype=int))
    if n == 0:
        return Regions(np.zeros(binary.shape, np.int32), np.zeros((0, 4), np.int64), np.zeros(0, np.int64))
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    slices = ndimage.find_objects(labels)
    order = [k for k in np.argsort(-areas, kind="stable") if areas[k] >= min_area]
    out = np.zeros(binary.shape, np.int32)
    boxes = []
    for new, k in enumerate(order):
        ys, xs = slices[k]
        boxes.append([xs.start, ys.start, xs.stop, ys.stop])
        out[labels == k + 1] = new + 1
    return Regions(
        out,
        np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        areas[order].astype(np.int64),
    )


def assign_to_regions(boxes: np.ndarray, region_boxes: np.ndarray, min_overlap: float = 0.75) -> np.ndarray:
    """Region of each proposal, or -1: ``|P ∩ box(r)| / |P| > min_overlap`` (the paper's 75%).

    A proposal inside several regions' boxes goes to the one covering most of it.
    Returns ``[M]`` int64.
    """
    m = len(boxes)
    if m == 0 or len(region_boxes) == 0:
        return np.full(m, -1, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    inter = intersection_areas(boxes, region_boxes)  # [M, R]
    share = inter / np.maximum(box_areas(boxes), 1)[:, None]
    best = share.argmax(axis=1)
    return np.where(share[np.arange(m), best] > min_overlap, best, -1).astype(np.int64)


def assign_to_region_pixels(boxes: np.ndarray, labels: np.ndarray, min_overlap: float = 0.75) -> np.ndarray:
    """Region of each proposal, or -1, measured on the region's pixels: ``|P ∩ r| / |P| > min_overlap``.

    The stricter reading of the paper's 75 % rule (:func:`assign_to_regions` measures on the
    region's bounding box): the proposal must be mostly *filled* by the region's pixels.
    Shapes: ``boxes [M, 4]``, ``labels [H, W]`` (0 = background, ``k`` = region ``k - 1``)
    -> ``[M]`` int64. One summed-area table per region: ``O(R H W + R M)``.
    """
    m = len(boxes)
    n_regions = int(labels.max()) if labels.size else 0
    if m == 0 or n_regions == 0:
        return np.full(m, -1, dtype=np.int64)
    b = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    h, w = labels.shape
    x0, y0 = b[:, 0].clip(0, w), b[:, 1].clip(0, h)
    x1, y1 = b[:, 2].clip(0, w), b[:, 3].clip(0, h)
    share = np.zeros((m, n_regions))
    areas = np.maximum(box_areas(b), 1)
    for r in range(n_regions):
        table = np.zeros((h + 1, w + 1), dtype=np.int64)
        table[1:, 1:] = np.cumsum(np.cumsum(labels == r + 1, axis=0), axis=1)
        inside = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
        share[:, r] = inside / areas
    best = share.argmax(axis=1)
    return np.where(share[np.arange(m), best] > min_overlap, best, -1).astype(np.int64)


def near_duplicates(
    boxes: np.ndarray, scores: np.ndarray, max_area_ratio: float = 2.0, min_overlap: float = 0.5
) -> np.ndarray:
    """Indices to keep after removing near-duplicate proposals of one image.

    Two proposals are near-duplicates when they overlap (intersection > ``min_overlap`` of
    the smaller one's area) and the ratio of their areas is below ``max_area_ratio`` (the
    paper's threshold of 2). Greedily, the proposal with the higher ``score`` (its best
    match to another image) is kept; ties keep the earlier proposal. Returns sorted indices.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    areas = np.maximum(box_areas(boxes), 1)
    inter = intersection_areas(boxes, boxes)
    smaller = np.minimum(areas[:, None], areas[None, :])
    ratio = np.maximum(areas[:, None], areas[None, :]) / smaller
    duplicate = (inter > min_overlap * smaller) & (ratio < max_area_ratio)
    np.fill_diagonal(duplicate, False)
    order = np.lexsort((np.arange(n), -np.asarray(scores, dtype=np.float64)))
    removed = np.zeros(n, dtype=bool)
    for k in order:
        if removed[k]:
            continue
        removed |= duplicate[k]
        removed[k] = False
    return np.flatnonzero(~removed)


def assemble_corr(
    blocks: dict[tuple[int, int], np.ndarray], offsets: np.ndarray, min_score: float = 0.0
) -> sp.csr_matrix:
    """The paper's ``Corr``: all ``Q_ij`` (``i < j``) in one symmetric sparse ``[N_P, N_P]``.

    ``offsets[i]`` is the row of image ``i``'s first proposal (``offsets[-1] = N_P``). Each
    unordered pair appears once, as ``(i, j)`` with ``i < j``; ``Corr[j, i] = Q_ij^T``.
    Entries ``<= min_score`` are dropped (the paper's "thresholding the minimal admissible
    matching score"), so memory grows with the number of admissible matches, never N_P².
    The diagonal blocks (proposals of one image) stay empty.
    """
    n = int(offsets[-1])
    rows, cols, vals = [], [], []
    for (i, j), q in blocks.items():
        if i >= j:
            raise ValueError(f"assemble_corr takes each pair once as (i, j) with i < j, got {(i, j)}")
        q = np.asarray(q, dtype=np.float32)
        r, c = np.nonzero(q > min_score)
        v = q[r, c]
        rows += [r.astype(np.int32) + offsets[i], c.astype(np.int32) + offsets[j]]
        cols += [c.astype(np.int32) + offsets[j], r.astype(np.int32) + offsets[i]]
        vals += [v, v]
    if not rows:
        return sp.csr_matrix((n, n), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n), dtype=np.float32
    )
