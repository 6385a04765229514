"""``spectral``: normalised spectral clustering of Corr'' (Shi & Malik 2000; Ng, Jordan & Weiss 2002).

An ablation alternative to the paper's Affinity Propagation. Corr'' is used as the affinity
``A`` of a graph over the proposals (symmetrised, negatives and diagonal removed). The
proposals are embedded by the eigenvectors of the smallest eigenvalues of the normalised
Laplacian ``L = I - D^(-1/2) A D^(-1/2)`` (``D`` the degrees) and grouped in that embedding
(scikit-learn's ``spectral_clustering``; ``cluster_qr`` by default, which needs no random
start).

Number of clusters. Unless ``n_clusters`` is given, it is chosen by the *eigengap*: with
``0 = l_1 <= l_2 <= ...`` the eigenvalues of ``L``, ``k = argmax_{k <= max_clusters}
(l_{k+1} - l_k)``. A graph of ``c`` connected components has ``c`` zero eigenvalues, so the
gap rule never picks fewer clusters than components (up to ``max_clusters``).

Neighbour graph. Corr'' from an appearance matcher is nearly complete (every pair of HOG
descriptors has some positive cosine), and on a complete graph of similar weights the
spectrum shows no structure (the eigengap picks one cluster). As usual for spectral
clustering (von Luxburg 2007, Sec. 2.2), each proposal keeps only its ``n_neighbors``
strongest links; a link stays when either end keeps it (``A = max(K, K^T)``).

Graphs that are not connected need care: spectral embedding is only defined per component,
and with fewer clusters than components unrelated components would share a cluster. So
proposals with no link at all are unassigned (``-1``), and every cluster is split along the
connected components of the graph: a cluster never joins proposals that nothing links.
Links below ``1e-6`` of the strongest are numerical zeros and do not connect components.
Clusters of a single proposal are unassigned.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import eigsh
from visum_plugins.clusterers._similarity import clean_affinity, consecutive_labels

from visum import Component, Options, hookimpl

__all__ = [
    "Spectral",
    "SpectralOptions",
    "eigengap_k",
    "nearest_neighbour_graph",
    "normalized_laplacian_eigenvalues",
    "register_clusterers",
]

_NUMERICAL_ZERO = 1e-6  # links weaker than this share of the strongest do not connect components
_DENSE_EIGEN = 2000  # up to this many nodes, all eigenvalues by a dense solver


def normalized_laplacian_eigenvalues(affinity: sp.spmatrix, count: int) -> np.ndarray:
    """The ``count`` smallest eigenvalues of ``L = I - D^(-1/2) A D^(-1/2)``, ascending.

    ``affinity [N, N]`` symmetric, ``>= 0``, every degree ``> 0`` -> ``[min(count, N)]`` in ``[0, 2]``.
    Computed as ``1 - mu`` for the largest eigenvalues ``mu`` of ``D^(-1/2) A D^(-1/2)``.
    """
    a = sp.csr_matrix(affinity, dtype=np.float64)
    n = a.shape[0]
    count = min(count, n)
    d = np.asarray(a.sum(axis=1)).ravel()
    inv = sp.diags(1.0 / np.sqrt(d))
    m = (inv @ a @ inv).tocsr()
    if n <= _DENSE_EIGEN or count >= n - 1:
        mu = np.linalg.eigvalsh(m.toarray())[::-1][:count]
    else:
        mu = np.sort(eigsh(m, k=count, which="LA", return_eigenvectors=False, v0=np.ones(n)))[::-1]
    return np.clip(1.0 - mu, 0.0, 2.0)


def eigengap_k(eigenvalues: np.ndarray, max_clusters: int) -> int:
    """``argmax_{1 <= k <= max_clusters} (l_{k+1} - l_k)`` of ascending eigenvalues ``[K]`` (1 when ``K < 2``)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    top = min(max_clusters, len(lam) - 1)
    if top < 1:
        return 1
    gaps = lam[1 : top + 1] - lam[:top]
    return int(np.argmax(gaps)) + 1


