"""Content-addressed, atomic on-disk cache of expensive stage results.

A result is stored under a key derived from everything that determines it: the inputs'
content (image bytes, not paths), the model's fingerprint, the component and its options,
and visum's version. Writes go to a temporary file that is renamed into place, so a run
killed mid-write never leaves a half-written entry; a rerun finds every finished entry and
recomputes only the rest. Entries are data files with a checksum (:mod:`visum.cache_codec`),
never pickles: reading a shared cache folder cannot run code, and a damaged entry is noticed,
deleted and recomputed.

The default location is ``$VISUM_CACHE_DIR`` or ``~/.cache/visum``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from visum import __version__
from visum.atomic import write_bytes_atomic
from visum.cache_codec import decode, encode


def default_cache_dir() -> Path:
    env = os.environ.get("VISUM_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "visum"


def content_hash(*arrays_or_bytes: Any) -> str:
    """sha256 of arrays (shape, dtype and bytes) and byte strings, in order."""
    h = hashlib.sha256()
    for item in arrays_or_bytes:
        if isinstance(item, np.ndarray):
            h.update(str((item.shape, item.dtype.str)).encode())
            h.update(np.ascontiguousarray(item).tobytes())
        elif isinstance(item, (bytes, bytearray)):
            h.update(item)
        else:
            h.update(str(item).encode())
    return h.hexdigest()


def make_key(stage: str, **parts: Any) -> str:
    """A key for ``stage`` from JSON-able parts; visum's version is always part of it."""
    payload = json.dumps({"stage": stage, "visum": __version__, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


class Cache:
    """Checksummed data files under ``root/<stage>/<key[:2]>/<key>.vcache`` (:mod:`visum.cache_codec`).

    ``get`` returns ``None`` for a miss. An entry that is damaged (truncated, altered bytes, not
    an entry of this stage and key) or fails the caller's ``check`` is deleted and counts as a
    miss, with one warning naming the file, so the caller recomputes and replaces it. A folder
    that cannot be created, read or written gives one warning and the run goes on uncached.
    Disabled means always miss, never write. ``warn`` receives each warning line (default: a
    Python :class:`~visum.errors.VisumWarning`); the pipeline routes it to its reporter.
    """

    SUFFIX = ".vcache"

    def __init__(self, root: Path | None = None, enabled: bool = True,
                 warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.warn = warn  # None: a Python warning; the pipeline sets its reporter's
        self.hits = 0
        self.misses = 0
        self.damaged = 0
        self._broken: str | None = None  # why the folder cannot be used, once said
        self._unstorable: set[str] = set()

    def _path(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / f"{key}{self.SUFFIX}"

    def _give_up(self, exc: OSError, path: Path) -> None:
        if self._broken is None:
            self._broken = f"{type(exc).__name__}: {exc.strerror or exc}"
            self._say(f"cache {self.root} cannot be used ({path}: {exc.strerror or exc}); the run goes on uncached")

    def _say(self, message: str) -> None:
        (self.warn or _python_warning)(message)

    def get(self, stage: str, key: str, check: Callable[[Any], None] | None = None) -> Any | None:
        """The value stored under ``(stage, key)``, or ``None``. ``check(value)`` raises
        ``ValueError`` or ``TypeError`` for a value of the wrong type or shape."""
        if not self.enabled or self._broken:
            self.misses += 1
            return None
        path = self._path(stage, key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self.misses += 1
            return None
        except OSError as exc:
            self._give_up(exc, path)
            self.misses += 1
            return None
        try:
            value = decode(data, {"stage": stage, "key": key})
            if check is not None:
                check(value)
        except (ValueError, TypeError) as exc:  # DamagedEntry is a ValueError
            self.damaged += 1
            self.misses += 1
            self._say(f"cache entry {path} is damaged ({exc}); recomputing it")
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            return None
        self.hits += 1
        return value

    def put(self, stage: str, key: str, value: Any) -> None:
        if not self.enabled or self._broken:
            return
        try:
            data = encode(value, {"stage": stage, "key": key})
        except TypeError as exc:
            if stage not in self._unstorable:
                self._unstorable.add(stage)
                self._say(f"results of stage '{stage}' are not cached: {exc}")
            return
        path = self._path(stage, key)
        try:
            write_bytes_atomic(path, data)
        except OSError as exc:
            self._give_up(exc, path)

    def delete(self, stage: str, key: str) -> None:
        """Remove the entry ``(stage, key)`` if there is one (a checkpoint whose work is done)."""
        if not self.enabled or self._broken:
            return
        try:
            self._path(stage, key).unlink(missing_ok=True)
        except OSError as exc:
            self._give_up(exc, self._path(stage, key))

    def get_or_compute(self, stage: str, key: str, compute: Callable[[], Any],
                       check: Callable[[Any], None] | None = None) -> Any:
        value = self.get(stage, key, check)
        if value is None:
            value = compute()
            self.put(stage, key, value)
        return value


def expect_array(ndim: int, kind: str = "f", shape: tuple[int | None, ...] | None = None,
                 low: float | None = None, high: float | None = None) -> Callable[[Any], None]:
    """A ``check`` for :meth:`Cache.get`: a NumPy array of ``ndim`` dimensions whose dtype kind is
    one of ``kind`` (``"f"`` float, ``"iu"`` integer, ...), of ``shape`` (``None`` = any length
    on that axis), finite, within ``[low, high]``."""

    def check(value: Any) -> None:
        if not isinstance(value, np.ndarray) or value.ndim != ndim or value.dtype.kind not in kind:
            got = f"{value.dtype} array of shape {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise TypeError(f"expected a {ndim}-d array of kind {kind!r}, found a {got}")
        if shape is not None and any(n is not None and n != m for n, m in zip(shape, value.shape)):
            raise ValueError(f"shape {value.shape}, expected {shape}")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ValueError("non-finite values")
        if value.size and ((low is not None and value.min() < low) or (high is not None and value.max() > high)):
            raise ValueError(f"values outside [{low}, {high}]")

    return check


def _python_warning(message: str) -> None:
    import warnings

    from visum.errors import VisumWarning

    warnings.warn(message, VisumWarning, stacklevel=4)
