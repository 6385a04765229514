"""Clusters that show the same part become one summary, so summaries follow parts, not images.

A clusterer run on ``Corr''`` splits one part into several clusters as the number of images
grows: Affinity Propagation's preference (the median similarity) makes more exemplars the
more points there are, and each cluster holds the members most alike among themselves (one
pose, one scale). The parts world measured it: 74 kept summaries at 100 images, 152 at 300,
for four parts. Two tests, each from evidence the run already has, say that clusters ``A``
and ``B`` show the same part:

* **co-location** — in the images that hold members of both, their part boxes overlap
  (intersection at least ``overlap`` of the smaller box, areas within ``max_area_ratio`` of
  each other: a box around the whole object co-locates with nothing) in at least
  ``colocated`` of those images, and there are at least ``min_shared`` of them. Two parts of
  one object never sit in the same place.
* **linkage** — the mean similarity between their members (over pairs from different images,
  as ``Corr''`` has no same-image entries; absent entries count as 0) is at least ``link``
  times the *larger* of their own mean inner similarities (average linkage, scale-free). With
  the larger one, a loose mixed cluster cannot link two tight clusters of different parts.

Merging is greedy and agglomerative: any co-located pair merges before any linked pair, the
strongest first within each test, and the merged cluster's statistics are updated (sums of
``Corr''`` blocks and member counts per image add up), until no pair passes.

Shapes: ``labels [N]`` (``-1`` unassigned), ``corr [N, N]`` sparse symmetric, ``image_of [N]``,
``boxes [N, 4]`` ``[x0, y0, x1, y1)`` in each image's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from visum.geometry import box_areas, containment

__all__ = ["Apart", "MergeRule", "colocation", "merge_kept", "merge_same_part", "merge_by_features", "random_boxes_like"]


@dataclass(frozen=True)
class MergeRule:
    """When two clusters are one part (see the module docstring)."""

    link: float = 0.5
    colocated: float = 0.5
    overlap: float = 0.5
    min_shared: int = 2
    max_area_ratio: float = 4.0


@dataclass(frozen=True)
class Apart:
    """Evidence that two clusters are two parts: in at least ``min_shared`` images holding members of
    both, and in at least ``share`` of them, no member of one co-locates with a member of the other
    (:func:`colocation` at ``overlap`` and ``max_area_ratio``). ``image_of [N]``, ``boxes [N, 4]``."""

    image_of: np.ndarray
    boxes: np.ndarray
    share: float = 0.5
    min_shared: int = 2
    overlap: float = 0.5
    max_area_ratio: float = 4.0

    def holds(self, members_a: np.ndarray, members_b: np.ndarray) -> bool:
        shared, together = colocation(members_a, members_b, self.image_of, self.boxes, self.overlap,
                                      self.max_area_ratio)
        return shared >= self.min_shared and shared - together >= self.share * shared


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray, max_area_ratio: float = np.inf) -> np.ndarray:
    """``[len(a), len(b)]``: intersection area over the smaller box's area; 0 where one box's area is
    more than ``max_area_ratio`` times the other's."""
    area_a, area_b = box_areas(a), box_areas(b)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    larger = np.maximum(area_a[:, None], area_b[None, :])
    return np.where(larger <= max_area_ratio * np.maximum(smaller, 1), containment(a, b), 0.0)


def colocation(members_a: np.ndarray, members_b: np.ndarray, image_of: np.ndarray, boxes: np.ndarray,
               overlap: float = 0.5, max_area_ratio: float = 4.0) -> tuple[int, int]:
    """``(shared, colocated)``: images holding members of both clusters, and those where a member of
    each overlaps (intersection >= ``overlap`` of the smaller box, areas within ``max_area_ratio``)."""
    shared = np.intersect1d(image_of[members_a], image_of[members_b])
    together = 0
    for image in shared:
        a = boxes[members_a[image_of[members_a] == image]].astype(np.float64)
        b = boxes[members_b[image_of[members_b] == image]].astype(np.float64)
        together += bool((_overlap_of_smaller(a, b, max_area_ratio) >= overlap).any())
    return len(shared), together