def nearest_neighbour_graph(affinity: sp.csr_matrix, n_neighbors: int) -> sp.csr_matrix:
    """Keep each row's ``n_neighbors`` largest entries, symmetrised by ``max(K, K^T)``.

    Shapes: ``[N, N]`` sparse, symmetric, ``>= 0`` -> ``[N, N]`` ``csr_matrix``. Ties at the
    cut are broken by column index (the stable order), so the result is deterministic.
    """
    a = sp.csr_matrix(affinity, dtype=np.float64)
    rows, cols, vals = [], [], []
    for i in range(a.shape[0]):
        start, end = a.indptr[i], a.indptr[i + 1]
        if end == start:
            continue
        c, v = a.indices[start:end], a.data[start:end]
        order = np.lexsort((c, -v))[:n_neighbors]
        rows.append(np.full(len(order), i))
        cols.append(c[order])
        vals.append(v[order])
    if not rows:
        return sp.csr_matrix(a.shape, dtype=np.float64)
    k = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=a.shape)
    return k.maximum(k.T).tocsr()


def _split_by_components(labels: np.ndarray, components: np.ndarray) -> np.ndarray:
    pairs = labels.astype(np.int64) * (components.max() + 1) + components
    _, out = np.unique(pairs, return_inverse=True)
    return out.astype(np.int64)


class SpectralOptions(Options):
    """Options of :class:`Spectral`."""

    n_neighbors: int | None = Field(
        default=5, ge=1, description="Each proposal keeps its n strongest links (kNN graph); None = every link of Corr''."
    )
    n_clusters: int | None = Field(default=None, ge=1, description="Number of clusters; None = the eigengap rule.")
    max_clusters: int = Field(default=30, ge=1, description="Largest number of clusters the eigengap rule may choose.")
    assign_labels: Literal["cluster_qr", "kmeans", "discretize"] = Field(
        default="cluster_qr", description="How points are grouped in the spectral embedding (scikit-learn)."
    )
    random_state: int = Field(default=0, description="Seed of k-means / discretize and of the eigen solver's start.")


class Spectral(Component):
    """Normalised spectral clustering of Corr'' with the eigengap rule, split along components.

    After :meth:`fit`: ``labels_`` ``[N]`` int64, ``n_clusters_`` (after splitting and
    dropping singletons), ``k_`` (the number of clusters of the embedding step),
    ``eigenvalues_`` (the smallest Laplacian eigenvalues seen by the eigengap rule) and
    ``n_components_`` (connected components among the linked proposals).
    """

    name = "spectral"
    summary = "Normalised spectral clustering of Corr'' (scikit-learn), eigengap number of clusters, split by components"
    Options = SpectralOptions

    def fit(self, similarity) -> Spectral:
        from sklearn.cluster import spectral_clustering

        s = clean_affinity(similarity)
        n = s.shape[0]
        o = self.options
        self.labels_ = np.full(n, -1, dtype=np.int64)
        self.n_clusters_, self.k_, self.n_components_ = 0, 0, 0
        self.eigenvalues_ = np.zeros(0)
        if s.nnz:
            s.data[s.data < _NUMERICAL_ZERO * s.data.max()] = 0.0
            s.eliminate_zeros()
        if o.n_neighbors is not None:
            s = nearest_neighbour_graph(s, o.n_neighbors)
        linked = np.flatnonzero(np.asarray(s.sum(axis=1)).ravel() > 0)
        if len(linked) < 2:
            return self
        a = s[linked][:, linked].tocsr()
        self.n_components_, components = connected_components(a, directed=False)
        m = len(linked)
        if o.n_clusters is not None:
            k = min(o.n_clusters, m)
        else:
            self.eigenvalues_ = normalized_laplacian_eigenvalues(a, min(o.max_clusters + 1, m))
            k = eigengap_k(self.eigenvalues_, o.max_clusters)
        self.k_ = k
        if k <= 1 or k >= m:
            labels = np.zeros(m, dtype=np.int64) if k <= 1 else np.arange(m)
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Graph is not fully connected")
                labels = spectral_clustering(a, n_clusters=k, assign_labels=o.assign_labels, random_state=o.random_state)
        labels = _split_by_components(np.asarray(labels), components)
        out = np.full(n, -1, dtype=np.int64)
        out[linked] = labels
        self.labels_ = consecutive_labels(out, min_size=2)
        self.n_clusters_ = int(self.labels_.max() + 1) if (self.labels_ >= 0).any() else 0
        return self


@hookimpl
def register_clusterers():
    return [Spectral]
