"""Weakly supervised object localisation from a saliency map (Simonyan et al. 2013, Sec. 3.2).

Pure functions on one image and its saliency map (same size, the model's view):

1. *seeds* (:func:`saliency_seeds`): the pixels whose saliency is above the 95 % quantile
   of the map's saliency distribution are foreground, those below the 30 % quantile are
   background (ties broken away from the foreground), the rest is unknown;
2. *GraphCut colour segmentation* (:func:`grabcut_segmentation`): a Gaussian mixture
   colour model (OpenCV's, 5 full-covariance components) is fitted to the foreground seeds
   and one to the background seeds, and one graph cut labels every pixel, with the seeds
   held to their labels; ``refine`` further cuts re-estimate both models from the current
   labelling (GrabCut's iteration; the paper uses none);
3. the object is the *largest connected component* of the foreground
   (:func:`largest_component`, 8-connected), and its box the localisation.

:func:`threshold_localisation` is the baseline that skips the colour segmentation: the
largest connected component of the map thresholded directly (scored against the truth
by :func:`visum.geometry.box_iou_one`). Boxes are ``[x0, y0, x1, y1]`` with exclusive ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from visum.stages.regions import binarize, connected_regions

__all__ = [
    "Localisation",
    "grabcut_localisation",
    "grabcut_segmentation",
    "largest_component",
    "mask_box",
    "mask_iou",
    "saliency_seeds",
    "threshold_localisation",
]

GMM_COMPONENTS = 5  # OpenCV's GrabCut mixtures; each seed set needs at least this many pixels


@dataclass(frozen=True)
class Localisation:
    """One image's localisation: the object ``mask`` and its ``box`` (``None`` when empty).

    ``foreground_seeds``/``background_seeds`` are the pixels that fixed the colour models
    (empty for the threshold baseline); ``fallback`` says why GraphCut was skipped, if it was.
    """

    mask: np.ndarray  # [H, W] bool
    box: tuple[int, int, int, int] | None
    foreground_seeds: np.ndarray  # [H, W] bool
    background_seeds: np.ndarray  # [H, W] bool
    fallback: str = ""


def saliency_seeds(saliency: np.ndarray, fg_quantile: float = 0.95, bg_quantile: float = 0.30) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and background seeds ``([H, W] bool, [H, W] bool)`` from ``saliency [H, W]``.

    Foreground: ``s > q_fg``, ``q_fg`` the ``fg_quantile`` of the map's own values (Sec. 3.2:
    95 %); when no pixel is strictly above (a plateau at the maximum, as in a crisp mask),
    the pixels at the maximum. Background: the ``bg_quantile`` (30 %) least salient pixels,
    i.e. ``s < q_bg`` for a map without ties. Clipped and sparse maps tie at 0 over most of
    the image (crisp, Grad-CAM); then the tied pixels farthest from the foreground seeds are
    taken first, so the background never swallows the object around a small salient part.
    A pixel is never both. A constant map gives foreground everywhere and no background.
    """
    s = np.asarray(saliency, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"saliency must be [H, W], got shape {s.shape}")
    if not 0.0 <= bg_quantile <= fg_quantile <= 1.0:
        raise ValueError(f"need 0 <= bg_quantile <= fg_quantile <= 1, got {bg_quantile} and {fg_quantile}")
    q_fg = np.quantile(s, fg_quantile)
    fg = s > q_fg
    if not fg.any():
        fg = s >= q_fg
    distance = ndimage.distance_transform_edt(~fg)  # to the nearest foreground seed
    order = np.lexsort((-distance.ravel(), s.ravel()))  # least salient first, then farthest first
    bg = np.zeros(s.size, dtype=bool)
    bg[order[: round(bg_quantile * s.size)]] = True
    return fg, bg.reshape(s.shape) & ~fg


