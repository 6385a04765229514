"""A seeded synthetic benchmark whose object parts are known: parrots and near-parrots.

Every image shows one stylised *parrot* glyph over a textured, cluttered background. The
main class (``CLASS_NAMES[0]``) has all four parts (:data:`PART_NAMES`):

* ``eye``  — a white disc with a dark pupil on the head;
* ``beak`` — an orange-to-yellow triangle in front of the head;
* ``tail`` — a fan of thin blue blades behind the body;
* ``wing`` — a green chevron with dark stripes on the body.

Each distractor class lacks exactly one of these parts or has it replaced
(:data:`CLASS_CHANGES`), everything else being drawn from the same distribution, so a
classifier can only tell the main class apart by finding *every* part of it.

Pose varies (position, scale, rotation, left/right mirror, small jitter of each part);
backgrounds are gradients, stripes or blotchy noise, and the clutter (discs, rectangles,
lines, twigs, blobs in any colour, drawn behind the object) never reproduces a part.
Images are rendered at twice the resolution and area-downsampled, so edges are smooth;
a ground-truth part mask keeps the pixels more than half covered by that part's visible
area (parts never overlap in the masks).

Everything is deterministic: :func:`make_dataset` seeds one generator per
``(seed, label, index)``, so a sample never depends on which other samples were asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from visum.data.drawing import SUPERSAMPLE, background, circle, ellipse, fill, hsv, paint, rotate
from visum.data.ground_truth import (  # noqa: F401  (re-exported: the parts benchmark's ground truth)
    GROUND_TRUTH_DIR,
    GROUND_TRUTH_JSON,
    GroundTruth,
    file_names,
    load_ground_truth,
    write_samples,
)

__all__ = [
    "CLASS_NAMES",
    "MAIN_CLASS",
    "PART_NAMES",
    "CLASS_CHANGES",
    "PartsSample",
    "GroundTruth",
    "render_sample",
    "make_dataset",
    "write_dataset",
    "load_ground_truth",
    "sample_file_names",
]

PART_NAMES: list[str] = ["eye", "beak", "tail", "wing"]

CLASS_NAMES: list[str] = [
    "parrot",
    "parrot-without-eye",
    "parrot-with-square-beak",
    "parrot-without-tail",
    "parrot-without-wing",
]
MAIN_CLASS: str = CLASS_NAMES[0]

# class id -> (part, how it differs from the main class); the main class has no entry.
CLASS_CHANGES: dict[int, tuple[str, str]] = {
    1: ("eye", "missing"),
    2: ("beak", "replaced by a blue square"),
    3: ("tail", "missing"),
    4: ("wing", "missing"),
}


_SS = SUPERSAMPLE  # supersampling factor of the renderer


@dataclass(frozen=True)
class PartsSample:
    """One rendered image and its ground truth.

    ``part_masks`` has a key for every name in :data:`PART_NAMES`; a part that the class
    lacks (or has replaced) has an all-``False`` mask. ``object_box`` is the box of the
    whole glyph (body and every drawn part), ``[x0, y0, x1, y1]`` with exclusive ends.
    """

    image: np.ndarray  # [S, S, 3] uint8 RGB
    label: int
    part_masks: dict[str, np.ndarray]  # name -> [S, S] bool
    object_box: tuple[int, int, int, int]

    @property
    def class_name(self) -> str:
        return CLASS_NAMES[self.label]


def _clutter(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Random shapes that share colours with the parts but never their shapes.

    Discs are plain (never a dark dot inside a light disc), polygons have at least four
    sides (never a triangle), lines are single strokes (never a fan), and nothing is
    striped, so no clutter item reproduces an eye, a beak, a tail or a wing.
    """
    n = canvas.shape[0]
    for _ in range(int(rng.integers(3, 10))):
        kind = int(rng.integers(5))
        if rng.random() < 0.4:  # a colour of some part, to make colour alone useless
            h = float(rng.choice([0.0, 40.0, 120.0, 220.0]) + rng.uniform(-12, 12))
            col = hsv(h, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
            if rng.random() < 0.25:
                col = np.full(3, rng.uniform(215, 255), dtype=np.float32)  # white-ish
        else:
            col = hsv(rng.uniform(0, 360), rng.uniform(0, 1), rng.uniform(0.1, 1))
        cx, cy = rng.uniform(0, n, size=2)
        if kind == 0:  # disc or ellipse
            r = rng.uniform(2.5, 14) * _SS
            poly = ellipse(cx, cy, r, r * rng.uniform(0.5, 1.0), rng.uniform(0, np.pi))
            paint(canvas, fill(canvas.shape[:2], [poly]), col)
        elif kind == 1:  # rotated rectangle
            w, h = rng.uniform(3, 24, size=2) * _SS
            poly = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
            poly = rotate(poly, rng.uniform(0, np.pi), (0, 0)) + (cx, cy)
            paint(canvas, fill(canvas.shape[:2], [poly]), col)
        elif kind == 2:  # straight stroke
            a, ln = rng.uniform(0, np.pi), rng.uniform(10, 50) * _SS
            d = np.array([np.cos(a), np.sin(a)]) * ln / 2
            p0, p1 = np.array([cx, cy]) - d, np.array([cx, cy]) + d
            t = int(rng.integers(1, 4)) * _SS
            cv2.line(canvas, tuple(np.round(p0).astype(int)), tuple(np.round(p1).astype(int)),
                     tuple(float(c) for c in col), t, lineType=cv2.LINE_AA)
        elif kind == 3:  # twig: a smooth random walk
            pts = [np.array([cx, cy])]
            a = rng.uniform(0, 2 * np.pi)
            for _ in range(int(rng.integers(4, 9))):
                a += rng.normal(0, 0.5)
                pts.append(pts[-1] + rng.uniform(4, 9) * _SS * np.array([np.cos(a), np.sin(a)]))
            cv2.polylines(canvas, [np.round(np.array(pts)).astype(np.int32)], False,
                          tuple(float(c) for c in col), int(rng.integers(1, 3)) * _SS, lineType=cv2.LINE_AA)
        else:  # irregular convex-ish blob with 6..10 vertices
            k = int(rng.integers(6, 11))
            t = np.sort(rng.uniform(0, 2 * np.pi, size=k))
            r = rng.uniform(4, 14) * _SS * rng.uniform(0.7, 1.0, size=k)
            poly = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)
            paint(canvas, fill(canvas.shape[:2], [cv2.convexHull(poly.astype(np.float32))[:, 0]]), col)


