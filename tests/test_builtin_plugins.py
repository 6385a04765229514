"""Tests of the built-in plugins: gradient, selective-search, hog, ap, ssim."""

from __future__ import annotations

import importlib
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pluggy
import pytest
import scipy.sparse as sp
import torch
from pydantic import ValidationError
from skimage.metrics import structural_similarity

import visum.hookspecs
from visum.components import KIND, KINDS
from visum_plugins.clusterers.affinity_propagation import (
    AffinityPropagation,
    AffinityPropagationOptions,
    unassign_unlinked,
)
from visum_plugins.matchers.hog import HOG, HOGOptions
from visum_plugins.proposers.selective_search import SelectiveSearch, SelectiveSearchOptions
from visum_plugins.saliency.gradient import Gradient, GradientOptions
from visum_plugins.scorers.ssim import SSIMOptions, SSIMScorer, pairwise_ssim

REGISTRY = Path(__file__).resolve().parents[1] / "registry.toml"


def _registry() -> list[dict]:
    with open(REGISTRY, "rb") as f:
        return tomllib.load(f)["plugin"]


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("entry", _registry(), ids=lambda e: e["name"])
def test_registry_entry_is_a_working_plugin(entry):
    assert entry["kind"] in KINDS
    module = importlib.import_module(entry["module"])
    assert set(module.__all__) <= set(dir(module))

    # register the module exactly as the plugin manager would, and call its hook
    pm = pluggy.PluginManager("visum")
    pm.add_hookspecs(visum.hookspecs)
    pm.register(module)
    hook = getattr(pm.hook, visum.hookspecs.HOOK_OF_KIND[entry["kind"]])
    classes = [cls for result in hook() for cls in result]
    matching = [cls for cls in classes if cls.name == entry["name"]]
    assert len(matching) == 1
    cls = matching[0]
    assert cls.summary

    options = cls.Options()  # every option has a default
    for field_name, field in cls.Options.model_fields.items():
        assert field.description, f"{cls.name}.{field_name} has no description"
    with pytest.raises(ValidationError):
        cls.Options(definitely_not_an_option=1)

    instance = cls(options)
    if entry["kind"] == "clusterer":
        instance.fit(sp.csr_matrix((0, 0)))  # labels_ exists once fitted
    assert isinstance(instance, KIND[entry["kind"]].protocol)


def test_registry_covers_every_kind():
    assert {e["kind"] for e in _registry()} == set(KINDS)


# --------------------------------------------------------------------------- gradient


def _linear_model(weight: torch.Tensor) -> torch.nn.Module:
    k = weight.shape[0]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(weight[0].numel(), k))
    with torch.no_grad():
        model[1].weight.copy_(weight.reshape(k, -1))
        model[1].bias.normal_()
    return model.eval()


def test_gradient_equals_analytic_saliency_of_linear_model():
    torch.manual_seed(0)
    k, h, w = 4, 10, 12
    weight = torch.randn(k, 3, h, w)
    model = _linear_model(weight)
    x = torch.randn(3, 3, h, w)
    target = torch.tensor([2, 0, 2])

    s = Gradient(GradientOptions(normalise_quantile=1.0)).explain(model, x, target)
    for b in range(3):
        expected = weight[target[b]].abs().amax(dim=0)  # dS_c/dx = W_c for a linear model
        expected = expected / expected.max()
        torch.testing.assert_close(s[b, 0], expected, rtol=1e-5, atol=1e-6)

    q = 0.9
    s = Gradient(GradientOptions(normalise_quantile=q)).explain(model, x, target)
    expected = weight[2].abs().amax(dim=0)
    expected = (expected / torch.quantile(expected.flatten(), q)).clamp(0, 1)
    torch.testing.assert_close(s[0, 0], expected, rtol=1e-5, atol=1e-6)
    assert (s[0] == 1.0).float().mean() == pytest.approx(1 - q, abs=0.02)


def _conv_model() -> torch.nn.Module:
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 5),
    ).eval()


