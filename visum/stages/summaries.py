"""Clusters to summary candidates (the paper's Sec. 3.3, before the scorer).

A cluster of ``Corr''`` may hold several proposals of one salient region (nested boxes of the
same part). A summary shows each region once: per (image, region) the member with the highest
mean similarity to the rest of its cluster stays. A cluster whose members come from fewer
than ``min_images`` images is not a pattern of the class and is dropped.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["summary_members"]


def summary_members(labels: np.ndarray, corr: sp.csr_matrix, image_of: np.ndarray, region_of: np.ndarray,
                    *, one_per_region: bool = True, min_images: int = 3) -> list[list[tuple[int, float]]]:
    """Each cluster's members as ``(node, score)``, nodes ascending, clusters by label.

    ``score`` is the node's mean similarity to the other members of its cluster,
    ``sum_j Corr''[k, j] / (n - 1)``. Shapes: ``labels [N]`` (-1 = unassigned), ``corr [N, N]``,
    ``image_of [N]``, ``region_of [N]``. ``one_per_region = False`` keeps every node.
    """
    clusters = []
    for label in sorted(set(labels[labels >= 0].tolist())):
        idx = np.flatnonzero(labels == label)
        sub = corr[idx][:, idx]
        mean_sim = np.asarray(sub.sum(axis=1)).ravel() / max(len(idx) - 1, 1)
        best: dict[tuple[int, int], tuple[int, float]] = {}
        for k, score in zip(idx.tolist(), mean_sim.tolist()):
            key = (int(image_of[k]), int(region_of[k])) if one_per_region else (int(image_of[k]), -1 - k)
            if key not in best or score > best[key][1]:
                best[key] = (k, score)
        members = sorted(best.values())
        if len({int(image_of[k]) for k, _ in members}) >= min_images:
            clusters.append(members)
    return clusters