def merge_same_part(labels: np.ndarray, corr: sp.spmatrix, image_of: np.ndarray, boxes: np.ndarray,
                    rule: MergeRule = MergeRule()) -> tuple[np.ndarray, list[tuple[int, int, str]]]:
    """``(labels [N], merges)``: clusters that show the same part relabelled as one (labels ``0..C'-1``
    in order of first appearance, ``-1`` kept), and the merges made as ``(kept label, merged label,
    "co-location" | "linkage")`` in the input's labels."""
    labels = np.asarray(labels, dtype=np.int64)
    names = sorted(set(labels[labels >= 0].tolist()))
    if len(names) < 2:
        return _renumber(labels), []
    corr = sp.csr_matrix(corr)
    image_of, boxes = np.asarray(image_of), np.asarray(boxes)
    members = {c: np.flatnonzero(labels == c) for c in names}
    # block sums of Corr'' between clusters: [C, C] via an indicator matrix
    index = {c: k for k, c in enumerate(names)}
    ind = sp.csr_matrix((np.ones(int((labels >= 0).sum())), (np.flatnonzero(labels >= 0),
                         [index[c] for c in labels[labels >= 0]])), shape=(len(labels), len(names)))
    block = (ind.T @ corr @ ind).toarray()
    sums = {(a, b): block[index[a], index[b]] for a in names for b in names}
    # members per image of each cluster: Corr'' has no same-image entries, so means are over cross-image pairs
    per_image = {c: np.bincount(image_of[members[c]], minlength=int(image_of.max()) + 1) for c in names}

    def pairs(a: int, b: int) -> float:
        """Cross-image member pairs of ``a`` and ``b`` (ordered pairs when ``a == b``)."""
        na, nb = per_image[a], per_image[b]
        return float(na.sum() * nb.sum() - np.dot(na, nb))
    alive = set(names)
    merges = []

    def mean(a: int, b: int) -> float:
        n = pairs(a, b)
        return sums[(a, b)] / n if n > 0 else 0.0

    def evidence(a: int, b: int) -> tuple[int, float, str] | None:
        """``(test, strength, name)``: co-location (test 1) ranks above any linkage (test 0)."""
        shared, together = colocation(members[a], members[b], image_of, boxes, rule.overlap, rule.max_area_ratio)
        if shared >= rule.min_shared and together >= rule.colocated * shared:
            return 1, together / shared, "co-location"
        # both clusters must be as tight with each other as each is in itself (the larger inner mean): a loose,
        # mixed cluster cannot link two parts
        within = max(mean(a, a), mean(b, b))
        between = mean(a, b)
        if within > 0 and between >= rule.link * within:
            return 0, between / within, "linkage"
        return None

    pending = {(a, b): evidence(a, b) for a in names for b in names if a < b}
    while True:
        passing = [(ev[0], ev[1], pair, ev[2]) for pair, ev in pending.items() if ev is not None]
        if not passing:
            break
        _, _, (a, b), why = max(passing, key=lambda t: (t[0], t[1], -t[2][0], -t[2][1]))
        merges.append((a, b, why))
        members[a] = np.sort(np.concatenate([members[a], members[b]]))
        for c in alive:
            if c not in (a, b):
                sums[(a, c)] = sums[(c, a)] = sums[(a, c)] + sums[(b, c)]
        sums[(a, a)] = sums[(a, a)] + sums[(b, b)] + 2 * sums[(a, b)]
        per_image[a] = per_image[a] + per_image[b]
        alive.discard(b)
        labels = np.where(labels == b, a, labels)
        pending = {pair: ev for pair, ev in pending.items() if b not in pair and a not in pair}
        for c in alive:
            if c != a:
                pending[(min(a, c), max(a, c))] = evidence(min(a, c), max(a, c))
    return _renumber(labels), merges


def merge_by_features(labels: np.ndarray, features: np.ndarray, threshold: float,
                      apart: Apart | None = None, centre: np.ndarray | None = None,
                      ) -> tuple[np.ndarray, list[tuple[int, int, float]]]:
    """Merge clusters that the *model* sees as one part: ``(labels [N], merges)``.

    Each cluster ``c`` has a centroid ``m_c = mean_{x in c} (f_x - f_bar) / ||.||`` of its
    members' unit features ``f`` (:func:`visum.model_features.box_features`: the explained
    model's activations on each member's crop), centred on the mean ``f_bar`` over every clustered
    member. Centring matters: after a ReLU every feature is non-negative, so the raw cosine of
    any two crops is high and says little; the centred cosine compares what sets a cluster apart
    from the class's other clusters. While two centroids have cosine ``<m_a, m_b> >= threshold``, the
    closest two merge (the centroid of the union is recomputed from all its members: centroid
    linkage on the unit sphere, which merges more readily than average linkage); ties go to the
    lower labels. Merges are ``(kept label, merged
    label, cosine)`` in the input's labels; labels come back renumbered ``0..C'-1`` in order of
    first appearance, ``-1`` kept.

    ``centre [C]``, when given, replaces ``f_bar``: the mean feature of random boxes of the class's
    images (:func:`random_boxes_like`), a reference that does not depend on which clusters there
    are. Centred on its own members' mean, a class whose every cluster shows one part (a lamp's
    flame in three poses) has centroids that differ by noise only, and nothing merges.

    Why features and not ``Corr''``: a clusterer splits one part by pose, scale or colour,
    which the matcher (HOG, proposal flow) sees; a model trained on varied poses maps them to
    nearby activations, so its features join what the matcher split, and keep apart what the
    model tells apart. Shapes: ``labels [N]``, ``features [N, C]`` (rows of unassigned points unused).

    With ``apart`` (:class:`Apart`), a pair that the images show to be two parts is never merged,
    however alike the model sees them: two clusters with members in at least ``apart.min_shared``
    common images, whose members sit in different places (no co-location, :func:`colocation`) in
    at least ``apart.share`` of those images. Two parts of one object are seen together, each in its
    place; one part split by pose is not seen twice in one image at two places.
    """
    labels = np.asarray(labels, dtype=np.int64)
    f = np.asarray(features, dtype=np.float64)
    names = sorted(set(labels[labels >= 0].tolist()))
    if centre is not None:
        f = f - np.asarray(centre, dtype=np.float64)
    elif names:
        f = f - f[labels >= 0].mean(axis=0)
    sums = {c: f[labels == c].sum(axis=0) for c in names}
    merges: list[tuple[int, int, float]] = []

    def unit(v: np.ndarray) -> np.ndarray:
        n = np.linalg.norm(v)
        return v / n if n > 1e-12 else v

    members = {c: np.flatnonzero(labels == c) for c in names}
    vetoed: dict[tuple[int, int], bool] = {}

    def kept_apart(a: int, b: int) -> bool:
        if apart is None:
            return False
        if (a, b) not in vetoed:
            vetoed[(a, b)] = apart.holds(members[a], members[b])
        return vetoed[(a, b)]

    while len(sums) >= 2:
        alive = sorted(sums)
        m = np.stack([unit(sums[c]) for c in alive])
        cos = m @ m.T
        np.fill_diagonal(cos, -np.inf)
        for i, j in zip(*np.triu_indices(len(alive), 1)):
            if cos[i, j] >= threshold and kept_apart(alive[i], alive[j]):
                cos[i, j] = cos[j, i] = -np.inf
        i, j = np.unravel_index(int(np.argmax(cos)), cos.shape)  # first maximum: the lowest labels on ties
        if cos[i, j] < threshold:
            break
        a, b = alive[min(i, j)], alive[max(i, j)]
        members[a] = np.sort(np.concatenate([members[a], members.pop(b)]))
        vetoed = {pair: v for pair, v in vetoed.items() if a not in pair and b not in pair}
        merges.append((a, b, float(cos[i, j])))
        sums[a] = sums[a] + sums.pop(b)
        labels = np.where(labels == b, a, labels)
    return _renumber(labels), merges