@pytest.mark.parametrize("sigma", [0.0, 1.5])
def test_gradient_shape_range_and_batch_independence(sigma):
    model = _conv_model()
    x = torch.randn(4, 3, 24, 20)
    x_before = x.clone()
    target = torch.tensor([0, 3, 3, 1])
    method = Gradient(GradientOptions(smooth_sigma=sigma))

    s = method.explain(model, x, target)
    assert s.shape == (4, 1, 24, 20) and s.dtype == torch.float32
    assert not s.requires_grad
    assert float(s.min()) >= 0.0 and float(s.max()) == pytest.approx(1.0)
    assert torch.equal(x, x_before) and not x.requires_grad

    singles = torch.cat([method.explain(model, x[b : b + 1], target[b : b + 1]) for b in range(4)])
    torch.testing.assert_close(s, singles, rtol=1e-5, atol=1e-6)


def test_gradient_smoothing_smooths():
    model = _conv_model()
    x = torch.randn(2, 3, 32, 32)
    target = torch.tensor([1, 2])
    raw = Gradient(GradientOptions(normalise_quantile=1.0)).explain(model, x, target)
    smooth = Gradient(GradientOptions(normalise_quantile=1.0, smooth_sigma=2.0)).explain(model, x, target)

    def tv(s):
        return (s[..., 1:, :] - s[..., :-1, :]).abs().mean() + (s[..., 1:] - s[..., :-1]).abs().mean()

    assert tv(smooth) < 0.5 * tv(raw)


def test_gradient_handles_zero_gradient():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 2)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
    s = Gradient().explain(model, torch.randn(2, 3, 4, 4), torch.tensor([0, 1]))
    assert torch.equal(s, torch.zeros(2, 1, 4, 4))


# --------------------------------------------------------------------------- selective search


def _textured_image(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def _assert_valid_boxes(boxes: np.ndarray, width: int, height: int) -> None:
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and boxes.dtype == np.int64
    x0, y0, x1, y1 = boxes.T
    assert np.all((0 <= x0) & (x0 < x1) & (x1 <= width))
    assert np.all((0 <= y0) & (y0 < y1) & (y1 <= height))
    assert len(np.unique(boxes, axis=0)) == len(boxes)


def test_selective_search_boxes_are_valid_and_limited():
    image = _textured_image(128)[:, :112]  # not square
    boxes = SelectiveSearch().propose(image)
    _assert_valid_boxes(boxes, 112, 128)
    assert 10 < len(boxes) <= 500
    sizes = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    assert sizes.min() >= SelectiveSearchOptions().min_size

    few = SelectiveSearch(SelectiveSearchOptions(max_proposals=7)).propose(image)
    assert len(few) == 7
    np.testing.assert_array_equal(few, boxes[:7])  # truncation keeps the best-ranked

    big = SelectiveSearch(SelectiveSearchOptions(min_size=40)).propose(image)
    assert np.all(np.minimum(big[:, 2] - big[:, 0], big[:, 3] - big[:, 1]) >= 40)

    assert SelectiveSearch(SelectiveSearchOptions(max_proposals=0)).propose(image).shape == (0, 4)


def test_selective_search_is_deterministic():
    image, other = _textured_image(96, seed=1), _textured_image(96, seed=2)
    for mode in ("single", "fast"):
        proposer = SelectiveSearch(SelectiveSearchOptions(mode=mode))
        first = proposer.propose(image)
        proposer.propose(other)  # must not disturb the next call
        again = SelectiveSearch(SelectiveSearchOptions(mode=mode)).propose(image)
        np.testing.assert_array_equal(first, again)


def test_selective_search_is_deterministic_across_processes():
    code = (
        "import numpy as np, cv2, sys\n"
        "from visum_plugins.proposers.selective_search import SelectiveSearch\n"
        "rng = np.random.default_rng(1)\n"
        "small = rng.integers(0, 256, size=(12, 12, 3), dtype=np.uint8)\n"
        "img = cv2.resize(small, (96, 96), interpolation=cv2.INTER_CUBIC)\n"
        "sys.stdout.write(SelectiveSearch().propose(img).tobytes().hex())\n"
    )
    outputs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        for _ in range(2)
    ]
    assert outputs[0] and outputs[0] == outputs[1]


def _iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_selective_search_finds_a_bright_square():
    rng = np.random.default_rng(3)
    image = rng.integers(40, 90, size=(128, 128, 3), dtype=np.uint8)
    square = (37, 45, 85, 91)  # x0, y0, x1, y1
    image[square[1] : square[3], square[0] : square[2]] = (250, 240, 60)
    boxes = SelectiveSearch().propose(image)
    best = max(_iou(b, square) for b in boxes)
    assert best > 0.8


