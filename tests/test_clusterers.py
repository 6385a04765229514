"""The ablation clusterers: agglomerative, spectral and HDBSCAN on sparse similarities."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score
from visum_plugins.clusterers._similarity import (
    clean_affinity,
    consecutive_labels,
    dense_distances,
)
from visum_plugins.clusterers.agglomerative import Agglomerative, AgglomerativeOptions
from visum_plugins.clusterers.hdbscan import HDBSCANClusterer, HDBSCANOptions
from visum_plugins.clusterers.spectral import (
    Spectral,
    SpectralOptions,
    eigengap_k,
    nearest_neighbour_graph,
    normalized_laplacian_eigenvalues,
)

from visum.errors import ConfigError
from visum.plugins import get_catalogue

CLUSTERERS = [Agglomerative, Spectral, HDBSCANClusterer]


def groups_similarity(sizes, within=0.85, across=0.1, isolated=0, seed=0, fill=1.0):
    """Sparse similarity of groups of proposals: strong links inside a group, a few weak ones across,
    then ``isolated`` proposals with no link. Returns ``(S [N, N] csr, truth [N])`` (truth -1 = isolated)."""
    rng = np.random.default_rng(seed)
    truth = np.concatenate([np.full(n, g) for g, n in enumerate(sizes)] + [np.full(isolated, -1)])
    n = len(truth)
    s = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if truth[i] < 0 or truth[j] < 0:
                continue
            if truth[i] == truth[j]:
                if rng.random() < fill:
                    s[i, j] = within + rng.uniform(-0.05, 0.05)
            elif rng.random() < 0.3:
                s[i, j] = across * rng.uniform(0.5, 1.5)
    s = s + s.T
    return sp.csr_matrix(s), truth


@pytest.mark.parametrize("cls", CLUSTERERS, ids=lambda c: c.name)
def test_recovers_groups_and_leaves_isolated_proposals_unassigned(cls):
    s, truth = groups_similarity([6, 5, 4], isolated=3)
    labels = cls().fit(s).labels_
    assert labels.shape == (len(truth),) and labels.dtype == np.int64
    linked = truth >= 0
    assert adjusted_rand_score(truth[linked], labels[linked]) == pytest.approx(1.0)
    assert (labels[~linked] == -1).all()
    assert sorted(set(labels[labels >= 0].tolist())) == list(range(3))  # ids 0..C-1


@pytest.mark.parametrize("cls", CLUSTERERS, ids=lambda c: c.name)
def test_same_input_same_labels_and_degenerate_inputs(cls):
    s, _ = groups_similarity([5, 5, 5], fill=0.7, seed=4)
    assert np.array_equal(cls().fit(s).labels_, cls().fit(s.copy()).labels_)
    for n in (0, 1, 4):
        labels = cls().fit(sp.csr_matrix((n, n))).labels_
        assert labels.shape == (n,) and (labels == -1).all()  # no link, no cluster


@pytest.mark.parametrize("cls", CLUSTERERS, ids=lambda c: c.name)
def test_registered_and_selectable_by_name(cls):
    info = get_catalogue().get("clusterer", cls.name)
    assert info.cls is cls


def test_agglomerative_threshold_is_on_the_average_distance():
    # two tight pairs {0,1}, {2,3}; every cross pair at similarity 0.5 -> average distance 0.5
    s = np.array([[0, 0.9, 0.5, 0.5], [0.9, 0, 0.5, 0.5], [0.5, 0.5, 0, 0.9], [0.5, 0.5, 0.9, 0]])
    two = Agglomerative(AgglomerativeOptions(distance_threshold=0.45)).fit(sp.csr_matrix(s)).labels_
    one = Agglomerative(AgglomerativeOptions(distance_threshold=0.55)).fit(sp.csr_matrix(s)).labels_
    assert two.tolist() == [0, 0, 1, 1] and one.tolist() == [0, 0, 0, 0]
    # an absent cross pair counts as distance 1: average (1 + 3 * 0.5) / 4 = 0.625
    s[0, 2] = s[2, 0] = 0
    assert Agglomerative(AgglomerativeOptions(distance_threshold=0.6)).fit(sp.csr_matrix(s)).labels_.tolist() == [0, 0, 1, 1]
    fixed = Agglomerative(AgglomerativeOptions(n_clusters=1)).fit(sp.csr_matrix(s)).labels_
    assert fixed.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("cls,options", [(Agglomerative, AgglomerativeOptions), (HDBSCANClusterer, HDBSCANOptions)])
def test_dense_clusterers_refuse_too_many_proposals_with_a_clear_error(cls, options):
    s, _ = groups_similarity([6, 6])
    with pytest.raises(ConfigError, match=rf"clusterer '{cls.name}'.*12 proposals.*max_points=10"):
        cls(options(max_points=10)).fit(s)


def test_hdbscan_leaves_proposals_without_enough_neighbours_as_noise():
    """A proposal matched strongly but by a single other one has no dense neighbourhood: noise."""
    s, truth = groups_similarity([6, 6, 6], within=0.8, across=0.0)
    n = len(truth)
    with_strays = np.zeros((n + 2, n + 2))
    with_strays[:n, :n] = s.toarray()
    for k, member in enumerate([0, 7]):
        with_strays[n + k, member] = with_strays[member, n + k] = 0.95
    model = HDBSCANClusterer().fit(sp.csr_matrix(with_strays))
    assert (model.labels_[n:] == -1).all() and (model.probabilities_[n:] == 0).all()
    assert adjusted_rand_score(truth, model.labels_[:n]) == pytest.approx(1.0)


def test_spectral_never_joins_unlinked_components():
    s, truth = groups_similarity([4, 4, 4, 4], across=0.0)
    labels = Spectral(SpectralOptions(n_clusters=1)).fit(s).labels_
    assert adjusted_rand_score(truth, labels) == pytest.approx(1.0)


def test_spectral_eigengap_counts_weakly_linked_groups():
    s, truth = groups_similarity([8, 8, 8], across=0.02, seed=2)
    model = Spectral(SpectralOptions(n_neighbors=None)).fit(s)
    assert model.k_ == 3 and model.n_components_ == 1
    assert adjusted_rand_score(truth, model.labels_) == pytest.approx(1.0)


def test_laplacian_eigenvalues_and_eigengap():
    s, _ = groups_similarity([4, 5, 6], across=0.0)
    lam = normalized_laplacian_eigenvalues(clean_affinity(s), 6)
    assert np.allclose(lam[:3], 0, atol=1e-9) and lam[3] > 0.5  # one zero per component
    assert eigengap_k(lam, 5) == 3
    assert eigengap_k(np.array([0.0, 0.05, 0.3, 0.9]), 2) == 2  # the larger gap after 3 is beyond the cap
    assert eigengap_k(np.array([0.0]), 5) == 1


def test_nearest_neighbour_graph_keeps_the_strongest_links_of_each_proposal():
    s = sp.csr_matrix(np.array([[0, 0.9, 0.2, 0.1], [0.9, 0, 0.3, 0.0], [0.2, 0.3, 0, 0.8], [0.1, 0.0, 0.8, 0]]))
    k = nearest_neighbour_graph(s, 1).toarray()
    assert np.array_equal(k > 0, np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]], bool))
    k2 = nearest_neighbour_graph(s, 2).toarray()
    assert (k2 == k2.T).all() and k2[0, 2] == 0.2 and k2[1, 2] == 0.3  # kept by either end


def test_similarity_helpers():
    s = sp.csr_matrix(np.array([[0.5, 0.8, 0], [0.6, 0, -1.0], [0, 0, 0]]))
    a = clean_affinity(s)
    assert a[0, 0] == 0 and a[0, 1] == pytest.approx(0.7) and a[1, 2] == 0 and a.nnz == 2
    d = dense_distances(a, 10, "x")
    assert d[0, 1] == pytest.approx(0.3) and d[0, 2] == 1.0 and np.all(np.diag(d) == 0)
    big = clean_affinity(sp.csr_matrix(np.array([[0, 4.0], [4.0, 0]])))
    assert dense_distances(big, 10, "x")[0, 1] == 0.0  # s_max = max(1, max S)
    assert consecutive_labels(np.array([5, 5, 2, 7, 2, -1])).tolist() == [0, 0, 1, -1, 1, -1]
