"""``ssim``: the paper's cluster post-processing by Structural Similarity (Sec. 3.2).

Godi et al. 2018 prune clusters that group visually inconsistent parts: SSIM (Wang et al.
2004) is computed for all pairs of parts of a cluster, and the cluster is discarded when
the median of those values is below a threshold set from the whole class::

    keep(c)  <=>  median_{a<b in c} SSIM(a, b)  >=  ratio * median_{a<b in class} SSIM(a, b)

with ``ratio = 0.9``. The class median runs over all pairs of parts of all the clusters of
the class (pairs inside a cluster and across clusters), so it is the typical similarity of
two arbitrary parts of that class; a cluster must be at least nearly that consistent.

Parts have different sizes, so each is resized to ``size x size`` (grayscale by default).
SSIM is scikit-image's ``structural_similarity`` with its defaults (7x7 uniform window,
sample covariance, K1 = 0.01, K2 = 0.03, data range 255, mean over the window-valid
interior), computed here for a whole stack of pairs at once: it equals
``structural_similarity(a, b, data_range=255)`` (``channel_axis=-1`` in colour) to 1e-6.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from pydantic import Field
from scipy.ndimage import uniform_filter

from visum import ClusterQuality, Component, Options, hookimpl

__all__ = [
    "SSIMOptions",
    "SSIMScorer",
    "resize_parts",
    "pairwise_ssim",
    "all_pairs",
    "sample_pairs",
    "register_scorers",
]

_DATA_RANGE = 255.0
_K1, _K2 = 0.01, 0.03
_CHUNK = 2048  # pairs per vectorised batch (bounds memory: CHUNK * size**2 * 8 bytes per array)


def resize_parts(parts: Sequence[np.ndarray], size: int, colour: bool) -> np.ndarray:
    """Resize every part crop to ``size x size``; grayscale (ITU-R BT.601 luma) unless ``colour``.

    Shapes: ``parts[k] [h_k, w_k, 3]`` uint8 -> ``[K, size, size]`` (or ``[K, size, size, 3]``)
    float64 in ``[0, 255]``.
    """
    shape = (len(parts), size, size, 3) if colour else (len(parts), size, size)
    out = np.empty(shape, dtype=np.float64)
    for k, part in enumerate(parts):
        part = np.ascontiguousarray(part, dtype=np.uint8)
        if part.ndim == 2:
            part = np.repeat(part[:, :, None], 3, axis=2)
        if part.size == 0:
            out[k] = 0.0
            continue
        if not colour:
            part = cv2.cvtColor(part, cv2.COLOR_RGB2GRAY)
        shrink = part.shape[0] >= size and part.shape[1] >= size
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        out[k] = cv2.resize(part, (size, size), interpolation=interp)
    return out


def _local_moments(x: np.ndarray, win_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Window means ``u = E_w[x]`` and ``E_w[x^2]`` of each image of a stack ``[K, h, w(, c)]``."""
    size = (1, win_size, win_size) + ((1,) if x.ndim == 4 else ())
    return uniform_filter(x, size=size), uniform_filter(x * x, size=size)