def test_selective_search_rejects_bad_images():
    with pytest.raises(ValueError):
        SelectiveSearch().propose(np.zeros((10, 10), dtype=np.uint8))


# --------------------------------------------------------------------------- hog


def _shape_pattern(kind: str) -> np.ndarray:
    p = np.full((32, 32, 3), 30, dtype=np.uint8)
    if kind == "cross":
        p[13:19, :] = 230
        p[:, 13:19] = 230
    elif kind == "stripes":
        p[:, ::8] = 230
        p[:, 1::8] = 230
    elif kind == "ring":
        yy, xx = np.mgrid[:32, :32]
        r = np.hypot(yy - 15.5, xx - 15.5)
        p[(r > 9) & (r < 13)] = 230
    elif kind == "diagonal":
        yy, xx = np.mgrid[:32, :32]
        p[np.abs(yy - xx) < 3] = 230
    return p


def _place(canvas, pattern, x, y):
    canvas[y : y + pattern.shape[0], x : x + pattern.shape[1]] = pattern
    return np.array([x, y, x + pattern.shape[1], y + pattern.shape[0]])


def test_hog_same_crop_matches_itself():
    image = _textured_image(128, seed=4)
    boxes = SelectiveSearch(SelectiveSearchOptions(max_proposals=50)).propose(image)
    matcher = HOG()
    d = matcher.describe(image, boxes)
    assert d.features.shape == (len(boxes), matcher.dimension) and d.features.dtype == np.float32
    np.testing.assert_array_equal(d.boxes, boxes)
    q = matcher.match(d, matcher.describe(image, boxes))
    assert q.shape == (len(boxes), len(boxes)) and q.dtype == np.float32
    assert np.all(q >= 0) and np.all(q <= 1) and np.all(np.isfinite(q))
    np.testing.assert_allclose(np.diag(q), 1.0, atol=1e-5)
    restored = pickle.loads(pickle.dumps(d))  # descriptions are cached by the pipeline
    np.testing.assert_array_equal(restored.features, d.features)


def test_hog_shifted_pattern_matches_its_counterpart():
    kinds = ["cross", "stripes", "ring", "diagonal"]
    a = np.full((160, 160, 3), 30, dtype=np.uint8)
    b = np.full((160, 160, 3), 30, dtype=np.uint8)
    boxes_a = np.stack([_place(a, _shape_pattern(k), 10 + 36 * i, 20 + 5 * i) for i, k in enumerate(kinds)])
    # same patterns elsewhere, in another order
    spots = [(100, 110), (5, 70), (60, 5), (120, 40)]
    boxes_b = np.stack([_place(b, _shape_pattern(k), *spots[i]) for i, k in enumerate(kinds)])
    order = np.array([2, 0, 3, 1])
    boxes_b = boxes_b[order]

    matcher = HOG()
    q = matcher.match(matcher.describe(a, boxes_a), matcher.describe(b, boxes_b))
    counterpart = np.argsort(order)  # boxes_a[i] is boxes_b[counterpart[i]]
    np.testing.assert_array_equal(q.argmax(axis=1), counterpart)
    np.testing.assert_allclose(q[np.arange(4), counterpart], 1.0, atol=1e-3)


def test_hog_handles_no_boxes_and_edge_boxes():
    image = _textured_image(64, seed=5)
    matcher = HOG(HOGOptions(cells=3, pixels_per_cell=6, orientations=8, padding=0.3))
    empty = matcher.describe(image, np.zeros((0, 4), dtype=np.int64))
    assert empty.features.shape == (0, matcher.dimension)
    some = matcher.describe(image, np.array([[0, 0, 64, 64], [50, 50, 64, 64], [0, 30, 3, 34]]))
    assert some.features.shape == (3, matcher.dimension)
    np.testing.assert_allclose(np.linalg.norm(some.features, axis=1), 1.0, atol=1e-5)
    assert matcher.match(empty, some).shape == (0, 3)
    assert matcher.match(some, empty).shape == (3, 0)
    assert matcher.match(empty, empty).shape == (0, 0)
    assert matcher.match(some, empty).dtype == np.float32


def test_hog_options_validated():
    with pytest.raises(ValueError):
        HOG(HOGOptions(cells=2, cells_per_block=3))


# --------------------------------------------------------------------------- affinity propagation


