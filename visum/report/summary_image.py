"""Summary images: one tile per cluster member, tiles in a grid.

A member of a summary is a *part* (an object proposal) inside a *region* (a connected
component of an image's saliency mask). As in Fig. 1 of the paper, each member is shown as
the crop of its region, with the part highlighted in red: the part's pixels are tinted red
and outlined. Everything here is a pure function on arrays; :func:`save_png` is the only
one that touches the disk.

Boxes are ``[x0, y0, x1, y1]`` in the original image's pixel coordinates, ``x1`` and ``y1``
exclusive, as in :mod:`visum.manifest`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from visum.atomic import atomic_write

if TYPE_CHECKING:
    from visum.manifest import Manifest, SummaryRecord

__all__ = ["member_tile", "summary_grid", "summary_image", "save_png", "as_rgb_uint8", "outline_box"]

#: Highlight colour of the matched parts (RGB).
PART_RED = (235, 20, 20)
#: Opacity of the red tint over the part's pixels.
PART_ALPHA = 0.45
#: Grey used to pad crops to a square.
PAD_GREY = 190
#: Brightness kept by pixels outside the region (1 = unchanged).
OUTSIDE_DIM = 0.5
#: Brightness kept by the context margin around the region box when no mask is given.
CONTEXT_DIM = 0.7


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """``image`` as a contiguous ``[H, W, 3]`` uint8 array.

    Accepts ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` and ``[H, W, 4]`` (alpha dropped).
    Floating-point images are read as ``[0, 1]`` when their maximum is at most 1, else as
    ``[0, 255]``; values are clipped. Booleans become 0 / 255.
    """
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"expected an image [H, W], [H, W, 1|3|4], got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        f = np.nan_to_num(a.astype(np.float32))
        if f.size and f.max() <= 1.0:
            f = f * 255.0
        a = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


#: Outline of the crop a model sees, drawn on the original image (RGB).
CROP_YELLOW = (255, 214, 0)


def outline_box(image: np.ndarray, box: Sequence[float], colour=CROP_YELLOW) -> np.ndarray:
    """``image`` ``[H, W, 3]`` with what lies outside ``box`` dimmed and the box outlined just outside it
    (the outline never hides the pixels the box keeps)."""
    out = as_rgb_uint8(image).astype(np.float32)
    h, w = out.shape[:2]
    x0, y0, x1, y1 = _clip_box(box, w, h)
    inside = np.zeros((h, w), bool)
    inside[y0:y1, x0:x1] = True
    out[~inside] *= 0.55
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    cv2.rectangle(out, (x0 - 1, y0 - 1), (x1, y1), colour, 1)
    return out


def _clip_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """A box clipped to the image, at least one pixel wide and high."""
    if len(box) != 4:
        raise ValueError(f"a box is [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    x0 = min(max(x0, 0), width - 1)
    y0 = min(max(y0, 0), height - 1)
    x1 = min(max(x1, x0 + 1), width)
    y1 = min(max(y1, y0 + 1), height)
    return x0, y0, x1, y1


def _fit_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A bool mask of the given size (nearest-neighbour resize when sizes differ)."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m[:, :, 0]
    if m.dtype != np.bool_:
        m = m > (127 if m.dtype == np.uint8 and m.max(initial=0) > 1 else 0.5)
    if m.shape != (height, width):
        m = cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return m


def _grow_to(lo: int, hi: int, least: int, size: int) -> tuple[int, int]:
    """``[lo, hi)`` grown about its centre to at least ``least`` long, shifted to lie in ``[0, size)`` if it can."""
    if hi - lo >= least:
        return lo, hi
    extra = least - (hi - lo)
    lo, hi = lo - extra // 2, hi + extra - extra // 2
    if lo < 0:
        lo, hi = 0, hi - lo
    if hi > size:
        lo, hi = max(0, lo - (hi - size)), size
    return lo, hi


def member_tile(
    image: np.ndarray,
    region_bbox: Sequence[int],
    part_bbox: Sequence[int],
    *,
    tile: int = 128,
    region_mask: np.ndarray | None = None,
    margin: float = 0.08,
    outline: int = 2,
    context: float = 0.0,
) -> np.ndarray:
    """One ``[tile, tile, 3]`` uint8 tile showing a summary member.

    The crop covers ``region_bbox`` (and ``part_bbox``, should the part stick out of the
    region) plus a context margin of ``margin`` times the longer side (at least 2 px),
    grown about its centre to at least ``context`` times the image's shorter side on each
    axis (a tiny part is shown in its surroundings: the paper's user study asks people to
    name a summary at a glance), shifted inside and clipped to the image; it is scaled to fit the tile and padded with grey to keep its
    aspect ratio. The part's pixels are tinted red (alpha ``PART_ALPHA``) and outlined
    ``outline`` px thick. ``region_mask`` (bool, the original image's size; other sizes are
    resized) dims the pixels outside the region; without it, only the margin outside the
    region box is dimmed, a little. Boxes are clipped to the image and may be 1 px.
    """
    if tile < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    img = as_rgb_uint8(image)
    h, w = img.shape[:2]
    rx0, ry0, rx1, ry1 = _clip_box(region_bbox, w, h)
    px0, py0, px1, py1 = _clip_box(part_bbox, w, h)

    # Crop: region ∪ part, plus context.
    ux0, uy0, ux1, uy1 = min(rx0, px0), min(ry0, py0), max(rx1, px1), max(ry1, py1)
    m = max(2, int(round(margin * max(ux1 - ux0, uy1 - uy0))))
    cx0, cy0, cx1, cy1 = max(ux0 - m, 0), max(uy0 - m, 0), min(ux1 + m, w), min(uy1 + m, h)
    least = int(round(context * min(h, w)))
    cx0, cx1 = _grow_to(cx0, cx1, least, w)
    cy0, cy1 = _grow_to(cy0, cy1, least, h)
    crop = img[cy0:cy1, cx0:cx1].astype(np.float32)
    ch, cw = crop.shape[:2]

    # Dim what is not the region.
    if region_mask is not None:
        inside = _fit_mask(region_mask, h, w)[cy0:cy1, cx0:cx1]
        crop[~inside] *= OUTSIDE_DIM
    else:
        inside = np.zeros((ch, cw), dtype=bool)
        inside[ry0 - cy0 : ry1 - cy0, rx0 - cx0 : rx1 - cx0] = True
        crop[~inside] *= CONTEXT_DIM

    # Fit into the tile, keeping the aspect ratio.
    scale = tile / max(cw, ch)
    nw, nh = max(1, min(tile, int(round(cw * scale)))), max(1, min(tile, int(round(ch * scale))))
    # Shrink by area; enlarge smoothly, or by pixel replication when tiny crops are blown up.
    interp = cv2.INTER_AREA if scale < 1 else (cv2.INTER_LINEAR if scale < 4 else cv2.INTER_NEAREST)
    small = cv2.resize(crop, (nw, nh), interpolation=interp)
    if small.ndim == 2:  # cv2 drops the channel axis of 1-px-wide results in some versions
        small = small[:, :, None].repeat(3, axis=2)
    ox, oy = (tile - nw) // 2, (tile - nh) // 2
    out = np.full((tile, tile, 3), PAD_GREY, dtype=np.float32)
    out[oy : oy + nh, ox : ox + nw] = small

    # The part, in tile coordinates.
    sx, sy = nw / cw, nh / ch
    tx0 = ox + int(math.floor((px0 - cx0) * sx))
    ty0 = oy + int(math.floor((py0 - cy0) * sy))
    tx1 = ox + int(math.ceil((px1 - cx0) * sx))
    ty1 = oy + int(math.ceil((py1 - cy0) * sy))
    # A part smaller than its outline would vanish: grow its marker around its centre.
    t = max(0, int(outline))
    least = min(tile, 2 * t + 4)
    if tx1 - tx0 < least:
        tx0 = (tx0 + tx1 - least) // 2
        tx0 = min(max(tx0, 0), tile - least)
        tx1 = tx0 + least
    if ty1 - ty0 < least:
        ty0 = (ty0 + ty1 - least) // 2
        ty0 = min(max(ty0, 0), tile - least)
        ty1 = ty0 + least
    tx0, ty0 = min(max(tx0, 0), tile - 1), min(max(ty0, 0), tile - 1)
    tx1, ty1 = min(max(tx1, tx0 + 1), tile), min(max(ty1, ty0 + 1), tile)

    red = np.asarray(PART_RED, dtype=np.float32)
    part = out[ty0:ty1, tx0:tx1]
    part[...] = (1.0 - PART_ALPHA) * part + PART_ALPHA * red
    if t:
        out[ty0 : min(ty0 + t, ty1), tx0:tx1] = red
        out[max(ty1 - t, ty0) : ty1, tx0:tx1] = red
        out[ty0:ty1, tx0 : min(tx0 + t, tx1)] = red
        out[ty0:ty1, max(tx1 - t, tx0) : tx1] = red
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


#: Punctuation PIL's built-in font lacks, spelled with what it has.
_PLAIN = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2212": "-", "\u2026": "...", "\u2018": "'",
                        "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int, int]:
    """Width, height and top offset of ``text``."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return x1 - x0, y1 - y0, y0


def summary_grid(
    tiles: list[np.ndarray],
    *,
    columns: int = 8,
    gap: int = 4,
    title: str | None = None,
    font_size: int = 15,
) -> np.ndarray:
    """The tiles in a grid on white, ``[H, W, 3]`` uint8, with an optional title strip.

    Tiles fill rows left to right; a grid with fewer tiles than ``columns`` is only as wide
    as its tiles. Tiles of different sizes get cells of the largest size, centred. The
    title is drawn with PIL's default font; a title wider than the grid widens the image up
    to the width of a full row of ``columns`` cells and is cut with an ellipsis beyond.
    """
    columns = max(1, int(columns))
    gap = max(0, int(gap))
    arrays = [as_rgb_uint8(t) for t in tiles]
    n = len(arrays)
    cell_h = max((a.shape[0] for a in arrays), default=0)
    cell_w = max((a.shape[1] for a in arrays), default=0)
    cols = min(columns, n) if n else 0
    rows = math.ceil(n / cols) if n else 0
    grid_w = cols * cell_w + (cols + 1) * gap if n else 2 * gap
    grid_h = rows * cell_h + (rows + 1) * gap if n else gap

    title_img = None
    width = grid_w
    if title:
        font = _font(font_size)
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        pad = max(gap, 6)
        max_w = max(grid_w, columns * cell_w + (columns + 1) * gap, 160)
        text = " ".join(str(title).translate(_PLAIN).split())
        tw, _, _ = _text_size(probe, text, font)
        if tw + 2 * pad > max_w:
            while text and _text_size(probe, text + "...", font)[0] + 2 * pad > max_w:
                text = text[:-1]
            text = text.rstrip() + "..."
            tw = _text_size(probe, text, font)[0]
        width = max(grid_w, tw + 2 * pad)
        _, line_h, _ = _text_size(probe, "Ag", font)
        strip_h = line_h + 2 * pad
        title_img = Image.new("RGB", (width, strip_h), (255, 255, 255))
        draw = ImageDraw.Draw(title_img)
        _, _, top = _text_size(draw, "Ag", font)
        draw.text((pad, pad - top), text, fill=(34, 34, 34), font=font)

    strip_h = title_img.height if title_img is not None else 0
    canvas = np.full((strip_h + grid_h, width, 3), 255, dtype=np.uint8)
    if title_img is not None:
        canvas[:strip_h] = np.asarray(title_img)
    x_off = (width - grid_w) // 2
    for k, a in enumerate(arrays):
        r, c = divmod(k, cols)
        y = strip_h + gap + r * (cell_h + gap) + (cell_h - a.shape[0]) // 2
        x = x_off + gap + c * (cell_w + gap) + (cell_w - a.shape[1]) // 2
        canvas[y : y + a.shape[0], x : x + a.shape[1]] = a
    return canvas


def summary_image(
    manifest: Manifest,
    summary: SummaryRecord | int,
    images: Mapping[int, np.ndarray] | Callable[[int], np.ndarray],
    *,
    masks: Mapping[int, np.ndarray] | Callable[[int], np.ndarray | None] | None = None,
    tile: int = 128,
    columns: int = 8,
    gap: int = 4,
    title: str | None = None,
    max_tiles: int | None = None,
    context: float | None = None,
) -> np.ndarray:
    """The grid image of one summary of ``manifest``.

    ``context`` is :func:`member_tile`'s; ``None`` takes the run's ``summaries.tile_context``
    from the manifest's configuration (0 when it does not have one).

    ``images`` gives the original image ``[H, W, 3]`` of an ``ImageRecord.id`` (a mapping or
    a function; each image is fetched once). ``masks`` optionally gives that image's binary
    saliency mask (any size; resized to the image), used to dim what lies outside the
    regions. Members are shown best score first; ``max_tiles`` caps their number. ``title``
    ``None`` writes a default title ("Summary 3 - 12 parts from 9 images"), ``""`` none.
    """
    if isinstance(summary, int):
        found = [s for s in manifest.summaries if s.id == summary]
        if not found:
            raise KeyError(f"no summary with id {summary}")
        summary = found[0]
    records = {im.id: im for im in manifest.images}
    get_image = images if callable(images) else images.__getitem__
    get_mask = None
    if masks is not None:
        get_mask = masks if callable(masks) else (lambda i: masks.get(i))  # type: ignore[union-attr]

    if context is None:
        context = float(manifest.config.get("summaries", {}).get("tile_context", 0.0))
    members = sorted(summary.members, key=lambda m: (-m.score, m.image, m.region))
    shown = members if max_tiles is None else members[: max(0, max_tiles)]
    loaded: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    tiles = []
    for mem in shown:
        if mem.image not in loaded:
            img = as_rgb_uint8(get_image(mem.image))
            mask = get_mask(mem.image) if get_mask is not None else None
            if mask is not None:
                mask = _fit_mask(mask, img.shape[0], img.shape[1])
            loaded[mem.image] = (img, mask)
        img, mask = loaded[mem.image]
        regions = {r.id: r for r in records[mem.image].regions} if mem.image in records else {}
        region = regions.get(mem.region)
        region_bbox = region.bbox if region is not None else mem.part_bbox
        tiles.append(member_tile(img, region_bbox, mem.part_bbox, tile=tile, region_mask=mask, context=context))

    if title is None:
        n_img = len({m.image for m in summary.members})
        title = (
            f"Summary {summary.id} - {len(summary.members)} parts from {n_img} "
            f"image{'s' if n_img != 1 else ''}"
        )
        if len(shown) < len(members):
            title += f" (best {len(shown)} shown)"
    return summary_grid(tiles, columns=columns, gap=gap, title=title or None)


def save_png(array: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``array`` (``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]``) as a PNG, atomically.

    Float arrays are read as in :func:`as_rgb_uint8`. The parent folder is created.
    Returns the path.
    """
    path = Path(path)
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 4:
        rgba = a if a.dtype == np.uint8 else np.dstack([as_rgb_uint8(a), as_rgb_uint8(a[:, :, 3])[:, :, :1]])
        img = Image.fromarray(np.ascontiguousarray(rgba))
    elif a.ndim == 2 and a.dtype in (np.uint8, np.bool_):
        img = Image.fromarray(np.ascontiguousarray((a.astype(np.uint8) * 255) if a.dtype == np.bool_ else a))
    else:
        img = Image.fromarray(as_rgb_uint8(a))
    with atomic_write(path, "wb") as fh:
        img.save(fh, format="PNG")
    return path
