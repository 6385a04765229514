"""Shared by the clusterers that need distances or a clean affinity: Corr'' as they want it.

Corr'' is a sparse similarity ``S`` (``[N, N]``, symmetric, ``>= 0``, zero diagonal); an
absent entry means "no evidence that these two proposals match". Clusterers that work on
distances use ``D = 1 - S / s_max`` with ``s_max = max(1, max S)``: for the built-in matchers
(scores in ``[0, 1]``) this is ``1 - S``, and an absent pair is at the largest distance, 1.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from visum.errors import ConfigError

__all__ = ["clean_affinity", "consecutive_labels", "dense_distances", "similarity_scale"]


def clean_affinity(similarity) -> sp.csr_matrix:
    """``(S + S^T) / 2`` with negatives and the diagonal removed, explicit zeros dropped.

    Shapes: ``[N, N]`` sparse or dense -> ``[N, N]`` ``csr_matrix`` float64.
    """
    s = sp.csr_matrix(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"similarity must be square, got shape {s.shape}")
    s = ((s + s.T) * 0.5).tocsr()
    s.setdiag(0.0)
    s.data[~np.isfinite(s.data) | (s.data < 0)] = 0.0
    s.eliminate_zeros()
    return s


def similarity_scale(s: sp.csr_matrix) -> float:
    """``s_max = max(1, max S)``: the similarity that maps to distance 0."""
    return max(1.0, float(s.data.max())) if s.nnz else 1.0


def dense_distances(s: sp.csr_matrix, max_points: int, who: str) -> np.ndarray:
    """``D = 1 - S / s_max`` as a dense ``[N, N]`` float64 array (absent pairs at 1, diagonal 0).

    Refuses (``ConfigError`` naming ``who``) when ``N > max_points``: the matrix takes
    ``8 N^2`` bytes and the clusterer a few copies of it.
    """
    n = s.shape[0]
    if n > max_points:
        raise ConfigError(
            f"clusterer '{who}': {n} proposals would need a dense {n}x{n} distance matrix "
            f"({8 * n * n / 1e9:.1f} GB per copy), above max_points={max_points}; raise it with "
            f"--opt clusterer.max_points=N if memory allows, or sparsify Corr (pruning.min_score)"
        )
    d = np.ones((n, n), dtype=np.float64)
    coo = s.tocoo()
    d[coo.row, coo.col] = 1.0 - coo.data / similarity_scale(s)
    np.fill_diagonal(d, 0.0)
    return np.clip(d, 0.0, 1.0)


def consecutive_labels(labels: np.ndarray, min_size: int = 2) -> np.ndarray:
    """Clusters of fewer than ``min_size`` points become ``-1``; the others are renumbered
    ``0..C-1`` in order of their first point. ``[N]`` int -> ``[N]`` int64."""
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full(len(labels), -1, dtype=np.int64)
    valid = labels >= 0
    if not valid.any():
        return out
    values, first, counts = np.unique(labels[valid], return_index=True, return_counts=True)
    order = np.argsort(first)
    next_id = 0
    for k in order:
        if counts[k] >= min_size:
            out[labels == values[k]] = next_id
            next_id += 1
    return out
