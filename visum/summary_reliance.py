"""How much the model relies on a summary, measured by intervention on the user's own model.

A summary claims "the model uses this part". Its *reliance* tests the claim: blur each
member's part box in its image (the paper's deletion by blur, ``Phi`` of Sec. 3.1 with
``s = 1`` inside the box and ``0`` outside, :func:`visum.perturb.gaussian_blur` at
``SIGMA0``) and see how far the target's probability falls. Over the members ``m`` of one
summary, with ``p_m`` the probability of the unperturbed view and ``p'_m`` with the box
blurred, the reliance is the ratio of sums

    R = sum_m (p_m - p'_m) / sum_m p_m                       in (-inf, 1]

(the same ratio the worlds benchmark uses for ground-truth parts, :mod:`visum.benchmark.reliance`,
so one member with a tiny ``p_m`` cannot swing it). ``R`` near 1: removing the part takes the
model's confidence away; near 0 or negative: the model does without it. The report orders
summaries by ``R``; it needs no ground truth, only the model.

Shapes: views ``[M, 3, H, W]`` normalised as the model's input, boxes ``[M, 4]`` view pixels
``[x0, y0, x1, y1)``, targets ``[M]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from visum.perturb import SIGMA0, gaussian_blur

__all__ = ["box_masks", "blur_boxes", "member_drops", "ratio_of_sums"]


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


@torch.no_grad()
def member_drops(
    forward: Callable[[torch.Tensor], torch.Tensor],
    views: torch.Tensor,
    boxes: np.ndarray,
    targets: Sequence[int],
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """``(p [M], p_blurred [M])``: the target's softmax probability of each view, and with its box blurred."""
    t = torch.as_tensor(list(targets), dtype=torch.long)
    p, q = [], []
    for start in range(0, len(views), batch_size):
        x = views[start : start + batch_size]
        tt = t[start : start + batch_size].view(-1, 1).to(x.device)
        both = torch.cat([x, blur_boxes(x, boxes[start : start + batch_size])])
        prob = torch.softmax(forward(both).float(), dim=1)
        p.append(prob[: len(x)].gather(1, tt).squeeze(1).cpu())
        q.append(prob[len(x) :].gather(1, tt).squeeze(1).cpu())
    if not p:
        return np.zeros(0), np.zeros(0)
    return torch.cat(p).numpy().astype(np.float64), torch.cat(q).numpy().astype(np.float64)


def ratio_of_sums(p: np.ndarray, p_blurred: np.ndarray) -> float:
    """``sum(p - p') / sum(p)``; NaN for no members."""
    total = float(np.sum(p))
    return float(np.sum(np.asarray(p) - np.asarray(p_blurred)) / total) if total > 0 else float("nan")
