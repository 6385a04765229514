"""``edge-boxes``: object proposals of Zitnick & Dollár (ECCV 2014), through OpenCV.

EdgeBoxes scores every window of a sliding-window search by the edges it wholly
encloses: edge pixels are grouped into oriented segments, segments that straddle the box
boundary (or are linked by similar orientation to one that does) are discounted, and what
remains, normalised by the box perimeter, is the score. The best windows are refined and
thinned by a non-maximum suppression whose IoU threshold is ``beta``. We wrap
``cv2.ximgproc.createEdgeBoxes``.

Edge maps. EdgeBoxes wants an edge map ``E`` (float32 ``[H, W]`` in ``[0, 1]``, thin
edges) and an orientation map ``O`` (float32 ``[H, W]`` in ``[0, pi)``). Zitnick & Dollár
use the structured-edge forest of Dollár & Zitnick (2013); its trained model
(``model.yml.gz``) ships with no package, so by default we compute both maps from image
gradients (:func:`gradient_edges`): Gaussian smoothing, Sobel derivatives per colour
channel, the strongest channel's magnitude normalised to ``[0, 1]``, its direction modulo
``pi``, thinned by a non-maximum suppression across the edge (:func:`edges_nms`, the
algorithm of ``StructuredEdgeDetection::edgesNms`` — OpenCV only exposes it as a method of
a loaded forest). Users who have the forest pass ``edge_model=PATH`` and get the original
pipeline: ``detectEdges``, ``computeOrientation``, ``edgesNms``.

Orientation convention. OpenCV's EdgeBoxes (like Dollár's toolbox) reads ``O`` as the
direction of the edge *normal*, ``atan2(dy, dx)`` with ``x`` along columns and ``y`` down
the rows, modulo ``pi``: 0 for a vertical edge (normal pointing left/right), ``pi/2`` for a
horizontal one. Its segment affinity compares ``O`` with the direction joining two
segments plus ``pi/2``; ``StructuredEdgeDetection::computeOrientation`` produces the same
convention from the edge map's second derivatives. The image gradient points along the
normal, so ``atan2(gy, gx) mod pi`` is exactly that.

Box convention. OpenCV's port keeps the MATLAB toolbox's 1-based output: a window that
covers the 0-based pixel columns ``c .. c + w`` (inclusive) is returned as
``Rect(c + 1, r + 1, w, h)``. We undo that: ``[x0, y0, x1, y1] = [x - 1, y - 1, x + w,
y + h]`` with exclusive ends.

Everything here is deterministic: EdgeBoxes has no random component and the maps are
pure functions of the image.
"""

from __future__ import annotations

import math
import os
from typing import Any

import cv2
import numpy as np
from pydantic import Field

from visum import Component, Options, hookimpl
from visum_plugins.proposers.selective_search import clean_boxes, xywh_to_xyxy

__all__ = [
    "EdgeBoxesOptions",
    "EdgeBoxes",
    "gradient_edges",
    "edges_nms",
    "load_structured_edge_model",
    "structured_edges",
    "opencv_edge_boxes",
    "register_proposers",
]

# Keys of a StructuredEdgeDetection model (OpenCV's YAML form of Dollár's forest) that its
# loader reads without checking: a file lacking them crashes the process (division by zero).
_MODEL_OPTIONS = (
    "stride",
    "shrinkNumber",
    "patchSize",
    "patchInnerSize",
    "numberOfGradientOrientations",
    "selfsimilarityGridSize",
    "numberOfTrees",
    "numberOfTreesToEvaluate",
)
_MODEL_ARRAYS = ("childs", "featureIds", "thresholds", "edgeBoundaries", "edgeBins")


