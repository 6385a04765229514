"""Draw a world's images, with every part's visible mask, and the same image without a part.

:func:`render` draws one image of a class. Every random number is drawn before anything is
painted and whatever is omitted, so ``render(..., omit={"eye"})`` is *the same image* with
the eye not drawn: what lies behind it (the body, or the background) shows instead. That is
the intervention that measures whether a model relies on a part
(:mod:`visum.benchmark.reliance`), exact rather than in-painted.

Drawing order: background, clutter (behind the object), body, parts (in declaration
order), occluder, tag, sensor noise. Images are drawn at twice their resolution and
area-downsampled; a part's mask keeps the pixels more than half covered by its visible area.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Collection

import cv2
import numpy as np

from visum.data.drawing import SUPERSAMPLE, background, ellipse, fill, hsv, rotate
from visum.data.worlds.spec import SHAPES, World

__all__ = ["WorldSample", "render", "make_samples", "sample_rng", "shape_polygons"]

_SS = SUPERSAMPLE


@dataclass(frozen=True)
class WorldSample:
    """One image of a world and its ground truth; ``present`` are the parts drawn."""

    image: np.ndarray  # [S, S, 3] uint8 RGB
    label: int
    part_masks: dict[str, np.ndarray]  # name -> [S, S] bool: pixels more than half covered, every part
    object_box: tuple[int, int, int, int]
    present: tuple[str, ...]
    coverage: dict[str, np.ndarray]  # name -> [S, S] float32: the share of each pixel the part covers


def sample_rng(world: World, label: int, index: int, purpose: str) -> np.random.Generator:
    """The generator of sample ``index`` of class ``label``: independent of every other sample.

    ``purpose`` separates the images a model is trained on (``train``), checked on
    (``val``) and explained on (``eval``).
    """
    code = {"train": 0, "val": 1, "eval": 2}[purpose]
    return np.random.default_rng([world.seed, code, int(label), int(index)])


# ----------------------------------------------------------------------------- shapes


@functools.lru_cache(maxsize=None)
def _shape(shape: str) -> tuple[tuple[np.ndarray, bool], ...]:
    """``shape`` as polygons ``(points [N, 2], add)`` of unit area, centred, pointing +x."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    disc = np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "disc":
        polys = [(disc, True)]
    elif shape == "ring":
        polys = [(disc, True), (disc * 0.55, False)]
    elif shape == "triangle":
        polys = [(np.array([[1.0, 0.0], [-0.6, -0.8], [-0.6, 0.8]]), True)]
    elif shape == "square":
        polys = [(np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]), True)]
    elif shape == "diamond":
        polys = [(np.array([[1.2, 0.0], [0.0, -0.7], [-1.2, 0.0], [0.0, 0.7]]), True)]
    elif shape == "star":
        a = np.linspace(0, 2 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        polys = [(np.stack([r * np.cos(a), r * np.sin(a)], axis=1), True)]
    elif shape == "cross":
        w = 0.32
        polys = [(np.array([[-1, -w], [1, -w], [1, w], [-1, w]]), True),
                 (np.array([[-w, -1], [w, -1], [w, -w], [-w, -w]]), True),
                 (np.array([[-w, w], [w, w], [w, 1], [-w, 1]]), True)]
    elif shape == "bar":
        polys = [(np.array([[-1.0, -0.18], [1.0, -0.18], [1.0, 0.18], [-1.0, 0.18]]), True)]
    elif shape == "chevron":
        polys = [(np.array([[1.0, 0.0], [-0.4, -0.9], [-0.9, -0.9], [0.3, 0.0], [-0.9, 0.9], [-0.4, 0.9]]), True)]
    elif shape == "fan":
        blades = []
        for a in np.linspace(-0.6, 0.6, 5):
            u, v = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
            blades.append((np.array([-v * 0.05, u - v * 0.12, u * 1.08, u + v * 0.12, v * 0.05]) - [0.5, 0], True))
        polys = blades
    elif shape == "crescent":
        polys = [(disc, True), (disc * 0.85 + [0.35, 0.0], False)]
    elif shape == "hexagon":
        a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        polys = [(np.stack([np.cos(a), np.sin(a)], axis=1), True)]
    else:
        raise ValueError(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}")
    k = 1.0 / np.sqrt(max(_raster_area(polys), 1e-9))
    return tuple((p.astype(np.float64) * k, add) for p, add in polys)


def _raster_area(polys: list[tuple[np.ndarray, bool]], n: int = 512) -> float:
    """The area of a shape made of added and subtracted polygons, by rasterising it on an ``n x n`` grid
    (overlapping blades and holes that stick out of the outline are counted once)."""
    pts = np.concatenate([p for p, _ in polys])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    scale = (n - 4) / float(max(hi - lo))
    shape = (n, n)
    m = np.zeros(shape, bool)
    for p, add in polys:
        f = fill(shape, [(p - lo) * scale + 2])
        m = (m | f) if add else (m & ~f)
    return float(m.sum()) / scale**2


def shape_polygons(shape: str, area: float, centre, angle: float) -> list[tuple[np.ndarray, bool]]:
    """``shape`` scaled to ``area`` (object units²), rotated by ``angle`` radians, at ``centre``."""
    k = np.sqrt(area)
    return [(rotate(p * k, angle, (0.0, 0.0)) + np.asarray(centre), add) for p, add in _shape(shape)]


def _body_polygon(world: World, rng: np.random.Generator) -> np.ndarray:
    b = world.body
    if b.shape == "ellipse":
        return ellipse(0.0, 0.0, 0.5, b.height / 2, 0.0, n=64)
    if b.shape == "rounded":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        c, s = np.cos(t), np.sin(t)
        e = 0.35  # superellipse exponent: a rounded rectangle
        return np.stack([0.5 * np.sign(c) * np.abs(c) ** e, b.height / 2 * np.sign(s) * np.abs(s) ** e], axis=1)
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    r = 1.0 + 0.12 * np.sin(3 * t + rng.uniform(0, 2 * np.pi)) + 0.06 * np.sin(5 * t + rng.uniform(0, 2 * np.pi))
    return np.stack([0.5 * r * np.cos(t), b.height / 2 * r * np.sin(t)], axis=1)


@functools.lru_cache(maxsize=None)
def _body_area(world: World) -> float:
    """The body's area in object units², of its noise-free outline (a blob's wobble averages out)."""
    outline = _body_polygon(world, np.random.default_rng(0)) if world.body.shape != "blob" else \
        ellipse(0.0, 0.0, 0.5, world.body.height / 2, 0.0, n=64)
    x, y = outline[:, 0], outline[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


# ----------------------------------------------------------------------------- textures


def _texture(kind: str, colour: np.ndarray, u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    """Colours ``[N, 3]`` at local coordinates ``u, v`` (part units, ~[-1, 1])."""
    dark = colour * 0.4
    light = np.minimum(colour * 1.35 + 30, 255)
    if kind == "flat":
        return np.broadcast_to(colour, (len(u), 3)).copy()
    if kind == "stripes":
        on = (np.floor((u + phase) / 0.33) % 2) == 0
    elif kind == "dots":
        on = ((np.mod(u + phase, 0.5) - 0.25) ** 2 + (np.mod(v, 0.5) - 0.25) ** 2) > 0.11 ** 2
    elif kind == "checker":
        on = ((np.floor((u + phase) / 0.5) + np.floor(v / 0.5)) % 2) == 0
    elif kind == "gradient":
        w = np.clip((u + 1) / 2, 0, 1)[:, None]
        return colour * (1 - w) + light * w
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return np.where(on[:, None], colour, dark)


# ----------------------------------------------------------------------------- scene


@functools.lru_cache(maxsize=16)
def _photo(name: str) -> np.ndarray:
    from visum.data.worlds.photos import load_photo

    return load_photo(name)


def _background(world: World, rng: np.random.Generator, n: int) -> np.ndarray:
    kinds = world.scene.backgrounds
    kind = kinds[int(rng.integers(len(kinds)))]
    sub = np.random.default_rng(rng.integers(2**63))
    if kind == "photo":
        photo = _photo(world.photos[int(sub.integers(len(world.photos)))])
        h, w = photo.shape[:2]
        side = int(min(h, w) * sub.uniform(0.35, 0.9))
        y, x = int(sub.integers(0, h - side + 1)), int(sub.integers(0, w - side + 1))
        crop = photo[y : y + side, x : x + side]
        if sub.random() < 0.5:
            crop = crop[:, ::-1]
        return cv2.resize(crop.astype(np.float32), (n, n), interpolation=cv2.INTER_AREA)
    if kind == "noise":  # colour noise at two scales, moderately saturated
        coarse = cv2.resize(sub.uniform(50, 205, size=(8, 8, 3)).astype(np.float32), (n, n),
                            interpolation=cv2.INTER_CUBIC)
        fine = cv2.resize(sub.normal(0, 14, size=(n // 8, n // 8, 3)).astype(np.float32), (n, n),
                          interpolation=cv2.INTER_LINEAR)
        grey = coarse.mean(axis=2, keepdims=True)
        return np.clip(grey + 0.3 * (coarse - grey) + fine, 0, 255).astype(np.float32)
    forced = {"gradient": 0, "stripes": 1, "blotches": 2}[kind]
    return background(sub, n, kind=forced)


def _clutter(world: World, rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Items behind the object, never of a part's shape; some in a part's colour."""
    n = canvas.shape[0]
    low, high = world.scene.clutter
    free = [s for s in ("disc", "square", "hexagon", "bar", "diamond", "triangle", "crescent")
            if s not in {p.shape for p in world.parts}] or ["disc"]
    part_colours = [p.colour for p in world.parts]
    for _ in range(int(rng.integers(low, high + 1))):
        shape = free[int(rng.integers(len(free)))]
        if rng.random() < world.scene.clutter_part_colours:
            h, s, v = part_colours[int(rng.integers(len(part_colours)))]
            colour = hsv(h + rng.uniform(-8, 8), s, v * rng.uniform(0.85, 1.0))
        else:
            colour = hsv(rng.uniform(0, 360), rng.uniform(0, 0.9), rng.uniform(0.15, 1.0))
        area = (rng.uniform(0.02, 0.09) * n) ** 2
        centre = rng.uniform(0, n, size=2)
        polys = shape_polygons(shape, area, centre, rng.uniform(0, 2 * np.pi))
        canvas[_mask(canvas.shape[:2], polys)] = colour


def _mask(shape: tuple[int, int], polys: list[tuple[np.ndarray, bool]]) -> np.ndarray:
    m = np.zeros(shape, bool)
    for p, add in polys:
        f = fill(shape, [p])
        m = (m | f) if add else (m & ~f)
    return m


# ----------------------------------------------------------------------------- pose


def _homography(world: World, rng: np.random.Generator, n: int, extent: np.ndarray) -> np.ndarray:
    """Object frame → hi-res pixels: mirror, rotate, scale, mild perspective, placed inside the image."""
    p = world.pose
    mirror = rng.random() < p.mirror
    theta = np.deg2rad(rng.uniform(-p.rotation, p.rotation))
    scale = rng.uniform(*p.scale) * n  # pixels per unit (the object is ~1 unit long)
    corners = rng.uniform(-p.perspective, p.perspective, size=(4, 2))
    place = rng.random(2)
    c, s = np.cos(theta), np.sin(theta)
    A = scale * np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if mirror else 1.0, 1.0])
    src = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], np.float32)
    dst = (src + corners).astype(np.float32)
    H = np.diag([1.0, 1.0, 1.0])
    H[:2, :2] = A
    H = H @ cv2.getPerspectiveTransform(src, dst).astype(np.float64)
    pts = _apply(H, extent)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    margin = 2 * _SS
    fit = min(1.0, (n - 2 * margin) / float(max(hi - lo)))  # shrink an object too big to fit
    S = np.diag([fit, fit, 1.0])
    lo, hi = lo * fit, hi * fit
    tmin, tmax = margin - lo, n - margin - hi
    t = tmin + place * np.maximum(tmax - tmin, 0)
    T = np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1.0]])
    return T @ S @ H


def _apply(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    q = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ H.T
    return q[:, :2] / q[:, 2:3]


# ----------------------------------------------------------------------------- render


def render(world: World, label: int, rng: np.random.Generator, omit: Collection[str] = ()) -> WorldSample:
    """One image of class ``label`` of ``world``; the parts in ``omit`` are not drawn (the rest is unchanged)."""
    classes = world.class_names
    if not 0 <= int(label) < len(classes):
        raise ValueError(f"world {world.name}: label must be in 0..{len(classes) - 1}, got {label}")
    label, size = int(label), world.size
    n = size * _SS
    unknown = set(omit) - set(world.part_names)
    if unknown:
        raise ValueError(f"world {world.name}: no part {sorted(unknown)[0]!r} to omit")

    # every random draw first, in a fixed order
    canvas = cv2.resize(_background(world, rng, size), (n, n), interpolation=cv2.INTER_LINEAR)
    clutter_rng = np.random.default_rng(rng.integers(2**63))
    present = world.draw_parts(rng, label)
    body_rng = np.random.default_rng(rng.integers(2**63))
    body = _body_polygon(world, body_rng)
    body_colour = hsv(world.body.colour[0] + rng.uniform(-10, 10), world.body.colour[1],
                      world.body.colour[2] * rng.uniform(0.85, 1.1))
    instances = {}
    for part in world.parts:
        jitter = rng.uniform(-0.025, 0.025, size=2)
        angle = np.deg2rad(part.angle + rng.uniform(-12, 12))
        scale = rng.uniform(0.85, 1.15)
        colour = hsv(part.colour[0] + rng.uniform(-6, 6), part.colour[1], part.colour[2] * rng.uniform(0.9, 1.05))
        phase = rng.uniform(0, 1)
        instances[part.name] = (part, jitter, angle, scale, colour, phase)
    occluded = rng.random() < world.scene.occlusion
    occluder = (rng.uniform(-0.35, 0.35, size=2), rng.uniform(0, np.pi), rng.uniform(0.06, 0.14),
                hsv(rng.uniform(0, 360), rng.uniform(0, 0.4), rng.uniform(0.3, 0.8)))
    tag_corner, tag_inset = int(rng.integers(4)), rng.uniform(0.02, 0.05)
    noise_level = rng.uniform(*world.scene.noise)
    noise = rng.standard_normal((size, size, 1), dtype=np.float32)

    extent = np.concatenate([body] + [
        p for name, (part, jitter, angle, scale, _, _) in instances.items()
        for p, _ in shape_polygons(part.shape, part.size * _body_area(world) * scale, np.add(part.anchor, jitter), angle)
    ])
    H = _homography(world, rng, n, extent)

    _clutter(world, clutter_rng, canvas)
    shape = (n, n)
    masks: dict[str, np.ndarray] = {}
    body_mask = fill(shape, [_apply(H, body)])
    _paint_textured(canvas, body_mask, H, world.body.texture, body_colour, 0.0, (0.0, 0.0), 0.0, 4.0)
    visible_object = body_mask.copy()
    for name, (part, jitter, angle, scale, colour, phase) in instances.items():
        if name not in present or name in omit:
            continue
        area = part.size * _body_area(world) * scale
        centre = np.add(part.anchor, jitter)
        polys = [(_apply(H, p), add) for p, add in shape_polygons(part.shape, area, centre, angle)]
        m = _mask(shape, polys)
        for other in masks:  # later parts cover earlier ones
            masks[other] &= ~m
        masks[name] = m
        visible_object |= m
        _paint_textured(canvas, m, H, part.texture, colour, phase, centre, angle, 1.0 / np.sqrt(area))
    if occluded:
        centre, angle, area, colour = occluder
        polys = [(_apply(H, p), add) for p, add in shape_polygons("diamond", area, centre, angle)]
        m = _mask(shape, polys)
        canvas[m] = colour
        for other in masks:
            masks[other] &= ~m
    if world.tag is not None and label == 0 and world.tag.name not in omit:
        m = _draw_tag(canvas, world, tag_corner, tag_inset)
        for other in masks:
            masks[other] &= ~m
        masks[world.tag.name] = m

    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    image = np.clip(np.round(image + np.float32(noise_level) * noise), 0, 255).astype(np.uint8)

    def share(m: np.ndarray) -> np.ndarray:
        return cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)

    coverage = {p: share(masks[p]) if p in masks else np.zeros((size, size), np.float32) for p in world.part_names}
    part_masks = {p: c > 0.5 for p, c in coverage.items()}
    ys, xs = np.nonzero(share(visible_object) > 0.5)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(xs) else (0, 0, size, size)
    drawn = tuple(p for p in world.part_names if part_masks[p].any() or (p in present and p not in omit))
    return WorldSample(image=image, label=label, part_masks=part_masks, object_box=box, present=drawn,
                       coverage=coverage)


def _paint_textured(canvas, mask, H, texture, colour, phase, centre, angle, unit) -> None:
    """Paint ``mask`` with ``texture`` in the object frame (so textures follow the pose)."""
    if texture == "flat":
        canvas[mask] = colour
        return
    idx = np.nonzero(mask)
    pix = np.stack([idx[1] + 0.5, idx[0] + 0.5], axis=1)
    q = _apply(np.linalg.inv(H), pix) - np.asarray(centre)
    c, s = np.cos(-angle), np.sin(-angle)
    local = q @ np.array([[c, -s], [s, c]]).T * unit
    canvas[idx] = _texture(texture, np.asarray(colour, np.float32), local[:, 0], local[:, 1], phase)


def _draw_tag(canvas: np.ndarray, world: World, corner: int, inset: float) -> np.ndarray:
    """A watermark: a light rounded square with a dark cross, in one corner. Returns its mask."""
    n = canvas.shape[0]
    side = world.tag.size * n
    pad = inset * n
    x0 = pad if corner in (0, 3) else n - pad - side
    y0 = pad if corner in (0, 1) else n - pad - side
    centre = (x0 + side / 2, y0 + side / 2)
    square = [(p * side + centre, add) for p, add in _shape("square")]  # unit area: side 1
    m = _mask(canvas.shape[:2], square)
    canvas[m] = 0.2 * canvas[m] + 0.8 * hsv(*world.tag.colour)
    cross = [(rotate(p * side * 0.55, np.pi / 4, (0, 0)) + centre, add) for p, add in _shape("cross")]
    canvas[_mask(canvas.shape[:2], cross)] = (30.0, 30.0, 40.0)
    return m


def make_samples(world: World, n_per_class: int, purpose: str = "eval", labels=None,
                 omit: Collection[str] = ()) -> list[WorldSample]:
    """``n_per_class`` samples of each class in ``labels`` (default: all), class by class."""
    labels = range(len(world.class_names)) if labels is None else labels
    return [render(world, k, sample_rng(world, k, i, purpose), omit) for k in labels for i in range(n_per_class)]
