"""``proposal-flow``: HOG appearance times local offset matching (Ham et al., CVPR 2016).

The paper (Godi et al. 2018, Sec. 3.2) scores the proposals of two images with Proposal
Flow, whose best variant is *local offset matching* (LOM): a match is trusted when it is
both similar in appearance and moved the way its neighbours move. This module implements
that idea from its published description (no code of the reference implementation).

Notation. Image ``i`` has proposals ``k = 1..M_i``, image ``j`` proposals ``l = 1..M_j``.
A box has centre ``c`` (pixels), scale ``s = sqrt(w h)`` and aspect ``a = w / h``.

1. **Appearance** (:func:`appearance_similarity`). Each proposal is described by the HOG
   descriptor of :mod:`visum_plugins.matchers.hog` (padded crop, fixed grid of cells,
   unit norm): ``A(k, l) = max(0, <f_k, f_l>)``. With ``appearance="whitened"`` the
   descriptors are first whitened with the statistics of the pair's ``M_i + M_j``
   descriptors, ``f -> (Sigma + lambda I)^(-1/2) (f - mu)``, renormalised (a stand-in for
   the whitened HOG of Proposal Flow, whose background statistics come from a large
   image collection we do not have).

2. **Aspect rule** (:func:`aspect_compatible`). ``A(k, l) = 0`` when
   ``max(a_k / a_l, a_l / a_k) > aspect_limit`` (2 by default): a proposal is not matched
   to one whose shape differs by more than that.

3. **Offsets.** A match ``(k, l)`` moves ``k`` by the translation ``t(k, l) = c_l - c_k``
   and the log-scale ``sigma(k, l) = log s_l - log s_k``. Deviations between offsets are
   measured relative to the size of ``k`` and in units of the decay widths::

       d^2 = || (t - t') / s_k ||^2 / tau_t^2  +  (sigma - sigma')^2 / tau_s^2

4. **Votes** (:func:`neighbour_votes`). Each neighbour ``n`` of ``k`` in image ``i``
   (:func:`neighbourhoods`: by default the ``K = 16`` proposals with the nearest
   centres, or those overlapping ``k``; ``k`` itself excluded) takes its own best match
   ``b(n) = argmax_l A'(n, l)`` and predicts where ``k`` goes by carrying ``k``'s position
   relative to ``n`` along with the neighbour's scale change ``rho = s_b(n) / s_n``::

       t_hat(k; n) = c_b(n) + rho (c_k - c_n) - c_k,      sigma_hat(k; n) = log rho

   A vote weighs ``omega(k, n) * v(n)``: the neighbourhood weight times the confidence of
   the neighbour's best match (``vote_weight``): by default its *distinctiveness*, the
   score ``A'(n, b(n))`` minus the best score among the proposals of ``j`` that do not
   overlap ``b(n)`` (IoU < 0.5) — a neighbour whose appearance is ambiguous (a repeated
   pattern) hardly votes; or the score itself; or 1.

5. **Consensus** (:func:`consensus_offsets`). The votes for ``k`` are summarised by a
   robust offset ``(t*_k, sigma*_k)`` in the metric of step 3:

   * ``"affine"`` (default) — the mode of the votes (:func:`densest_vote`: the vote with
     most weighted support within one decay width, refined by mean shift; it stays on
     the inliers even when they are fewer than half, as happens when most neighbours'
     best matches are wrong), then the translation of a weighted local affine fit of the
     neighbours' correspondences ``c_n -> c_b(n)`` around ``c_k``, the votes weighted by
     their agreement with the mode (:func:`local_affine_translation`). The fit captures
     the local rotation and shear that step 4's similarity transfer ignores (a 15°
     rotation moves a point half a box away by 0.13 box sides);
   * ``"mode"`` — the mode alone;
   * ``"median"`` / ``"geometric"`` — the weighted coordinate-wise median / weighted
     geometric median (Weiszfeld; the consensus Proposal Flow describes); they need a majority of
     correct votes.

   A proposal without any weighted vote falls back to the image-wide median of all votes.
   On the development seed of the correspondence benchmark (``docs/matching.md``) the
   share of photo proposals whose consensus lands within 0.1 box side of the truth rises
   from 0.57 (median, overlap neighbourhoods, appearance weights) to 0.74 (affine, nearest
   neighbours, distinctiveness); the final PCK@0.1 gains less, because choosing among
   the proposals near the prediction adds its own error.

6. **Confidence** (:func:`local_offset_matching`, :func:`offset_decay`)::

       Q(k, l) = A'(k, l) * exp(-d^2((t(k, l), sigma(k, l)), (t*_k, sigma*_k)) / 2)

   i.e. appearance times a Gaussian around the box the neighbours predict for ``k``. With
   ``rounds > 1`` the best matches of step 4 are re-chosen from ``Q`` of the previous
   round (not better on the benchmark, so 1 by default). With ``symmetric=True`` the
   geometric factor is the geometric mean of the factor computed from ``i``'s
   neighbourhoods and the one computed from ``j``'s (transposed), so
   ``match(d_i, d_j) == match(d_j, d_i).T``.

``describe`` does the per-image work once (HOG, box geometry, neighbourhoods, the
proposal overlap graph); ``match`` is vectorised over all ``M_i x M_j`` pairs (no loop
over proposals), ``O(M_i M_j + M_i K)`` memory for ``K`` neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from visum import Component, cacheable, hookimpl
from visum.geometry import box_iou, iou_and_containment
from visum_plugins.matchers.hog import HOG, HOGOptions, cosine_similarity_nonneg

__all__ = [
    "ProposalFlowOptions",
    "ProposalFlowDescription",
    "ProposalFlow",
    "box_geometry",
    "neighbourhoods",
    "aspect_compatible",
    "appearance_similarity",
    "whitened_similarity",
    "best_matches",
    "neighbour_votes",
    "weighted_median",
    "geometric_median",
    "densest_vote",
    "local_affine_translation",
    "consensus_offsets",
    "offset_decay",
    "local_offset_matching",
    "register_matchers",
]

_DUPLICATE_IOU = 0.5  # two proposals of one image overlapping this much are "the same place"


# --------------------------------------------------------------------------- per image


def box_geometry(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres, log-scales and log-aspects of ``[x0, y0, x1, y1]`` boxes (exclusive ends).

    ``c = ((x0 + x1) / 2, (y0 + y1) / 2)``, ``log s = (log w + log h) / 2``, ``log a = log w - log h``.
    Shapes: ``[M, 4]`` -> ``[M, 2]``, ``[M]``, ``[M]`` float64 (sides floored at 1 px).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.maximum(b[:, 2] - b[:, 0], 1.0)
    h = np.maximum(b[:, 3] - b[:, 1], 1.0)
    centres = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    return centres, 0.5 * (np.log(w) + np.log(h)), np.log(w) - np.log(h)


def neighbourhoods(
    boxes: np.ndarray,
    kind: Literal["overlap", "nearest"],
    min_overlap: float,
    max_neighbours: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The neighbours ``N(k)`` of every proposal of one image, ``k`` itself excluded.

    * ``"overlap"`` — proposals whose containment ``|k ∩ n| / min(|k|, |n|)`` is at least
      ``min_overlap`` (one mostly inside the other, or both overlapping much), the
      ``max_neighbours`` of highest IoU among them, weighted by ``omega = 0.5 + 0.5 IoU``;
    * ``"nearest"`` — the ``max_neighbours`` proposals with the nearest centres, distances
      measured in units of ``s_k``, weighted by ``omega = 1 / (1 + ||c_k - c_n|| / s_k)``.

    Returns ``index [M, K]`` int64 and ``weight [M, K]`` float64 (0 marks padding, whose
    index is 0), ``K = min(max_neighbours, M - 1)``.
    """
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    m = len(boxes)
    k = max(0, min(int(max_neighbours), m - 1))
    if k == 0:
        return np.zeros((m, 0), dtype=np.int64), np.zeros((m, 0), dtype=np.float64)
    centres, log_s, _ = box_geometry(boxes)
    if kind == "overlap":
        iou, contain = iou_and_containment(boxes, boxes)
        eligible = contain >= min_overlap
        np.fill_diagonal(eligible, False)
        score = np.where(eligible, 1.0 + iou, 0.0)  # eligible first, then by IoU
        weight_all = np.where(eligible, 0.5 + 0.5 * iou, 0.0)
    elif kind == "nearest":
        dist = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2) / np.exp(log_s)[:, None]
        np.fill_diagonal(dist, np.inf)
        score = -dist
        weight_all = np.where(np.isfinite(dist), 1.0 / (1.0 + dist), 0.0)
    else:
        raise ValueError(f"unknown neighbourhood {kind!r}")
    index = np.argpartition(-score, k - 1, axis=1)[:, :k] if k < m - 1 else np.tile(np.arange(m), (m, 1))
    top = np.take_along_axis(score, index, axis=1)
    order = np.lexsort((index, -top), axis=1)  # best first, ties by index: deterministic
    index = np.take_along_axis(index, order, axis=1)[:, :k]
    weight = np.take_along_axis(weight_all, index, axis=1)
    index = np.where(weight > 0, index, 0)
    return index, weight


