"""Which pairs of images are matched: all of them (the paper), or each image with its nearest neighbours.

The paper matches every pair of images (Sec. 3.2), ``N (N - 1) / 2`` pairs: at a thousand
images that is half a million proposal-flow matchings, the run's quadratic wall. Parts that
recur across a class recur between images that look alike, so matching each image only with
its ``K`` most similar images — by a global descriptor, the model's own features of the whole
view — keeps the pairs that carry the recurring parts at a cost of about ``N K``:

    pairs_knn = { {i, j} : j in NN_K(i) or i in NN_K(j) },   NN_K(i) = the K images j != i of
                largest cosine <f_i, f_j>, ties to the smaller index

so every image keeps at least ``K`` partners (more when others choose it), and ``|pairs| <= N K``.

A pairing is written ``all``, ``knn:K`` or ``auto`` (all pairs up to :data:`AUTO_ALL_UP_TO`
images, ``knn:``:data:`AUTO_K` above; both measured in ``docs/scale.md``).
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["AUTO_ALL_UP_TO", "AUTO_K", "parse_pairs", "resolve_pairs", "all_pairs", "knn_pairs", "PAIRS_PATTERN"]

AUTO_ALL_UP_TO = 100  # images; above it ``auto`` matches nearest neighbours only (parts benchmark, docs/scale.md)
AUTO_K = 10  # purity within 0.013 of all pairs at 300 parts images; K = 20 lost 0.07 (docs/scale.md)
PAIRS_PATTERN = r"^(all|auto|knn:[1-9][0-9]*)$"


def parse_pairs(text: str) -> int | None:
    """``"all"`` -> ``None`` (every pair); ``"knn:K"`` -> ``K``. ``ValueError`` for anything else
    (``auto`` is resolved by :func:`resolve_pairs`, which knows the number of images)."""
    m = re.fullmatch(r"knn:([1-9][0-9]*)", text)
    if text == "all":
        return None
    if m:
        return int(m.group(1))
    raise ValueError(f"pairs {text!r}: expected 'all', 'auto' or 'knn:K' with K >= 1")


def resolve_pairs(text: str, n: int) -> int | None:
    """The pairing ``text`` for ``n`` images: ``None`` for all pairs, else ``K``."""
    if text == "auto":
        return None if n <= AUTO_ALL_UP_TO else AUTO_K
    return parse_pairs(text)


def all_pairs(n: int) -> list[tuple[int, int]]:
    """Every unordered pair ``(a, b)``, ``a < b < n``, in row order."""
    return [(a, b) for a in range(n) for b in range(a + 1, n)]


def knn_pairs(features: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The pairs of the module docstring, sorted: ``features [N, C]`` (any scale; compared by cosine)."""
    f = np.asarray(features, dtype=np.float64)
    n = f.shape[0]
    if k >= n - 1:
        return all_pairs(n)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    f = np.divide(f, norm, out=np.zeros_like(f), where=norm > 1e-12)
    pairs: set[tuple[int, int]] = set()
    for start in range(0, n, 1024):  # a block of rows at a time: memory N x 1024, not N x N
        sim = f[start:start + 1024] @ f.T
        rows = np.arange(sim.shape[0])
        sim[rows, start + rows] = -np.inf
        # stable sort of -sim: equal similarities keep index order, so ties go to the smaller index
        nearest = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        for r, js in enumerate(nearest):
            i = start + r
            pairs.update((min(i, int(j)), max(i, int(j))) for j in js)
    return sorted(pairs)