# ----------------------------------------------------------------------------- parrot
#
# Object frame: the parrot faces +x, y points down, one unit ~ 0.8 of the glyph's length.


def _parrot_geometry(rng: np.random.Generator, label: int) -> dict[str, list[np.ndarray]]:
    """Polygons of every layer in object units, drawing order = dict order."""

    def jitter(polys, anchor, pos=0.015, ang=8.0):
        d = rng.uniform(-pos, pos, size=2)
        a = np.deg2rad(rng.uniform(-ang, ang))
        return [rotate(p, a, anchor) + d for p in polys]

    g: dict[str, list[np.ndarray]] = {}

    # tail: a fan of 4..6 thin blades pointing backwards, behind the body
    if label != 3:
        root = np.array([-0.30, 0.04])
        k = int(rng.integers(4, 7))
        spread = np.deg2rad(rng.uniform(22, 34))
        blades = []
        for a in np.linspace(-spread, spread, k):
            a = np.pi + a + np.deg2rad(rng.uniform(-3, 3))
            ln = rng.uniform(0.27, 0.34)
            u = np.array([np.cos(a), np.sin(a)])
            v = np.array([-u[1], u[0]])
            w0, w1 = 0.012, rng.uniform(0.022, 0.030)
            blades.append(np.array([root + v * w0, root + u * ln + v * w1, root + u * (ln + 0.02), root + u * ln - v * w1, root - v * w0]))
        g["tail"] = jitter(blades, root, ang=10)

    # body (ellipse) and head (disc): not a part, textured
    g["body"] = [ellipse(-0.04, 0.01, 0.33, 0.19, np.deg2rad(rng.uniform(-6, 6))),
                 circle(0.28 + rng.uniform(-0.01, 0.01), -0.10 + rng.uniform(-0.01, 0.01), 0.16)]

    # wing: a striped chevron pointing forwards, on the body
    if label != 4:
        wing = np.array([[0.15, 0.02], [-0.15, -0.14], [-0.25, -0.09], [-0.02, 0.02],
                         [-0.25, 0.13], [-0.15, 0.18]])
        g["wing"] = jitter([wing], (-0.05, 0.02))

    # eye: a white disc with a dark pupil on the head
    if label != 1:
        c = np.array([0.32, -0.14]) + rng.uniform(-0.01, 0.01, size=2)
        g["eye"] = [circle(c[0], c[1], 0.068)]
        g["pupil"] = [circle(c[0] + 0.012, c[1], rng.uniform(0.028, 0.036))]

    # beak: a triangle in front of the head; class 2 has a blue square instead
    if label == 2:
        sq = 0.13
        square = np.array([[0.0, 0.0], [sq, 0.0], [sq, sq], [0.0, sq]]) + (0.41, -0.175)
        g["square"] = jitter([square], (0.43, -0.11), ang=12)
    else:
        tip = np.array([0.63 + rng.uniform(-0.02, 0.02), -0.08 + rng.uniform(-0.02, 0.03)])
        g["beak"] = jitter([np.array([[0.41, -0.20], tip, [0.42, -0.01]])], (0.42, -0.11))
    return g


