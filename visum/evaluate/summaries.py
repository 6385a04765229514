"""Ground-truth scores of visual summaries on the parts benchmark.

The paper judges its summaries with an automatic tagger and a user study (Godi et al. 2018,
Sec. 4.2). The parts benchmark (:mod:`visum.data.parts`) knows where every part is, so
each member of a summary can be *labelled* and the summaries scored with numbers.

Labelling a member. A member is a part box ``b`` (``part_bbox``, original pixels) in an
image whose ground truth is a label map ``L`` (0 = background, ``k`` = ``parts[k - 1]``).
With ``n_k = |{p in b : L(p) = k}|`` the pixels of part ``k`` inside the box, ``|b|`` the box
area and ``|P_k|`` the part's area in that image, part ``k`` *is shown by* the box when

    n_k >= share * |b|     (the part fills most of the box)   or
    n_k >= share * |P_k|   (most of the part lies in the box)

with ``share = 0.5`` by default. The member's *tags* are the parts it shows, or
``{background}`` when it shows none; its *label* is the shown part with the most pixels in
the box (ties: the earlier part), or background.

Scores, over the kept summaries of one class:

* *purity* of a summary — the share of its members carrying its majority label;
* *coverage* — the parts that are the majority label of some kept summary with purity at
  least ``min_purity`` (0.5), over the parts present in the used images;
* *NMI* — normalised mutual information (arithmetic mean normalisation) between the members'
  summary ids and their labels;
* the paper's Fig. 4 protocol with the ground-truth parts as tags: ``mu_S`` is the mean
  over summaries of the mean Jaccard distance ``1 - |A ∩ B| / |A ∪ B|`` between the tag
  sets of two members of the summary; ``mu_R`` is the same for *random images of the class*,
  as in the paper (Sec. 4.2: "K sets R_i of c_i random images taken from that class"): for each
  summary of ``n_i`` members, ``n_i`` distinct used images drawn at random, each represented by
  one of its salient regions drawn at random (a summary's members are proposals inside those
  regions; the whole image when it has none), tagged like members; a summary with more members
  than there are images (several regions of one image) draws that many (image, region) units
  without replacement instead; averaged over ``draws`` seeded draws.
  ``mu_S < mu_R`` means summaries group like parts. (Drawing the random sets from the summaries'
  own members, as visum did before, cannot tell summaries apart when all of them show one part:
  ``mu_R`` then equals ``mu_S``.)

A diagnostic of where coverage is lost: *region coverage* of a part is the share of the used
images in which at least ``share`` of the part lies inside the salient regions' boxes. A part
the saliency method never marks cannot be recovered by any matcher or clusterer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from visum.errors import InputError
from visum.manifest import Manifest

__all__ = [
    "BACKGROUND",
    "GroundTruthScores",
    "SummaryScore",
    "box_label_counts",
    "evaluate_run",
    "jaccard_distances",
    "load_run",
    "majority",
    "mean_within",
    "member_labels",
    "normalized_mutual_information",
    "random_images_mean",
    "region_part_coverage",
    "run_label_maps",
    "score_summaries",
    "scores_for_report",
    "shown_parts",
]

BACKGROUND = "background"


# ----------------------------------------------------------------------------- maths


def box_label_counts(label_map: np.ndarray, box: Sequence[int], n_labels: int) -> np.ndarray:
    """Pixels of each label inside ``box``: ``counts[k] = |{p in box : L(p) = k}|``.

    Shapes: ``label_map [H, W]`` int (0 = background, ``1..n_labels-1`` parts), ``box``
    ``[x0, y0, x1, y1]`` with exclusive ends (clipped to the map) -> ``[n_labels]`` int64.
    """
    h, w = label_map.shape
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = max(0, min(x0, w)), max(0, min(x1, w))
    y0, y1 = max(0, min(y0, h)), max(0, min(y1, h))
    crop = np.asarray(label_map[y0:y1, x0:x1], dtype=np.int64).ravel()
    return np.bincount(crop, minlength=n_labels)[:n_labels].astype(np.int64)


def shown_parts(counts: np.ndarray, box_areas: np.ndarray, part_areas: np.ndarray, share: float = 0.5) -> np.ndarray:
    """Which parts each box shows: ``n_k >= share |b|`` or ``n_k >= share |P_k|`` (and ``n_k > 0``).

    Shapes: ``counts [M, K+1]`` (column 0 = background, ignored), ``box_areas [M]``,
    ``part_areas [M, K+1]`` (area of each part in the member's image) -> ``[M, K]`` bool,
    column ``k - 1`` for part ``k``.
    """
    n = np.asarray(counts, dtype=np.float64)[:, 1:]
    box = np.asarray(box_areas, dtype=np.float64)[:, None]
    part = np.asarray(part_areas, dtype=np.float64)[:, 1:]
    fills_box = n >= share * box
    inside = (part > 0) & (n >= share * part)
    return (n > 0) & (fills_box | inside)


def member_labels(counts: np.ndarray, shown: np.ndarray) -> np.ndarray:
    """Each member's label: the shown part with most pixels in the box (``1..K``), else 0.

    Shapes: ``counts [M, K+1]``, ``shown [M, K]`` bool -> ``[M]`` int64 (ties: lower index).
    """
    n = np.where(shown, np.asarray(counts, dtype=np.float64)[:, 1:], -1.0)
    if n.shape[1] == 0:
        return np.zeros(len(n), dtype=np.int64)
    best = n.argmax(axis=1)
    return np.where(shown.any(axis=1), best + 1, 0).astype(np.int64)


def region_part_coverage(label_map: np.ndarray, region_boxes: Sequence[Sequence[int]], n_labels: int,
                         share: float = 0.5) -> np.ndarray:
    """Which parts lie (at least ``share`` of their pixels) inside the union of ``region_boxes``.

    Shapes: ``label_map [H, W]`` int, boxes ``[x0, y0, x1, y1]`` -> ``[n_labels - 1]`` bool
    (part ``k`` in column ``k - 1``; a part absent from the image is ``False``).
    """
    inside = np.zeros(label_map.shape, dtype=bool)
    for x0, y0, x1, y1 in region_boxes:
        inside[max(0, int(y0)):max(0, int(y1)), max(0, int(x0)):max(0, int(x1))] = True
    lm = np.asarray(label_map, dtype=np.int64)
    total = np.bincount(lm.ravel(), minlength=n_labels)[1:n_labels]
    covered = np.bincount(lm[inside], minlength=n_labels)[1:n_labels]
    return (total > 0) & (covered >= share * total)


def majority(labels: np.ndarray) -> tuple[int, float]:
    """``(label, share)``: the most frequent label (ties: the smallest) and its share of ``labels [M]``."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 0, float("nan")
    values, counts = np.unique(labels, return_counts=True)
    k = int(counts.argmax())
    return int(values[k]), float(counts[k] / len(labels))


def jaccard_distances(tags: np.ndarray) -> np.ndarray:
    """Pairwise Jaccard distance ``1 - |A ∩ B| / |A ∪ B|`` of tag sets; two empty sets are at 0.

    Shapes: ``tags [M, T]`` bool (one row per member, one column per tag) -> ``[M, M]`` float64.
    """
    t = np.asarray(tags, dtype=np.float64)
    inter = t @ t.T
    sizes = t.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(union > 0, 1.0 - inter / np.where(union > 0, union, 1.0), 0.0)
    return d


def _mean_pairs(distances: np.ndarray, idx: np.ndarray) -> float:
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) < 2:
        return float("nan")
    i, j = np.triu_indices(len(idx), k=1)
    return float(distances[idx[i], idx[j]].mean())


