"""Finding and decoding the images of a run.

Every image becomes an ``[H, W, 3]`` uint8 RGB array:

* colour modes: grayscale (``1``, ``L``), palette (``P``), CMYK, YCbCr and the like are
  converted to RGB by Pillow; images with transparency (``RGBA``, ``LA``, ``PA``, or a
  palette/``tRNS`` transparent colour) are composited over **white**, the usual page
  background, so transparent areas do not turn into black shapes the model would react to;
* high bit depth: 16-bit data (``I;16*`` modes, and ``I`` images whose values lie in
  0..65535, which is how Pillow opens many 16-bit files) is scaled by the **fixed** full
  range, ``v * 255 / 65535``, not stretched to its own min..max, so a dark image stays
  dark, as every viewer shows it, and the same scene written at 8 or 16 bits gives the
  same pixels. 32-bit integer images with values outside 0..65535 and floating-point
  images outside [0, 1] are stretched from their own minimum and maximum; float images
  within [0, 1] are scaled by 255. (Pillow itself reduces 16-bit RGB PNGs to 8 bits.)
* the EXIF orientation tag is applied (a phone photo is seen upright); a broken EXIF
  block is ignored rather than rejecting an image that decodes fine;
* animations and multi-page files contribute their first frame.

Anything else is an :class:`~visum.errors.InputError` naming the file: a file that is not
an image, a truncated or corrupt one, one smaller than ``min_side`` on either side, or one
with more than ``max_pixels`` pixels (checked from the header, before decoding: a guard
against decompression bombs). This module only reads: it never prints.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from visum.errors import InputError

#: file name suffixes (lower case) of the formats visum expects; informative only:
#: :func:`list_images` returns every file, and :func:`load_image` decides by content.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)

_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def list_images(folder: Path) -> list[Path]:
    """Every regular, non-hidden file directly in ``folder`` (not recursive), sorted by name.

    Files are not filtered by suffix: a stray non-image is reported by :func:`load_image`
    instead of being silently skipped. Hidden files (name starting with ``.``) are ignored.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    try:
        entries = list(folder.iterdir())
    except OSError as e:
        raise InputError(f"{folder}: cannot be listed ({e.strerror or e})") from None
    files = sorted((p for p in entries if not p.name.startswith(".") and p.is_file()), key=lambda p: p.name)
    if not files:
        raise InputError(f"{folder}: contains no image files")
    return files


#: a run loads images of more pixels than this downscaled (by a whole factor, averaging blocks):
#: the model sees a few hundred pixels, and a 99 MP 16-bit PNG would otherwise take gigabytes
LOAD_PIXELS = 25_000_000


def load_image(path: Path, *, min_side: int = 16, max_pixels: int = 100_000_000) -> np.ndarray:
    """Decode ``path`` into an ``[H, W, 3]`` uint8 RGB array (see the module docstring)."""
    return load_image_bounded(path, min_side=min_side, max_pixels=max_pixels, max_load_pixels=None)[0]


def load_image_bounded(path: Path, *, min_side: int = 16, max_pixels: int = 100_000_000,
                       max_load_pixels: int | None = LOAD_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """``(pixels [h, w, 3] uint8, (W, H) of the file)``: :func:`load_image`, but an image of more
    than ``max_load_pixels`` pixels is reduced by the smallest whole factor ``k`` that brings it
    under (each output pixel the mean of a ``k x k`` block, before the conversion to 8-bit RGB),
    so memory stays bounded by the decoded file. ``W / w`` maps pixels back to the file's."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: not an image (empty file)")
    _allow_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb warning (we check the size ourselves) and its warnings about
            # odd metadata; the module promises not to print.
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise InputError(
                        f"{path}: {w}x{h} pixels is more than the limit of {max_pixels} "
                        "(a guard against decompression bombs)"
                    )
                if w < min_side or h < min_side:
                    raise InputError(f"{path}: {w}x{h} pixels is too small (at least {min_side} on each side)")
                try:
                    im.load()
                except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, EOFError, ...
                    raise InputError(f"{path}: truncated or corrupt image ({_describe(e)})") from None
                try:
                    im = ImageOps.exif_transpose(im)
                except Exception:
                    pass  # unreadable orientation: keep the pixels as stored
                size = im.size
                if max_load_pixels is not None and size[0] * size[1] > max_load_pixels:
                    im = _reduce(im, int(np.ceil(np.sqrt(size[0] * size[1] / max_load_pixels))))
                return _to_rgb(im), size
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: too large to decode safely ({_describe(e)})") from None
    except OSError as e:
        if path.stat().st_size == 0:
            raise InputError(f"{path}: not an image (empty file)") from None
        raise InputError(f"{path}: cannot be read ({_describe(e)})") from None
    except Exception as e:
        raise InputError(f"{path}: not an image or corrupt ({_describe(e)})") from None


def _allow_pixels(max_pixels: int) -> None:
    """Make sure Pillow lets images up to ``max_pixels`` through to our own check.

    Pillow refuses images above ``2 * Image.MAX_IMAGE_PIXELS`` in ``Image.open``; the limit
    is only ever raised here, never lowered, and only when ``max_pixels`` needs it.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and max_pixels >= 2 * limit:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _reduce(im: Image.Image, k: int) -> Image.Image:
    """``im`` reduced ``k`` times on each side by block means, in a mode :meth:`Image.reduce` takes."""
    while im.size[0] * im.size[1] and min(im.size) // k < 1:
        k -= 1
    if im.mode.startswith("I;16"):
        im = im.convert("I")
    elif im.mode in {"P", "PA", "1"}:
        im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
    return im.reduce(k) if k > 1 else im


def _to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in _ALPHA_MODES or (mode in {"P", "L", "RGB"} and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    if mode == "RGB":
        return np.array(im, dtype=np.uint8)
    if mode.startswith("I;16") or mode in {"I", "F"}:
        gray = _to_8bit(np.asarray(im))
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.array(im.convert("RGB"), dtype=np.uint8)


def _to_8bit(a: np.ndarray) -> np.ndarray:
    """16/32-bit integer or float samples → uint8 (fixed 16-bit range where it applies)."""
    is_float = np.issubdtype(a.dtype, np.floating)
    a = a.astype(np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if is_float and lo >= 0.0 and hi <= 1.0:
        scaled = a * 255.0
    elif not is_float and lo >= 0.0 and hi <= 65535.0:
        scaled = a * (255.0 / 65535.0)
    elif hi > lo:
        scaled = (a - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(a)
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).round().astype(np.uint8)


def _describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
