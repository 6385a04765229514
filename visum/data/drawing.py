"""Drawing primitives shared by the synthetic datasets (the parts benchmark and the worlds).

Images are drawn at ``SUPERSAMPLE`` times their resolution as float32 RGB in 0..255 and
area-downsampled, so edges are smooth. Polygons are ``[N, 2]`` arrays of ``(x, y)`` in the
high-resolution pixel frame; masks are boolean ``[H, W]``.
"""

from __future__ import annotations

import colorsys
from typing import Sequence

import cv2
import numpy as np

__all__ = ["SUPERSAMPLE", "hsv", "circle", "ellipse", "rotate", "fill", "paint", "background"]

SUPERSAMPLE = 2  # the renderers' supersampling factor
_SHIFT = 4  # fractional bits of cv2 polygon coordinates
_ONE = 1 << _SHIFT


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """Hue in degrees, saturation and value in [0, 1] → float RGB in 0..255."""
    r, g, b = colorsys.hsv_to_rgb((h % 360.0) / 360.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return np.array([r, g, b], dtype=np.float32) * 255.0


def circle(cx: float, cy: float, r: float, n: int = 40) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def ellipse(cx: float, cy: float, ax: float, ay: float, angle: float = 0.0, n: int = 48) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    p = np.stack([ax * np.cos(t), ay * np.sin(t)], axis=1)
    c, s = np.cos(angle), np.sin(angle)
    return p @ np.array([[c, s], [-s, c]]) + np.array([cx, cy])


def rotate(p: np.ndarray, angle: float, about) -> np.ndarray:
    """``p`` rotated by ``angle`` radians about the point ``about``."""
    c, s = np.cos(angle), np.sin(angle)
    about = np.asarray(about, dtype=np.float64)
    return (p - about) @ np.array([[c, s], [-s, c]]) + about


def fill(shape: tuple[int, int], polys: Sequence[np.ndarray]) -> np.ndarray:
    """Rasterise polygons given in (hi-res) pixel coordinates into a bool mask."""
    m = np.zeros(shape, dtype=np.uint8)
    for p in polys:  # one at a time: fillPoly fills overlaps of several polygons even-odd
        pts = np.round(np.asarray(p, dtype=np.float64) * _ONE - _ONE / 2).astype(np.int32)
        cv2.fillPoly(m, [pts], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return m.astype(bool)


def paint(canvas: np.ndarray, mask: np.ndarray, colour) -> None:
    """Write ``colour`` (an RGB triple or an ``[H, W, 3]`` field) into ``canvas`` under ``mask``."""
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 1:
        canvas[mask] = colour
    else:
        canvas[mask] = colour[mask]


def background(rng: np.random.Generator, n: int, kind: int | None = None) -> np.ndarray:
    """A textured background ``[n, n, 3]`` float32 in 0..255, moderately saturated, noise-free:
    ``kind`` 0 a linear gradient, 1 stripes (hard or soft), 2 blotchy colour noise; ``None``
    draws the kind from ``rng``, one third each."""

    def colour() -> np.ndarray:
        return hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.45), rng.uniform(0.3, 0.95))

    if kind is None:
        kind = int(rng.integers(3))
    if kind < 2:
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    if kind == 0:  # linear gradient between two colours
        a = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(a) + yy * np.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        c0, c1 = colour(), colour()
        img = c0 + t[..., None] * (c1 - c0)
    elif kind == 1:  # stripes, hard or soft, at a random angle and period
        a = rng.uniform(0, np.pi)
        period = rng.uniform(6, 26) / n
        phase = (xx * np.cos(a) + yy * np.sin(a)) / period
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * phase)
        if rng.random() < 0.5:
            wave = (wave > 0.5).astype(np.float32)
        c0, c1 = colour(), colour()
        img = c0 + wave[..., None] * (c1 - c0)
    else:  # blotchy colour noise: a coarse random field, smoothly upsampled
        k = int(rng.integers(3, 10))
        base = np.stack([colour() for _ in range(k * k)]).reshape(k, k, 3)
        img = cv2.resize(base.astype(np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 255).astype(np.float32)
