"""A visum proposer plugin, packaged the way any third party would package one.

Proposals are the windows of a multi-scale grid: for each scale ``s`` (a fraction of the
image's short side) square windows of side ``s * min(H, W)`` placed with a stride of
``overlap``-determined step. It needs no image content, which makes it a useful control in
ablations: any structure in the summaries then comes from saliency and matching alone.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from visum import Component, Options, hookimpl

__all__ = ["GridProposer", "GridOptions", "grid_boxes"]


class GridOptions(Options):
    scales: tuple[float, ...] = Field((0.2, 0.3, 0.45), description="Window sides as fractions of the short side.")
    step: float = Field(0.5, gt=0, le=1, description="Stride as a fraction of the window side.")


def grid_boxes(height: int, width: int, scales, step: float) -> np.ndarray:
    """All grid windows ``[M, 4]`` int64 ``[x0, y0, x1, y1]`` (exclusive), small scales first."""
    boxes = []
    for scale in scales:
        side = max(2, int(round(scale * min(height, width))))
        stride = max(1, int(round(side * step)))
        for y in range(0, max(height - side, 0) + 1, stride):
            for x in range(0, max(width - side, 0) + 1, stride):
                boxes.append((x, y, min(x + side, width), min(y + side, height)))
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


class GridProposer(Component):
    name = "grid"
    summary = "Multi-scale sliding-window grid (content-blind control)"
    Options = GridOptions

    def propose(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        return grid_boxes(h, w, self.options.scales, self.options.step)


@hookimpl
def register_proposers():
    return [GridProposer]
