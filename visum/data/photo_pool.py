"""A pool of real photographs with ImageNet labels, assembled from installed packages (issue 15).

No offline source holds many photos of ImageNet classes, but several packages ship real
photographs: Tux Paint's stamps (photo cut-outs whose alpha channel is the object's mask),
GCompris's activity photos (inside Qt resource bundles), KDE Palapeli's puzzles, OpenCV's
sample data, foolbox's ImageNet samples, scikit-image's, scikit-learn's and matplotlib's
sample photos. ``benchmarks/photos/labels.tsv`` names each usable one and its ImageNet class
(labelled by eye); this module finds the files, reads them and splits them into dev and test.

The split is fixed by rule, before any photo is looked at through a model:

* photos that earlier saliency defaults were tuned on (foolbox's ImageNet samples, scikit-image's, scikit-learn's
  and matplotlib's samples: ``TUNED_ON``) are **dev**;
* every other photo is dev or test by the parity of the first byte of
  ``sha256(source + "\\t" + path)``.

Pure functions on bytes and arrays; the only file access is :func:`read_source`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from visum.errors import InputError

__all__ = ["PhotoEntry", "read_labels", "split_of", "rcc_files", "read_source", "decode_photo", "TUNED_ON",
           "BACKGROUND"]

#: sources whose photos earlier sessions tuned saliency defaults on: always dev
TUNED_ON = ("pip:foolbox", "pip:skimage", "pip:sklearn", "pip:matplotlib")
#: the grey a cut-out is composited on (RGB)
BACKGROUND = (124, 124, 124)


@dataclass(frozen=True)
class PhotoEntry:
    """One labelled photo: where it is, its ImageNet class, how sure the label is."""

    source: str  # "deb:PACKAGE" or "pip:MODULE"
    path: str  # as installed ("FILE.rcc!/resource" inside a Qt bundle), or inside the module's folder
    imagenet_index: int
    imagenet_name: str
    sure: bool
    note: str = ""

    @property
    def name(self) -> str:
        """A file-name-safe unique name: the package, then the path's last parts."""
        pkg = self.source.split(":", 1)[1]
        tail = self.path.replace("!", "/").strip("/").split("/")[-2:]
        stem = "-".join(tail).rsplit(".", 1)[0]
        return f"{pkg}--{stem}".replace(" ", "_")


