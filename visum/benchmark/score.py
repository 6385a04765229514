"""Summaries scored against what the model relies on (measured), not against what the data assumes.

A member of a summary is a part box ``b`` in an image whose ground truth gives every part's
pixels. With ``n_k`` the pixels of part ``k`` inside ``b``, ``|P_k|`` the part's area in the
image and ``B_k`` the part's own bounding box, the member **names** part ``k`` when the box
holds most of the part and is not much larger than the part's own box:

    n_k >= HOLD * |P_k|     and     |b| <= LARGER * |B_k|          (HOLD = 0.5, LARGER = 4)

so a box around the whole object names nothing, whatever the part's shape (a rule on the
share of the box the part fills would fail thin or hollow parts even for a tight box). A member's label is the named part with the
most pixels in the box, or ``none``. Over the kept summaries of one run, with ``R`` the parts
the model relies on (:mod:`visum.benchmark.reliance`) that appear in the used images:

* **purity** — mean over kept summaries of the share of members carrying the majority label;
* **recall** — the parts of ``R`` that are the majority label of a kept summary at least 0.5
  pure, over ``|R|``;
* **false summaries** — kept summaries whose majority label is not in ``R`` (a part the model
  does not rely on, or no part); **impure** — kept summaries whose majority is in ``R`` but
  below 0.5 purity (neither recovered nor false);
* **redundancy** — the most kept summaries (0.5 pure) sharing one part of ``R``;
* **member coverage** — the share of kept members that name a part;
* **NMI** — between the members' summary and their label;
* **saliency on relied parts** — the share of each used image's mask mass that lies on parts of
  ``R``, beside those parts' share of the image area (what a uniform mask would score).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from visum.evaluate.summaries import box_label_counts, majority, normalized_mutual_information, run_label_maps
from visum.geometry import box_areas
from visum.manifest import Manifest

HOLD = 0.5
LARGER = 4.0
MIN_PURITY = 0.5
NONE = "none"


def named_parts(counts: np.ndarray, box_areas: np.ndarray, part_areas: np.ndarray, part_box_areas: np.ndarray,
                hold: float = HOLD, larger: float = LARGER) -> np.ndarray:
    """Which parts each box names: ``n_k >= hold |P_k|`` and ``|b| <= larger |B_k|``.

    Shapes: ``counts [M, K+1]`` (column 0 = background, ignored), ``box_areas [M]``,
    ``part_areas [M, K+1]``, ``part_box_areas [M, K+1]`` (area of each part's own bounding
    box in the member's image) -> ``[M, K]`` bool, column ``k - 1`` for part ``k``.
    """
    n = np.asarray(counts, dtype=np.float64)[:, 1:]
    part = np.asarray(part_areas, dtype=np.float64)[:, 1:]
    part_box = np.asarray(part_box_areas, dtype=np.float64)[:, 1:]
    box = np.asarray(box_areas, dtype=np.float64)[:, None]
    return (n > 0) & (n >= hold * part) & (box <= larger * part_box)


def part_box_areas(label_map: np.ndarray, n_labels: int) -> np.ndarray:
    """``[n_labels]``: the area of each label's bounding box in ``label_map`` (0 when absent)."""
    out = np.zeros(n_labels, dtype=np.int64)
    for k in range(1, n_labels):
        ys, xs = np.nonzero(label_map == k)
        if len(xs):
            out[k] = int((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    return out


@dataclass
class RunScore:
    """The reliance-aware scores of one run (see the module docstring)."""

    kept: int
    purity: float
    relied: list[str]
    recovered: list[str]
    recall: float
    false_summaries: int
    impure: int  # kept summaries whose majority is a relied-on part but with purity below MIN_PURITY
    redundancy: int
    member_coverage: float
    nmi: float
    saliency_on_relied: float
    relied_area: float
    majorities: list[str]

    def row(self) -> dict:
        data = asdict(self)
        data["relied"] = " ".join(self.relied)
        data["recovered"] = " ".join(self.recovered)
        data["majorities"] = " ".join(self.majorities)
        return data


def score_run(manifest: Manifest, run_dir: Path, relied: list[str]) -> RunScore:
    """Score a run folder whose images carry world ground truth against the relied-on parts."""
    found = run_label_maps(manifest, run_dir)
    if found is None:
        raise ValueError(f"{run_dir}: the run's images have no ground truth")
    maps, names = found
    n_labels = len(names) + 1
    label_names = [NONE, *names]
    areas = {i: np.bincount(m.ravel(), minlength=n_labels)[:n_labels] for i, m in maps.items()}
    boxes_of = {i: part_box_areas(m, n_labels) for i, m in maps.items()}
    present = {names[k - 1] for k in range(1, n_labels) if any(a[k] > 0 for a in areas.values())}
    relied_present = [p for p in names if p in relied and p in present]

    kept = [s for s in manifest.summaries if s.kept and s.members]
    majorities, purities, all_labels, all_ids, named_any = [], [], [], [], []
    for s in kept:
        counts = np.stack([box_label_counts(maps[m.image], m.part_bbox, n_labels) for m in s.members])
        boxes = box_areas([m.part_bbox for m in s.members])
        named = named_parts(counts, boxes, np.stack([areas[m.image] for m in s.members]),
                            np.stack([boxes_of[m.image] for m in s.members]))
        best = np.where(named, counts[:, 1:], -1).argmax(axis=1) + 1
        labels = np.where(named.any(axis=1), best, 0)
        label, purity = majority(labels)
        majorities.append(label_names[label])
        purities.append(purity)
        all_labels.append(labels)
        all_ids.append(np.full(len(labels), s.id))
        named_any.append(named.any(axis=1))
    pure = [m for m, p in zip(majorities, purities) if p >= MIN_PURITY]
    recovered = [p for p in relied_present if p in pure]
    per_part = [sum(1 for m in pure if m == p) for p in relied_present]
    labels_all = np.concatenate(all_labels) if all_labels else np.zeros(0, int)
    ids_all = np.concatenate(all_ids) if all_ids else np.zeros(0, int)
    mass, area = (_saliency_on(manifest, run_dir, maps, [names.index(p) + 1 for p in relied_present])
                  if relied_present else (math.nan, math.nan))
    return RunScore(
        kept=len(kept),
        purity=float(np.mean(purities)) if purities else math.nan,
        relied=relied_present,
        recovered=recovered,
        recall=len(recovered) / len(relied_present) if relied_present else math.nan,
        false_summaries=sum(1 for m in majorities if m not in relied_present),
        impure=sum(1 for m, p in zip(majorities, purities) if m in relied_present and p < MIN_PURITY),
        redundancy=max(per_part) if per_part else 0,
        member_coverage=float(np.concatenate(named_any).mean()) if named_any else math.nan,
        nmi=normalized_mutual_information(ids_all, labels_all) if len(labels_all) else math.nan,
        saliency_on_relied=mass,
        relied_area=area,
        majorities=majorities,
    )


def _saliency_on(manifest: Manifest, run_dir: Path, maps: dict[int, np.ndarray], relied: list[int]) -> tuple[float, float]:
    """Mean share of each used image's mask mass on the relied-on parts, and their mean area share."""
    masses, areas = [], []
    for im in manifest.images:
        if not im.used or im.mask is None or im.id not in maps:
            continue
        path = (Path(run_dir) / im.mask).with_suffix(".npy")
        try:
            mask = np.load(path, allow_pickle=False).astype(np.float64)
        except (OSError, ValueError):
            continue
        label_map = maps[im.id]
        if mask.shape != label_map.shape:  # benchmark models see world images whole: anything else is not scored
            continue
        on = np.isin(label_map, relied)
        total = mask.sum()
        if total > 0:
            masses.append(float(mask[on].sum() / total))
            areas.append(float(on.mean()))
    return (float(np.mean(masses)) if masses else math.nan, float(np.mean(areas)) if areas else math.nan)
