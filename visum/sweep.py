"""Sweeps: classes x models x saliency methods, one run per cell (the paper's Sec. 4.3 experiments).

A sweep file (TOML)::

    models = ["parts", "efficientnet-lite0"]      # --model specifications
    saliency = ["crisp", "gradient"]              # saliency plugins
    image_folder = "data/train"                   # one sub-folder per class, named after it (ImageFolder)
    # or, class by class (``images`` omitted: the generated parts benchmark):
    [[classes]]
    name = "parrot"
    images = "data/parrot"
    target = "macaw"                              # default: the class's name
    [run]                                         # any run.toml field, shared by every cell
    benchmark_images = 30
    [run.summaries]
    merge = "auto"

Each cell is one ``visum run`` with that model, class and method; relative paths are read
against the sweep file's folder. A cell's *key* hashes everything that determines its result:
its whole run configuration (its torch threads, ``cpus_per_cell``, included), the content of its
images (file names and bytes), of the model, weights and class-name files it names, and where its
plugins come from, so a cell
whose folder holds a finished run under its key is done and is not run again: a stopped sweep
goes on where it stopped. The core returns records; :mod:`visum.engines` runs cells,
:mod:`visum.report.sweep` writes the sweep's report.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visum.cache import make_key
from visum.components import KIND, KINDS
from visum.config import RunConfig, make_config
from visum.data.images import list_images
from visum.errors import ConfigError, VisumError
from visum.experiments.accuracy import Correlation, spearman

__all__ = ["SweepClass", "SweepFile", "Cell", "CellRecord", "load_sweep", "cells_of", "cell_record",
           "run_cell", "correlation", "slug", "CELLS"]

CELLS = "cells"  # the sub-folder of a sweep's output that holds one run folder per cell


class SweepClass(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="The class's name in the sweep report.")
    images: Path | None = Field(None, description="Folder of its images; none = the generated parts benchmark.")
    target: str | None = Field(None, description="Class index or name for the model; default: name.")


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=lambda: ["parts"], min_length=1)
    saliency: list[str] = Field(default_factory=lambda: [KIND["saliency"].default], min_length=1)
    classes: list[SweepClass] = Field(default_factory=list)
    image_folder: Path | None = Field(None, description="One sub-folder per class, named after the class (its target).")
    run: dict[str, Any] = Field(default_factory=dict, description="run.toml fields shared by every cell.")
    cpus_per_cell: int = Field(1, ge=1, description="CPU threads (and matching processes) of one cell.")


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: ``name`` is its folder under ``cells/``; ``key`` what determines its result."""

    name: str
    model: str
    klass: str
    saliency: str
    config: RunConfig
    key: str


@dataclass(frozen=True)
class CellRecord:
    """What the sweep report shows of a finished cell (from its manifest), or why it failed."""

    name: str
    model: str
    klass: str
    saliency: str
    key: str
    images: int = 0
    classified: int = 0  # images the model predicts as the target
    kept: int = 0  # kept summaries
    error: str | None = None

    @property
    def accuracy(self) -> float:
        return self.classified / self.images if self.images else float("nan")


def slug(text: str) -> str:
    """``text`` as a file name: runs of other characters than letters, digits, ``.``, ``_``, ``-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "x"


def load_sweep(path: Path) -> tuple[SweepFile, Path]:
    """The sweep file and the folder its relative paths start from; one-line ConfigError if it is bad."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"sweep file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"sweep file {path} is a folder, not a TOML file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"sweep file {path}: {exc}") from None
    try:
        sweep = SweepFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"sweep file {path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return sweep, path.resolve().parent


def _classes(sweep: SweepFile, base: Path) -> list[SweepClass]:
    classes = [c.model_copy(update={"images": None if c.images is None else (base / c.images)}) for c in sweep.classes]
    if sweep.image_folder is not None:
        root = base / sweep.image_folder
        if not root.is_dir():
            raise ConfigError(f"sweep image_folder {root} is not a folder")
        classes += [SweepClass(name=d.name, images=d) for d in sorted(root.iterdir()) if d.is_dir()]
    if not classes:
        raise ConfigError("the sweep names no class: give [[classes]] or image_folder")
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ConfigError(f"the sweep names a class twice: {sorted({n for n in names if names.count(n) > 1})}")
    return classes