def gradient_edges(image: np.ndarray, sigma: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Edge and orientation maps of an RGB image from its smoothed gradients.

    ``image`` ``[H, W, 3]`` uint8 (any channel order). The image, scaled to ``[0, 1]``, is
    smoothed with a Gaussian of ``sigma`` px (0 = none); 3x3 Sobel derivatives are taken
    per channel and, at every pixel, the channel with the largest gradient magnitude wins
    (colour edges between equally bright regions count). Returns

    * ``edges`` float32 ``[H, W]`` in ``[0, 1]``: that magnitude divided by its maximum
      over the image (all zeros for a flat image);
    * ``orientation`` float32 ``[H, W]`` in ``[0, pi)``: ``atan2(gy, gx) mod pi``, the
      direction of the edge normal as EdgeBoxes expects (0 = vertical edge, pi/2 =
      horizontal edge; ``x`` along columns, ``y`` down the rows).

    Borders are reflected (``BORDER_REFLECT_101``), so the image frame is not an edge.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got {image.shape}")
    img = image.astype(np.float32) / 255.0
    if sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma), borderType=cv2.BORDER_REFLECT_101)
    # scale 1/8: a unit step gives a derivative of ~1 (Sobel's weights sum to 8 per side)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT_101)
    gx = gx.reshape(image.shape)
    gy = gy.reshape(image.shape)
    mag2 = gx * gx + gy * gy
    best = np.argmax(mag2, axis=2)[..., None]
    gx = np.take_along_axis(gx, best, axis=2)[..., 0]
    gy = np.take_along_axis(gy, best, axis=2)[..., 0]
    mag = np.sqrt(np.take_along_axis(mag2, best, axis=2)[..., 0])
    peak = float(mag.max()) if mag.size else 0.0
    if peak > 1e-6:
        edges = np.clip(mag / peak, 0.0, 1.0).astype(np.float32)
    else:
        edges = np.zeros(mag.shape, dtype=np.float32)
    orientation = _normal_orientation(gx, gy)
    return edges, orientation


