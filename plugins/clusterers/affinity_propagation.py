"""``ap``: Affinity Propagation (Frey & Dueck, Science 2007) on the proposal similarity Corr''.

The paper (Godi et al. 2018, Sec. 3.2) clusters the pruned matrix Corr'' with Affinity
Propagation because it needs one parameter and finds the number of clusters itself. AP
passes "responsibility" and "availability" messages between points until a set of
*exemplars* emerges; each point joins its most similar exemplar.

From sparse to dense. Corr'' is sparse: an absent entry means "no evidence that these two
proposals match", which is weaker than any measured similarity. scikit-learn's AP needs a
dense, finite matrix, so absent pairs get a value strictly below every present similarity
and below the preference (see :func:`densify_similarity`): an absent pair can never be
preferred over a measured one, nor over a point being its own exemplar, yet messages stay
finite and on the scale of the data.

AP still hands every point an exemplar; a point whose exemplar it has no stored
similarity to (possible when ties or the approximate message passing leave it without a
linked exemplar) is unassigned (label -1) rather than put in a cluster without evidence.

The preference ``p`` (the diagonal ``s(k, k)``) is the a-priori suitability of every point
as an exemplar, on the scale of the similarities. A point that is similar to no one by more
than ``p`` prefers to be its own exemplar, so a higher ``p`` gives more, smaller clusters
and a lower ``p`` fewer, larger ones. The default is the median of the present
similarities (Frey & Dueck's recommendation for a moderate number of clusters); use
``preference_quantile`` to move along that scale (e.g. 0.1 for fewer clusters) or set
``preference`` to an absolute value. The authors' code (MATLAB, ``apcluster``) shifts the
similarities so that the largest is 0 and takes 1.3 times their median as the preference;
AP is unchanged by adding one constant to every similarity and the preference, so that is
``s_max + 1.3 (median - s_max)`` on visum's scale: ``preference_scale = 1.3``. Their median is
over the whole dense matrix, same-image blocks included (about one entry in ten with their ten
images); visum's is over the stored cross-image similarities, which for proposal flow are
nearly all of the others.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from sklearn.cluster import AffinityPropagation as _SkAffinityPropagation
from sklearn.exceptions import ConvergenceWarning

from visum import Component, Options, hookimpl

__all__ = [
    "AffinityPropagationOptions",
    "AffinityPropagation",
    "present_offdiagonal_values",
    "densify_similarity",
    "unassign_unlinked",
    "register_clusterers",
]


def present_offdiagonal_values(similarity: sp.spmatrix) -> np.ndarray:
    """The stored off-diagonal entries of a sparse ``[N, N]`` matrix (explicit zeros count as present)."""
    coo = sp.coo_matrix(similarity)
    keep = coo.row != coo.col
    return np.asarray(coo.data[keep], dtype=np.float64)


def densify_similarity(similarity: sp.spmatrix, preference: float) -> tuple[np.ndarray, float]:
    """Dense ``[N, N]`` float64 copy of a sparse similarity, absent entries filled in.

    With ``lo = min(present.min(), preference)`` and ``hi = max(present.max(), preference)``
    the fill value is ``absent = lo - max(hi - lo, 1e-6)``: one data range below everything
    that was measured and below the preference. The diagonal is left at 0 (AP replaces it
    by the preference). Returns ``(S, absent)``.
    """
    n = similarity.shape[0]
    coo = sp.coo_matrix(similarity)
    off = coo.row != coo.col
    rows, cols, vals = coo.row[off], coo.col[off], np.asarray(coo.data[off], dtype=np.float64)
    lo = min(float(vals.min()), preference) if len(vals) else preference
    hi = max(float(vals.max()), preference) if len(vals) else preference
    absent = lo - max(hi - lo, 1e-6)
    dense = np.full((n, n), absent, dtype=np.float64)
    dense[rows, cols] = vals
    np.fill_diagonal(dense, 0.0)
    return dense, absent


def unassign_unlinked(similarity: sp.spmatrix, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Set to -1 the label of every point with no stored similarity to its own exemplar.

    AP gives every point an exemplar, even a point that is linked to no exemplar at all
    (it then picks one through the "absent" fill value). Without evidence of a match such
    a point is left unassigned. Exemplars keep their labels, so labels stay ``0..C-1``.
    Shapes: ``similarity [N, N]`` sparse, ``labels [N]``, ``centers [C]`` -> ``[N]`` int64.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    points = np.flatnonzero(labels >= 0)
    exemplars = centers[labels[points]]
    members = points != exemplars
    points, exemplars = points[members], exemplars[members]
    if len(points) == 0:
        return labels
    coo = sp.coo_matrix(similarity)
    n = similarity.shape[0]
    stored = coo.row.astype(np.int64) * n + coo.col.astype(np.int64)
    linked = np.isin(points * n + exemplars, stored)
    labels[points[~linked]] = -1
    return labels


class AffinityPropagationOptions(Options):
    """Options of :class:`AffinityPropagation`."""

    preference: float | None = Field(
        default=None,
        description=(
            "Exemplar preference s(k,k), on the similarity scale: higher gives more clusters. "
            "None uses the preference_quantile of the present similarities."
        ),
    )
    preference_quantile: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Quantile of the present similarities used as preference when preference is None (0.5 = median).",
    )
    preference_scale: float = Field(
        default=1.0,
        ge=0.0,
        description="Preference = s_max + scale * (quantile - s_max), s_max the largest present similarity: 1 is the "
                    "quantile itself; the authors' MATLAB code shifts Corr so its maximum is 0 and multiplies the "
                    "median by 1.3, which is scale 1.3 (fewer clusters).",
    )
    damping: float = Field(
        default=0.9, ge=0.5, lt=1.0, description="Message damping in [0.5, 1); higher is slower but oscillates less."
    )
    max_iter: int = Field(default=1000, ge=1, description="Maximum number of message-passing iterations.")
    convergence_iter: int = Field(
        default=15, ge=1, description="Stop when the exemplars have not changed for this many iterations."
    )
    random_state: int = Field(
        default=0, description="Seed of the tiny noise scikit-learn adds to break ties between equal similarities."
    )


class AffinityPropagation(Component):
    """Affinity Propagation on a sparse similarity; absent pairs count as dissimilar.

    After :meth:`fit`: ``labels_`` ``[N]`` int64 (``0..C-1``; ``-1`` for a point with no
    stored similarity to its exemplar, and for all points when AP did not converge), ``cluster_centers_indices_`` ``[C]`` int64 (exemplars), ``n_iter_``,
    ``converged_``, ``preference_`` (the value used) and ``absent_similarity_`` (the fill
    value of absent pairs).
    """

    name = "ap"
    summary = "Affinity Propagation (Frey & Dueck 2007) on Corr'', as in the paper; finds the number of clusters"
    Options = AffinityPropagationOptions

    def fit(self, similarity) -> "AffinityPropagation":
        """Cluster the ``[N, N]`` sparse (or dense) similarity; returns ``self``."""
        s = sp.csr_matrix(similarity)
        n = s.shape[0]
        if s.ndim != 2 or s.shape[1] != n:
            raise ValueError(f"similarity must be square, got shape {s.shape}")
        o = self.options
        self.converged_ = True
        self.n_iter_ = 0
        self.absent_similarity_ = float("nan")
        present = present_offdiagonal_values(s)
        if o.preference is not None:
            preference = float(o.preference)
        elif len(present):
            q, top = float(np.quantile(present, o.preference_quantile)), float(present.max())
            preference = q if o.preference_scale == 1.0 else top + o.preference_scale * (q - top)
        else:
            preference = 0.0
        self.preference_ = preference
        if n == 0:
            self.labels_ = np.zeros(0, dtype=np.int64)
            self.cluster_centers_indices_ = np.zeros(0, dtype=np.int64)
            return self
        if n == 1 or len(present) == 0:
            # nothing links any two points: each is its own exemplar
            self.labels_ = np.arange(n, dtype=np.int64)
            self.cluster_centers_indices_ = np.arange(n, dtype=np.int64)
            return self
        dense, absent = densify_similarity(s, preference)
        self.absent_similarity_ = absent
        ap = _SkAffinityPropagation(
            affinity="precomputed",
            preference=preference,
            damping=o.damping,
            max_iter=o.max_iter,
            convergence_iter=o.convergence_iter,
            random_state=o.random_state,
            copy=False,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ap.fit(dense)
        self.n_iter_ = int(ap.n_iter_)
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        if self.converged_:
            centers = np.asarray(ap.cluster_centers_indices_, dtype=np.int64)
            labels = np.asarray(ap.labels_, dtype=np.int64)
            self.labels_ = unassign_unlinked(s, labels, centers)
            self.cluster_centers_indices_ = centers
        else:
            self.labels_ = np.full(n, -1, dtype=np.int64)
            self.cluster_centers_indices_ = np.zeros(0, dtype=np.int64)
        return self


@hookimpl
def register_clusterers():
    return [AffinityPropagation]