def images_digest(folder: Path | None) -> str:
    """sha256 over the sorted image files' names and bytes (``"parts-benchmark"`` for none)."""
    if folder is None:
        return "parts-benchmark"
    h = hashlib.sha256()
    for p in list_images(folder):
        h.update(p.name.encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _relative_to(base: Path, value: str) -> str:
    """A relative path the sweep names, read against the sweep file's folder when that file exists there."""
    if not value or Path(value).is_absolute() or not (base / value).exists():
        return value
    return str(base / value)


def _file_digest(value: Any) -> str | None:
    """sha256 of a model, weights or class-names file the configuration names; None when it names no file."""
    if value is None or not Path(str(value)).is_file():
        return None
    h = hashlib.sha256()
    with open(value, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cells_of(sweep: SweepFile, base: Path) -> list[Cell]:
    """Every cell, its configuration validated before any work (a bad one is one ConfigError line)."""
    from visum.plugins import get_catalogue

    catalogue = get_catalogue()
    for field in ("images", "target", "saliency"):
        if field in sweep.run:
            raise ConfigError(f"the sweep's [run] sets {field}: a sweep sets it per cell (classes, saliency)")
    out: list[Cell] = []
    for klass in _classes(sweep, base):
        if klass.images is not None and not klass.images.is_dir():
            raise ConfigError(f"sweep class {klass.name!r}: images {klass.images} is not a folder")
        digest = images_digest(klass.images)
        for model in sweep.models:
            for saliency in sweep.saliency:
                data = {**sweep.run, "saliency": saliency, "workers": sweep.cpus_per_cell}
                data["model"] = {**dict(sweep.run.get("model", {})), "spec": _relative_to(base, model)}
                for field in ("weights", "classes"):  # files the sweep names relative to itself
                    if isinstance(data["model"].get(field), str):
                        data["model"][field] = _relative_to(base, data["model"][field])
                if klass.images is not None:
                    data["images"] = str(klass.images)
                    data["target"] = klass.target or klass.name
                elif klass.target is not None:
                    data["target"] = klass.target
                try:
                    config = make_config(data)
                    for kind in KINDS:  # a misspelt plugin or option fails here, before any cell runs
                        catalogue.options(kind, config.component(kind), config.component_options(kind))
                except VisumError as exc:
                    raise ConfigError(f"sweep cell {model} / {klass.name} / {saliency}: {exc}") from None
                sources = {kind: catalogue.get(kind, config.component(kind)).source for kind in KINDS}
                files = {field: _file_digest(getattr(config.model, field)) for field in ("spec", "weights", "classes")}
                key = make_key("sweep-cell", config=config.model_dump(mode="json", exclude={"images"}),
                               images=digest, plugins=sources, model_files=files)
                name = f"{slug(model)}--{slug(klass.name)}--{slug(saliency)}-{key[:8]}"
                out.append(Cell(name, model, klass.name, saliency, config, key))
    return out


def cell_record(cell: Cell, folder: Path) -> CellRecord | None:
    """The record of ``cell`` if ``folder`` holds its finished run (its ``cell.json`` names the key), else None."""
    from visum.manifest import Manifest

    try:
        stamp = json.loads((folder.parent / f"{folder.name}.json").read_text())
        if stamp.get("key") != cell.key:
            return None
        manifest = Manifest.model_validate_json((folder / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return None
    target = manifest.model.target_index
    return CellRecord(cell.name, cell.model, cell.klass, cell.saliency, cell.key, images=len(manifest.images),
                      classified=sum(im.predicted_index == target for im in manifest.images),
                      kept=len(manifest.kept_summaries))


def run_cell(cell: Cell, out: Path, cache_dir: str | None, threads: int) -> CellRecord:
    """Run ``cell`` (unless done) into ``out/cells/<name>`` and return its record; a failure is recorded, not raised.

    Runs with ``threads`` torch threads whatever the engine (``cpus_per_cell``, part of the key)."""
    import torch

    from visum.api import summarize
    from visum.atomic import write_text_atomic
    from visum.errors import VisumError

    folder = Path(out) / CELLS / cell.name
    done = cell_record(cell, folder)
    if done is not None:
        return done
    if folder.exists():  # the sweep's own folder for this key, but not a finished run of it: damaged or stale
        shutil.rmtree(folder)
    for partial in folder.parent.glob(f".{cell.name}.*"):  # what a killed cell left while writing
        shutil.rmtree(partial, ignore_errors=True)
    from visum.allocator import steady_allocator

    steady_allocator()  # a Ray worker is a process of its own
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        result = summarize(cell.config.model.spec, config=cell.config, cache_dir=cache_dir, progress=False)
        result.save(folder)
        write_text_atomic(folder.parent / f"{cell.name}.json", json.dumps(
            {"key": cell.key, "model": cell.model, "class": cell.klass, "saliency": cell.saliency}, indent=1))
    except VisumError as exc:
        return CellRecord(cell.name, cell.model, cell.klass, cell.saliency, cell.key, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - one failing cell must not end the sweep, on any engine
        return CellRecord(cell.name, cell.model, cell.klass, cell.saliency, cell.key,
                          error=f"{type(exc).__name__}: {exc}")
    finally:
        torch.set_num_threads(before)
    record = cell_record(cell, folder)
    if record is None:
        return CellRecord(cell.name, cell.model, cell.klass, cell.saliency, cell.key,
                          error=f"its run was written to {folder} but does not read back")
    return record


def correlation(records: list[CellRecord]) -> dict[tuple[str, str], Correlation | None]:
    """Spearman's rho between a class's accuracy and its kept summaries over the classes, per (model, saliency):
    the paper's Sec. 4.3 measure, :func:`visum.experiments.accuracy.spearman` (exact p-value up to 8 classes).

    ``None`` where fewer than 3 classes finished or either quantity is constant."""
    groups: dict[tuple[str, str], list[CellRecord]] = {}
    for r in records:
        if r.error is None and r.images:
            groups.setdefault((r.model, r.saliency), []).append(r)
    out: dict[tuple[str, str], Correlation | None] = {}
    for key, rs in groups.items():
        c = spearman([r.accuracy for r in rs], [float(r.kept) for r in rs])
        out[key] = None if math.isnan(c.rho) else c
    return out


def records_json(records: list[CellRecord]) -> dict[str, Any]:
    """``sweep.json``: every cell's record and the correlations."""
    return {
        "cells": [asdict(r) | {"accuracy": None if math.isnan(r.accuracy) else r.accuracy} for r in records],
        "correlation": [{"model": m, "saliency": s, "classes": None if c is None else c.n,
                         "spearman_accuracy_kept": None if c is None else c.rho,
                         "p_value": None if c is None else c.p_value}
                        for (m, s), c in sorted(correlation(records).items())],
    }
