"""Writing a result: manifest.json, masks/, summaries/, run.toml, report.html.

A sink: it takes a :class:`visum.result.Result` that the pipeline computed in memory and
writes it. Nothing here computes a finding. A result is written whole or not at all:

1. :func:`check_out` (called before any work by the commands) refuses an ``--out`` that is a
   file, or a folder with something in it that is not a finished visum run;
2. :func:`save_result` writes everything into a fresh staging folder beside ``out``
   (``.<name>.<random>.visum-partial``), ``manifest.json`` first, each file atomically;
3. the staging folder takes the place of ``out``; a finished visum run already there is
   replaced whole (swapped out in one step on Linux, else renamed aside; then deleted), never
   mixed with the new one.

A failure to write is one :class:`~visum.errors.OutputError` line naming the path; what was
written stays in the staging folder, which the message names.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from visum.atomic import atomic_write, write_bytes_atomic, write_text_atomic
from visum.config import RunConfig, config_to_dict, dump_config
from visum.errors import OutputError
from visum.manifest import Manifest
from visum.result import Result, relative_to

if TYPE_CHECKING:
    from visum.evaluate.summaries import GroundTruthScores

__all__ = ["check_out", "is_visum_run", "save_result", "write_manifest"]

STAGING_SUFFIX = ".visum-partial"


def _relative_in(path: Path, roots: tuple[Path, ...]) -> Path | None:
    """``path`` relative to the first of ``roots`` it lies in (both resolved), else ``None``."""
    for root in roots:
        try:
            return path.resolve().relative_to(root.resolve())
        except ValueError:
            continue
    return None


#: what a run writes at the top of its folder; a folder holding anything else is not visum's to replace
RUN_FILES = frozenset({"manifest.json", "run.toml", "report.html", "masks", "summaries", "images"})


def is_visum_run(folder: Path) -> bool:
    """Whether ``folder`` holds a finished visum run: a ``manifest.json`` that validates."""
    try:
        Manifest.model_validate_json(Path(folder, "manifest.json").read_bytes())
        return True
    except (OSError, ValueError):
        return False


def check_out(out: Path, own: Path | None = None) -> None:
    """Refuse, before any work, an ``out`` visum may not replace, with one :class:`OutputError`
    line: a file; a folder holding anything visum does not write (:data:`RUN_FILES`); a folder of
    such names that is neither a finished visum run nor ``own`` (the folder the run itself wrote
    its inputs to). Checks that the folder beside it can be written."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out} is a file, not a folder")
        entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot be read ({exc.strerror or exc})") from None
    foreign = [name for name in entries if name not in RUN_FILES]
    ours = own is not None and Path(own).resolve() == out.resolve()
    if foreign or (entries and not ours and not is_visum_run(out)):
        what = f"files visum did not write ({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})" \
            if foreign else "no finished visum run"
        raise OutputError(f"--out {out} is a folder with {what}: choose a new or empty folder "
                          f"(a folder holding only a finished visum run is replaced whole)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        Path(probe).rmdir()
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write in {out.parent} ({exc.strerror or exc})") from None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where not available."""
    import ctypes
    import errno
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if done != 0:
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # the file system cannot: fall back
            return False
        raise OSError(code, os.strerror(code), str(b))
    return True


def _publish(staging: Path, out: Path) -> None:
    """Put ``staging`` at ``out``. A previous run at ``out`` is swapped out in one step where the
    system can (Linux), else renamed aside first (a moment without ``out``, the old run then in
    ``.<name>.*.visum-old``); it is deleted once the new one is in place."""
    if not out.exists():
        staging.rename(out)
        return
    if _exchange(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous run
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".visum-old", dir=out.parent))
    old.rmdir()
    out.rename(old)
    try:
        staging.rename(out)
    except OSError:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _moved(result: Result, new: Path, final: Path) -> tuple[Manifest, RunConfig, list[tuple[Path, Path]]]:
    """The manifest and configuration of ``result`` for a copy in ``new``, the staging folder of
    ``final``. Images that live in the result's folder or in ``final`` (which is replaced) are
    copied to the same place in ``new``, with the ``ground_truth`` folder beside them; their
    paths stay relative. Other images are named absolutely. The configuration's image folder is
    relative to the run folder when it moves with it, else absolute: run.toml works from any
    working folder. Returns the manifest, the configuration and the ``(source, destination)``
    copies to make."""
    old = Path(result.out_dir)
    manifest, config = result.manifest, result.config
    images, folders, copies = [], set(), []
    for im in manifest.images:
        src = old / im.path
        rel = _relative_in(src, (old, final))
        if rel is not None and src.is_file():
            copies.append((src, new / rel))
            folders.add((src.resolve().parent, (new / rel).parent))
            images.append(im.model_copy(update={"path": rel.as_posix()}))
        else:
            images.append(im.model_copy(update={"path": relative_to(src, new)}))
    for src_folder, dst_folder in folders:
        truth = src_folder / "ground_truth"
        if truth.is_dir():
            copies.append((truth, dst_folder / "ground_truth"))
    if config.images is not None:
        folder = Path(config.images)
        config = config.model_copy(update={"images": _relative_in(folder, (old, final)) or folder.resolve()})
    data = {"images": images, "config": config_to_dict(config)}
    return manifest.model_copy(update=data), config, copies


def save_result(result: Result, out: Path, *, ground_truth: GroundTruthScores | None = None) -> Path:
    """Write ``result`` into ``out`` whole (see the module's docstring); returns report.html
    (masks/ for a masks-only result)."""
    out = Path(out).absolute()
    check_out(out, own=result.out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=STAGING_SUFFIX, dir=out.parent))
    try:
        _write(result, staging, out, ground_truth)
        _publish(staging, out)
    except OSError as exc:
        kept = (staging / "manifest.json").exists()  # the findings: keep them and say where
        if not kept:
            shutil.rmtree(staging, ignore_errors=True)
        where = f"; what was written is in {staging}" if kept else ""
        raise OutputError(f"cannot write {exc.filename or staging}: {exc.strerror or exc}{where}") from None
    return out / "masks" if not result.complete else out / "report.html"


def _write(result: Result, out: Path, final: Path, ground_truth: GroundTruthScores | None) -> None:
    from visum.report import save_png, write_report

    manifest, config, copies = _moved(result, out, final)
    write_manifest(manifest, out)  # first: a full disk later keeps what the run found
    for src, dst in copies:
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            write_bytes_atomic(dst, src.read_bytes())
    for image_id, mask in result.masks.items():
        path = out / "masks" / f"{image_id:04d}.png"
        with atomic_write(path, "wb") as fh:
            Image.fromarray((mask * 255).round().astype(np.uint8)).save(fh, format="PNG")
        with atomic_write(path.with_suffix(".npy"), "wb") as fh:
            np.save(fh, result.view_masks[image_id])
    (out / "masks").mkdir(parents=True, exist_ok=True)
    if not result.complete:
        return
    (out / "summaries").mkdir(parents=True, exist_ok=True)
    for s in manifest.summaries:
        save_png(result.summary_pictures[s.id], out / s.image)
    dump_config(config, out / "run.toml")
    write_report(manifest, out, summary_pictures=result.summary_pictures, masks=result.masks,
                 thumbnails=result.thumbnails, inputs=result.inputs, ground_truth=ground_truth)


def write_manifest(manifest: Manifest, out: Path) -> Path:
    return write_text_atomic(Path(out) / "manifest.json", json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
