"""The paper's rules pinned at their boundaries, with the defaults a run uses (issue 17): a wrong
threshold or a redefined median fails here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from visum.config import PruningConfig
from visum.stages.regions import assign_to_region_pixels, assign_to_regions, near_duplicates


@pytest.mark.parametrize("inside, kept", [(74, False), (75, False), (76, True)])
def test_a_proposal_is_kept_only_when_more_than_75_percent_lies_in_a_region(inside, kept):
    """Sec. 3.1: a proposal belongs to a region when > 75 % of its area is inside; exactly 75 % is not enough."""
    default = PruningConfig().min_overlap
    box = np.array([[0, 0, 100, 1]])  # 100 pixels
    region_box = np.array([[0, 0, inside, 1]])
    assert (assign_to_regions(box, region_box, default)[0] == 0) == kept
    labels = np.zeros((1, 100), np.int64)
    labels[0, :inside] = 1
    assert (assign_to_region_pixels(box, labels, default)[0] == 0) == kept


@pytest.mark.parametrize("ratio, duplicates", [(1.9, True), (2.0, False), (2.1, False)])
def test_overlapping_proposals_are_near_duplicates_only_below_an_area_ratio_of_2(ratio, duplicates):
    """Sec. 3.1: of two overlapping proposals whose areas differ by less than a factor 2, one is dropped."""
    p = PruningConfig()
    small = np.array([0, 0, 100, 10])  # 1000 pixels
    large = np.array([0, 0, int(round(100 * ratio)), 10])  # contains small: overlap = all of the smaller
    kept = near_duplicates(np.stack([small, large]), np.array([0.5, 1.0]), p.max_area_ratio, p.duplicate_overlap)
    assert kept.tolist() == ([1] if duplicates else [0, 1])


def test_ssim_class_median_and_threshold_match_an_independent_computation():
    """Sec. 3.2: keep a cluster iff median SSIM within it >= 0.9 x the median over all pairs of parts of the class."""
    from skimage.metrics import structural_similarity

    from visum_plugins.scorers.ssim import SSIMScorer, resize_parts

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (24, 24, 3)).astype(np.uint8)
    alike = [np.clip(base.astype(int) + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    noise = [rng.integers(0, 255, (30, 20, 3)).astype(np.uint8) for _ in range(4)]
    mixed = [alike[0], noise[0], rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)]
    clusters = [alike, noise, mixed]
    scorer = SSIMScorer()
    qualities = scorer.score(clusters)

    parts = [p for c in clusters for p in c]
    grey = resize_parts(parts, 32, colour=False)
    every = [structural_similarity(grey[a], grey[b], data_range=255) for a, b in itertools.combinations(range(len(parts)), 2)]
    median = float(np.median(every))
    assert scorer.global_median_ssim_ == pytest.approx(median, abs=1e-6)
    assert scorer.threshold_ == pytest.approx(0.9 * median, abs=1e-6)
    start = 0
    for cluster, q in zip(clusters, qualities):
        idx = range(start, start + len(cluster))
        start += len(cluster)
        own = float(np.median([structural_similarity(grey[a], grey[b], data_range=255)
                               for a, b in itertools.combinations(idx, 2)]))
        assert q.quality["median_ssim"] == pytest.approx(own, abs=1e-6)
        assert q.kept == (own >= 0.9 * median)
    assert [q.kept for q in qualities][0] and not qualities[1].kept  # both outcomes occur