def grabcut_segmentation(
    image: np.ndarray, foreground: np.ndarray, background: np.ndarray, *, refine: int = 0, seed: int = 0
) -> np.ndarray:
    """GraphCut colour segmentation from seeds: ``image [H, W, 3] uint8`` -> foreground ``[H, W] bool``.

    The two GMM colour models are learnt from the seed pixels alone (OpenCV ``grabCut`` on
    the seeds' colours with ``iterCount=0``); then one cut of the whole image with the models
    frozen (``GC_EVAL_FREEZE_MODEL``), seeds fixed, the other pixels free; then ``refine``
    GrabCut iterations that re-learn the models from the labelling. ``seed`` fixes OpenCV's
    k-means initialisation of the mixtures. Each seed set needs at least
    :data:`GMM_COMPONENTS` pixels (``ValueError`` otherwise).
    """
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3] uint8, got shape {image.shape}")
    fg = np.asarray(foreground, dtype=bool)
    bg = np.asarray(background, dtype=bool) & ~fg
    if fg.shape != image.shape[:2] or bg.shape != image.shape[:2]:
        raise ValueError(f"seed masks {fg.shape}, {bg.shape} do not match the image {image.shape[:2]}")
    if fg.sum() < GMM_COMPONENTS or bg.sum() < GMM_COMPONENTS:
        raise ValueError(f"need at least {GMM_COMPONENTS} foreground and background seeds, "
                         f"got {int(fg.sum())} and {int(bg.sum())}")
    cv2.setRNGSeed(int(seed))
    colours = np.ascontiguousarray(np.concatenate([image[fg], image[bg]])[None])  # [1, N, 3]
    labels = np.concatenate([np.full(int(fg.sum()), cv2.GC_FGD), np.full(int(bg.sum()), cv2.GC_BGD)])
    labels = np.ascontiguousarray(labels.astype(np.uint8)[None])
    bg_model = np.zeros((1, 65), np.float64)
    fg_model = np.zeros((1, 65), np.float64)
    cv2.grabCut(colours, labels, None, bg_model, fg_model, 0, cv2.GC_INIT_WITH_MASK)
    mask = np.full(image.shape[:2], cv2.GC_PR_BGD, np.uint8)
    mask[fg] = cv2.GC_FGD
    mask[bg] = cv2.GC_BGD
    cv2.grabCut(image, mask, None, bg_model, fg_model, 1, cv2.GC_EVAL_FREEZE_MODEL)
    if refine > 0:
        cv2.grabCut(image, mask, None, bg_model, fg_model, int(refine), cv2.GC_EVAL)
    return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask [H, W]`` (bool; all ``False`` if ``mask`` is empty)."""
    regions = connected_regions(np.asarray(mask, dtype=bool))
    return regions.labels == 1


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(x0, y0, x1, y1)``, exclusive ends, of ``mask [H, W]``; ``None`` if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def grabcut_localisation(
    image: np.ndarray,
    saliency: np.ndarray,
    *,
    fg_quantile: float = 0.95,
    bg_quantile: float = 0.30,
    refine: int = 0,
    seed: int = 0,
) -> Localisation:
    """Sec. 3.2: seeds from the saliency quantiles, GraphCut, largest foreground component, its box.

    ``image [H, W, 3] uint8`` and ``saliency [H, W]`` must be the same size. When a seed set
    is too small for the colour models (a nearly constant map), the foreground seeds
    themselves stand for the segmentation and ``fallback`` says so.
    """
    s = np.asarray(saliency, dtype=np.float64)
    if s.shape != np.shape(image)[:2]:
        raise ValueError(f"saliency {s.shape} and image {np.shape(image)[:2]} differ in size")
    fg, bg = saliency_seeds(s, fg_quantile, bg_quantile)
    fallback = ""
    if fg.sum() >= GMM_COMPONENTS and bg.sum() >= GMM_COMPONENTS:
        segmentation = grabcut_segmentation(image, fg, bg, refine=refine, seed=seed)
    else:
        segmentation = fg
        fallback = f"{int(fg.sum())} foreground and {int(bg.sum())} background seeds: too few for GraphCut"
    obj = largest_component(segmentation)
    return Localisation(obj, mask_box(obj), fg, bg, fallback)


def threshold_localisation(saliency: np.ndarray, threshold: float | str = 0.2, smooth_sigma: float = 0.0) -> Localisation:
    """Baseline: the largest component of ``G_sigma * (s / max s) >= threshold`` and its box.

    ``threshold`` is a fraction of the map's maximum (0.2: Zhou et al. 2016's CAM boxes) or
    ``"otsu"``; ``smooth_sigma`` a Gaussian blur in pixels first (:func:`visum.stages.regions.binarize`).
    """
    s = np.asarray(saliency, dtype=np.float64)
    peak = float(s.max()) if s.size else 0.0
    binary = binarize(s / peak if peak > 0 else s, threshold, smooth_sigma)
    obj = largest_component(binary)
    empty = np.zeros(s.shape, bool)
    return Localisation(obj, mask_box(obj), empty, empty)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """``|a & b| / |a | b|`` of two bool masks ``[H, W]``; 0 when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0