# --------------------------------------------------------------------------- per pair


def aspect_compatible(log_aspect_i: np.ndarray, log_aspect_j: np.ndarray, aspect_limit: float) -> np.ndarray:
    """``|log a_k - log a_l| <= log(aspect_limit)``: ``[M_i], [M_j] -> [M_i, M_j]`` bool."""
    diff = np.abs(np.asarray(log_aspect_i)[:, None] - np.asarray(log_aspect_j)[None, :])
    return diff <= np.log(aspect_limit) + 1e-9


def whitened_similarity(f_i: np.ndarray, f_j: np.ndarray, shrinkage: float) -> np.ndarray:
    """Cosine similarity, clamped at 0, of descriptors whitened with the pair's statistics.

    ``mu`` and ``Sigma`` are the mean and covariance of the ``M_i + M_j`` rows; each row
    becomes ``W (f - mu)`` with ``W = (Sigma + lambda I)^(-1/2)``,
    ``lambda = shrinkage * trace(Sigma) / D``, then is L2-normalised. Shapes:
    ``[M_i, D], [M_j, D] -> [M_i, M_j]`` float32 in ``[0, 1]``.
    """
    f = np.concatenate([f_i, f_j]).astype(np.float64)
    if len(f) < 2 or f.shape[1] == 0:
        return cosine_similarity_nonneg(f_i, f_j)
    mu = f.mean(axis=0)
    x = f - mu
    cov = x.T @ x / len(f)
    lam = shrinkage * max(np.trace(cov) / cov.shape[0], 1e-12)
    vals, vecs = np.linalg.eigh(cov)
    w = (vecs / np.sqrt(np.maximum(vals, 0.0) + lam)) @ vecs.T
    z = x @ w
    zero = ~np.any(f != 0, axis=1)  # a flat crop stays the zero vector: it matches nothing
    z[zero] = 0.0
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    z = np.divide(z, norm, out=np.zeros_like(z), where=norm > 1e-12).astype(np.float32)
    return cosine_similarity_nonneg(z[: len(f_i)], z[len(f_i) :])