def pairwise_ssim(
    images: np.ndarray, pairs: np.ndarray, win_size: int = 7, data_range: float = _DATA_RANGE
) -> np.ndarray:
    """Mean SSIM of ``images[a]`` vs ``images[b]`` for every row ``(a, b)`` of ``pairs``.

    Wang et al. 2004, Eq. 13, with window statistics over a ``win_size``² uniform window and
    the sample-covariance factor ``cov = NP / (NP - 1)``, ``NP = win_size**2``::

        SSIM = (2 u_a u_b + C1)(2 cov s_ab + C2) / ((u_a² + u_b² + C1)(cov (s_a + s_b) + C2))

    where ``s`` are the window (co)variances, ``C1 = (0.01 R)²``, ``C2 = (0.03 R)²`` and the
    map is averaged over the pixels at least ``(win_size - 1) / 2`` from the border (and
    over channels for colour stacks) — scikit-image's ``structural_similarity`` defaults.
    Window means of each image are computed once; only ``E_w[a b]`` is per pair.

    Shapes: ``images [K, h, w]`` or ``[K, h, w, c]`` float64, ``pairs [P, 2]`` int -> ``[P]``
    float64 in ``[-1, 1]``.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    out = np.empty(len(pairs), dtype=np.float64)
    if len(pairs) == 0:
        return out
    u, uu = _local_moments(images, win_size)
    np_ = win_size * win_size
    cov_norm = np_ / (np_ - 1.0)
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    var = cov_norm * (uu - u * u)
    pad = (win_size - 1) // 2
    inner = (slice(None), slice(pad, images.shape[1] - pad), slice(pad, images.shape[2] - pad))
    size = (1, win_size, win_size) + ((1,) if images.ndim == 4 else ())
    for start in range(0, len(pairs), _CHUNK):
        a, b = pairs[start : start + _CHUNK].T
        uab = uniform_filter(images[a] * images[b], size=size)
        ua, ub = u[a], u[b]
        cov_ab = cov_norm * (uab - ua * ub)
        num = (2.0 * ua * ub + c1) * (2.0 * cov_ab + c2)
        den = (ua * ua + ub * ub + c1) * (var[a] + var[b] + c2)
        s = (num / den)[inner]
        out[start : start + len(a)] = s.reshape(len(a), -1).mean(axis=1, dtype=np.float64)
    return out


def all_pairs(indices: np.ndarray) -> np.ndarray:
    """Every unordered pair ``(a, b)``, ``a < b`` by position, of ``indices``: ``[n(n-1)/2, 2]``."""
    indices = np.asarray(indices, dtype=np.int64)
    i, j = np.triu_indices(len(indices), k=1)
    return np.stack([indices[i], indices[j]], axis=1)


def sample_pairs(indices: np.ndarray, max_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """All pairs of ``indices`` if there are at most ``max_pairs``, else ``max_pairs`` pairs
    drawn uniformly (with replacement, never a part with itself) by ``rng``. ``[P, 2]``."""
    indices = np.asarray(indices, dtype=np.int64)
    n = len(indices)
    if n * (n - 1) // 2 <= max_pairs:
        return all_pairs(indices)
    a = rng.integers(0, n, size=max_pairs)
    b = rng.integers(0, n - 1, size=max_pairs)
    b = b + (b >= a)  # uniform over the n - 1 others
    return np.stack([indices[a], indices[b]], axis=1)


class SSIMOptions(Options):
    """Options of :class:`SSIMScorer`."""

    ratio: float = Field(
        default=0.9,
        ge=0.0,
        description="A cluster is kept when its median pairwise SSIM is >= ratio x the class's median SSIM (paper: 0.9).",
    )
    size: int = Field(default=32, ge=7, description="Parts are resized to size x size pixels before comparing.")
    colour: bool = Field(
        default=False, description="Compare RGB (SSIM averaged over channels) instead of grayscale."
    )
    win_size: int = Field(default=7, ge=3, description="Side of SSIM's uniform window; odd, at most size.")
    max_pairs: int = Field(
        default=20000,
        ge=1,
        description="At most this many pairs enter a median; beyond it pairs are sampled with random_state.",
    )
    random_state: int = Field(default=0, description="Seed of the pair sampling, so scores are reproducible.")


class SSIMScorer(Component):
    """Keeps the clusters whose parts look alike, relative to the class (Sec. 3.2).

    After :meth:`score`: ``global_median_ssim_`` and ``threshold_`` of the class. Each
    :class:`ClusterQuality` carries ``median_ssim``, ``global_median_ssim``, ``threshold``
    and ``n_parts``. A cluster with fewer than 2 parts has no pair: it is not kept and its
    ``median_ssim`` is -1, SSIM's lowest value (the class median is -1 too when the whole
    class has fewer than two parts).
    """

    name = "ssim"
    summary = "Paper's post-processing: drop clusters whose median pairwise SSIM < 0.9 x the class median"
    Options = SSIMOptions

    def __init__(self, options: SSIMOptions | None = None) -> None:
        super().__init__(options)
        o = self.options
        if o.win_size % 2 != 1 or o.win_size > o.size:
            raise ValueError("win_size must be odd and at most size")

    def score(self, clusters: Sequence[Sequence[np.ndarray]]) -> list[ClusterQuality]:
        o = self.options
        rng = np.random.default_rng(o.random_state)
        sizes = [len(c) for c in clusters]
        parts = [p for c in clusters for p in c]
        images = resize_parts(parts, o.size, o.colour)
        starts = np.cumsum([0] + sizes)

        total = len(parts)
        if total * (total - 1) // 2 <= o.max_pairs:
            # every pair of the class fits: compute each SSIM once, read clusters off the matrix
            pairs = all_pairs(np.arange(total))
            values = pairwise_ssim(images, pairs, o.win_size)
            table = np.zeros((total, total))
            table[pairs[:, 0], pairs[:, 1]] = values
            within = [table[s:e, s:e][np.triu_indices(e - s, k=1)] for s, e in zip(starts[:-1], starts[1:])]
        else:
            values = pairwise_ssim(images, sample_pairs(np.arange(total), o.max_pairs, rng), o.win_size)
            within = [
                pairwise_ssim(images, sample_pairs(np.arange(s, e), o.max_pairs, rng), o.win_size)
                for s, e in zip(starts[:-1], starts[1:])
            ]
        medians = [float(np.median(v)) if len(v) else -1.0 for v in within]
        global_median = float(np.median(values)) if len(values) else -1.0
        threshold = o.ratio * global_median
        self.global_median_ssim_ = global_median
        self.threshold_ = threshold

        return [
            ClusterQuality(
                kept=bool(n >= 2 and med >= threshold),
                quality={
                    "median_ssim": med,
                    "global_median_ssim": global_median,
                    "threshold": threshold,
                    "n_parts": float(n),
                },
            )
            for n, med in zip(sizes, medians)
        ]


@hookimpl
def register_scorers():
    return [SSIMScorer]
