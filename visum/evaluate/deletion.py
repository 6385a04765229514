"""The paper's mask evaluation (Sec. 4.1, Table 2) and deletion/insertion curves, as pure functions.

Relative drop. For an image ``x``, its target ``c`` and a mask ``s`` (1 = perturbed)::

    drop = (p_c(x) - p_c(Phi(x; s))) / p_c(x)

with ``p_c`` the softmax probability and ``Phi`` visum's one blur operator
(:mod:`visum.perturb`, sigma0 = 10). A soft mask blurs each pixel in proportion to ``s``.

Equal-area comparison. ``iebb-thresh`` in the paper is IEBB's smooth mask made binary by
keeping, per image, its most salient pixels until it covers the same area as that image's
crisp mask; visum does the same for every soft method (:func:`threshold_to_area`), so
methods are compared at equal deleted area.

Deletion / insertion (Petsiuk et al. 2018, with visum's blur as the "deleted" state).
Pixels are ranked by saliency; at fraction ``f`` of the image, deletion blurs the top ``f``
(``s = 1`` there) and insertion starts from the fully blurred image and restores the top
``f``. The curves are ``p_c`` against ``f``; their areas (trapezoid, ``f`` in [0, 1]) are
reported: a low deletion AUC and a high insertion AUC mean the ranking finds the evidence.
"""

from __future__ import annotations

import numpy as np
import torch

from visum.perturb import blur_stack, perturb

__all__ = [
    "relative_drop",
    "threshold_to_area",
    "top_fraction_masks",
    "perturbed_probabilities",
    "deletion_insertion_curves",
    "curve_auc",
]


def relative_drop(p_clean: np.ndarray, p_perturbed: np.ndarray) -> np.ndarray:
    """``(p - p') / p`` per image; ``[N]`` each."""
    p_clean = np.asarray(p_clean, dtype=np.float64)
    return (p_clean - np.asarray(p_perturbed, dtype=np.float64)) / np.maximum(p_clean, 1e-12)


def threshold_to_area(s: np.ndarray, area: float) -> np.ndarray:
    """Binary mask of the ``round(area · H·W)`` most salient pixels of ``s [H, W]``.

    Ties are broken by pixel order (stable sort), so the area is met exactly.
    """
    flat = np.asarray(s, dtype=np.float64).ravel()
    k = int(round(float(np.clip(area, 0.0, 1.0)) * flat.size))
    out = np.zeros(flat.size, dtype=np.float32)
    if k:
        out[np.argsort(-flat, kind="stable")[:k]] = 1.0
    return out.reshape(np.shape(s))


def top_fraction_masks(s: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """``[F, H, W]`` binary masks: for each fraction ``f``, the top ``f`` of the pixels of ``s [H, W]``."""
    return np.stack([threshold_to_area(s, f) for f in fractions])


@torch.no_grad()
def perturbed_probabilities(
    model: torch.nn.Module, x: torch.Tensor, s: torch.Tensor, target: torch.Tensor, levels: int = 8
) -> torch.Tensor:
    """``p_c(Phi(x; s))`` for ``x [B,3,H,W]``, ``s [B,1,H,W]``, ``target [B]`` → ``[B]``."""
    stack = blur_stack(x, levels=levels)
    logits = model(perturb(stack, s.to(x.dtype)))
    return torch.softmax(logits.float(), dim=1).gather(1, target.view(-1, 1)).squeeze(1)


@torch.no_grad()
def deletion_insertion_curves(
    model: torch.nn.Module, x: torch.Tensor, s: np.ndarray, target: int, steps: int = 20, batch: int = 16
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image ``x [1,3,H,W]`` and its saliency ``s [H, W]`` → ``(fractions [F], deletion [F], insertion [F])``."""
    fractions = np.linspace(0.0, 1.0, steps + 1)
    tops = torch.from_numpy(top_fraction_masks(s, fractions)).unsqueeze(1)  # [F, 1, H, W]
    stack = blur_stack(x)
    deletion, insertion = [], []
    for start in range(0, len(fractions), batch):
        m = tops[start : start + batch].to(x.device, x.dtype)
        levels = stack.levels.expand(len(m), *stack.levels.shape[1:])
        st = type(stack)(levels=levels, sigmas=stack.sigmas)
        for masks, out in ((m, deletion), (1.0 - m, insertion)):
            probs = torch.softmax(model(perturb(st, masks)).float(), dim=1)[:, target]
            out.append(probs.cpu().numpy())
    return fractions, np.concatenate(deletion), np.concatenate(insertion)


def curve_auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under ``values`` over ``fractions`` (which span [0, 1])."""
    f, v = np.asarray(fractions, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return float(np.sum((v[1:] + v[:-1]) * np.diff(f) / 2))
