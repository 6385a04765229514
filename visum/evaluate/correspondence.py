"""Ground truth for proposal matching: image pairs related by a known warp.

A pair is an image ``a`` and ``b = photometric(warp_H(a))`` for a random projective map
``H`` (an affine map — rotation, isotropic scale, shear, translation — about the
image centre, composed with a mild perspective term; see :func:`random_homography`). The
true place in ``b`` of a proposal ``k`` of ``a`` is the bounding box of its four warped
corners, ``T(k)`` (:func:`warp_boxes`). Proposals are computed on each image
independently, as in the pipeline, so ``b`` generally has no proposal exactly at ``T(k)``.

Metrics (Proposal Flow, Ham et al. CVPR 2016, adapted to boxes with known warps). Only
*valid* proposals count: those whose ``T(k)`` lies inside image ``b``. For each valid
``k`` the matcher's best match is ``l*(k) = argmax_l Q(k, l)`` with confidence
``q(k) = Q(k, l*)``; a proposal whose row of ``Q`` is all zero has no match and counts
as wrong (IoU 0).

* ``PCK@alpha`` — the fraction of valid ``k`` whose best match is *correct*:
  ``||c(l*) - c(T(k))|| <= alpha * max(w_T, h_T)``, ``c`` the box centre and ``w_T, h_T``
  the sides of ``T(k)``; ``alpha = 0.1`` by default. (PF's PCK is defined on keypoints
  with the object's bounding box as reference; here every proposal is its own
  reference.)
* ``PCK@0.25`` — the same with ``alpha = 0.25``: what it misses are gross mismatches
  (the best match lies on another part of the image), not near misses.
* ``PCR@0.5`` — PF's "probability of correct regions" at ``1 - IoU < 0.5``: the fraction
  of valid ``k`` with ``IoU(l*, T(k)) >= 0.5``.
* ``mIoU@k`` — after PF's measure of reliability: valid proposals are ranked by ``q`` (highest
  first) and ``mIoU@k`` is the mean of ``IoU(l*, T(k))`` over the ``k`` most confident
  (all of them if fewer). It rewards a matcher whose confident matches are right.
* ``oracle PCK@alpha`` — the fraction of valid ``k`` for which *some* proposal of ``b``
  satisfies the PCK criterion: the ceiling any matcher can reach with these proposals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import cv2
import numpy as np

from visum.geometry import box_iou_rows

__all__ = [
    "WarpedPair",
    "PairResult",
    "random_homography",
    "photometric_change",
    "warp_image",
    "warp_boxes",
    "boxes_inside",
    "best_match_metrics",
    "photo_images",
    "parts_images",
    "make_pairs",
    "evaluate_matchers",
    "summarise",
    "Source",
]

Source = Literal["photos", "parts"]


@dataclass(frozen=True)
class WarpedPair:
    """Two images and the map from ``a``'s pixel coordinates to ``b``'s."""

    image_a: np.ndarray  # [H, W, 3] uint8
    image_b: np.ndarray  # [H, W, 3] uint8
    homography: np.ndarray  # [3, 3] float64, continuous coordinates (pixel i spans [i, i + 1))
    name: str = ""


@dataclass
class PairResult:
    """Metrics of one matcher on one pair, plus the data needed to draw it."""

    metrics: dict[str, float]
    n_valid: int
    describe_seconds: float
    match_seconds: float
    boxes_a: np.ndarray = field(repr=False)
    boxes_b: np.ndarray = field(repr=False)
    true_boxes: np.ndarray = field(repr=False)  # [M_a, 4] float, T(k)
    valid: np.ndarray = field(repr=False)  # [M_a] bool
    best: np.ndarray = field(repr=False)  # [M_a] int, l*(k)
    confidence: np.ndarray = field(repr=False)  # [M_a] float, q(k)
    correct: np.ndarray = field(repr=False)  # [M_a] bool, PCK criterion


# --------------------------------------------------------------------------- warps


def random_homography(
    rng: np.random.Generator,
    width: int,
    height: int,
    rotation_deg: float = 15.0,
    scale_range: tuple[float, float] = (0.8, 1.25),
    translation: float = 0.1,
    shear: float = 0.1,
    perspective: float = 0.05,
) -> np.ndarray:
    """A random projective map of a ``width x height`` image, in continuous pixel coordinates.

    ``H = P · C · T · R(theta) · Sh(gamma) · S(s) · C^-1``: about the image centre ``C``, a
    scale ``s`` log-uniform in ``scale_range``, a shear ``gamma ~ U(±shear)`` (x += gamma y),
    a rotation ``theta ~ U(±rotation_deg)``, a translation ``U(±translation)`` of each side;
    then a perspective term ``P`` whose last row is ``(p_x, p_y, 1)`` with
    ``p ~ U(±perspective) / (side / 2)``, i.e. the projective scale varies by up to
    ``±perspective`` at the image edges. Returns ``[3, 3]`` float64 with ``H[2, 2] = 1``.
    """
    cx, cy = width / 2.0, height / 2.0
    s = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    theta = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
    gamma = rng.uniform(-shear, shear)
    tx, ty = rng.uniform(-translation, translation, size=2) * (width, height)
    px, py = rng.uniform(-perspective, perspective, size=2) / (cx, cy)
    c = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
    c_inv = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    scale = np.diag([s, s, 1.0])
    sh = np.array([[1, gamma, 0], [0, 1, 0], [0, 0, 1.0]])
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1.0]])
    tr = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])
    persp = np.array([[1, 0, 0], [0, 1, 0], [px, py, 1.0]])
    # the perspective acts on centred coordinates, so it leaves the centre in place
    h = c @ persp @ tr @ rot @ sh @ scale @ c_inv
    return h / h[2, 2]


def photometric_change(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random contrast ``U(0.75, 1.25)`` about mid-grey, brightness ``U(±20)``, gamma
    log-uniform in ``[0.8, 1.25]`` and Gaussian noise ``sigma ~ U(0, 6)`` (in 0..255 units).
    ``[H, W, 3]`` uint8 -> same."""
    x = image.astype(np.float32)
    x = (x - 127.5) * rng.uniform(0.75, 1.25) + 127.5 + rng.uniform(-20, 20)
    x = np.clip(x, 0, 255) / 255.0
    x = np.power(x, float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))) * 255.0
    x = x + rng.normal(0.0, rng.uniform(0.0, 6.0), size=x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _to_cv(h: np.ndarray) -> np.ndarray:
    """``H`` in continuous coordinates (pixel ``i`` spans ``[i, i+1)``) -> OpenCV's (pixel ``i`` at ``i``)."""
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    back = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
    return back @ h @ shift


def warp_image(image: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """``b(x) = a(H^-1 x)``, same size as ``a``, bilinear, borders reflected."""
    height, width = image.shape[:2]
    return cv2.warpPerspective(
        image, _to_cv(homography), (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )


def warp_boxes(boxes: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """``T(k)``: bounding box of the four warped corners of each box. ``[M, 4] -> [M, 4]`` float64."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    corners = np.stack(
        [b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], axis=1
    )  # [M, 4, 2]
    homog = np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], axis=2) @ homography.T
    xy = homog[..., :2] / homog[..., 2:3]
    return np.concatenate([xy.min(axis=1), xy.max(axis=1)], axis=1)


def boxes_inside(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """``0 <= x0, y0`` and ``x1 <= width``, ``y1 <= height``: ``[M, 4] -> [M]`` bool."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= width) & (b[:, 3] <= height)


# --------------------------------------------------------------------------- metrics


def _centres(b: np.ndarray) -> np.ndarray:
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)


def best_match_metrics(
    q: np.ndarray,
    boxes_b: np.ndarray,
    true_boxes: np.ndarray,
    valid: np.ndarray,
    alpha: float = 0.1,
    ks: Sequence[int] = (10, 50),
    loose_alpha: float = 0.25,
) -> tuple[dict[str, float], np.ndarray, np.ndarray, np.ndarray]:
    """PCK@alpha, PCK@loose_alpha, PCR@0.5, mIoU@k and the oracle PCK of one pair (module docstring).

    ``PCK@loose_alpha`` (0.25) separates gross mismatches (another part of the image)
    from near misses. ``q [M_a, M_b]``, ``boxes_b [M_b, 4]``, ``true_boxes [M_a, 4]``
    (``T(k)``), ``valid [M_a]`` bool -> (metrics, best ``[M_a]``, confidence ``[M_a]``,
    correct ``[M_a]``, the last at ``alpha``). Metrics are NaN when no proposal is valid;
    when ``M_b = 0`` every valid proposal counts as wrong.
    """
    boxes_b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    true_boxes = np.asarray(true_boxes, dtype=np.float64).reshape(-1, 4)
    m_a = len(true_boxes)
    keys = [f"PCK@{alpha:g}", f"PCK@{loose_alpha:g}", "PCR@0.5", *(f"mIoU@{k}" for k in ks), f"oracle PCK@{alpha:g}"]
    nan = {key: np.nan for key in keys}
    if len(boxes_b) == 0:
        zeros = np.zeros(m_a)
        metrics = {key: (0.0 if valid.any() else np.nan) for key in nan}
        return metrics, np.zeros(m_a, dtype=np.int64), zeros, np.zeros(m_a, dtype=bool)
    best = np.argmax(q, axis=1) if m_a else np.zeros(0, dtype=np.int64)
    conf = q[np.arange(m_a), best].astype(np.float64) if m_a else np.zeros(0)
    pred = boxes_b[best]
    side = np.maximum(true_boxes[:, 2] - true_boxes[:, 0], true_boxes[:, 3] - true_boxes[:, 1])
    err = np.linalg.norm(_centres(pred) - _centres(true_boxes), axis=1)
    err = np.where(conf > 0, err, np.inf)  # a row of zeros matches nothing: wrong, not lucky
    correct = err <= alpha * side
    if not valid.any():
        return nan, best, conf, correct & valid
    iou = np.where(conf > 0, box_iou_rows(pred, true_boxes), 0.0)
    v = np.flatnonzero(valid)
    order = v[np.argsort(-conf[v], kind="stable")]
    all_err = np.linalg.norm(_centres(boxes_b)[None, :, :] - _centres(true_boxes[v])[:, None, :], axis=2)
    metrics = {
        f"PCK@{alpha:g}": float(correct[v].mean()),
        f"PCK@{loose_alpha:g}": float((err <= loose_alpha * side)[v].mean()),
        "PCR@0.5": float((iou[v] >= 0.5).mean()),
        **{f"mIoU@{k}": float(iou[order[:k]].mean()) for k in ks},
        f"oracle PCK@{alpha:g}": float((all_err <= alpha * side[v][:, None]).any(axis=1).mean()),
    }
    return metrics, best, conf, correct & valid


# --------------------------------------------------------------------------- data


def _square_view(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to ``size`` (area interpolation) and centre-crop ``size x size``."""
    h, w = image.shape[:2]
    f = size / min(h, w)
    nh, nw = max(size, round(h * f)), max(size, round(w * f))
    r = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    y, x = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(r[y : y + size, x : x + size])


def photo_images(size: int = 224) -> list[tuple[str, np.ndarray]]:
    """Real photographs available offline, as ``size x size`` RGB views.

    scikit-image's bundled ``chelsea``, ``coffee``, ``rocket``, ``astronaut``, and
    foolbox's ``imagenet_*.jpg`` samples when foolbox is installed.
    """
    import skimage.data

    names = ("chelsea", "coffee", "rocket", "astronaut")
    out = [(name, _square_view(getattr(skimage.data, name)(), size)) for name in names]
    try:
        import importlib.util

        spec = importlib.util.find_spec("foolbox")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin is not None:
        from PIL import Image

        for path in sorted((Path(spec.origin).parent / "data").glob("imagenet_*.jpg")):
            with Image.open(path) as im:
                out.append((path.stem, _square_view(np.asarray(im.convert("RGB")), size)))
    return out


def parts_images(n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``n`` main-class images of the parts benchmark (:mod:`visum.data.parts`), 128 px."""
    from visum.data.parts import make_dataset

    return [(f"parts-{seed}-{i}", s.image) for i, s in enumerate(make_dataset(n, seed, labels=[0]))]


def make_pairs(source: Source, n_pairs: int, seed: int, size: int = 224) -> list[WarpedPair]:
    """``n_pairs`` warped pairs from ``source``, a function of ``(source, n_pairs, seed)``.

    Pair ``p`` uses image ``p mod (number of images)`` (photos, in a seeded random order)
    or its own parts image, and ``np.random.default_rng([seed, source_id, p])`` for the
    warp (:func:`random_homography`) and the photometric change of ``b``.
    """
    if source == "photos":
        images = photo_images(size)
        perm = np.random.default_rng([seed, 0]).permutation(len(images))
        chosen = [images[perm[p % len(images)]] for p in range(n_pairs)]
        sid = 0
    elif source == "parts":
        chosen = parts_images(n_pairs, seed)
        sid = 1
    else:
        raise ValueError(f"unknown source {source!r}")
    pairs = []
    for p, (name, image) in enumerate(chosen):
        rng = np.random.default_rng([seed, sid, p])
        h, w = image.shape[:2]
        hom = random_homography(rng, w, h)
        b = photometric_change(warp_image(image, hom), rng)
        pairs.append(WarpedPair(image, b, hom, name))
    return pairs


# --------------------------------------------------------------------------- running


def evaluate_matchers(
    pairs: Iterable[WarpedPair],
    propose: Callable[[np.ndarray], np.ndarray],
    matchers: dict[str, Any],
    alpha: float = 0.1,
    ks: Sequence[int] = (10, 50),
) -> dict[str, list[PairResult]]:
    """Run every matcher on every pair with the same proposals; one :class:`PairResult` each.

    ``propose(image) -> boxes [M, 4]``; ``matchers`` maps a label to an object with the
    Matcher protocol's ``describe`` and ``match``. ``describe_seconds`` covers both images.
    """
    out: dict[str, list[PairResult]] = {name: [] for name in matchers}
    for pair in pairs:
        boxes_a = np.asarray(propose(pair.image_a), dtype=np.int64).reshape(-1, 4)
        boxes_b = np.asarray(propose(pair.image_b), dtype=np.int64).reshape(-1, 4)
        true = warp_boxes(boxes_a, pair.homography)
        h, w = pair.image_b.shape[:2]
        valid = boxes_inside(true, w, h)
        for name, matcher in matchers.items():
            t0 = time.perf_counter()
            da = matcher.describe(pair.image_a, boxes_a)
            db = matcher.describe(pair.image_b, boxes_b)
            t1 = time.perf_counter()
            q = np.asarray(matcher.match(da, db))
            t2 = time.perf_counter()
            if q.shape != (len(boxes_a), len(boxes_b)):
                raise ValueError(f"{name}: Q has shape {q.shape}, expected {(len(boxes_a), len(boxes_b))}")
            metrics, best, conf, correct = best_match_metrics(q, boxes_b, true, valid, alpha, ks)
            out[name].append(
                PairResult(
                    metrics, int(valid.sum()), t1 - t0, t2 - t1, boxes_a, boxes_b, true, valid, best, conf, correct
                )
            )
    return out


def summarise(results: Sequence[PairResult]) -> dict[str, float]:
    """Mean of each metric over pairs (pairs without valid proposals skipped), mean times."""
    if not results:
        return {}
    keys = list(results[0].metrics)
    out = {k: float(np.nanmean([r.metrics[k] for r in results])) if any(np.isfinite(r.metrics[k]) for r in results)
           else float("nan") for k in keys}
    out["valid proposals / pair"] = float(np.mean([r.n_valid for r in results]))
    out["describe s / image"] = float(np.mean([r.describe_seconds / 2 for r in results]))
    out["match s / pair"] = float(np.mean([r.match_seconds for r in results]))
    return out
