"""``agglomerative``: hierarchical clustering of Corr'' with average linkage on ``1 - S``.

An ablation alternative to the paper's Affinity Propagation. Every proposal starts as its
own cluster; the two clusters at the smallest linkage distance merge, until that distance
exceeds ``distance_threshold`` (or ``n_clusters`` remain). With average linkage (UPGMA) the
distance of clusters ``A`` and ``B`` is the mean distance of their members::

    d(A, B) = 1 / (|A| |B|) * sum_{a in A, b in B} (1 - S_ab / s_max)

so two groups merge while their members match, on average, better than
``1 - distance_threshold``. Absent pairs of Corr'' (no evidence of a match, e.g. two
proposals of one image) count as distance 1. Clusters of one proposal are unassigned
(label ``-1``): nothing links them to anything.

The dense ``N x N`` distance matrix is fine at the sizes visum produces (a few hundred to a
few thousand region proposals); beyond ``max_points`` the plugin refuses with a clear error.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.cluster import AgglomerativeClustering as _SkAgglomerative
from visum_plugins.clusterers._similarity import (
    clean_affinity,
    consecutive_labels,
    dense_distances,
)

from visum import Component, Options, hookimpl

__all__ = ["Agglomerative", "AgglomerativeOptions", "register_clusterers"]


class AgglomerativeOptions(Options):
    """Options of :class:`Agglomerative`."""

    distance_threshold: float = Field(
        default=0.35,
        gt=0.0,
        le=1.0,
        description="Merging stops when the linkage distance (1 - similarity) exceeds this; ignored when n_clusters is set.",
    )
    n_clusters: int | None = Field(default=None, ge=1, description="A fixed number of clusters instead of a threshold.")
    linkage: Literal["average", "complete", "single"] = Field(
        default="average", description="How the distance of two clusters follows from their members' distances."
    )
    max_points: int = Field(
        default=10000, ge=2, description="Refuse more proposals than this (the dense distance matrix takes 8 N^2 bytes)."
    )


class Agglomerative(Component):
    """Average-linkage agglomerative clustering of ``D = 1 - S / s_max`` (scikit-learn).

    After :meth:`fit`: ``labels_`` ``[N]`` int64 (``-1`` for proposals left alone),
    ``n_clusters_`` and ``children_``/``distances_`` of scikit-learn's merge tree (when built).
    """

    name = "agglomerative"
    summary = "Agglomerative clustering, average linkage on 1 - Corr'', stops at a distance threshold"
    Options = AgglomerativeOptions

    def fit(self, similarity) -> Agglomerative:
        s = clean_affinity(similarity)
        n = s.shape[0]
        o = self.options
        if n < 2 or s.nnz == 0:
            self.labels_ = np.full(n, -1, dtype=np.int64)
            self.n_clusters_ = 0
            return self
        d = dense_distances(s, o.max_points, self.name)
        model = _SkAgglomerative(
            n_clusters=min(o.n_clusters, n) if o.n_clusters is not None else None,
            distance_threshold=None if o.n_clusters is not None else o.distance_threshold,
            metric="precomputed",
            linkage=o.linkage,
            compute_distances=True,
        )
        model.fit(d)
        self.children_ = model.children_
        self.distances_ = getattr(model, "distances_", None)
        self.labels_ = consecutive_labels(model.labels_, min_size=2)
        self.n_clusters_ = int(self.labels_.max() + 1) if (self.labels_ >= 0).any() else 0
        return self


@hookimpl
def register_clusterers():
    return [Agglomerative]
