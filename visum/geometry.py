"""Axis-aligned boxes: areas, intersections, IoU and containment, declared once.

A box is ``[x0, y0, x1, y1]`` in pixels with exclusive ends (``x1 - x0`` is its width); an
array of boxes is ``[N, 4]``. Every function works in float64, which is exact for pixel
coordinates, and treats an inverted box as empty (area 0). Regions, cluster merging,
proposal flow, localisation and the correspondence evaluation take their geometry from here.

- area ``|a| = max(x1 - x0, 0) · max(y1 - y0, 0)``
- intersection ``|a ∩ b|`` = area of ``[max(x0), max(y0), min(x1), min(y1)]``
- IoU ``|a ∩ b| / (|a| + |b| - |a ∩ b|)`` (0 when the union is empty)
- containment ``|a ∩ b| / min(|a|, |b|)`` (0 when the smaller box is empty)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "as_boxes",
    "box_areas",
    "box_iou",
    "box_iou_one",
    "box_iou_rows",
    "containment",
    "intersection_areas",
    "iou_and_containment",
]


def as_boxes(boxes) -> np.ndarray:
    """Any box or sequence of boxes -> ``[N, 4]`` float64."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def box_areas(boxes) -> np.ndarray:
    """``[N, 4] -> [N]`` areas (0 for an inverted box)."""
    b = as_boxes(boxes)
    return (b[:, 2] - b[:, 0]).clip(min=0) * (b[:, 3] - b[:, 1]).clip(min=0)


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return w.clip(min=0) * h.clip(min=0)


def intersection_areas(a, b) -> np.ndarray:
    """``[A, 4], [B, 4] -> [A, B]``: ``|a_i ∩ b_j|`` for every pair."""
    return _intersections(as_boxes(a), as_boxes(b))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _pair_terms(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``|a_i ∩ b_j| [A, B]``, ``|a_i| [A, 1]``, ``|b_j| [1, B]``."""
    a, b = as_boxes(a), as_boxes(b)
    return _intersections(a, b), box_areas(a)[:, None], box_areas(b)[None, :]


def box_iou(a, b) -> np.ndarray:
    """``[A, 4], [B, 4] -> [A, B]``: IoU of every pair."""
    inter, area_a, area_b = _pair_terms(a, b)
    return _ratio(inter, area_a + area_b - inter)


def containment(a, b) -> np.ndarray:
    """``[A, 4], [B, 4] -> [A, B]``: ``|a_i ∩ b_j| / min(|a_i|, |b_j|)`` for every pair."""
    inter, area_a, area_b = _pair_terms(a, b)
    return _ratio(inter, np.minimum(area_a, area_b))


def iou_and_containment(a, b) -> tuple[np.ndarray, np.ndarray]:
    """:func:`box_iou` and :func:`containment` of every pair from one computation of the intersections."""
    inter, area_a, area_b = _pair_terms(a, b)
    return _ratio(inter, area_a + area_b - inter), _ratio(inter, np.minimum(area_a, area_b))


def box_iou_rows(a, b) -> np.ndarray:
    """``[M, 4], [M, 4] -> [M]``: IoU of ``a[m]`` with ``b[m]``, row by row."""
    a, b = as_boxes(a), as_boxes(b)
    w = (np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0])).clip(min=0)
    h = (np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1])).clip(min=0)
    inter = w * h
    return _ratio(inter, box_areas(a) + box_areas(b) - inter)


def box_iou_one(a, b) -> float:
    """IoU of two single boxes; 0 when either is ``None``."""
    if a is None or b is None:
        return 0.0
    return float(box_iou_rows(a, b)[0])
