"""Content-addressed, atomic on-disk cache of expensive stage results.

A result is stored under a key derived from everything that determines it: the inputs'
content (image bytes, not paths), the model's fingerprint, the component and its options,
and visum's version. Writes go to a temporary file that is renamed into place, so a run
killed mid-write never leaves a half-written entry; a rerun finds every finished entry and
recomputes only the rest. A corrupt entry counts as missing.

The default location is ``$VISUM_CACHE_DIR`` or ``~/.cache/visum``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from visum import __version__
from visum.atomic import atomic_write


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
    """Pickle files under ``root/<stage>/<key[:2]>/<key>.pkl``; disabled means always miss, never write."""

    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def _path(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / f"{key}.pkl"

    def get(self, stage: str, key: str) -> Any | None:
        if not self.enabled:
            self.misses += 1
            return None
        path = self._path(stage, key)
        try:
            with open(path, "rb") as fh:
                value = pickle.load(fh)
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception:  # truncated or foreign file: drop it and recompute
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, stage: str, key: str, value: Any) -> None:
        if not self.enabled:
            return
        path = self._path(stage, key)
        with atomic_write(path, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)

    def get_or_compute(self, stage: str, key: str, compute: Callable[[], Any]) -> Any:
        value = self.get(stage, key)
        if value is None:
            value = compute()
            self.put(stage, key, value)
        return value