def read_labels(path: Path) -> list[PhotoEntry]:
    """The rows of a labels file (tab-separated, ``#`` comments, one header row)."""
    entries, header = [], None
    for number, line in enumerate(Path(path).read_text("utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if header is None:
            header = cells
            if header[:5] != ["source", "path", "imagenet_index", "imagenet_name", "sure"]:
                raise InputError(f"{path}:{number}: expected the header source, path, imagenet_index, imagenet_name, sure")
            continue
        try:
            source, where, index, name, sure = cells[:5]
            index = int(index)
        except ValueError:
            raise InputError(f"{path}:{number}: a row needs five tab-separated cells, the third an integer") from None
        if not source.startswith(("deb:", "pip:")) or not 0 <= index < 1000 or sure not in ("yes", "likely"):
            raise InputError(f"{path}:{number}: source deb:/pip:, imagenet_index 0..999, sure yes|likely")
        entries.append(PhotoEntry(source, where, index, name, sure == "yes", cells[5] if len(cells) > 5 else ""))
    if not entries:
        raise InputError(f"{path}: no photo rows")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"{path}: two rows make the same photo name: {', '.join(twice[:3])}")
    return entries


def split_of(entry: PhotoEntry) -> str:
    """``"dev"`` or ``"test"`` by the module docstring's rule."""
    if entry.source in TUNED_ON:
        return "dev"
    digest = hashlib.sha256(f"{entry.source}\t{entry.path}".encode()).digest()
    return "dev" if digest[0] % 2 == 0 else "test"


def rcc_files(data: bytes) -> dict[str, bytes]:
    """Every file of a compiled Qt resource bundle (``.rcc``, format versions 1-3): ``{"/dir/file": bytes}``.

    Layout: ``"qres"``, then big-endian ``version, tree, data, names`` offsets (and, from
    version 3, global flags). A tree node is ``name offset (u32), flags (u16)`` and then, for a
    directory (flag 2), ``child count (u32), first child index (u32)``, for a file
    ``territory (u16), language (u16), data offset (u32)``; from version 2 a node ends with a
    ``u64`` modification time. Node 0 is the root. A name is ``length (u16), hash (u32)`` and
    UTF-16BE characters; a file's data is ``size (u32)`` and its bytes, zlib-compressed after a
    4-byte size when flag 1 is set.
    """
    if data[:4] != b"qres" or len(data) < 20:
        raise ValueError("not a Qt resource bundle (no 'qres' header)")

    def read(fmt: str, at: int) -> tuple:
        end = at + struct.calcsize(fmt)
        if at < 0 or end > len(data):
            raise ValueError(f"truncated: a field at byte {at} ends past the end ({len(data)} bytes)")
        return struct.unpack(fmt, data[at:end])

    version, tree, blobs, names = read(">IIII", 4)
    if version not in (1, 2, 3):
        raise ValueError(f"Qt resource format version {version} is not supported")
    node_size = 14 if version == 1 else 22
    n_nodes = max(0, (len(data) - tree) // node_size)

    def name_at(offset: int) -> str:
        (length,) = read(">H", names + offset)
        start = names + offset + 6
        if start + 2 * length > len(data):
            raise ValueError(f"truncated: a name at byte {names + offset} ends past the end")
        try:
            return data[start : start + 2 * length].decode("utf-16-be")
        except UnicodeDecodeError:
            raise ValueError(f"a name at byte {names + offset} is not UTF-16") from None

    out: dict[str, bytes] = {}
    stack = [(0, "")]
    seen = set()
    while stack:
        index, prefix = stack.pop()
        if index in seen or index >= n_nodes:
            raise ValueError(f"the resource tree is broken at node {index}")
        seen.add(index)
        at = tree + index * node_size
        name_offset, flags = read(">IH", at)
        path = prefix if index == 0 else f"{prefix}/{name_at(name_offset)}"
        if flags & 2:
            count, first = read(">II", at + 6)
            if first + count > n_nodes:
                raise ValueError(f"{path or '/'}: {count} children from node {first}, past the tree's end")
            stack.extend((first + k, path) for k in range(count))
            continue
        (offset,) = read(">I", at + 10)
        (size,) = read(">I", blobs + offset)
        start = blobs + offset + 4
        if start + size > len(data):
            raise ValueError(f"{path}: truncated: {size} bytes from byte {start}, past the end")
        blob = data[start : start + size]
        if flags & 4:
            raise ValueError(f"{path}: zstd-compressed resources are not supported")
        if flags & 1:
            try:
                blob = zlib.decompress(blob[4:])
            except zlib.error as e:
                raise ValueError(f"{path}: bad zlib data ({e})") from None
        out[path] = blob
    return out


def _installed(entry: PhotoEntry, debs: Path | None) -> Path:
    kind, package = entry.source.split(":", 1)
    where = entry.path.split("!", 1)[0]
    if kind == "pip":
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            raise InputError(f"{entry.name}: the Python package {package!r} is not installed")
        return Path(spec.origin).parent / where
    candidates = ([debs / package / where.lstrip("/"), debs / where.lstrip("/")] if debs else []) + [Path(where)]
    for path in candidates:
        if path.is_file():
            return path
    raise InputError(f"{entry.name}: {where} not found (install the Debian package {package}, or unpack it "
                     f"with dpkg-deb -x into DEBS/{package} and pass --debs DEBS)")


def read_source(entry: PhotoEntry, debs: Path | None = None, _bundles: dict | None = None) -> bytes:
    """The photo file's bytes, from the installed package (or ``debs/PACKAGE/…``: an unpacked ``.deb``)."""
    path = _installed(entry, debs)
    if "!" not in entry.path:
        return path.read_bytes()
    member = entry.path.split("!", 1)[1]
    bundles = {} if _bundles is None else _bundles
    if path not in bundles:
        try:
            bundles[path] = rcc_files(path.read_bytes())
        except ValueError as e:
            raise InputError(f"{path}: {e}") from None
    if member not in bundles[path]:
        raise InputError(f"{entry.name}: {member} is not in {path}")
    return bundles[path][member]


def decode_photo(data: bytes, margin: float = 0.15) -> tuple[np.ndarray, np.ndarray | None]:
    """``(rgb [H, W, 3] uint8, object mask [H, W] bool or None)`` of an image file's bytes.

    A photo with an alpha channel (a cut-out) is composited on :data:`BACKGROUND` and padded
    to a square with ``margin`` of its longer side on every side, so that a centre crop keeps
    the whole object; its mask is ``alpha >= 128``. Other photos are returned as they are.
    """
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"not an image PIL can read ({e})") from None
    with img:
        has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        rgba = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    if not has_alpha:
        return rgba[..., :3].copy(), None
    h, w = rgba.shape[:2]
    side = int(round(max(h, w) * (1 + 2 * margin)))
    top, left = (side - h) // 2, (side - w) // 2
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    canvas = np.empty((side, side, 3), np.float32)
    canvas[:] = BACKGROUND
    region = canvas[top : top + h, left : left + w]
    canvas[top : top + h, left : left + w] = alpha * rgba[..., :3] + (1 - alpha) * region
    mask = np.zeros((side, side), bool)
    mask[top : top + h, left : left + w] = rgba[..., 3] >= 128
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8), mask
