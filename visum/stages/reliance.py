"""How much the model relies on a summary, measured by intervention on the user's own model.

A summary claims "the model uses this part". Its *reliance* tests the claim: remove each
member's part box from its image and see how far the target's probability falls. Two removals
(:data:`REMOVALS`, ``summaries.reliance_removal``):

- ``blur`` — the paper's deletion by blur, ``Phi`` of Sec. 3.1 with ``s = 1`` inside the box and
  ``0`` outside (:func:`visum.filters.gaussian_blur` at ``SIGMA0``). It keeps the box's mean
  colour: a network that reads a part by its colour is not moved by it.
- ``fill`` — the box painted over with its surroundings: every pixel of the box takes the
  per-channel mean of the ring of ``FILL_RING`` pixels around it (clipped to the image). Where a
  part sits on a plain body this is the part "painted over with background", the intervention
  the worlds benchmark measures the ground truth with. Over the members ``m`` of one
summary, with ``p_m`` the probability of the unperturbed view and ``p'_m`` with the box
blurred, the reliance is the ratio of sums

    R = sum_m (p_m - p'_m) / sum_m p_m                       in (-inf, 1]

(the same ratio the worlds benchmark uses for ground-truth parts, :mod:`visum.benchmark.reliance`,
so one member with a tiny ``p_m`` cannot swing it), ``p'_m`` with the box removed. ``R`` near 1: removing the part takes the
model's confidence away; near 0 or negative: the model does without it. The report orders
summaries by ``R``; it needs no ground truth, only the model.

Shapes: views ``[N, 3, H, W]`` normalised as the model's input (one per image), ``image_of [M]``
(each member's image), boxes ``[M, 4]`` view pixels ``[x0, y0, x1, y1)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import get_args

import numpy as np
import torch

from visum.config import Removal
from visum.filters import gaussian_blur
from visum.perturb import SIGMA0

__all__ = ["REMOVALS", "FILL_RING", "box_masks", "blur_boxes", "fill_boxes", "remove_boxes", "member_drops",
           "ratio_of_sums"]

#: the ways a member's box can be removed from its image (declared once, as ``summaries.reliance_removal``'s type)
REMOVALS: tuple[str, ...] = get_args(Removal)
#: width in pixels of the ring around a box whose mean colour fills it
FILL_RING = 3


def box_masks(boxes: np.ndarray, height: int, width: int) -> torch.Tensor:
    """``[M, 1, H, W]`` float masks: 1 inside each box ``[x0, y0, x1, y1)`` (clipped), 0 elsewhere."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    out = torch.zeros(len(boxes), 1, height, width)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        out[k, 0, max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)] = 1.0
    return out


def blur_boxes(x: torch.Tensor, boxes: np.ndarray, sigma: float = SIGMA0) -> torch.Tensor:
    """``x [M, C, H, W]`` with each image's box replaced by that image blurred with ``g_sigma``."""
    s = box_masks(boxes, x.shape[2], x.shape[3]).to(x)
    return x * (1 - s) + gaussian_blur(x, sigma) * s


def fill_boxes(x: torch.Tensor, boxes: np.ndarray, ring: int = FILL_RING) -> torch.Tensor:
    """``x [M, C, H, W]`` with each image's box painted with the per-channel mean of the ``ring``-pixel
    band around it (the band clipped to the image; the whole image's mean when no band is left)."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    height, width = x.shape[2], x.shape[3]
    inner = box_masks(boxes, height, width).to(x)
    grown = boxes + np.array([-ring, -ring, ring, ring])
    band = box_masks(grown, height, width).to(x) - inner  # [M, 1, H, W]
    count = band.sum(dim=(2, 3), keepdim=True)
    band_mean = (x * band).sum(dim=(2, 3), keepdim=True) / count.clamp(min=1)
    colour = torch.where(count > 0, band_mean, x.mean(dim=(2, 3), keepdim=True))  # [M, C, 1, 1]
    return x * (1 - inner) + colour * inner


def remove_boxes(x: torch.Tensor, boxes: np.ndarray, removal: Removal = "blur") -> torch.Tensor:
    """``x`` with each image's box removed by ``removal`` (one of :data:`REMOVALS`)."""
    if removal == "blur":
        return blur_boxes(x, boxes)
    if removal == "fill":
        return fill_boxes(x, boxes)
    raise ValueError(f"unknown removal {removal!r}; use one of {', '.join(REMOVALS)}")


@torch.no_grad()
def member_drops(
    forward: Callable[[torch.Tensor], torch.Tensor],
    views: torch.Tensor,
    image_of: Sequence[int],
    boxes: np.ndarray,
    target: int,
    batch_size: int = 32,
    removal: Removal = "blur",
) -> tuple[np.ndarray, np.ndarray]:
    """``(p [M], p_removed [M])``: the target's softmax probability of each member's image, and of that
    image with the member's box removed.

    ``views [N, C, H, W]`` are the distinct images, ``image_of [M]`` indexes each member's image in
    them, ``boxes [M, 4]``. Each image is classified once and, for ``blur``, blurred once (a blurred
    box is the blurred image inside the box): a summary's members share images, and many summaries
    share one image, so per member only the removed copy is classified.
    """
    image_of = torch.as_tensor(np.asarray(image_of, dtype=np.int64).reshape(-1))
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    if len(image_of) == 0:
        return np.zeros(0), np.zeros(0)

    def probability(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(forward(x).float(), dim=1)[:, target].cpu()

    p_image = torch.cat([probability(views[i : i + batch_size]) for i in range(0, len(views), batch_size)])
    blurred = None
    if removal == "blur":
        blurred = torch.cat([gaussian_blur(views[i : i + batch_size], SIGMA0) for i in range(0, len(views), batch_size)])
    q = []
    for start in range(0, len(image_of), batch_size):
        idx = image_of[start : start + batch_size]
        x, b = views[idx], boxes[start : start + batch_size]
        if blurred is not None:
            inside = box_masks(b, x.shape[2], x.shape[3]).to(x)
            removed = x * (1 - inside) + blurred[idx] * inside
        else:
            removed = remove_boxes(x, b, removal)
        q.append(probability(removed))
    return p_image[image_of].numpy().astype(np.float64), torch.cat(q).numpy().astype(np.float64)


def ratio_of_sums(p: np.ndarray, p_removed: np.ndarray) -> float:
    """``sum(p - p') / sum(p)``; NaN for no members."""
    total = float(np.sum(p))
    return float(np.sum(np.asarray(p) - np.asarray(p_removed)) / total) if total > 0 else float("nan")
