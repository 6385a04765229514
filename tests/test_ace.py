"""ACE (Ghorbani et al. 2019) as visum components: SLIC segments, the model's activations, k-means."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn as nn
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from visum.cli import main
from visum.manifest import Manifest
from visum.models.base import Preprocessing
from visum_plugins.clusterers.kmeans import KernelKMeans, KMeansOptions, kernel_kmeans
from visum.model_features import box_crops, default_layer
from visum_plugins.matchers.activations import Activations, ActivationsOptions
from visum_plugins.proposers.slic_segments import SLICSegments, SLICSegmentsOptions, segment_boxes


def test_segment_boxes_are_the_segments_bounding_boxes_largest_first():
    labels = np.zeros((10, 12), int)
    labels[2:5, 3:9] = 7  # 18 pixels
    labels[6:8, 0:2] = 3  # 4 pixels
    boxes = segment_boxes(labels, min_pixels=4)
    assert boxes.tolist() == [[0, 0, 12, 10], [3, 2, 9, 5], [0, 6, 2, 8]]
    assert segment_boxes(labels, min_pixels=5).tolist() == [[0, 0, 12, 10], [3, 2, 9, 5]]


def test_slic_segments_find_a_coloured_object_at_some_resolution():
    image = np.full((96, 96, 3), 40, np.uint8)
    image[20:60, 30:70] = (220, 30, 30)
    boxes = SLICSegments().propose(image)
    assert boxes.dtype == np.int64 and boxes.shape[1] == 4 and len(boxes) >= 3
    assert len({tuple(b) for b in boxes.tolist()}) == len(boxes)  # a box found twice is kept once
    assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 2] <= 96).all()
    # the red square is one segment (or the union of a few) at the coarsest resolution
    inside = [b for b in boxes.tolist() if b[0] >= 28 and b[1] >= 18 and b[2] <= 72 and b[3] <= 62]
    assert any((b[2] - b[0]) * (b[3] - b[1]) >= 0.5 * 40 * 40 for b in inside)
    assert np.array_equal(boxes, SLICSegments().propose(image))  # deterministic
    coarse = SLICSegments(SLICSegmentsOptions(n_segments=(4,))).propose(image)
    assert len(coarse) < len(boxes)


def test_kernel_kmeans_on_a_cosine_kernel_is_kmeans_on_the_unit_features():
    rng = np.random.default_rng(0)
    centres = np.eye(6)[:4]
    f = np.concatenate([c + 0.15 * rng.standard_normal((30, 6)) for c in centres])
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    rng = np.random.default_rng(1)
    starts = [kernel_kmeans(f @ f.T, 4, rng) for _ in range(10)]
    for labels, inertia in starts:  # every start: its inertia is the features' within-cluster sum of squares
        means = np.stack([f[labels == c].mean(axis=0) for c in np.unique(labels)])
        direct = sum(((f[labels == c] - means[k]) ** 2).sum() for k, c in enumerate(np.unique(labels)))
        assert inertia == pytest.approx(direct, rel=1e-6)
        # and a fixed point of Lloyd's step in feature space: every point is nearest its own mean
        nearest = np.unique(labels)[((f[:, None, :] - means[None]) ** 2).sum(-1).argmin(axis=1)]
        assert np.array_equal(nearest, labels)
    labels, inertia = min(starts, key=lambda t: t[1])
    sk = KMeans(4, n_init=10, random_state=0).fit(f)
    assert adjusted_rand_score(labels, sk.labels_) == 1.0
    assert inertia == pytest.approx(sk.inertia_, rel=1e-6)


def test_kmeans_clusterer_on_corr_unassigns_unlinked_points_and_singletons():
    rng = np.random.default_rng(2)
    f = np.concatenate([np.tile(np.eye(3)[k], (5, 1)) + 0.05 * rng.standard_normal((5, 3)) for k in range(3)])
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    s = np.clip(f @ f.T, 0, 1)
    np.fill_diagonal(s, 0)
    n = len(s)
    s = np.pad(s, ((0, 1), (0, 1)))  # point 15 is linked to nothing
    c = KernelKMeans(KMeansOptions(n_clusters=3)).fit(sp.csr_matrix(s))
    assert c.labels_[-1] == -1 and c.n_clusters_ == 3
    assert adjusted_rand_score(c.labels_[:n], np.repeat([0, 1, 2], 5)) == 1.0
    again = KernelKMeans(KMeansOptions(n_clusters=3)).fit(sp.csr_matrix(s))
    assert np.array_equal(c.labels_, again.labels_)  # seeded
    many = KernelKMeans(KMeansOptions(n_clusters=15)).fit(sp.csr_matrix(s))
    assert (np.bincount(many.labels_[many.labels_ >= 0]) >= 2).all()  # no cluster of one


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.features(x))


def _bound(options=None) -> Activations:
    torch.manual_seed(0)
    m = Activations(options)
    m.bind_model(_Tiny().eval(), Preprocessing(input_size=32, resize_to=32, mean=(0.5,) * 3, std=(0.5,) * 3), "cpu")
    return m


def test_activations_describe_crops_by_the_models_features():
    image = np.zeros((64, 64, 3), np.uint8)
    image[0:20, 0:20] = (200, 50, 50)
    image[40:60, 40:60] = (200, 50, 50)  # the same content elsewhere
    image[0:20, 40:60] = (20, 200, 240)
    boxes = np.array([[0, 0, 20, 20], [40, 40, 60, 60], [40, 0, 60, 20]])
    m = _bound()
    assert m.layer_ == "head" == default_layer(m._model[0])
    d = m.describe(image, boxes)
    assert d.features.shape == (3, 8)
    assert np.allclose(np.linalg.norm(d.features, axis=1), 1, atol=1e-5)
    q = m.match(d, d)
    assert q[0, 1] == pytest.approx(1.0, abs=1e-5) and q[0, 2] < 0.999
    assert q.dtype == np.float32 and (q >= 0).all()
    # the features are the input of the last Linear: the model's own, recomputed by hand
    module, pre, _ = m._model
    with torch.no_grad():
        manual = module.features(pre.to_tensor(list(box_crops(image, boxes, 32)))).numpy()
    manual /= np.linalg.norm(manual, axis=1, keepdims=True)
    assert np.allclose(d.features, manual, atol=1e-5)
    named = _bound(ActivationsOptions(layer="features.1"))  # a conv layer's output, averaged over space
    assert named.describe(image, boxes).features.shape == (3, 8)


def test_activations_need_the_model_and_do_not_pickle_it():
    with pytest.raises(RuntimeError, match="bind_model"):
        Activations().describe(np.zeros((8, 8, 3), np.uint8), np.array([[0, 0, 4, 4]]))
    with pytest.raises(ValueError, match="no layer named"):
        Activations(ActivationsOptions(layer="nope")).bind_model(_Tiny(), None)
    assert pickle.loads(pickle.dumps(_bound()))._model is None
    assert Activations.uses_model


def test_ace_components_run_as_a_visum_pipeline(tmp_path):
    """ACE's segments, activations and k-means in place of the paper's proposals, matcher and clusterer."""
    out = tmp_path / "ace"
    code = main(["run", "--saliency", "gradient", "--benchmark-images", "8", "--proposer", "slic-segments", "--matcher", "activations",
                 "--clusterer", "kmeans", "--opt", "clusterer.n_clusters=6", "--out", str(out), "--no-cache", "-q"])
    assert code == 0
    manifest = Manifest.model_validate_json((out / "manifest.json").read_text())
    assert manifest.config["proposer"] == "slic-segments" and manifest.config["matcher"] == "activations"
    assert 1 <= len(manifest.summaries) <= 6
    members = [m for s in manifest.summaries for m in s.members]
    assert members and all(m.part_bbox[2] > m.part_bbox[0] for m in members)
