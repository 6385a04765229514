"""Sec. 4.4 of the paper, the maths: specialising a classifier with one linear SVM per summary.

For every kept summary ``S_j`` of class ``c_j`` a linear SVM ``f_j`` is trained on image
features ``phi(x)`` (the paper: the network's first fully connected layer). Positives are
the images of ``S_j``; negatives the images of the other classes and the images of the
other summaries of ``c_j`` that are not in ``S_j``. An image ``x`` then gets the class scores

    s_c(x) = max_{j : c_j = c} f_j(phi(x))        (-inf for a class without summaries)

normalised to sum to one, ``q(x) = softmax(s(x))``, and the specialised prediction is

    p_lambda(x) = (1 - lambda) * softmax(z(x)) + lambda * q(x),      lambda in [0, 1],

with ``z`` the network's logits and ``lambda`` the convex weight chosen on a validation split.

The paper says "normalized to sum to unity" without saying how; SVM margins can be
negative, so this module normalises them with a softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC


@dataclass(frozen=True)
class Summary:
    """One kept summary: its class and the indices of its images in the training set."""

    label: int
    images: tuple[int, ...]


def training_set(summaries: Sequence[Summary], j: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [M], targets [M] in {0, 1})`` of the SVM of summary ``j`` (Sec. 4.4).

    Positives: the images of summary ``j``. Negatives: every training image whose label is
    not ``summaries[j].label``, and the images of the other summaries of that class that are
    not positives. Images of the class in no summary are left out.
    """
    labels = np.asarray(labels)
    own = summaries[j]
    pos = np.array(sorted(set(own.images)), dtype=np.int64)
    others = {i for k, s in enumerate(summaries) if k != j and s.label == own.label for i in s.images}
    neg = np.union1d(np.flatnonzero(labels != own.label), np.array(sorted(others - set(own.images)), dtype=np.int64))
    idx = np.concatenate([pos, neg.astype(np.int64)])
    y = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(neg), np.int64)])
    return idx, y


class SummarySVMs:
    """One linear SVM per summary on standardised features (scikit-learn conventions).

    ``fit(features [N, D], labels [N], summaries)``; then ``decision_function(features)``
    gives ``[N', S]`` margins and ``class_scores(features)`` the ``[N', K]`` scores ``s_c``.
    Learned: ``scaler_``, ``svms_`` (one :class:`~sklearn.svm.LinearSVC` per summary),
    ``summary_labels_`` ``[S]``. Classes are weighted inversely to their frequency, since a
    summary has a few positives against many negatives.
    """

    def __init__(self, n_classes: int, C: float = 1.0, seed: int = 0, max_iter: int = 20_000) -> None:
        self.n_classes = n_classes
        self.C = C
        self.seed = seed
        self.max_iter = max_iter

    def fit(self, features: np.ndarray, labels: np.ndarray, summaries: Sequence[Summary]) -> SummarySVMs:
        features = np.asarray(features, np.float64)
        labels = np.asarray(labels)
        if features.ndim != 2 or len(features) != len(labels):
            raise ValueError(f"SummarySVMs.fit: features {features.shape} do not match labels {labels.shape}")
        self.scaler_ = StandardScaler().fit(features)
        z = self.scaler_.transform(features)
        self.svms_: list[LinearSVC] = []
        kept: list[int] = []
        for j, s in enumerate(summaries):
            if not 0 <= s.label < self.n_classes:
                raise ValueError(f"summary {j}: label {s.label} outside 0..{self.n_classes - 1}")
            idx, y = training_set(summaries, j, labels)
            if y.min() == y.max():  # no negatives (or no positives): nothing to separate
                continue
            svm = LinearSVC(C=self.C, class_weight="balanced", random_state=self.seed, max_iter=self.max_iter)
            self.svms_.append(svm.fit(z[idx], y))
            kept.append(s.label)
        self.summary_labels_ = np.asarray(kept, dtype=np.int64)
        return self

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """Margins ``f_j(phi(x))``: ``[N, S]`` (``S`` = fitted SVMs)."""
        z = self.scaler_.transform(np.asarray(features, np.float64))
        if not self.svms_:
            return np.zeros((len(z), 0))
        return np.stack([svm.decision_function(z) for svm in self.svms_], axis=1)

    def class_scores(self, features: np.ndarray) -> np.ndarray:
        """``s_c = max_j f_j`` over the summaries of class ``c``: ``[N, K]``, ``-inf`` where ``c`` has none."""
        return class_scores(self.decision_function(features), self.summary_labels_, self.n_classes)


def class_scores(margins: np.ndarray, summary_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Best margin per class: ``margins [N, S]``, ``summary_labels [S]`` → ``[N, K]`` (``-inf`` for no summary)."""
    margins = np.asarray(margins, np.float64)
    out = np.full((margins.shape[0], n_classes), -np.inf)
    for c in np.unique(summary_labels):
        out[:, c] = margins[:, summary_labels == c].max(axis=1)
    return out


def normalise_scores(scores: np.ndarray) -> np.ndarray:
    """Rows of ``scores [N, K]`` to probabilities: ``softmax``, ``-inf`` → 0, a row of ``-inf`` → uniform."""
    scores = np.asarray(scores, np.float64)
    top = scores.max(axis=1, keepdims=True)
    empty = ~np.isfinite(top[:, 0])
    e = np.exp(scores - np.where(np.isfinite(top), top, 0.0))
    e[empty] = 1.0
    return e / e.sum(axis=1, keepdims=True)


def combine(p_net: np.ndarray, q_svm: np.ndarray, weight: float) -> np.ndarray:
    """The convex combination ``(1 - lambda) p_net + lambda q_svm`` of two ``[N, K]`` probability arrays."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"combine: weight {weight} is not in [0, 1]")
    return (1.0 - weight) * np.asarray(p_net) + weight * np.asarray(q_svm)


@dataclass(frozen=True)
class WeightChoice:
    """The chosen ``lambda`` and the validation accuracy at every weight of the grid."""

    weight: float
    grid: tuple[float, ...]
    accuracies: tuple[float, ...]

    @property
    def accuracy(self) -> float:
        return self.accuracies[self.grid.index(self.weight)]


def choose_weight(p_net: np.ndarray, q_svm: np.ndarray, labels: np.ndarray, steps: int = 21) -> WeightChoice:
    """``lambda`` on the grid ``0, 1/(steps-1), ..., 1`` maximising validation accuracy; ties → the smallest.

    ``lambda = 0`` (the network alone) is on the grid, so the choice never lowers the
    validation accuracy below the network's.
    """
    if steps < 2:
        raise ValueError("choose_weight: steps must be at least 2")
    labels = np.asarray(labels)
    grid = tuple(round(float(w), 10) for w in np.linspace(0.0, 1.0, steps))
    accs = tuple(float((combine(p_net, q_svm, w).argmax(1) == labels).mean()) for w in grid)
    best = int(np.argmax(accs))  # first maximum: the smallest weight
    return WeightChoice(grid[best], grid, accs)


def mcnemar_p(fixed: int, broken: int) -> float:
    """Exact two-sided McNemar p-value of a change that fixed ``fixed`` and broke ``broken`` test images.

    Under "no difference" each changed image is fixed or broken with probability 1/2, so the
    p-value is the binomial test of ``fixed`` successes in ``fixed + broken`` trials; 1 when
    nothing changed.
    """
    from scipy.stats import binomtest

    n = int(fixed) + int(broken)
    return float(binomtest(int(fixed), n, 0.5).pvalue) if n else 1.0
