"""Tests of the ``proposal-flow`` matcher (LOM) and the correspondence benchmark."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from pydantic import ValidationError

from visum.components import Matcher
from visum.evaluate.correspondence import (
    best_match_metrics,
    boxes_inside,
    evaluate_matchers,
    make_pairs,
    random_homography,
    summarise,
    warp_boxes,
)
from visum_plugins.matchers.hog import HOG
from visum_plugins.matchers.proposal_flow import (
    ProposalFlow,
    ProposalFlowOptions,
    densest_vote,
    geometric_median,
    local_affine_translation,
    neighbourhoods,
    weighted_median,
)


def _textured(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth random colour texture: distinct everywhere, so context identifies a place."""
    import cv2

    small = rng.integers(0, 256, size=(h // 8 + 2, w // 8 + 2, 3)).astype(np.uint8)
    return cv2.resize(small, (w + 16, h + 16), interpolation=cv2.INTER_CUBIC)[8 : 8 + h, 8 : 8 + w]


def _random_boxes(rng: np.random.Generator, m: int, w: int, h: int) -> np.ndarray:
    x0 = rng.integers(0, w - 8, m)
    y0 = rng.integers(0, h - 8, m)
    x1 = np.minimum(x0 + rng.integers(8, w, m), w)
    y1 = np.minimum(y0 + rng.integers(8, h, m), h)
    return np.stack([x0, y0, x1, y1], axis=1)


# --------------------------------------------------------------------------- contract


def test_shapes_dtype_range_and_empty_sets():
    rng = np.random.default_rng(0)
    image = _textured(rng, 96, 128)
    matcher = ProposalFlow()
    assert isinstance(matcher, Matcher)
    some = matcher.describe(image, _random_boxes(rng, 40, 128, 96))
    other = matcher.describe(image, _random_boxes(rng, 25, 128, 96))
    empty = matcher.describe(image, np.zeros((0, 4), dtype=np.int64))
    one = matcher.describe(image, np.array([[10, 10, 50, 40]]))
    q = matcher.match(some, other)
    assert q.shape == (40, 25) and q.dtype == np.float32
    assert np.isfinite(q).all() and (q >= 0).all() and (q <= 1).all()
    assert q.max() > 0
    for a, b in [(empty, some), (some, empty), (empty, empty), (one, some), (some, one), (one, one)]:
        r = matcher.match(a, b)
        assert r.shape == (len(a.boxes), len(b.boxes)) and r.dtype == np.float32
        assert np.isfinite(r).all() and (r >= 0).all()
    pickle.loads(pickle.dumps(some))  # descriptions travel to worker processes and the cache


@pytest.mark.parametrize(
    "options",
    [
        {"consensus": "median"},
        {"consensus": "geometric", "neighbourhood": "overlap"},
        {"consensus": "mode", "vote_weight": "uniform"},
        {"appearance": "whitened", "rounds": 2, "vote_weight": "appearance"},
        {"symmetric": True},
    ],
)
def test_every_variant_satisfies_the_contract(options):
    rng = np.random.default_rng(1)
    image = _textured(rng, 80, 80)
    matcher = ProposalFlow(ProposalFlowOptions(**options))
    di = matcher.describe(image, _random_boxes(rng, 30, 80, 80))
    dj = matcher.describe(image[:, ::-1].copy(), _random_boxes(rng, 20, 80, 80))
    q = matcher.match(di, dj)
    assert q.shape == (30, 20) and q.dtype == np.float32 and np.isfinite(q).all() and (q >= 0).all()


def test_aspect_rule_zeroes_pairs_beyond_the_limit():
    image = np.full((64, 64, 3), 255, np.uint8)
    image[::4] = 0  # stripes: every crop has gradient, so appearance alone never gives 0
    image[:, ::6] = 0
    square = np.array([[4, 4, 34, 34]])
    others = np.array([[4, 4, 34, 14], [4, 4, 34, 18], [4, 4, 34, 19], [4, 4, 20, 34], [4, 4, 14, 34]])
    # aspects w/h relative to the square: 3, 2.14, 2 (at the limit: allowed), 0.53, 0.33
    for options in ({}, {"aspect_limit": 2.0}):
        matcher = ProposalFlow(ProposalFlowOptions(**options))
        q = matcher.match(matcher.describe(image, square), matcher.describe(image, others))
        assert q[0, 0] == 0 and q[0, 1] == 0 and q[0, 4] == 0
        assert q[0, 2] > 0 and q[0, 3] > 0
    loose = ProposalFlow(ProposalFlowOptions(aspect_limit=4.0))
    assert (loose.match(loose.describe(image, square), loose.describe(image, others)) > 0).all()


def test_deterministic_and_symmetric_option():
    rng = np.random.default_rng(2)
    a, b = _textured(rng, 90, 90), _textured(rng, 90, 90)
    ba, bb = _random_boxes(rng, 50, 90, 90), _random_boxes(rng, 35, 90, 90)
    q1 = ProposalFlow().match(ProposalFlow().describe(a, ba), ProposalFlow().describe(b, bb))
    q2 = ProposalFlow().match(ProposalFlow().describe(a, ba), ProposalFlow().describe(b, bb))
    np.testing.assert_array_equal(q1, q2)
    sym = ProposalFlow(ProposalFlowOptions(symmetric=True))
    da, db = sym.describe(a, ba), sym.describe(b, bb)
    np.testing.assert_allclose(sym.match(da, db), sym.match(db, da).T, rtol=1e-5, atol=1e-6)  # float32 products


def test_options_validated():
    with pytest.raises(ValidationError):
        ProposalFlowOptions(cells=2, cells_per_block=3)
    with pytest.raises(ValidationError):
        ProposalFlowOptions(aspect_limit=0.5)
    with pytest.raises(ValidationError):
        ProposalFlowOptions(consensus="mean")
    with pytest.raises(ValidationError):
        ProposalFlowOptions(tau_translation=0)


# --------------------------------------------------------------------------- geometry beats appearance


def _repeated_motifs_pair():
    """A textured scene with a row of identical motifs, and a copy shifted by (dx, dy) = (13, 7).

    Boxes: each motif tightly (on a flat white square, so its padded crop sees nothing
    else: the motifs are indistinguishable by appearance), each motif with unique
    context around it at two sizes, and some random boxes. Image ``b``'s boxes are the
    same boxes shifted, so box ``k`` of ``a`` truly matches box ``k`` of ``b``.
    """
    rng = np.random.default_rng(7)
    dx, dy = 13, 7
    canvas = _textured(rng, 140 + dy, 260 + dx)
    centres = [(40 + 45 * i, 70) for i in range(5)]
    for cx, cy in centres:
        canvas[cy - 16 : cy + 16, cx - 16 : cx + 16] = 255
        canvas[cy - 9 : cy + 9, cx - 2 : cx + 2] = 0
        canvas[cy - 2 : cy + 2, cx - 9 : cx + 9] = 0
    a = canvas[dy:, dx:][:140, :260].copy()  # a(x, y) = canvas(x + dx, y + dy)
    b = canvas[:140, :260].copy()  # so a point p of a is at p + (dx, dy) in b
    b = np.clip(b.astype(int) + rng.integers(-3, 4, b.shape), 0, 255).astype(np.uint8)
    motifs, context = [], []
    for cx, cy in centres:
        x, y = cx - dx, cy - dy
        motifs.append([x - 10, y - 10, x + 10, y + 10])
        context += [[x - 22, y - 22, x + 22, y + 22], [x - 30, y - 24, x + 26, y + 30]]
    extra = _random_boxes(rng, 30, 240, 120)
    boxes_a = np.array(motifs + context + extra.tolist(), dtype=np.int64)
    boxes_b = boxes_a + np.array([dx, dy, dx, dy])
    keep = boxes_inside(boxes_a, 260, 140) & boxes_inside(boxes_b, 260, 140)
    assert keep[:5].all()
    return a, b, boxes_a[keep], boxes_b[keep]


def test_neighbours_disambiguate_repeated_patterns():
    a, b, boxes_a, boxes_b = _repeated_motifs_pair()
    truth = np.arange(len(boxes_a))
    results = {}
    for name, matcher in (("hog", HOG()), ("pf", ProposalFlow())):
        q = matcher.match(matcher.describe(a, boxes_a), matcher.describe(b, boxes_b))
        results[name] = q
    motif = slice(0, 5)
    hog_right = (results["hog"][motif].argmax(axis=1) == truth[motif]).sum()
    pf_right = (results["pf"][motif].argmax(axis=1) == truth[motif]).sum()
    # the five motifs look the same: appearance picks among them by noise
    hog_rows = results["hog"][motif][:, :5]
    assert hog_rows.min() > 0.9 * hog_rows.max()
    assert hog_right <= 3
    assert pf_right == 5
    # overall, geometry helps too
    assert (results["pf"].argmax(axis=1) == truth).sum() >= (results["hog"].argmax(axis=1) == truth).sum()


# --------------------------------------------------------------------------- maths


def test_weighted_median_and_geometric_median():
    v = np.array([[1.0, 2.0, 3.0, 100.0], [5.0, 1.0, 1.0, 1.0]])
    w = np.array([[1.0, 1.0, 1.0, 1.0], [10.0, 1.0, 1.0, 1.0]])
    np.testing.assert_allclose(weighted_median(v, w), [2.0, 5.0])
    assert weighted_median(np.array([[1.0, 2.0]]), np.zeros((1, 2)))[0] == 0.0
    pts = np.array([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0]]])
    gm = geometric_median(pts, np.ones((1, 4)))
    assert np.linalg.norm(gm[0]) < 1.0  # the outlier barely moves it