def merge_kept(clusters: list[list[tuple[int, float]]], verdicts: list, groups: list[int], image_of: np.ndarray,
               region_of: np.ndarray, one_per_region: bool = True) -> tuple[list, list, list[list[int]]]:
    """Summaries merged after the scorer's check: ``(clusters, verdicts, origins)``, ``origins[c]`` the
    input clusters that output cluster ``c`` joins (one index where nothing merged).

    ``clusters[c]`` is a list of ``(node, score)``, ``verdicts[c]`` its :class:`~visum.ClusterQuality`
    and ``groups[c]`` its merged label (``-1``: left alone, as every cluster the scorer did not keep
    is). The clusters of one group become one, at the place of its first: their members united
    (one per ``(image, region)``, the best scored, unless ``one_per_region`` is false), the verdict
    of its largest cluster with ``quality["merged"]`` the number of clusters joined. Each joined
    cluster passed the check on its own; the union of several poses need not (its SSIM is lower),
    which is why merging after the check keeps parts that merging before it loses.
    ``image_of [N]``, ``region_of [N]``: each node's image and salient region.
    """
    from visum.components import ClusterQuality

    first: dict[int, int] = {}
    for c, g in enumerate(groups):
        if g >= 0:
            first.setdefault(g, c)
    out_clusters, out_verdicts, origins = [], [], []
    for c, (members, verdict) in enumerate(zip(clusters, verdicts)):
        g = groups[c]
        joined = [c] if g < 0 else [k for k, gk in enumerate(groups) if gk == g]
        if g >= 0 and first[g] != c:
            continue
        origins.append(joined)
        if len(joined) == 1:
            out_clusters.append(members)
            out_verdicts.append(verdict)
            continue
        best: dict[tuple[int, int], tuple[int, float]] = {}
        for k in joined:
            for node, score in clusters[k]:
                key = (int(image_of[node]), int(region_of[node])) if one_per_region else (-1, node)
                if key not in best or score > best[key][1]:
                    best[key] = (node, score)
        largest = max(joined, key=lambda k: (len(clusters[k]), -k))
        out_clusters.append(sorted(best.values()))
        out_verdicts.append(ClusterQuality(verdicts[largest].kept,
                                           {**verdicts[largest].quality, "merged": float(len(joined))}))
    return out_clusters, out_verdicts, origins


def random_boxes_like(boxes: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[N, 4]`` boxes of the same widths and heights as ``boxes [N, 4]`` (``[x0, y0, x1, y1)``), each at
    a uniformly random place inside its image of ``sizes [N, 2]`` ``(height, width)``."""
    boxes = np.asarray(boxes, dtype=np.int64)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    x0 = np.floor(rng.random(len(boxes)) * (sizes[:, 1] - w + 1)).astype(np.int64)
    y0 = np.floor(rng.random(len(boxes)) * (sizes[:, 0] - h + 1)).astype(np.int64)
    return np.stack([x0, y0, x0 + w, y0 + h], axis=1)


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Labels ``0..C-1`` in order of first appearance; ``-1`` stays."""
    out = np.full(len(labels), -1, dtype=np.int64)
    seen: dict[int, int] = {}
    for k, c in enumerate(labels.tolist()):
        if c >= 0:
            out[k] = seen.setdefault(c, len(seen))
    return out
