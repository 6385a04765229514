"""``hdbscan``: density-based clustering of Corr'' (Campello, Moulavi & Sander 2013).

An ablation alternative to the paper's Affinity Propagation that, unlike it, may leave
proposals out. HDBSCAN works on the distances ``D = 1 - S / s_max`` (absent pairs of Corr''
at 1). The core distance of a proposal is its distance to its ``min_samples``-th nearest
neighbour; the mutual reachability distance of two proposals is the largest of their core
distances and their own distance. The single-linkage tree of that distance is condensed
(splits that shed fewer than ``min_cluster_size`` points are not splits) and the clusters
that persist longest are selected ("excess of mass"). Proposals in no selected cluster are
noise: label ``-1``, unassigned, as the Clusterer protocol asks.

scikit-learn's ``HDBSCAN(metric="precomputed")`` is used on the dense matrix; beyond
``max_points`` proposals the plugin refuses with a clear error.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.cluster import HDBSCAN as _SkHDBSCAN
from visum_plugins.clusterers._similarity import (
    clean_affinity,
    consecutive_labels,
    dense_distances,
)

from visum import Component, Options, hookimpl

__all__ = ["HDBSCANClusterer", "HDBSCANOptions", "register_clusterers"]


class HDBSCANOptions(Options):
    """Options of :class:`HDBSCANClusterer`."""

    min_cluster_size: int = Field(
        default=3, ge=2, description="Smallest group that counts as a cluster (3 = summaries.min_images' default)."
    )
    min_samples: int | None = Field(
        default=None, ge=1, description="Neighbours defining a core point; None = min_cluster_size. Higher is more conservative."
    )
    cluster_selection_epsilon: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Clusters closer than this distance are merged (0 = off)."
    )
    cluster_selection_method: Literal["eom", "leaf"] = Field(
        default="eom", description="'eom': most persistent clusters; 'leaf': the leaves of the tree (smaller, purer)."
    )
    max_points: int = Field(
        default=10000, ge=2, description="Refuse more proposals than this (the dense distance matrix takes 8 N^2 bytes)."
    )


class HDBSCANClusterer(Component):
    """HDBSCAN on ``D = 1 - S / s_max`` (scikit-learn); noise is ``-1``.

    After :meth:`fit`: ``labels_`` ``[N]`` int64, ``probabilities_`` ``[N]`` (strength of
    each point's membership, 0 for noise) and ``n_clusters_``.
    """

    name = "hdbscan"
    summary = "HDBSCAN (Campello et al. 2013, scikit-learn) on 1 - Corr''; proposals in no dense group stay unassigned"
    Options = HDBSCANOptions

    def fit(self, similarity) -> HDBSCANClusterer:
        s = clean_affinity(similarity)
        n = s.shape[0]
        o = self.options
        self.probabilities_ = np.zeros(n)
        if n < max(2, o.min_cluster_size) or s.nnz == 0:
            self.labels_ = np.full(n, -1, dtype=np.int64)
            self.n_clusters_ = 0
            return self
        d = dense_distances(s, o.max_points, self.name)
        model = _SkHDBSCAN(
            min_cluster_size=o.min_cluster_size,
            min_samples=min(o.min_samples, n - 1) if o.min_samples is not None else min(o.min_cluster_size, n - 1),
            cluster_selection_epsilon=o.cluster_selection_epsilon,
            cluster_selection_method=o.cluster_selection_method,
            metric="precomputed",
            copy=True,
        )
        model.fit(d)
        self.labels_ = consecutive_labels(model.labels_, min_size=1)
        self.probabilities_ = np.asarray(model.probabilities_, dtype=np.float64)
        self.n_clusters_ = int(self.labels_.max() + 1) if (self.labels_ >= 0).any() else 0
        return self


@hookimpl
def register_clusterers():
    return [HDBSCANClusterer]