def _three_groups(seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = [6, 9, 7]
    truth = np.repeat(np.arange(3), sizes)
    n = len(truth)
    same = truth[:, None] == truth[None, :]
    dense = np.where(same, rng.uniform(0.6, 0.9, (n, n)), 0.0)
    weak = (~same) & (rng.random((n, n)) < 0.5)  # some weak cross-group evidence
    dense[weak] = rng.uniform(0.02, 0.15, weak.sum())
    dense = np.triu(dense, 1)
    dense = dense + dense.T
    return sp.csr_matrix(dense), truth


def _same_partition(a, b) -> bool:
    pairs = {(x, y) for x, y in zip(a, b)}
    return len(pairs) == len(set(a)) == len(set(b))


def test_ap_recovers_three_groups():
    similarity, truth = _three_groups()
    model = AffinityPropagation().fit(similarity)
    assert model.converged_
    assert model.labels_.shape == truth.shape
    assert len(set(model.labels_)) == 3
    assert _same_partition(model.labels_, truth)
    assert len(model.cluster_centers_indices_) == 3
    assert set(model.labels_[model.cluster_centers_indices_]) == {0, 1, 2}
    assert model.n_iter_ > 0


def test_ap_preference_sets_number_of_clusters():
    similarity, _ = _three_groups(seed=1)
    counts = []
    for q in (0.0, 0.5, 0.9, 1.0):
        model = AffinityPropagation(AffinityPropagationOptions(preference_quantile=q)).fit(similarity)
        assert model.converged_
        counts.append(len(set(model.labels_)))
    assert counts == sorted(counts) and counts[-1] > counts[0]
    few = AffinityPropagation(AffinityPropagationOptions(preference=-5.0)).fit(similarity)
    many = AffinityPropagation(AffinityPropagationOptions(preference=5.0)).fit(similarity)
    assert len(set(few.labels_)) < len(set(many.labels_)) == similarity.shape[0]


def test_ap_preference_scale_is_the_reference_codes_shifted_median():
    similarity, _ = _three_groups(seed=1)
    present = similarity.data[similarity.data > 0]
    top, median = present.max(), np.median(present)
    ref = AffinityPropagation(AffinityPropagationOptions(preference_scale=1.3)).fit(similarity)
    # the authors' code: S - max S, preference 1.3 x its median; the same clustering as on visum's scale
    assert ref.preference_ == pytest.approx(top + 1.3 * (median - top))
    assert ref.preference_ - top == pytest.approx(1.3 * (median - top))
    plain = AffinityPropagation().fit(similarity)
    assert plain.preference_ == pytest.approx(median)
    assert len(set(ref.labels_)) <= len(set(plain.labels_))


def test_ap_nonconvergence_gives_unassigned():
    similarity, _ = _three_groups()
    model = AffinityPropagation(AffinityPropagationOptions(max_iter=1)).fit(similarity)
    assert model.converged_ is False
    np.testing.assert_array_equal(model.labels_, -1)
    assert len(model.cluster_centers_indices_) == 0


def test_ap_small_and_degenerate_inputs():
    empty = AffinityPropagation().fit(sp.csr_matrix((0, 0)))
    assert empty.labels_.shape == (0,) and empty.converged_
    one = AffinityPropagation().fit(sp.csr_matrix((1, 1)))
    np.testing.assert_array_equal(one.labels_, [0])
    unlinked = AffinityPropagation().fit(sp.csr_matrix((4, 4)))
    np.testing.assert_array_equal(unlinked.labels_, [0, 1, 2, 3])
    # two unlinked triangles: absent entries must not glue them together, even when the
    # preference is far below every similarity (AP then wants as few clusters as possible)
    dense = np.zeros((6, 6))
    for i, j, v in [(0, 1, 0.5), (1, 2, 0.6), (0, 2, 0.4), (3, 4, 0.7), (4, 5, 0.8), (3, 5, 0.65)]:
        dense[i, j] = dense[j, i] = v
    for options in (AffinityPropagationOptions(preference_quantile=0.0), AffinityPropagationOptions(preference=-1.0)):
        model = AffinityPropagation(options).fit(sp.csr_matrix(dense))
        np.testing.assert_array_equal(model.labels_, [0, 0, 0, 1, 1, 1])
        assert model.absent_similarity_ < min(0.4, model.preference_)


def test_ap_unassigns_points_without_evidence():
    chain = sp.csr_matrix(np.array([[0, 1.0, 0], [1.0, 0, 0], [0, 0, 0]]))  # 2 links to nobody
    labels = unassign_unlinked(chain, np.array([0, 0, 0]), np.array([1]))
    np.testing.assert_array_equal(labels, [0, 0, -1])


# --------------------------------------------------------------------------- ssim


def _smooth_pattern(rng, size=40):
    import cv2

    small = rng.uniform(0, 255, (5, 5, 3))
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def test_own_ssim_agrees_with_skimage():
    rng = np.random.default_rng(0)
    for colour in (False, True):
        shape = (8, 24, 24, 3) if colour else (8, 24, 24)
        base = rng.uniform(0, 255, shape[1:])
        images = np.clip(base + rng.normal(0, 1, (8, 1) + (1,) * (len(shape) - 2)) * 40 + rng.normal(0, 25, shape), 0, 255)
        images[0] = rng.uniform(0, 255, shape[1:])  # an unrelated one too
        pairs = np.array([(0, 1), (1, 2), (3, 7), (5, 4), (6, 6)])
        for win in (7, 5):
            mine = pairwise_ssim(images, pairs, win_size=win)
            ref = [
                structural_similarity(
                    images[a], images[b], data_range=255, win_size=win, channel_axis=-1 if colour else None
                )
                for a, b in pairs
            ]
            np.testing.assert_allclose(mine, ref, atol=1e-6, rtol=0)
    assert pairwise_ssim(images, pairs[-1:])[0] == pytest.approx(1.0)


def test_ssim_identical_parts_have_median_one():
    rng = np.random.default_rng(1)
    part = _smooth_pattern(rng).astype(np.uint8)
    other = _smooth_pattern(rng).astype(np.uint8)
    result = SSIMScorer().score([[part] * 4, [other, other[::-1]]])
    assert result[0].quality["median_ssim"] == pytest.approx(1.0)
    assert result[0].kept
    assert result[0].quality["n_parts"] == 4
    assert set(result[0].quality) == {"median_ssim", "global_median_ssim", "threshold", "n_parts"}


def test_ssim_discards_noise_cluster_keeps_consistent_ones():
    import cv2

    rng = np.random.default_rng(2)
    template = _smooth_pattern(rng)  # what parts of this class have in common

    def consistent_cluster():
        variant = template + 0.6 * (_smooth_pattern(rng) - 127)
        parts = []
        for _ in range(8):
            h, w = rng.integers(24, 64, size=2)
            p = cv2.resize(variant, (int(w), int(h))) + rng.normal(0, 6, (h, w, 3))
            parts.append(np.clip(p, 0, 255).astype(np.uint8))
        return parts

    noise = [rng.integers(0, 256, size=(int(rng.integers(20, 60)), 30, 3), dtype=np.uint8) for _ in range(8)]
    clusters = [consistent_cluster(), noise, consistent_cluster(), consistent_cluster()]
    scorer = SSIMScorer()
    result = scorer.score(clusters)
    assert [r.kept for r in result] == [True, False, True, True]
    threshold = result[0].quality["threshold"]
    assert threshold == pytest.approx(0.9 * result[0].quality["global_median_ssim"])
    assert scorer.threshold_ == pytest.approx(threshold)
    assert result[1].quality["median_ssim"] < threshold <= min(result[i].quality["median_ssim"] for i in (0, 2, 3))

    # the sampled class median (max_pairs) reproduces the decision and is deterministic
    sampled = SSIMScorer(SSIMOptions(max_pairs=300))
    a, b = sampled.score(clusters), sampled.score(clusters)
    assert [r.kept for r in a] == [True, False, True, True]
    assert a == b


def test_ssim_small_clusters():
    rng = np.random.default_rng(3)
    part = _smooth_pattern(rng).astype(np.uint8)
    result = SSIMScorer().score([[part], [part, part]])
    assert result[0].kept is False and result[0].quality["n_parts"] == 1
    assert np.isfinite(list(result[0].quality.values())).all()
    assert result[1].kept
    assert SSIMScorer().score([]) == []
    lone = SSIMScorer().score([[part]])
    assert lone[0].kept is False
    with pytest.raises(ValueError):
        SSIMScorer(SSIMOptions(size=16, win_size=8))