def test_densest_vote_follows_a_minority_of_agreeing_inliers():
    rng = np.random.default_rng(3)
    inliers = np.array([2.0, -1.0, 0.5]) + 0.1 * rng.normal(size=(4, 3))
    outliers = rng.uniform(-20, 20, size=(6, 3))  # scattered: 6 of 10 votes are wrong
    pts = np.concatenate([inliers, outliers])[None]
    mode = densest_vote(pts, np.ones((1, 10)))
    np.testing.assert_allclose(mode[0], [2.0, -1.0, 0.5], atol=0.2)


def test_local_affine_translation_recovers_a_rotation():
    theta = np.deg2rad(15)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.5], [0.7, -0.8], [-0.3, -1.2]])
    t = np.array([0.3, -0.2])
    y = x @ rot.T * 1.1 + t
    fit = local_affine_translation(x[None], y[None], np.ones((1, 5)), np.array([1.1]), ridge=0.0)
    np.testing.assert_allclose(fit[0], t, atol=1e-9)


def test_neighbourhoods_exclude_self_and_pad():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    idx, w = neighbourhoods(boxes, "overlap", 0.5, 4)
    assert idx.shape == (3, 2)
    assert idx[0, 0] == 1 and w[0, 0] > 0 and w[0, 1] == 0  # box 2 is not a neighbour of box 0
    assert w[2].sum() == 0
    idx, w = neighbourhoods(boxes, "nearest", 0.5, 4)
    assert (idx != np.arange(3)[:, None]).all() and (w > 0).all()
    assert neighbourhoods(boxes[:1], "nearest", 0.5, 4)[0].shape == (1, 0)