def mean_within(distances: np.ndarray, groups: Sequence[np.ndarray]) -> float:
    """The paper's ``mu_S``: mean over groups (of at least 2) of the mean pairwise distance inside the group.

    Shapes: ``distances [M, M]``, ``groups`` index arrays into ``M``. NaN without such a group.
    """
    means = [_mean_pairs(distances, g) for g in groups if len(g) >= 2]
    return float(np.mean(means)) if means else float("nan")


def random_images_mean(image_tags: Sequence[np.ndarray], sizes: Sequence[int], draws: int,
                       rng: np.random.Generator) -> float:
    """The paper's ``mu_R`` over random images: for every size ``n_i >= 2``, ``n_i`` distinct
    images, each represented by one of its tag rows drawn at random (or, when ``n_i`` exceeds
    the number of images, ``n_i`` distinct rows of all images); :func:`mean_within` of those
    groups, averaged over ``draws``.

    Shapes: ``image_tags`` one ``[R_j, T]`` bool array per image (``R_j >= 1`` rows: the tags of
    its salient regions), ``sizes`` the summaries' member counts. NaN when no size fits in all rows.
    """
    pools = [np.asarray(t, dtype=bool) for t in image_tags if len(t)]
    m = len(pools)
    units = np.concatenate(pools) if pools else np.zeros((0, 0), dtype=bool)
    sizes = [int(n) for n in sizes if 2 <= int(n) <= len(units)]
    if not sizes or draws < 1:
        return float("nan")
    counts = np.array([len(t) for t in pools])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    means = np.zeros((draws, len(sizes)))
    for k, n in enumerate(sizes):  # every draw of one size at once: [draws, n] rows of ``units``
        if n <= m:  # n distinct images (a random permutation's first n), one random row of each
            chosen = np.argsort(rng.random((draws, m)), axis=1)[:, :n]
            rows = offsets[chosen] + (rng.random((draws, n)) * counts[chosen]).astype(np.int64)
        else:  # n distinct (image, region) units
            rows = np.argsort(rng.random((draws, len(units))), axis=1)[:, :n]
        step = max(1, 4_000_000 // (n * n))  # at most ~32 MB of pairwise distances at a time
        for start in range(0, draws, step):
            means[start : start + step, k] = _mean_pairs_batched(units[rows[start : start + step]])
    return float(means.mean())


def _mean_pairs_batched(tags: np.ndarray) -> np.ndarray:
    """``[D]`` mean pairwise Jaccard distance inside each of ``D`` groups of tag rows ``tags [D, n, T]``
    (:func:`jaccard_distances` on every group at once)."""
    t = tags.astype(np.float64)
    inter = t @ t.transpose(0, 2, 1)
    size = t.sum(axis=2)
    union = size[:, :, None] + size[:, None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(union > 0, 1.0 - inter / np.where(union > 0, union, 1.0), 0.0)
    i, j = np.triu_indices(tags.shape[1], k=1)
    return d[:, i, j].mean(axis=1)


def normalized_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """NMI of two labelings ``[M]`` with arithmetic-mean normalisation, ``I(a; b) / ((H(a) + H(b)) / 2)``.

    1 when both are constant (scikit-learn's convention); NaN for ``M = 0``.
    """
    from sklearn.metrics import normalized_mutual_info_score

    if len(a) == 0:
        return float("nan")
    return float(normalized_mutual_info_score(np.asarray(a), np.asarray(b), average_method="arithmetic"))


# ----------------------------------------------------------------------------- scores


@dataclass
class SummaryScore:
    """Ground-truth score of one summary (kept or discarded)."""

    id: int
    kept: bool
    n_members: int
    majority: str
    purity: float
    mean_jaccard: float
    labels: list[str] = field(default_factory=list)


@dataclass
class GroundTruthScores:
    """The scores of one run's summaries; class-level numbers use kept summaries only."""

    part_names: list[str]
    summaries: list[SummaryScore]
    n_kept: int
    n_members: int
    mean_purity: float
    parts_present: list[str]
    parts_recovered: list[str]
    nmi: float
    mu_s: float
    mu_r: float
    background_share: float
    region_coverage: dict[str, float] = field(default_factory=dict)
    settings: dict[str, float] = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        return len(self.parts_recovered) / len(self.parts_present) if self.parts_present else float("nan")

    def as_dict(self) -> dict:
        data = asdict(self)
        data["coverage"] = self.coverage
        return data

    def row(self) -> dict[str, float | int | str]:
        """The class-level numbers as one flat row (for tables)."""
        return {
            "kept": self.n_kept, "members": self.n_members, "mean_purity": self.mean_purity,
            "parts_recovered": len(self.parts_recovered), "parts": len(self.parts_present),
            "coverage": self.coverage, "nmi": self.nmi, "mu_s": self.mu_s, "mu_r": self.mu_r,
            "background_share": self.background_share, "recovered": " ".join(self.parts_recovered),
        }

    def markdown(self) -> str:
        def f(v: float) -> str:
            return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"

        lines = [
            f"kept summaries: {self.n_kept} ({self.n_members} members, {f(self.background_share)} background)",
            f"mean purity: {f(self.mean_purity)}",
            (f"parts recovered: {len(self.parts_recovered)}/{len(self.parts_present)} "
             f"({', '.join(self.parts_recovered) or 'none'})"),
            f"NMI(summary, part): {f(self.nmi)}",
            f"mu_S (within summaries): {f(self.mu_s)}   mu_R (random images): {f(self.mu_r)}",
            *([("salient regions hold the part in a share of the images: "
                + ", ".join(f"{k} {f(v)}" for k, v in self.region_coverage.items()))] if self.region_coverage else []),
            "",
            "| summary | kept | members | majority | purity | mean Jaccard | labels |",
            "|---:|---|---:|---|---:|---:|---|",
        ]
        for s in self.summaries:
            counts: dict[str, int] = {}
            for label in s.labels:
                counts[label] = counts.get(label, 0) + 1
            spread = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            lines.append(f"| {s.id} | {'yes' if s.kept else 'no'} | {s.n_members} | {s.majority} | "
                         f"{f(s.purity)} | {f(s.mean_jaccard)} | {spread} |")
        return "\n".join(lines) + "\n"


def score_summaries(
    summaries: Sequence[tuple[int, bool, Sequence[tuple[int, Sequence[int]]]]],
    label_maps: dict[int, np.ndarray],
    part_names: Sequence[str],
    *,
    share: float = 0.5,
    min_purity: float = 0.5,
    draws: int = 1000,
    seed: int = 0,
    regions: dict[int, Sequence[Sequence[int]]] | None = None,
) -> GroundTruthScores:
    """Score summaries against ground-truth label maps.

    ``summaries``: ``(id, kept, [(image id, part box), ...])`` per summary, boxes
    ``[x0, y0, x1, y1]`` in the label map's pixels; ``label_maps``: ``{image id: [H, W] int}``
    (0 = background, ``k`` = ``part_names[k - 1]``), one per image whose parts count as
    present (the run's used images); ``regions``: ``{image id: region boxes}`` of those images
    for the region coverage diagnostic (optional). See the module docstring for the definitions.
    """
    names = [BACKGROUND, *part_names]
    n_labels = len(names)
    part_areas = {i: np.bincount(np.asarray(m, dtype=np.int64).ravel(), minlength=n_labels)[:n_labels]
                  for i, m in label_maps.items()}
    present = [part_names[k - 1] for k in range(1, n_labels) if any(a[k] > 0 for a in part_areas.values())]

    per_summary, kept_tags, kept_labels, kept_ids, groups = [], [], [], [], []
    for sid, kept, members in summaries:
        if members:
            for image, _ in members:
                if image not in label_maps:
                    raise InputError(f"summary {sid}: image {image} has no ground truth")
            counts = np.stack([box_label_counts(label_maps[i], b, n_labels) for i, b in members])
            areas = np.array([max(0, int(b[2]) - int(b[0])) * max(0, int(b[3]) - int(b[1])) for _, b in members])
            shown = shown_parts(counts, areas, np.stack([part_areas[i] for i, _ in members]), share)
        else:
            shown = np.zeros((0, n_labels - 1), dtype=bool)
            counts = np.zeros((0, n_labels), dtype=np.int64)
        labels = member_labels(counts, shown)
        tags = np.concatenate([~shown.any(axis=1, keepdims=True), shown], axis=1)  # column 0: background
        label, purity = majority(labels)
        per_summary.append(SummaryScore(
            id=int(sid), kept=bool(kept), n_members=len(members), majority=names[label] if len(members) else "",
            purity=purity, mean_jaccard=_mean_pairs(jaccard_distances(tags), np.arange(len(tags))),
            labels=[names[k] for k in labels],
        ))
        if kept:
            start = sum(len(t) for t in kept_tags)
            groups.append(np.arange(start, start + len(tags)))
            kept_tags.append(tags)
            kept_labels.append(labels)
            kept_ids.append(np.full(len(labels), int(sid)))

    kept_scores = [s for s in per_summary if s.kept]
    all_tags = np.concatenate(kept_tags) if kept_tags else np.zeros((0, n_labels), dtype=bool)
    all_labels = np.concatenate(kept_labels) if kept_labels else np.zeros(0, dtype=np.int64)
    distances = jaccard_distances(all_tags)
    recovered = {s.majority for s in kept_scores if s.majority != BACKGROUND and s.purity >= min_purity}
    purities = [s.purity for s in kept_scores if s.n_members]
    region_coverage = {}
    if regions is not None and label_maps:
        held = np.stack([region_part_coverage(m, regions.get(i, []), n_labels, share) for i, m in label_maps.items()])
        region_coverage = {p: float(held[:, k].mean()) for k, p in enumerate(part_names) if p in present}
    return GroundTruthScores(
        part_names=list(part_names),
        summaries=per_summary,
        n_kept=len(kept_scores),
        n_members=len(all_labels),
        mean_purity=float(np.mean(purities)) if purities else float("nan"),
        parts_present=present,
        parts_recovered=[p for p in present if p in recovered],
        nmi=normalized_mutual_information(np.concatenate(kept_ids) if kept_ids else np.zeros(0), all_labels),
        mu_s=mean_within(distances, groups),
        mu_r=_random_images_mu_r(label_maps, regions, part_areas, [len(g) for g in groups], n_labels, share,
                                 draws, seed),
        background_share=float(np.mean(all_labels == 0)) if len(all_labels) else float("nan"),
        region_coverage=region_coverage,
        settings={"share": share, "min_purity": min_purity, "draws": draws, "seed": seed},
    )


def _random_images_mu_r(label_maps, regions, part_areas, sizes, n_labels, share, draws, seed) -> float:
    """``mu_R`` from random used images (see the module docstring); each image's tag rows are
    its salient regions' boxes, or the whole image when it has none (or ``regions`` is None)."""
    image_tags = []
    for i, lm in label_maps.items():
        h, w = lm.shape
        boxes = list((regions or {}).get(i, [])) or [(0, 0, w, h)]
        counts = np.stack([box_label_counts(lm, b, n_labels) for b in boxes])
        areas = np.array([max(0, int(b[2]) - int(b[0])) * max(0, int(b[3]) - int(b[1])) for b in boxes])
        shown = shown_parts(counts, areas, np.repeat(part_areas[i][None], len(boxes), axis=0), share)
        image_tags.append(np.concatenate([~shown.any(axis=1, keepdims=True), shown], axis=1))
    return random_images_mean(image_tags, sizes, draws, np.random.default_rng(seed))


# ----------------------------------------------------------------------------- runs on disk


def load_run(run_dir: Path) -> Manifest:
    """The manifest of a run folder; :class:`InputError` naming the file when it is missing or invalid."""
    path = Path(run_dir) / "manifest.json"
    try:
        return Manifest.model_validate_json(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no manifest here; RUN_DIR must be the output folder of `visum run`") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a valid visum manifest ({str(exc).splitlines()[0]})") from None


def _image_path(path: str, run_dir: Path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(run_dir) / p


def run_label_maps(manifest: Manifest, run_dir: Path) -> tuple[dict[int, np.ndarray], list[str]] | None:
    """``({image id: label map [H, W]}, part names)`` for the used images, or ``None`` when the
    images' folders hold no parts-benchmark ground truth (``ground_truth/ground_truth.json``).

    ``visum run`` without ``--images`` generates the benchmark into ``RUN_DIR/images``, and
    ``visum parts generate DIR`` writes it into ``DIR``; both carry their ground truth.
    """
    from visum.data.parts import GROUND_TRUTH_DIR, GROUND_TRUTH_JSON, load_ground_truth

    used = [im for im in manifest.images if im.used]
    folders: dict[Path, dict] = {}
    maps: dict[int, np.ndarray] = {}
    names: list[str] | None = None
    for im in used:
        path = _image_path(im.path, run_dir)
        folder = path.parent
        if folder not in folders:
            if not (folder / GROUND_TRUTH_DIR / GROUND_TRUTH_JSON).is_file():
                return None
            folders[folder] = load_ground_truth(folder)
        gt = folders[folder].get(path.name)
        if gt is None:
            raise InputError(f"{path}: not listed in {folder / GROUND_TRUTH_DIR / GROUND_TRUTH_JSON}")
        parts = list(gt.part_masks)
        if names is None:
            names = parts
        elif parts != names:
            raise InputError(f"{path}: its ground truth names other parts ({parts}) than the run's other images ({names})")
        lm = np.zeros(next(iter(gt.part_masks.values())).shape if parts else (im.height, im.width), dtype=np.int64)
        for k, part in enumerate(parts, start=1):
            lm[gt.part_masks[part]] = k
        if lm.shape != (im.height, im.width):
            raise InputError(f"{path}: ground truth is {lm.shape[1]}x{lm.shape[0]}, the image {im.width}x{im.height}")
        maps[im.id] = lm
    if names is None:
        return None
    return maps, names


def _regions_of(manifest: Manifest) -> dict[int, list[tuple[int, int, int, int]]]:
    return {im.id: [r.bbox for r in im.regions] for im in manifest.images if im.used}


def _summaries_of(manifest: Manifest) -> list[tuple[int, bool, list[tuple[int, tuple[int, int, int, int]]]]]:
    return [(s.id, s.kept, [(m.image, m.part_bbox) for m in s.members]) for s in manifest.summaries]


def evaluate_run(run_dir: Path, **settings) -> GroundTruthScores:
    """:func:`score_summaries` of a run folder's summaries; :class:`InputError` without ground truth."""
    manifest = load_run(run_dir)
    found = run_label_maps(manifest, run_dir)
    if found is None:
        raise InputError(f"{run_dir}: the run's images have no parts-benchmark ground truth "
                         "(ground_truth/ground_truth.json next to them); only parts-benchmark runs can be scored")
    maps, names = found
    return score_summaries(_summaries_of(manifest), maps, names, regions=_regions_of(manifest), **settings)


def scores_for_report(manifest: Manifest, run_dir: Path) -> GroundTruthScores | None:
    """The scores when the run's images carry ground truth, else ``None`` (for the HTML report)."""
    try:
        found = run_label_maps(manifest, run_dir)
    except InputError:
        return None
    if found is None:
        return None
    return score_summaries(_summaries_of(manifest), *found, regions=_regions_of(manifest))