def appearance_similarity(
    f_i: np.ndarray, f_j: np.ndarray, kind: Literal["cosine", "whitened"], shrinkage: float
) -> np.ndarray:
    """``A(k, l)``: clamped cosine of HOG descriptors, plain or whitened. ``[M_i, M_j]`` float32."""
    if kind == "cosine":
        return cosine_similarity_nonneg(f_i, f_j)
    if kind == "whitened":
        return whitened_similarity(f_i, f_j, shrinkage)
    raise ValueError(f"unknown appearance {kind!r}")


def best_matches(
    scores: np.ndarray, duplicate_j: np.ndarray, vote_weight: Literal["uniform", "appearance", "distinctiveness"]
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best column ``b(k) = argmax_l S(k, l)`` and the confidence ``v(k)`` of its vote.

    ``v = S(k, b)`` (``"appearance"``), ``S(k, b) - max{S(k, l) : IoU(l, b) < 0.5}``
    (``"distinctiveness"``, the margin over the best match elsewhere) or ``1``
    (``"uniform"``); ``v = 0`` when the whole row is 0 (``k`` can match nothing).
    ``scores [M_i, M_j]``, ``duplicate_j [M_j, M_j]`` bool (IoU >= 0.5) -> ``[M_i]`` int64, ``[M_i]`` float64.
    """
    best = np.argmax(scores, axis=1)
    top = np.take_along_axis(scores, best[:, None], axis=1)[:, 0].astype(np.float64)
    if vote_weight == "appearance":
        conf = top
    elif vote_weight == "distinctiveness":
        elsewhere = np.where(duplicate_j[best], 0.0, scores).max(axis=1)
        conf = np.maximum(top - elsewhere, 0.0)
    elif vote_weight == "uniform":
        conf = np.ones_like(top)
    else:
        raise ValueError(f"unknown vote_weight {vote_weight!r}")
    return best, np.where(top > 0, conf, 0.0)


def neighbour_votes(
    centres_i: np.ndarray,
    log_scale_i: np.ndarray,
    centres_j: np.ndarray,
    log_scale_j: np.ndarray,
    neighbours: np.ndarray,
    best: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The offsets neighbours predict for each proposal, by similarity transfer (step 4).

    For ``n = N(k)[m]`` with best match ``b = best[n]`` and ``rho = s_b / s_n``::

        t_hat = c_b + rho (c_k - c_n) - c_k        sigma_hat = log s_b - log s_n

    Shapes: ``centres_i [M_i, 2]``, ``log_scale_i [M_i]``, ``centres_j [M_j, 2]``,
    ``log_scale_j [M_j]``, ``neighbours [M_i, K]``, ``best [M_i]`` ->
    ``t_hat [M_i, K, 2]`` (pixels), ``sigma_hat [M_i, K]``.
    """
    b = best[neighbours]  # [M_i, K]
    sigma = log_scale_j[b] - log_scale_i[neighbours]
    rho = np.exp(sigma)[..., None]
    rel = centres_i[:, None, :] - centres_i[neighbours]  # c_k - c_n
    t_hat = centres_j[b] + rho * rel - centres_i[:, None, :]
    return t_hat, sigma


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted median along the last axis: the smallest ``v`` with ``sum{w : x <= v} >= W / 2``.

    ``values [..., K]``, ``weights [..., K] >= 0`` -> ``[...]``; rows of zero total weight
    give 0.
    """
    order = np.argsort(values, axis=-1, kind="stable")
    v = np.take_along_axis(values, order, axis=-1)
    w = np.take_along_axis(weights, order, axis=-1)
    cum = np.cumsum(w, axis=-1)
    half = 0.5 * cum[..., -1:]
    idx = np.argmax(cum >= half - 1e-12 * np.maximum(half, 1.0), axis=-1)
    out = np.take_along_axis(v, idx[..., None], axis=-1)[..., 0]
    return np.where(cum[..., -1] > 0, out, 0.0)


def geometric_median(points: np.ndarray, weights: np.ndarray, iterations: int = 30) -> np.ndarray:
    """Weighted geometric median ``argmin_z sum_m w_m ||x_m - z||`` of each set of points.

    Weiszfeld's iterations, started at the coordinate-wise weighted median, vectorised
    over the sets; a distance floor of ``1e-6`` keeps a point that coincides with the
    current estimate from dividing by zero. ``points [S, K, D]``, ``weights [S, K]`` -> ``[S, D]``.
    """
    z = np.stack([weighted_median(points[..., d], weights) for d in range(points.shape[-1])], axis=-1)
    total = weights.sum(axis=1, keepdims=True)
    for _ in range(iterations):
        dist = np.linalg.norm(points - z[:, None, :], axis=2)
        inv = weights / np.maximum(dist, 1e-6)
        norm = inv.sum(axis=1, keepdims=True)
        z = np.where(total > 0, (inv[..., None] * points).sum(axis=1) / np.maximum(norm, 1e-300), z)
    return z


def densest_vote(points: np.ndarray, weights: np.ndarray, refine: int = 3) -> np.ndarray:
    """Weighted mode of each set of points: the vote with the most weighted support, refined.

    Support of vote ``m``: ``sum_m' w_m' exp(-||x_m - x_m'||^2 / 2)`` (unit Gaussian kernel,
    the points being in the decay metric, so "close" means within one decay width). The
    best-supported vote is then moved by ``refine`` mean-shift steps with the same kernel.
    Unlike a median, it stays on the inliers when they are fewer than half the votes, as
    long as they agree with each other more than the outliers do.
    ``points [S, K, D]``, ``weights [S, K]`` -> ``[S, D]`` (0 for a set without weight).
    """
    if points.shape[1] == 0:
        return np.zeros((points.shape[0], points.shape[2]))
    d2 = ((points[:, :, None, :] - points[:, None, :, :]) ** 2).sum(axis=3)  # [S, K, K]
    support = (np.exp(-0.5 * d2) * weights[:, None, :]).sum(axis=2)
    support = np.where(weights > 0, support, -1.0)
    z = np.take_along_axis(points, np.argmax(support, axis=1)[:, None, None], axis=1)[:, 0]
    for _ in range(refine):
        k = weights * np.exp(-0.5 * ((points - z[:, None, :]) ** 2).sum(axis=2))
        norm = k.sum(axis=1, keepdims=True)
        z = np.where(norm > 0, (k[..., None] * points).sum(axis=1) / np.maximum(norm, 1e-300), z)
    return np.where(weights.sum(axis=1, keepdims=True) > 0, z, 0.0)


def local_affine_translation(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, rho: np.ndarray, ridge: float
) -> np.ndarray:
    """Translation at the origin of a weighted local affine fit ``y ~ L x + t``, for each set.

    Minimises ``sum_m w_m ||L x_m + t - y_m||^2 + ridge * W * ||L - rho I||_F^2``
    (``W = sum_m w_m``): the ridge pulls the linear part towards the isotropic scale
    ``rho`` so that few or collinear neighbours still give a well-posed fit; with many
    well-spread neighbours ``L`` captures rotation, shear and anisotropic scale, which the
    per-vote similarity transfer cannot. Batched 3 x 3 normal equations.
    ``x, y [S, K, 2]``, ``weights [S, K]``, ``rho [S]`` -> ``t [S, 2]``.
    """
    s = x.shape[0]
    xt = np.concatenate([x, np.ones(x.shape[:2] + (1,))], axis=2)  # [S, K, 3]
    wx = weights[..., None] * xt
    gram = np.einsum("ska,skb->sab", wx, xt)  # [S, 3, 3]
    rhs = np.einsum("ska,skb->sab", wx, y)  # [S, 3, 2]
    total = weights.sum(axis=1)
    prior = np.zeros((s, 3, 2))
    prior[:, 0, 0] = prior[:, 1, 1] = rho
    d = np.diag([1.0, 1.0, 0.0])
    lam = (ridge * total)[:, None, None]
    gram = gram + lam * d + 1e-9 * np.eye(3)
    rhs = rhs + lam * (d @ prior)
    theta = np.linalg.solve(gram, rhs)  # rows: L^T (2), t (1)
    return theta[:, 2, :]


def consensus_offsets(
    t_hat: np.ndarray,
    sigma_hat: np.ndarray,
    weights: np.ndarray,
    scale_i: np.ndarray,
    tau_t: float,
    tau_s: float,
    kind: Literal["median", "geometric", "mode", "affine"],
    rel: np.ndarray | None = None,
    ridge: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust consensus ``(t*_k, sigma*_k)`` of each proposal's votes (step 5).

    Votes are mapped to the metric space ``z = (t / (s_k tau_t), sigma / tau_s)`` and
    summarised there by the weighted coordinate-wise median, the geometric median, or the
    mode (:func:`densest_vote`). ``"affine"`` takes the mode's inliers (votes weighted by
    ``exp(-||z - mode||^2 / 2)``) and replaces its translation by that of a local affine
    fit (:func:`local_affine_translation`) of the neighbours' correspondences
    ``c_n - c_k -> c_b(n) - c_k`` (in units of ``s_k``; needs ``rel = c_k - c_n``).
    A proposal with no weighted vote takes the image-wide median of all votes.
    ``t_hat [M, K, 2]``, ``sigma_hat [M, K]``, ``weights [M, K]``, ``scale_i [M]`` (pixels),
    ``rel [M, K, 2]`` -> ``t* [M, 2]`` (pixels), ``sigma* [M]``.
    """
    m = t_hat.shape[0]
    if m == 0:
        return np.zeros((0, 2)), np.zeros(0)
    unit = (scale_i * tau_t)[:, None, None]
    z = np.concatenate([t_hat / unit, sigma_hat[..., None] / tau_s], axis=2)  # [M, K, 3]
    has_votes = weights.sum(axis=1) > 0
    if kind == "median":
        centre = np.stack([weighted_median(z[..., d], weights) for d in range(3)], axis=1)
    elif kind == "geometric":
        centre = geometric_median(z, weights)
    elif kind in ("mode", "affine"):
        centre = densest_vote(z, weights)
        if kind == "affine":
            if rel is None:
                raise ValueError("consensus='affine' needs rel")
            inlier = weights * np.exp(-0.5 * ((z - centre[:, None, :]) ** 2).sum(axis=2))
            x = -rel / scale_i[:, None, None]
            y = t_hat / scale_i[:, None, None] + np.exp(sigma_hat)[..., None] * x
            t_fit = local_affine_translation(x, y, inlier, np.exp(centre[:, 2] * tau_s), ridge)
            centre = np.concatenate([t_fit / tau_t, centre[:, 2:]], axis=1)
    else:
        raise ValueError(f"unknown consensus {kind!r}")
    t_star = centre[:, :2] * unit[:, 0]
    s_star = centre[:, 2] * tau_s
    if not has_votes.all():
        # image-wide fallback: median of every vote in pixels / log-scale
        flat_w = weights.reshape(-1)
        if flat_w.sum() > 0:
            g_t = np.stack([weighted_median(t_hat[..., d].reshape(-1), flat_w) for d in range(2)])
            g_s = weighted_median(sigma_hat.reshape(-1), flat_w)
        else:
            g_t, g_s = np.zeros(2), 0.0
        t_star[~has_votes] = g_t
        s_star[~has_votes] = g_s
    return t_star, s_star


def offset_decay(
    centres_i: np.ndarray,
    log_scale_i: np.ndarray,
    centres_j: np.ndarray,
    log_scale_j: np.ndarray,
    t_star: np.ndarray,
    s_star: np.ndarray,
    tau_t: float,
    tau_s: float,
) -> np.ndarray:
    """``exp(-d^2 / 2)`` between every match's offset and its row's consensus (steps 3, 6).

    ``d^2 = ||c_l - (c_k + t*_k)||^2 / (s_k tau_t)^2 + (log s_l - log s_k - sigma*_k)^2 / tau_s^2``,
    i.e. a Gaussian around the box that the consensus predicts for ``k`` in image ``j``.
    Shapes: ``[M_i, 2], [M_i], [M_j, 2], [M_j], [M_i, 2], [M_i]`` -> ``[M_i, M_j]`` float64.
    """
    pred = centres_i + t_star  # where the neighbours say k goes
    unit = np.exp(log_scale_i) * tau_t
    dx = (centres_j[None, :, 0] - pred[:, None, 0]) / unit[:, None]
    dy = (centres_j[None, :, 1] - pred[:, None, 1]) / unit[:, None]
    ds = (log_scale_j[None, :] - (log_scale_i + s_star)[:, None]) / tau_s
    return np.exp(-0.5 * (dx * dx + dy * dy + ds * ds))


def local_offset_matching(
    appearance: np.ndarray,
    centres_i: np.ndarray,
    log_scale_i: np.ndarray,
    neighbours_i: np.ndarray,
    neighbour_weight_i: np.ndarray,
    centres_j: np.ndarray,
    log_scale_j: np.ndarray,
    duplicate_j: np.ndarray,
    tau_t: float,
    tau_s: float,
    consensus: Literal["median", "geometric", "mode", "affine"],
    vote_weight: Literal["uniform", "appearance", "distinctiveness"],
    rounds: int,
    affine_ridge: float = 0.5,
) -> np.ndarray:
    """LOM geometric factor ``G(k, l)`` of every match, so that ``Q = A' * G`` (steps 4-6).

    Round 1 takes each neighbour's best match from ``A'`` (appearance, aspect rule applied);
    round ``r > 1`` from ``A' * G`` of round ``r - 1``.
    Shapes: ``appearance [M_i, M_j]``, ``centres_i [M_i, 2]``, ``log_scale_i [M_i]``,
    ``neighbours_i``/``neighbour_weight_i [M_i, K]``, ``centres_j [M_j, 2]``,
    ``log_scale_j [M_j]``, ``duplicate_j [M_j, M_j]`` -> ``G [M_i, M_j]`` float64 in ``[0, 1]``.
    """
    mi, mj = appearance.shape
    if mi == 0 or mj == 0:
        return np.zeros((mi, mj))
    scores = appearance
    geometry = np.ones((mi, mj))
    for _ in range(max(1, rounds)):
        best, conf = best_matches(scores, duplicate_j, vote_weight)
        t_hat, s_hat = neighbour_votes(centres_i, log_scale_i, centres_j, log_scale_j, neighbours_i, best)
        w = neighbour_weight_i * conf[neighbours_i]
        rel = centres_i[:, None, :] - centres_i[neighbours_i]
        t_star, s_star = consensus_offsets(
            t_hat, s_hat, w, np.exp(log_scale_i), tau_t, tau_s, consensus, rel, affine_ridge
        )
        geometry = offset_decay(centres_i, log_scale_i, centres_j, log_scale_j, t_star, s_star, tau_t, tau_s)
        scores = appearance * geometry
    return geometry


# --------------------------------------------------------------------------- component


@cacheable
@dataclass(frozen=True)
class ProposalFlowDescription:
    """What :meth:`ProposalFlow.describe` computes once per image (cacheable: data only)."""

    features: np.ndarray  # [M, D] float32, HOG, unit rows (zero for a flat crop)
    boxes: np.ndarray  # [M, 4] int64
    centres: np.ndarray  # [M, 2] float64, pixels
    log_scale: np.ndarray  # [M] float64, log sqrt(w h)
    log_aspect: np.ndarray  # [M] float64, log(w / h)
    neighbours: np.ndarray  # [M, K] int64, indices into this image's proposals
    neighbour_weight: np.ndarray  # [M, K] float64, 0 = padding
    duplicates: np.ndarray  # [M, M] bool, IoU >= 0.5 (used by vote_weight="distinctiveness")


class ProposalFlowOptions(HOGOptions):
    """Options of :class:`ProposalFlow`: the HOG options of ``hog`` plus those of LOM."""

    appearance: Literal["cosine", "whitened"] = Field(
        default="cosine",
        description=(
            "Similarity of HOG descriptors: plain cosine, or cosine after whitening with the pair's statistics."
        ),
    )
    shrinkage: float = Field(
        default=0.1,
        gt=0.0,
        description="Whitening only: ridge added to the covariance, as a fraction of its mean eigenvalue.",
    )
    neighbourhood: Literal["overlap", "nearest"] = Field(
        default="nearest",
        description=(
            "Neighbours of a proposal: the nearest by centre, or those overlapping it (containment >= min_overlap)."
        ),
    )
    min_overlap: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="'overlap' only: minimum |k ∩ n| / min(|k|, |n|) for n to be a neighbour of k.",
    )
    max_neighbours: int = Field(
        default=16, ge=1, description="At most this many neighbours per proposal (highest IoU, or nearest)."
    )
    consensus: Literal["median", "geometric", "mode", "affine"] = Field(
        default="affine",
        description=(
            "Robust offset from the neighbours' votes: their mode refined by a local affine fit, the mode alone, "
            "the weighted coordinate-wise median or the weighted geometric median."
        ),
    )
    affine_ridge: float = Field(
        default=0.5,
        ge=0.0,
        description=(
            "consensus='affine' only: pull of the local affine fit towards a pure scaling (0 = plain least squares)."
        ),
    )
    vote_weight: Literal["uniform", "appearance", "distinctiveness"] = Field(
        default="distinctiveness",
        description=(
            "Weight of a neighbour's vote besides its neighbourhood weight: 1, the score of its best match, "
            "or that score minus its best score elsewhere (the margin)."
        ),
    )
    tau_translation: float = Field(
        default=0.12,
        gt=0.0,
        description="Width of the decay in translation, in units of the proposal's scale sqrt(w h).",
    )
    tau_scale: float = Field(
        default=0.35, gt=0.0, description="Width of the decay in log-scale (natural log; 0.35 ~ a factor 1.4)."
    )
    rounds: int = Field(
        default=1, ge=1, le=10, description="LOM rounds; from round 2 the neighbours vote with their LOM-best matches."
    )
    symmetric: bool = Field(
        default=False,
        description="Geometric mean of the geometric factors from both images' neighbourhoods (then Q_ji = Q_ij^T).",
    )
    aspect_limit: float = Field(
        default=2.0, ge=1.0, description="Matches whose aspect ratios differ by more than this factor get Q = 0."
    )

    @model_validator(mode="after")
    def _blocks_fit(self) -> "ProposalFlowOptions":
        if self.cells_per_block > self.cells:
            raise ValueError("cells_per_block must not exceed cells")
        return self