def _object_colours(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "body": hsv(rng.uniform(-15, 8), rng.uniform(0.7, 0.95), rng.uniform(0.65, 0.92)),
        "eye": np.full(3, rng.uniform(238, 255), dtype=np.float32),
        "pupil": np.full(3, rng.uniform(5, 35), dtype=np.float32),
        "beak0": hsv(rng.uniform(22, 32), rng.uniform(0.85, 1.0), rng.uniform(0.9, 1.0)),
        "beak1": hsv(rng.uniform(45, 55), rng.uniform(0.8, 1.0), rng.uniform(0.95, 1.0)),
        "tail": hsv(rng.uniform(210, 232), rng.uniform(0.75, 1.0), rng.uniform(0.7, 0.95)),
        "square": hsv(rng.uniform(210, 232), rng.uniform(0.75, 1.0), rng.uniform(0.7, 0.95)),
        "wing": hsv(rng.uniform(95, 130), rng.uniform(0.7, 1.0), rng.uniform(0.65, 0.9)),
    }


def render_sample(rng: np.random.Generator, label: int, size: int = 128) -> PartsSample:
    """Draw one image of class ``label`` (an index of :data:`CLASS_NAMES`), ``size`` pixels square."""
    if not 0 <= int(label) < len(CLASS_NAMES):
        raise ValueError(f"label must be in 0..{len(CLASS_NAMES) - 1}, got {label}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    label = int(label)
    n = size * _SS
    canvas = cv2.resize(background(rng, size), (n, n), interpolation=cv2.INTER_LINEAR)
    _clutter(rng, canvas)

    geom = _parrot_geometry(rng, label)
    cols = _object_colours(rng)

    # pose: mirror, rotate, scale, then place the glyph wholly inside the image
    mirror = rng.random() < 0.5
    theta = np.deg2rad(rng.uniform(-35, 35))
    scale = rng.uniform(0.55, 0.8) * size * _SS  # pixels per object unit
    c, s = np.cos(theta), np.sin(theta)
    A = scale * np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if mirror else 1.0, 1.0])
    allpts = np.concatenate([p for polys in geom.values() for p in polys]) @ A.T
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    margin = 2 * _SS
    fit = min(1.0, (n - 2 * margin) / float(max(hi - lo)))  # shrink a glyph too long to fit
    A, lo, hi = A * fit, lo * fit, hi * fit
    tmin = margin - lo
    tmax = n - margin - hi
    t = np.array([rng.uniform(tmin[i], max(tmin[i], tmax[i])) for i in range(2)])

    def to_px(p: np.ndarray) -> np.ndarray:
        return p @ A.T + t

    Ainv = np.linalg.inv(A)

    def frame(m: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Object-frame coordinates ``[N, 2]`` of the pixel centres under ``m``, and their indices."""
        idx = np.nonzero(m)
        q = np.stack([idx[1] + 0.5 - t[0], idx[0] + 0.5 - t[1]], axis=1) @ Ainv.T
        return q.astype(np.float32), idx

    shape = (n, n)
    masks: dict[str, np.ndarray] = {}
    # drawing order: tail, body, wing, eye (+pupil), beak / square
    for layer, polys in geom.items():
        m = fill(shape, [to_px(p) for p in polys])
        for other in masks:  # later layers cover earlier ones
            masks[other] &= ~m
        masks[layer] = m
        q, idx = frame(m)
        u, v = q[:, 0:1], q[:, 1:2]
        if layer == "tail":
            # alternate light and dark blades by angle around the fan's root
            ang = np.arctan2(v - 0.04, -(u + 0.30))
            shade = 0.85 + 0.2 * np.sign(np.sin(ang * 28.0))
            canvas[idx] = cols["tail"] * shade
        elif layer == "body":
            f = 2 * np.pi / 0.075
            spots = np.cos(u * f) * np.cos(v * f + np.pi * (np.floor(u * f / (2 * np.pi)) % 2))
            shade = 0.8 + 0.2 * spots - 0.25 * np.clip(v / 0.25, 0, 1)
            canvas[idx] = cols["body"] * shade
        elif layer == "wing":
            stripes = np.floor(u / 0.045) % 2 == 0
            canvas[idx] = np.where(stripes, cols["wing"], cols["wing"] * 0.35)
        elif layer == "beak":
            w = np.clip((u - 0.41) / 0.22, 0, 1)
            canvas[idx] = cols["beak0"] * (1 - w) + cols["beak1"] * w
        else:  # eye, pupil, square: flat colours
            canvas[idx] = cols[layer]

    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    # sensor-like noise over the whole picture
    image += np.float32(rng.uniform(2, 9)) * rng.standard_normal((size, size, 1), dtype=np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    def down(m: np.ndarray) -> np.ndarray:
        return cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0.5

    obj_hi = np.zeros(shape, dtype=bool)
    for m in masks.values():
        obj_hi |= m
    masks["eye"] = masks.get("eye", np.zeros(shape, bool)) | masks.pop("pupil", np.zeros(shape, bool))
    part_masks = {p: down(masks[p]) if p in masks else np.zeros((size, size), bool) for p in PART_NAMES}
    obj = down(obj_hi)
    ys, xs = np.nonzero(obj)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return PartsSample(image=image, label=label, part_masks=part_masks, object_box=box)


def make_dataset(n_per_class: int, seed: int, size: int = 128, labels: Sequence[int] | None = None) -> list[PartsSample]:
    """``n_per_class`` samples of each class in ``labels`` (default: all), class by class.

    Sample ``i`` of class ``k`` is drawn from ``np.random.default_rng([seed, k, i])``, so it
    is the same whatever else is requested, and different seeds give unrelated images.
    """
    if n_per_class < 0:
        raise ValueError("n_per_class must be >= 0")
    labels = range(len(CLASS_NAMES)) if labels is None else labels
    out = []
    for k in labels:
        for i in range(n_per_class):
            out.append(render_sample(np.random.default_rng([int(seed), int(k), i]), int(k), size))
    return out


# ---------------------------------------------------------------------------- on disk


def sample_file_names(samples: Sequence[PartsSample]) -> list[str]:
    """The file names :func:`write_dataset` gives ``samples``: ``<class>_<i:04d>.png``, ``i`` counted per class."""
    return file_names([smp.label for smp in samples], CLASS_NAMES)


def write_dataset(samples: Sequence[PartsSample], folder: Path) -> list[Path]:
    """Write ``samples`` with their ground truth (:func:`visum.data.ground_truth.write_samples`)."""
    return write_samples(samples, folder, CLASS_NAMES, PART_NAMES)
