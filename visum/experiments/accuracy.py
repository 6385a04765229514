"""Sec. 4.3 of the paper, the maths: number of summaries against classification accuracy.

The paper counts the kept summaries of 18 ImageNet classes for four networks and compares
their mean with each network's top-1 accuracy (Table 3). Here the same two numbers are
computed for any set of models; the correlation between them is Spearman's rank
correlation

    rho = Pearson(rank(a), rank(m)),

with ``a_j`` the held-out accuracy of model ``j`` and ``m_j`` its mean number of kept
summaries per class (ties get their average rank).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Table 3 of Godi, Carletti et al. (BMVC 2018): (network, mean summaries per class, ImageNet top-1).
PAPER_TABLE3: tuple[tuple[str, float, float], ...] = (
    ("AlexNet", 5.0, 0.571),
    ("VGG16", 5.5, 0.724),
    ("GoogLeNet", 6.0, 0.745),
    ("ResNet50", 6.3, 0.762),
)


@dataclass(frozen=True)
class Correlation:
    """Spearman's ``rho`` and its two-sided p-value (``nan`` when undefined) over ``n`` models."""

    rho: float
    p_value: float
    n: int


EXACT_UP_TO = 8  # n! pairings enumerated for the p-value up to this many models


def spearman(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Spearman's rank correlation of ``x`` and ``y`` (``[n]`` each), via :func:`scipy.stats.spearmanr`.

    The two-sided p-value is exact for ``n <= 8`` (all ``n!`` pairings of ``x`` with ``y``;
    with 4 or 5 models the t approximation of ``spearmanr`` is far too optimistic: it gives
    p = 0 for a perfect ranking of 4, whose exact p is 2/24), and ``spearmanr``'s beyond.
    Undefined (``nan``) with fewer than 3 models or when either sequence is constant.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman: expected two sequences of the same length, got {x.shape} and {y.shape}")
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), n)
    res = stats.spearmanr(x, y)
    p = float(res.pvalue)
    if n <= EXACT_UP_TO:
        exact = stats.permutation_test(
            (x,), lambda xs: stats.spearmanr(xs, y).statistic, permutation_type="pairings",
            alternative="two-sided", n_resamples=np.inf,
        )
        p = float(exact.pvalue)
    return Correlation(float(res.statistic), p, n)


def top1_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``predicted[i] == labels[i]`` (``[N]`` ints each); ``nan`` for no images."""
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    if predicted.shape != labels.shape:
        raise ValueError(f"top1_accuracy: shapes {predicted.shape} and {labels.shape} differ")
    return float((predicted == labels).mean()) if labels.size else float("nan")


def first_correct(predicted: np.ndarray, label: int, n: int) -> np.ndarray:
    """Indices of the first ``n`` entries of ``predicted`` (``[N]``) equal to ``label``, in order.

    Every model explains its class on the same number of images it classifies correctly,
    so a weak model does not get fewer summaries merely because it has fewer images.
    """
    return np.flatnonzero(np.asarray(predicted) == int(label))[: int(n)]


def mean_kept(kept_per_class: Sequence[int]) -> float:
    """The paper's per-network figure: kept summaries averaged over the explained classes."""
    return float(np.mean(kept_per_class)) if len(kept_per_class) else float("nan")
