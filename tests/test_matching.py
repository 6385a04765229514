"""All-pairs matching in worker processes gives exactly the sequential result."""

import numpy as np
import pytest

from visum import Component
from visum.errors import PluginError
from visum.stages.matching import MatchJob, match_all_pairs
from visum.plugins import ComponentInfo


class Dot(Component):
    name = "dot"

    def describe(self, image, boxes):
        return image.reshape(len(boxes), -1)

    def match(self, a, b):
        if a.shape[1] == 0:
            raise ValueError("empty features")
        return np.clip(a @ b.T, 0, None).astype(np.float32)


def job(rng, n_images=7, m=5, dim=3):
    descriptions = [rng.random((m, dim)).astype(np.float32) for _ in range(n_images)]
    selected = [np.flatnonzero(rng.random(m) > 0.3) for _ in range(n_images)]
    info = ComponentInfo("matcher", "dot", Dot, "test", "test-dist 1", "")
    return MatchJob(info, Dot(), descriptions, [m] * n_images, selected)


def test_parallel_equals_sequential_and_reports_every_pair():
    j = job(np.random.default_rng(0))
    pairs = [(a, b) for a in range(7) for b in range(a + 1, 7)]
    seen = []
    one = match_all_pairs(j, pairs, workers=1)
    two = match_all_pairs(j, pairs, workers=2, chunk=2, done=lambda p, q: seen.append(p))
    assert sorted(seen) == pairs and set(one) == set(two) == set(pairs)
    for pair in pairs:
        a, b = pair
        expected = np.clip(j.descriptions[a] @ j.descriptions[b].T, 0, None)[np.ix_(j.selected[a], j.selected[b])]
        assert np.array_equal(one[pair], two[pair]) and np.allclose(one[pair], expected)


def test_a_failing_matcher_in_a_worker_names_the_plugin():
    j = job(np.random.default_rng(1))
    j.descriptions[3] = np.zeros((5, 0), np.float32)
    pairs = [(a, b) for a in range(7) for b in range(a + 1, 7)]
    with pytest.raises(PluginError, match=r"matcher plugin 'dot' \(test-dist 1\) raised in match\(\): ValueError"):
        match_all_pairs(j, pairs, workers=2, chunk=2)
