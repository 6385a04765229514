"""``kmeans``: k-means in the matcher's feature space, from Corr'' alone (ACE's clustering).

ACE (Ghorbani et al., NeurIPS 2019, Sec. 3) groups segments by k-means on their activations
(25 clusters). A visum clusterer sees only the similarity ``S`` = Corr'', not the features;
but when ``S`` is an inner product of unit features, ``S = F F^T`` (the ``activations`` and
``hog`` matchers: cosine similarity), k-means on ``F`` is *kernel k-means* on ``S``: the
squared distance of point ``x`` to the mean of cluster ``c`` is

    ||f_x - mu_c||^2 = K(x, x) - 2/|c| sum_{y in c} K(x, y) + 1/|c|^2 sum_{y, z in c} K(y, z)

with ``K = S`` off the diagonal and ``K(x, x) = 1`` (unit features). On a full cosine kernel
Lloyd's iterations on these distances are exactly k-means on the features (tested against
scikit-learn). Inside the pipeline it is an approximation, for Corr'' is not the full kernel:
pairs of one image are never matched and pruning drops weak pairs, so those entries of ``K`` are
0 (as if the features were orthogonal: two nested segments of one part in one image are not
pulled together), negative cosines are clamped at 0, and ``K`` need not be positive
semi-definite, so distances are clamped at 0 and Lloyd's iterations stop at ``max_iter`` when
they do not settle.

Start: k-means++ (Arthur & Vassilvitskii 2007) on the same distances, ``n_init`` seeded starts,
the lowest within-cluster sum kept. Clusters of one point are unassigned (``-1``).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field
from visum_plugins.clusterers._similarity import clean_affinity, consecutive_labels

from visum import Component, Options, hookimpl
from visum.errors import ConfigError

__all__ = ["KMeansOptions", "KernelKMeans", "kernel_kmeans", "register_clusterers"]


def _distances(K: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """``[N, k]`` squared feature-space distance of every point to every cluster mean (inf for an empty cluster)."""
    n = len(K)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0
    size = onehot.sum(axis=0)
    safe = np.where(size > 0, size, 1.0)
    summed = K @ onehot  # [N, k] summed similarity to each cluster
    cross = summed / safe
    inner = (onehot * summed).sum(axis=0) / safe**2
    d = np.diag(K)[:, None] - 2 * cross + inner[None, :]
    d[:, size == 0] = np.inf
    return np.maximum(d, 0.0)


def kernel_kmeans(K: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = 100) -> tuple[np.ndarray, float]:
    """Lloyd's k-means on a kernel ``K [N, N]`` (symmetric PSD-like) -> ``(labels [N], within-cluster sum)``.

    k-means++ start: the first centre uniformly, each next point with probability proportional
    to its squared distance ``K(x,x) - 2 K(x,c) + K(c,c)`` to the nearest chosen centre.
    """
    n = len(K)
    k = min(k, n)
    diag = np.diag(K)
    centres = [int(rng.integers(n))]
    nearest = diag - 2 * K[:, centres[0]] + diag[centres[0]]
    for _ in range(1, k):
        p = np.maximum(nearest, 0.0)
        nxt = int(rng.choice(n, p=p / p.sum())) if p.sum() > 0 else int(rng.integers(n))
        centres.append(nxt)
        nearest = np.minimum(nearest, diag - 2 * K[:, nxt] + diag[nxt])
    to_centre = diag[:, None] - 2 * K[:, centres] + diag[centres][None, :]
    labels = to_centre.argmin(axis=1)
    for _ in range(max_iter):
        d = _distances(K, labels, k)
        new = d.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    d = _distances(K, labels, k)
    return labels.astype(np.int64), float(d[np.arange(n), labels].sum())


class KMeansOptions(Options):
    """Options of :class:`KernelKMeans`."""

    n_clusters: int = Field(default=25, ge=1, description="Number of clusters (ACE: 25).")
    n_init: int = Field(default=5, ge=1, description="Seeded k-means++ starts; the lowest within-cluster sum is kept.")
    max_iter: int = Field(default=100, ge=1, description="Lloyd iterations per start.")
    random_state: int = Field(default=0, description="Seed of the starts.")
    max_points: int = Field(default=8000, ge=2, description="Largest number of proposals (the kernel is dense, 8 N^2 bytes).")


class KernelKMeans(Component):
    """k-means on the features behind Corr'' (kernel k-means with ``K = S``, ``K(x, x) = 1``).

    After :meth:`fit`: ``labels_`` ``[N]`` int64 (``-1`` for unlinked points and singletons),
    ``inertia_`` (the within-cluster sum of squared distances of the best start), ``n_clusters_``.
    """

    name = "kmeans"
    summary = "ACE's clustering: k-means (k = 25) in the matcher's feature space, as kernel k-means on Corr''"
    Options = KMeansOptions

    def fit(self, similarity) -> KernelKMeans:
        s = clean_affinity(similarity)
        n = s.shape[0]
        o = self.options
        self.labels_ = np.full(n, -1, dtype=np.int64)
        self.inertia_, self.n_clusters_ = float("nan"), 0
        linked = np.flatnonzero(np.asarray(s.sum(axis=1)).ravel() > 0)
        if len(linked) < 2:
            return self
        if len(linked) > o.max_points:
            raise ConfigError(f"clusterer 'kmeans': {len(linked)} proposals need a dense kernel above max_points="
                              f"{o.max_points}; raise it with --opt clusterer.max_points=N if memory allows")
        K = s[linked][:, linked].toarray()
        np.fill_diagonal(K, 1.0)
        rng = np.random.default_rng(o.random_state)
        best = None
        for _ in range(o.n_init):
            labels, inertia = kernel_kmeans(K, o.n_clusters, rng, o.max_iter)
            if best is None or inertia < best[1] - 1e-12:
                best = (labels, inertia)
        out = np.full(n, -1, dtype=np.int64)
        out[linked] = best[0]
        self.labels_ = consecutive_labels(out, min_size=2)
        self.inertia_ = best[1]
        self.n_clusters_ = int(self.labels_.max() + 1) if (self.labels_ >= 0).any() else 0
        return self


@hookimpl
def register_clusterers():
    return [KernelKMeans]
