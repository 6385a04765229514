"""Labelled images for the experiments: parts-benchmark splits, or folders of class subfolders.

Parts-benchmark splits come from seeds no training run uses (training seeds are
``>= 1_000_000_000``; the held-out set is seed 999), one seed per split, so the SVM training,
validation and test images of Sec. 4.4 and the images the summaries of Sec. 4.3 are made
from never overlap. A folder input holds one subfolder per class, named by the class name
or index of the model (``DIR/tabby cat/*.jpg``).
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visum.data.images import list_images, load_image
from visum.errors import ConfigError, InputError
from visum.models.base import LoadedModel

EXPERIMENT_SEED_BASE = 5_000_000  # + 10 * --seed + split code below
SPLIT_CODES = {"summaries": 0, "train": 1, "validation": 2, "test": 3}


def split_seed(split: str, seed: int) -> int:
    """The parts-benchmark seed of ``split`` (``summaries``, ``train``, ``validation``, ``test``)."""
    return EXPERIMENT_SEED_BASE + 10 * int(seed) + SPLIT_CODES[split]


@dataclass
class LabelledImages:
    """Images ``[H, W, 3]`` uint8 with labels (model class indices); ``samples`` or ``paths`` say where they came from."""

    images: list[np.ndarray]
    labels: np.ndarray
    samples: list | None = None  # PartsSample each, for the parts benchmark
    paths: list[Path] | None = None  # the files, for folder inputs
    class_names: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx: Sequence[int]) -> LabelledImages:
        idx = [int(i) for i in idx]
        return LabelledImages(
            [self.images[i] for i in idx], self.labels[idx] if idx else self.labels[:0],
            [self.samples[i] for i in idx] if self.samples is not None else None,
            [self.paths[i] for i in idx] if self.paths is not None else None,
            self.class_names,
        )

    def of_class(self, label: int) -> LabelledImages:
        return self.subset(np.flatnonzero(self.labels == label))

    def views(self, model: LoadedModel) -> list[np.ndarray]:
        return [model.preprocessing.view(im).pixels for im in self.images]


def parts_split(split: str, n_per_class: int, seed: int = 0, labels: Sequence[int] | None = None) -> LabelledImages:
    """``n_per_class`` parts-benchmark images of each class of ``labels`` (default all) for ``split``.

    The last few splits are kept in memory, so several models of one experiment share them.
    """
    return _parts_split(split, int(n_per_class), int(seed), None if labels is None else tuple(int(k) for k in labels))


@functools.lru_cache(maxsize=4)
def _parts_split(split: str, n_per_class: int, seed: int, labels: tuple[int, ...] | None) -> LabelledImages:
    from visum.data.parts import CLASS_NAMES, make_dataset

    return parts_images(make_dataset(n_per_class, seed=split_seed(split, seed), labels=labels), CLASS_NAMES)


def parts_images(samples: list, class_names: Sequence[str]) -> LabelledImages:
    return LabelledImages([s.image for s in samples], np.array([s.label for s in samples], np.int64),
                          samples=list(samples), class_names=dict(enumerate(class_names)))


def class_folders(root: Path, model: LoadedModel) -> LabelledImages:
    """Every image of ``root/<class>/``, labelled by the model's class of the subfolder's name (or index)."""
    from visum.models.loading import num_classes, resolve_target

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (expected one subfolder of images per class)")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subs:
        raise InputError(f"{root}: no class subfolders (expected e.g. {root}/<class name>/*.jpg)")
    images, labels, paths, names = [], [], [], {}
    k = num_classes(model)
    for sub in subs:
        try:
            label = resolve_target(sub.name, model.class_names, k)
        except ConfigError as e:
            raise InputError(f"{sub}: the folder name is not a class of {model.spec} ({e})") from None
        if label in names:
            raise InputError(f"{sub}: class {label} already given by folder {names[label]!r}")
        names[label] = sub.name
        for path in list_images(sub):
            images.append(load_image(path))
            labels.append(label)
            paths.append(path)
    return LabelledImages(images, np.array(labels, np.int64), paths=paths, class_names=names)


def split_folders(data: LabelledImages, fractions: tuple[float, float, float], seed: int) -> dict[str, LabelledImages]:
    """Split every class of ``data`` at random (seeded per class) into train / validation / test by ``fractions``."""
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions {fractions} must be three positive numbers summing to 1")
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for label in np.unique(data.labels):
        idx = np.flatnonzero(data.labels == label)
        idx = idx[np.random.default_rng([int(seed), int(label)]).permutation(len(idx))]
        n_train = round(fractions[0] * len(idx))
        n_val = round(fractions[1] * len(idx))
        parts["train"] += idx[:n_train].tolist()
        parts["validation"] += idx[n_train:n_train + n_val].tolist()
        parts["test"] += idx[n_train + n_val:].tolist()
    return {name: data.subset(sorted(idx)) for name, idx in parts.items()}


def stage(data: LabelledImages, folder: Path) -> list[str]:
    """Put ``data``'s images into ``folder`` for a pipeline run; returns their file names, in order.

    Parts samples are written as PNGs (with their ground truth); files are linked (copied
    where links are not possible) under names that keep them in the same order.
    """
    from visum.data.parts import write_dataset

    folder = Path(folder)
    if data.samples is not None:
        return [p.name for p in write_dataset(data.samples, folder)]
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():  # links or copies of an earlier staging
        if old.is_symlink() or old.is_file():
            old.unlink()
    names = []
    for i, path in enumerate(data.paths or []):
        name = f"{i:05d}_{path.name}"
        try:
            os.symlink(Path(path).resolve(), folder / name)
        except OSError:
            shutil.copyfile(path, folder / name)
        names.append(name)
    return names
