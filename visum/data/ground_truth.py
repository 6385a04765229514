"""Images with ground-truth part masks on disk: one format for every synthetic dataset.

A dataset folder holds its images directly (so it can be given to ``visum run`` as it is)
and ``ground_truth/``: one label map ``<image stem>.png`` per image (uint8, ``0`` =
background, ``k`` = ``parts[k - 1]``) and ``ground_truth.json`` with the class and part
names, and every image's label, class name, object box and part boxes (``null`` for absent
parts). :mod:`visum.data.parts` and :mod:`visum.data.worlds` write it; the evaluations read
it back with :func:`load_ground_truth`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from PIL import Image

from visum.atomic import atomic_write, write_text_atomic
from visum.errors import InputError

__all__ = ["GROUND_TRUTH_DIR", "GROUND_TRUTH_JSON", "GroundTruth", "Sample", "file_names", "write_samples",
           "load_ground_truth"]

GROUND_TRUTH_DIR = "ground_truth"
GROUND_TRUTH_JSON = "ground_truth.json"


class Sample(Protocol):
    """What a writable sample has: an image, its label, its part masks and its object box."""

    image: np.ndarray  # [S, S, 3] uint8
    label: int
    part_masks: dict[str, np.ndarray]  # name -> [S, S] bool
    object_box: tuple[int, int, int, int]


@dataclass(frozen=True)
class GroundTruth:
    """The ground truth of one written image, as read back by :func:`load_ground_truth`."""

    label: int
    object_box: tuple[int, int, int, int]
    part_masks: dict[str, np.ndarray]  # name -> [S, S] bool
    class_name: str = ""


def file_names(labels: Sequence[int], class_names: Sequence[str]) -> list[str]:
    """``<class>_<i:04d>.png`` for each label, ``i`` counted per class."""
    counts: dict[int, int] = {}
    names = []
    for label in labels:
        i = counts.get(label, 0)
        counts[label] = i + 1
        names.append(f"{class_names[label]}_{i:04d}.png")
    return names


def _bbox(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _previously_written(gt_dir: Path) -> set[str]:
    try:
        index = json.loads((gt_dir / GROUND_TRUTH_JSON).read_text())
        images, classes = index["images"], index["classes"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    if not isinstance(images, dict) or not isinstance(classes, list):
        return set()
    # only plain file names of the dataset's own pattern, never paths
    return {n for n in images if isinstance(n, str) and "/" not in n and "\\" not in n
            and n.endswith(".png") and n.rsplit("_", 1)[0] in classes}


def write_samples(
    samples: Sequence[Sample], folder: Path, class_names: Sequence[str], part_names: Sequence[str],
    extra: dict | None = None,
) -> list[Path]:
    """Write ``samples`` as PNGs directly in ``folder`` and their ground truth in ``folder/ground_truth``.

    Writing again into the same folder replaces the earlier dataset images (those listed in
    its ``ground_truth.json``); any other file directly in ``folder`` is refused, since visum
    would take it for an input image. ``extra`` is stored in the index as it is. Returns the
    image paths, in the order of ``samples``.
    """
    folder = Path(folder)
    names = file_names([smp.label for smp in samples], class_names)
    folder.mkdir(parents=True, exist_ok=True)
    gt_dir = folder / GROUND_TRUTH_DIR
    previous = _previously_written(gt_dir)  # images an earlier write put here
    keep = set(names) | {GROUND_TRUTH_DIR}
    strays = sorted(p.name for p in folder.iterdir()  # hidden files (a killed write's temporary) are not images
                    if p.name not in keep and p.name not in previous and not p.name.startswith("."))
    if strays:
        raise InputError(f"{folder}: will not write a dataset with ground truth into a folder holding other files "
                         f"(e.g. {strays[0]}); use an empty folder")
    for name in sorted(previous - set(names)):  # stale images of an earlier, larger write
        (folder / name).unlink(missing_ok=True)
        (gt_dir / name).unlink(missing_ok=True)
    gt_dir.mkdir(exist_ok=True)
    index = {
        "classes": list(class_names),
        "parts": list(part_names),
        "label_map": "ground_truth/<image stem>.png: 0 = background, k = parts[k - 1]",
        **(extra or {}),
        "images": {},
    }
    paths = []
    for smp, name in zip(samples, names):
        path = folder / name
        with atomic_write(path, "wb") as fh:
            Image.fromarray(smp.image).save(fh, format="PNG")
        lm = np.zeros(smp.image.shape[:2], dtype=np.uint8)
        for k, part in enumerate(part_names, start=1):
            lm[smp.part_masks[part]] = k
        with atomic_write(gt_dir / name, "wb") as fh:
            Image.fromarray(lm).save(fh, format="PNG")
        index["images"][name] = {
            "label": int(smp.label),
            "class": class_names[smp.label],
            "object_box": list(smp.object_box),
            "parts": {part: _bbox(smp.part_masks[part]) for part in part_names},
        }
        paths.append(path)
    write_text_atomic(gt_dir / GROUND_TRUTH_JSON, json.dumps(index, indent=1))
    return paths


def load_ground_truth(folder: Path) -> dict[str, GroundTruth]:
    """Read what :func:`write_samples` wrote, keyed by image file name.

    ``folder`` is the image folder (or its ``ground_truth`` subfolder itself).
    """
    folder = Path(folder)
    gt_dir = folder / GROUND_TRUTH_DIR
    if not (gt_dir / GROUND_TRUTH_JSON).is_file() and (folder / GROUND_TRUTH_JSON).is_file():
        gt_dir = folder
    index_path = gt_dir / GROUND_TRUTH_JSON
    try:
        index = json.loads(index_path.read_text())
        images = index["images"]
        parts = index["parts"]
        classes = index.get("classes", [])
    except FileNotFoundError:
        raise InputError(f"{index_path}: no ground truth here") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{index_path}: not a valid ground-truth index ({e})") from None
    out: dict[str, GroundTruth] = {}
    for name, entry in images.items():
        lm_path = gt_dir / name
        try:
            lm = np.asarray(Image.open(lm_path))
        except (OSError, ValueError) as e:
            raise InputError(f"{lm_path}: cannot read the label map ({e})") from None
        if lm.ndim != 2:
            raise InputError(f"{lm_path}: a label map must be a single-channel image")
        label = int(entry["label"])
        out[name] = GroundTruth(
            label=label,
            object_box=tuple(int(v) for v in entry["object_box"]),
            part_masks={part: lm == k for k, part in enumerate(parts, start=1)},
            class_name=str(entry.get("class") or (classes[label] if 0 <= label < len(classes) else "")),
        )
    return out