def _normal_orientation(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """``atan2(gy, gx)`` folded into ``[0, pi)`` as float32 (float32 rounding can hit pi)."""
    o = np.mod(np.arctan2(gy, gx).astype(np.float64), math.pi).astype(np.float32)
    o[o >= np.float32(math.pi)] = 0.0
    return o


def edges_nms(edges: np.ndarray, orientation: np.ndarray, radius: int = 2, multiplier: float = 1.0) -> np.ndarray:
    """Thin an edge map: keep a pixel only if no pixel up to ``radius`` px away along the
    edge normal is stronger than ``multiplier`` times it.

    The algorithm of Dollár's ``edgesNms`` (``StructuredEdgeDetection::edgesNms`` in
    OpenCV, with boundary suppression ``s = 0``): neighbours at ``(x + d cos O, y + d sin
    O)``, ``d = ±1 .. ±radius``, are sampled bilinearly (borders replicated). ``edges``
    and ``orientation`` float32 ``[H, W]``; returns float32 ``[H, W]``, a copy of
    ``edges`` with the suppressed pixels set to 0.
    """
    edges = np.ascontiguousarray(edges, dtype=np.float32)
    orientation = np.asarray(orientation, dtype=np.float32)
    if edges.size == 0 or radius < 1:
        return edges.copy()
    h, w = edges.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    cos_o = np.cos(orientation).astype(np.float32)
    sin_o = np.sin(orientation).astype(np.float32)
    scaled = edges * np.float32(multiplier)
    keep = edges > 0
    for d in range(1, int(radius) + 1):
        for sign in (1.0, -1.0):
            map_x = xs + np.float32(sign * d) * cos_o
            map_y = ys + np.float32(sign * d) * sin_o
            neighbour = cv2.remap(edges, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            keep &= scaled >= neighbour
    return np.where(keep, edges, np.float32(0.0)).astype(np.float32)


def load_structured_edge_model(path: str | os.PathLike[str]) -> Any:
    """``cv2.ximgproc.StructuredEdgeDetection`` from a model file (OpenCV's YAML/``.yml.gz``
    form of Dollár's forest, e.g. opencv_extra's ``model.yml.gz``).

    The file is checked before OpenCV loads it, because OpenCV's loader aborts the process
    on a well-formed YAML file that is not a model. Raises ``ValueError`` naming ``path``
    when the file is missing, unreadable, or not a structured-edge model.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"edge_model: no such file: {path!r}")
    try:
        fs = cv2.FileStorage(path, cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as exc:  # the constructor's cv2.error surfaces as a SystemError
        reason = _first_line(exc.__cause__ or exc.__context__ or exc)
        raise ValueError(f"edge_model: {path!r} is not a readable OpenCV model file: {reason}") from None
    try:
        if not fs.isOpened():
            raise ValueError(f"edge_model: cannot open {path!r}")
        options = fs.getNode("options")
        if not options.isMap():
            raise ValueError(f"edge_model: {path!r} is not a structured-edge model (no 'options' map)")
        for key in _MODEL_OPTIONS:
            node = options.getNode(key)
            if node.empty() or not (node.isInt() or node.isReal()) or node.real() <= 0:
                raise ValueError(f"edge_model: {path!r} is not a structured-edge model (options.{key} missing or not > 0)")
        if options.getNode("patchInnerSize").real() > options.getNode("patchSize").real():
            raise ValueError(f"edge_model: {path!r} is not a structured-edge model (patchInnerSize > patchSize)")
        for key in _MODEL_ARRAYS:
            node = fs.getNode(key)
            if node.empty() or not node.isSeq() or node.size() == 0:
                raise ValueError(f"edge_model: {path!r} is not a structured-edge model ('{key}' missing or empty)")
        patch_size = int(options.getNode("patchSize").real())
    finally:
        fs.release()
    try:
        sed = cv2.ximgproc.createStructuredEdgeDetection(path)
    except cv2.error as exc:
        raise ValueError(f"edge_model: OpenCV cannot load {path!r}: {_first_line(exc)}") from None
    return _StructuredEdges(sed, patch_size)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


class _StructuredEdges:
    """A loaded forest and the patch size it needs (smaller images are padded to it)."""

    def __init__(self, sed: Any, patch_size: int) -> None:
        self.sed = sed
        self.patch_size = patch_size


def structured_edges(model: Any, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edge and orientation maps from a structured-edge forest (:func:`load_structured_edge_model`).

    ``image`` ``[H, W, 3]`` uint8 RGB. ``detectEdges`` on the image as float RGB in
    ``[0, 1]``, ``computeOrientation``, then ``edgesNms(r=2, s=0, m=1)`` as Zitnick &
    Dollár's demo does. Images smaller than the forest's patch are reflected up to it and
    the maps cropped back. Returns ``(edges [H, W] in [0, 1], orientation [H, W] in [0, pi))``.
    """
    sed = model.sed if isinstance(model, _StructuredEdges) else model
    patch = model.patch_size if isinstance(model, _StructuredEdges) else 32
    h, w = image.shape[:2]
    rgb = image.astype(np.float32) / 255.0
    pad_y, pad_x = max(0, patch - h), max(0, patch - w)
    if pad_y or pad_x:
        rgb = cv2.copyMakeBorder(rgb, 0, pad_y, 0, pad_x, cv2.BORDER_REFLECT)
    edges = np.asarray(sed.detectEdges(np.ascontiguousarray(rgb)), dtype=np.float32)
    orientation = np.asarray(sed.computeOrientation(edges), dtype=np.float32)
    edges = np.asarray(sed.edgesNms(edges, orientation, None, 2, 0, 1.0), dtype=np.float32)
    edges = np.clip(edges[:h, :w], 0.0, 1.0)
    orientation = np.asarray(orientation[:h, :w], dtype=np.float32)
    orientation = np.where((orientation >= 0) & (orientation < np.float32(math.pi)), orientation, 0.0)
    return np.ascontiguousarray(edges), np.ascontiguousarray(orientation, dtype=np.float32)


def opencv_edge_boxes(
    edges: np.ndarray,
    orientation: np.ndarray,
    *,
    max_proposals: int = 500,
    alpha: float = 0.65,
    beta: float = 0.75,
    eta: float = 1.0,
    min_score: float = 0.01,
    min_box_area: float = 400.0,
    max_aspect_ratio: float = 3.0,
    edge_min_mag: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Run OpenCV's EdgeBoxes on an edge and an orientation map.

    Returns ``(boxes, scores)``: ``boxes`` ``[M, 4]`` int64 ``[x0, y0, x1, y1]`` with
    exclusive ends (OpenCV's 1-based ``Rect`` undone, not yet clipped), ``scores`` ``[M]``
    float32 (finite, positive, ``>= min_score``), both sorted by decreasing score (ties keep
    OpenCV's order).
    """
    edges = np.ascontiguousarray(edges, dtype=np.float32)
    orientation = np.ascontiguousarray(orientation, dtype=np.float32)
    if edges.shape != orientation.shape or edges.ndim != 2:
        raise ValueError(f"edge and orientation maps must be equal [H, W], got {edges.shape} and {orientation.shape}")
    empty = (np.zeros((0, 4), dtype=np.int64), np.zeros((0,), dtype=np.float32))
    if max_proposals <= 0 or min(edges.shape) < 3:
        return empty
    eb = cv2.ximgproc.createEdgeBoxes()
    eb.setAlpha(float(alpha))
    eb.setBeta(float(beta))
    eb.setEta(float(eta))
    eb.setMinScore(float(min_score))
    eb.setMaxBoxes(int(max_proposals))
    eb.setMinBoxArea(float(min_box_area))
    eb.setMaxAspectRatio(float(max_aspect_ratio))
    eb.setEdgeMinMag(float(edge_min_mag))
    rects, scores = eb.getBoundingBoxes(edges, orientation)
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(rects) == 0:
        return empty
    if len(scores) != len(rects):
        raise RuntimeError(f"EdgeBoxes returned {len(rects)} boxes but {len(scores)} scores")
    # Degenerate windows come back with a 0, NaN or infinite score (OpenCV divides the edge
    # sum by a zero perimeter for 1-px windows on tiny images): they are not proposals.
    good = np.isfinite(scores) & (scores > 0) & (scores >= np.float32(min_score))
    rects, scores = rects[good], scores[good]
    order = np.argsort(-scores, kind="stable")
    rects, scores = rects[order], scores[order]
    # Rect(c + 1, r + 1, w, h) covers 0-based pixels c .. c + w inclusive
    xywh = np.concatenate([rects[:, :2] - 1, rects[:, 2:] + 1], axis=1)
    return xywh_to_xyxy(xywh), scores


class EdgeBoxesOptions(Options):
    """Options of :class:`EdgeBoxes`."""

    edge_model: str | None = Field(
        default=None,
        description=(
            "Path of a structured-edge forest (OpenCV's model.yml.gz) for Zitnick & Dollar's "
            "original edge maps; by default edges come from smoothed image gradients."
        ),
    )
    max_proposals: int = Field(
        default=500, ge=0, description="Keep at most this many proposals, best scored first (the paper uses 500)."
    )
    alpha: float = Field(
        default=0.65,
        gt=0.0,
        lt=1.0,
        description="Step of the sliding-window search: neighbouring windows overlap with IoU alpha (larger, denser, slower).",
    )
    beta: float = Field(
        default=0.75,
        gt=0.0,
        le=1.0,
        description="IoU threshold of the non-maximum suppression between proposals (above 0.99: none).",
    )
    eta: float = Field(
        default=1.0,
        gt=0.0,
        le=1.0,
        description="Adaptation of the NMS threshold: beta is multiplied by eta after every kept box (1: fixed).",
    )
    min_score: float = Field(default=0.01, ge=0.0, description="Drop windows scoring below this.")
    min_box_area: float = Field(
        default=400.0,
        ge=16.0,
        description=(
            "Smallest window searched, in pixels of area, at least 16 (OpenCV's default 1000 is meant "
            "for ~500x375 photos; smaller: more, smaller boxes and a slower search)."
        ),
    )
    max_aspect_ratio: float = Field(
        default=3.0, ge=1.0, description="Largest width/height (or height/width) ratio of the windows searched."
    )
    edge_min_mag: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="Edge pixels weaker than this (edge maps lie in [0, 1]) are ignored; larger is faster and coarser.",
    )
    gaussian_sigma: float = Field(
        default=1.5,
        ge=0.0,
        description="Gaussian smoothing (px) before the Sobel derivatives of the gradient edges; unused with edge_model.",
    )


class EdgeBoxes(Component):
    """EdgeBoxes proposals (OpenCV), as ``[x0, y0, x1, y1]`` boxes best first."""

    name = "edge-boxes"
    summary = "Zitnick & Dollar 2014 EdgeBoxes (OpenCV ximgproc) on gradient edges, up to 500 boxes per image"
    Options = EdgeBoxesOptions

    def __init__(self, options: EdgeBoxesOptions | None = None) -> None:
        super().__init__(options)
        path = self.options.edge_model
        self._model = load_structured_edge_model(path) if path is not None else None

    def edge_maps(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(edges, orientation)`` float32 ``[H, W]`` this proposer feeds to EdgeBoxes."""
        if self._model is not None:
            return structured_edges(self._model, image)
        edges, orientation = gradient_edges(image, self.options.gaussian_sigma)
        return edges_nms(edges, orientation, radius=2, multiplier=1.0), orientation

    def propose(self, image: np.ndarray) -> np.ndarray:
        """``image [H, W, 3]`` uint8 RGB -> ``boxes [M, 4]`` int64, exclusive ends, best first."""
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        o = self.options
        if height < 3 or width < 3 or o.max_proposals == 0:
            return np.zeros((0, 4), dtype=np.int64)
        edges, orientation = self.edge_maps(image)
        boxes, _ = opencv_edge_boxes(
            edges,
            orientation,
            max_proposals=o.max_proposals,
            alpha=o.alpha,
            beta=o.beta,
            eta=o.eta,
            min_score=o.min_score,
            min_box_area=o.min_box_area,
            max_aspect_ratio=o.max_aspect_ratio,
            edge_min_mag=o.edge_min_mag,
        )
        return clean_boxes(boxes, width, height, 1, o.max_proposals)


@hookimpl
def register_proposers():
    return [EdgeBoxes]
