"""Clusters to summary candidates: one member per (image, region), the best-linked; enough images."""

import numpy as np
import scipy.sparse as sp

from visum.stages.summaries import summary_members


def test_one_member_per_region_the_best_linked_and_enough_images():
    # nodes: 0,1 are two proposals of image 0 region 0; 2 image 1; 3 image 2; 4,5 a second cluster of 2 images
    image_of = np.array([0, 0, 1, 2, 0, 1])
    region_of = np.array([0, 0, 0, 0, 1, 1])
    labels = np.array([0, 0, 0, 0, 1, 1])
    w = np.zeros((6, 6))
    for i, j, v in [(0, 2, 0.2), (0, 3, 0.2), (1, 2, 0.9), (1, 3, 0.6), (2, 3, 0.5), (4, 5, 1.0)]:
        w[i, j] = w[j, i] = v
    corr = sp.csr_matrix(w)
    [members] = summary_members(labels, corr, image_of, region_of, min_images=3)
    assert [k for k, _ in members] == [1, 2, 3]  # node 1 links better than node 0, its twin
    assert members[0][1] == (0.9 + 0.6) / 3  # mean similarity to the other three members of the cluster
    both = summary_members(labels, corr, image_of, region_of, one_per_region=False, min_images=2)
    assert [[k for k, _ in m] for m in both] == [[0, 1, 2, 3], [4, 5]]
    assert summary_members(-np.ones(6, int), corr, image_of, region_of) == []