class ProposalFlow(Component):
    """Proposal Flow's local offset matching on HOG descriptors of the proposals."""

    name = "proposal-flow"
    summary = "Proposal Flow (Ham et al. 2016), LOM: HOG appearance x agreement with the neighbours' offsets"
    Options = ProposalFlowOptions

    def __init__(self, options: ProposalFlowOptions | None = None) -> None:
        super().__init__(options)
        hog_fields = set(HOGOptions.model_fields)
        self._hog = HOG(HOGOptions(**self.options.model_dump(include=hog_fields)))

    def describe(self, image: np.ndarray, boxes: np.ndarray) -> ProposalFlowDescription:
        """``image [H, W, 3]`` uint8 RGB, ``boxes [M, 4]`` -> HOG, geometry and neighbourhoods."""
        o = self.options
        hog = self._hog.describe(image, boxes)
        centres, log_scale, log_aspect = box_geometry(hog.boxes)
        neighbours, weight = neighbourhoods(hog.boxes, o.neighbourhood, o.min_overlap, o.max_neighbours)
        duplicates = box_iou(hog.boxes, hog.boxes) >= _DUPLICATE_IOU
        return ProposalFlowDescription(
            hog.features, hog.boxes, centres, log_scale, log_aspect, neighbours, weight, duplicates
        )

    def match(self, description_i: ProposalFlowDescription, description_j: ProposalFlowDescription) -> np.ndarray:
        """``Q [M_i, M_j]`` float32 in ``[0, 1]``: appearance x LOM geometric factor, 0 beyond the aspect limit."""
        o = self.options
        di, dj = description_i, description_j
        mi, mj = len(di.boxes), len(dj.boxes)
        if mi == 0 or mj == 0:
            return np.zeros((mi, mj), dtype=np.float32)
        a = appearance_similarity(di.features, dj.features, o.appearance, o.shrinkage)
        a = np.where(aspect_compatible(di.log_aspect, dj.log_aspect, o.aspect_limit), a, 0.0)
        lom = dict(
            tau_t=o.tau_translation, tau_s=o.tau_scale, consensus=o.consensus, vote_weight=o.vote_weight,
            rounds=o.rounds, affine_ridge=o.affine_ridge,
        )
        g = local_offset_matching(
            a, di.centres, di.log_scale, di.neighbours, di.neighbour_weight,
            dj.centres, dj.log_scale, dj.duplicates, **lom,
        )
        if o.symmetric:
            g_back = local_offset_matching(
                a.T, dj.centres, dj.log_scale, dj.neighbours, dj.neighbour_weight,
                di.centres, di.log_scale, di.duplicates, **lom,
            )
            g = np.sqrt(g * g_back.T)
        q = (a * g).astype(np.float32)
        np.clip(q, 0.0, 1.0, out=q)
        return q


@hookimpl
def register_matchers():
    return [ProposalFlow]
