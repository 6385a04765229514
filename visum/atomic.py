"""Atomic file writes: a reader sees the old file or the whole new one, never half of one.

Every writer of visum (manifest, masks, run.toml, report, summary pictures, cache entries,
ground truth, benchmark tables, trained weights) goes through :func:`atomic_write`: the data
is written to a temporary file in the destination's folder and renamed over the
destination (``os.replace``, atomic on POSIX and Windows). A process killed
mid-write leaves at most a hidden ``.<name>.*.tmp`` file, never a truncated destination. (No ``fsync``: this guards against a killed process,
not against a power cut.)
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_write", "write_bytes_atomic", "write_text_atomic"]


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file next to ``path`` for writing; on a clean exit rename it to ``path``.

    ``mode`` is ``"w"`` (text, in ``encoding``, lines ended as ``open(newline=...)`` does) or ``"wb"``. On an exception the temporary file
    is removed, ``path`` is left as it was and the exception propagates. The parent folder is
    created. The file gets mode 0644 (``mkstemp`` would leave 0600).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        text = {} if "b" in mode else {"encoding": encoding, "newline": newline}
        with os.fdopen(fd, mode, **text) as fh:
            yield fh
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is not None and exc.errno is not None:
            raise
        # a short write (Pillow's "N requested and M written") on a regular file is a full disk or quota
        code = exc.errno or errno.ENOSPC
        raise OSError(code, exc.strerror or f"{os.strerror(code)} ({exc})", str(path)) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """``Path(path).write_text(text)``, atomically. Returns the path."""
    with atomic_write(path, "w", encoding) as fh:
        fh.write(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """``Path(path).write_bytes(data)``, atomically. Returns the path."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)
