import numpy as np
import pytest
import scipy.sparse as sp

from visum.geometry import intersection_areas
from visum.stages.regions import (
    assemble_corr,
    assign_to_regions,
    binarize,
    connected_regions,
    near_duplicates,
)


def test_connected_regions_finds_components_largest_first_with_exclusive_boxes():
    b = np.zeros((20, 30), bool)
    b[2:5, 3:7] = True  # 12 px
    b[10:18, 20:29] = True  # 72 px
    b[0, 29] = True  # 1 px, below min_area
    r = connected_regions(b, min_area=2)
    assert len(r) == 2
    assert r.boxes.tolist() == [[20, 10, 29, 18], [3, 2, 7, 5]]
    assert r.areas.tolist() == [72, 12]
    assert (r.labels == 1).sum() == 72 and (r.labels == 2).sum() == 12 and r.labels[0, 29] == 0


def test_connected_regions_uses_8_connectivity_and_handles_empty():
    b = np.zeros((5, 5), bool)
    b[1, 1] = b[2, 2] = True
    assert len(connected_regions(b)) == 1
    empty = connected_regions(np.zeros((4, 4), bool))
    assert len(empty) == 0 and empty.boxes.shape == (0, 4)


def test_binarize_threshold_smoothing_and_otsu():
    s = np.zeros((40, 40), np.float32)
    s[10:20, 10:20] = 0.9
    s[30, 30] = 1.0  # a lone speck
    assert binarize(s, 0.5).sum() == 101
    smoothed = binarize(s, 0.5, smooth_sigma=1.5)
    assert not smoothed[30, 30] and smoothed[15, 15]
    assert binarize(s, "otsu").sum() == 101
    assert binarize(np.full((8, 8), 0.3), "otsu").sum() == 0


def test_assign_to_regions_uses_the_75_percent_rule():
    regions = np.array([[0, 0, 10, 10], [20, 20, 40, 40]])
    boxes = np.array(
        [
            [1, 1, 9, 9],  # inside region 0
            [5, 0, 13, 10],  # 5/8 = 62.5% inside region 0 -> out
            [22, 22, 30, 30],  # inside region 1
            [8, 0, 10, 10],  # 100% inside
            [18, 20, 38, 40],  # 18/20 = 90% inside region 1
        ]
    )
    assert assign_to_regions(boxes, regions).tolist() == [0, -1, 1, 0, 1]
    assert assign_to_regions(boxes, np.zeros((0, 4))).tolist() == [-1] * 5


def test_near_duplicates_keeps_better_matched_of_similar_overlapping_boxes():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # area 100
            [1, 1, 11, 11],  # area 100, overlaps 0 heavily -> duplicate of 0
            [0, 0, 20, 20],  # area 400: ratio 4 with 0 -> not a duplicate
            [50, 50, 60, 60],  # far away
        ]
    )
    scores = np.array([0.2, 0.9, 0.5, 0.1])
    assert near_duplicates(boxes, scores).tolist() == [1, 2, 3]
    assert near_duplicates(boxes, np.array([0.9, 0.2, 0.5, 0.1])).tolist() == [0, 2, 3]
    # with a looser area-ratio everything nested collapses onto the best one
    assert near_duplicates(boxes, scores, max_area_ratio=5).tolist() == [1, 3]


def test_intersection_areas():
    a = np.array([[0, 0, 4, 4]])
    b = np.array([[2, 2, 6, 6], [4, 4, 8, 8]])
    assert intersection_areas(a, b).tolist() == [[4, 0]]


def test_assemble_corr_is_symmetric_sparse_and_block_placed():
    q01 = np.array([[0.5, 0.0], [0.1, 0.9]], np.float32)
    q12 = np.array([[0.3], [0.0]], np.float32)
    offsets = np.array([0, 2, 4, 5])
    corr = assemble_corr({(0, 1): q01, (1, 2): q12}, offsets, min_score=0.2)
    assert sp.issparse(corr) and corr.shape == (5, 5)
    dense = corr.toarray()
    assert np.allclose(dense, dense.T)
    assert dense[0, 2] == 0.5 and dense[1, 3] == np.float32(0.9) and dense[1, 2] == 0  # 0.1 dropped
    assert dense[2, 4] == np.float32(0.3)
    assert corr.nnz == 6
    assert np.all(dense[:2, :2] == 0)
    with pytest.raises(ValueError, match="i < j"):
        assemble_corr({(1, 0): q01}, offsets)


def test_assign_to_region_pixels_needs_the_proposal_filled_by_the_region():
    from visum.stages.regions import assign_to_region_pixels

    ring = np.zeros((40, 40), bool)
    ring[5:35, 5:35] = True
    ring[12:28, 12:28] = False  # a hole: inside the region's box, not in the region
    labels = connected_regions(ring).labels
    boxes = np.array([[14, 14, 26, 26],   # in the hole
                      [5, 5, 12, 35],     # on the ring's left side
                      [0, 0, 40, 40]])    # around everything
    assert assign_to_regions(boxes, connected_regions(ring).boxes).tolist() == [0, 0, -1]
    assert assign_to_region_pixels(boxes, labels).tolist() == [-1, 0, -1]
    assert assign_to_region_pixels(boxes, np.zeros((40, 40), np.int32)).tolist() == [-1, -1, -1]
