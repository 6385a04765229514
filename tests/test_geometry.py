"""Box geometry: each quantity against a count of pixels on a raster."""

import numpy as np
import pytest

from visum.geometry import (
    box_areas,
    box_iou,
    box_iou_one,
    box_iou_rows,
    containment,
    intersection_areas,
    iou_and_containment,
)


def _raster(box, size=40):
    m = np.zeros((size, size), bool)
    x0, y0, x1, y1 = box
    m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return m


def _random_boxes(rng, n):
    xy = rng.integers(0, 40, size=(n, 2, 2))
    lo, hi = xy.min(axis=1), xy.max(axis=1)
    return np.concatenate([lo, hi], axis=1)


def test_every_quantity_matches_pixel_counts():
    rng = np.random.default_rng(3)
    a, b = _random_boxes(rng, 12), _random_boxes(rng, 9)
    ra, rb = [_raster(x) for x in a], [_raster(x) for x in b]
    inter = np.array([[(p & q).sum() for q in rb] for p in ra], float)
    union = np.array([[(p | q).sum() for q in rb] for p in ra], float)
    area_a = np.array([p.sum() for p in ra], float)
    area_b = np.array([q.sum() for q in rb], float)
    assert box_areas(a).tolist() == area_a.tolist()
    assert intersection_areas(a, b).tolist() == inter.tolist()
    np.testing.assert_allclose(box_iou(a, b), np.divide(inter, union, out=np.zeros_like(inter), where=union > 0))
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    np.testing.assert_allclose(containment(a, b), np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0))
    np.testing.assert_allclose(box_iou_rows(a[:9], b), np.diag(box_iou(a[:9], b)))
    both = iou_and_containment(a, b)
    assert np.array_equal(both[0], box_iou(a, b)) and np.array_equal(both[1], containment(a, b))
    assert box_iou_one(a[0], b[0]) == pytest.approx(box_iou(a, b)[0, 0])


def test_inverted_and_empty_boxes_are_empty():
    assert box_areas([[5, 5, 2, 9]]).tolist() == [0.0]
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]]).tolist() == [[0.0]]
    assert containment([[0, 0, 4, 4]], [[1, 1, 1, 3]]).tolist() == [[0.0]]
    assert box_iou_one(None, (0, 0, 1, 1)) == 0.0
    assert box_iou_one((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