# --------------------------------------------------------------------------- benchmark


def test_warp_boxes_and_identity():
    boxes = np.array([[10, 20, 30, 60], [0, 0, 5, 5]])
    np.testing.assert_allclose(warp_boxes(boxes, np.eye(3)), boxes)
    shift = np.array([[1, 0, 7], [0, 1, -3], [0, 0, 1.0]])
    np.testing.assert_allclose(warp_boxes(boxes, shift), boxes + [7, -3, 7, -3])
    h = random_homography(np.random.default_rng(0), 100, 80)
    centre = h @ np.array([50, 40, 1.0])
    assert np.linalg.norm(centre[:2] / centre[2] - [50, 40]) < 0.1 * 100 * 1.5  # translation at most 10 % a side


def test_metrics_of_a_perfect_and_an_empty_matcher():
    true = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 90, 90.0]])
    boxes_b = true.copy()
    valid = np.array([True, True, False])
    m, best, conf, correct = best_match_metrics(np.eye(3, dtype=np.float32), boxes_b, true, valid)
    assert m["PCK@0.1"] == 1 and m["PCR@0.5"] == 1 and m["mIoU@10"] == 1 and m["oracle PCK@0.1"] == 1
    m, *_ = best_match_metrics(np.zeros((3, 3), dtype=np.float32), boxes_b, true, valid)
    assert m["PCK@0.1"] == 0 and m["PCR@0.5"] == 0 and m["oracle PCK@0.1"] == 1


def test_small_benchmark_run_returns_metrics_in_unit_interval():
    from visum_plugins.proposers.selective_search import SelectiveSearch, SelectiveSearchOptions

    pairs = make_pairs("parts", 2, seed=0)
    assert len(pairs) == 2 and pairs[0].image_a.shape == pairs[0].image_b.shape
    proposer = SelectiveSearch(SelectiveSearchOptions(max_proposals=80))
    results = evaluate_matchers(pairs, proposer.propose, {"hog": HOG(), "proposal-flow": ProposalFlow()})
    for name, res in results.items():
        assert len(res) == 2
        summary = summarise(res)
        for key in ("PCK@0.1", "PCK@0.25", "PCR@0.5", "mIoU@10", "mIoU@50", "oracle PCK@0.1"):
            assert 0.0 <= summary[key] <= 1.0, (name, key, summary[key])
        assert summary["PCK@0.1"] <= summary["oracle PCK@0.1"]
    again = evaluate_matchers(make_pairs("parts", 2, seed=0), proposer.propose, {"pf": ProposalFlow()})
    assert [r.metrics for r in again["pf"]] == [r.metrics for r in results["proposal-flow"]]
