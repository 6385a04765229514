"""Gaussian blur of image tensors, declared once.

``g_sigma * x`` with the sampled, normalised 1-D kernel
``g(d) = exp(-d^2 / (2 sigma^2)) / sum_d' exp(-d'^2 / (2 sigma^2))``, ``|d| <= ceil(truncate sigma)``,
applied along rows then columns (separable). The kernel sums to 1, so a constant image stays
constant and the blur commutes with a per-channel affine map ``x -> (x - mean) / std``.

Users: the paper's perturbation ``Phi`` (:mod:`visum.perturb`, ``truncate = 4``, replicated
borders), smoothing of gradient and Captum maps (``truncate = 3``), the reliance of a summary
(:mod:`visum.stages.reliance`), the crisp mask's parameter blur (:mod:`visum.saliency_opt`) and
the regulariser of Simonyan's class-model visualisation (:mod:`visum.classviz`, reflected
borders, as in image-processing code that blurs a picture being optimised).

Shapes: ``x [B, C, H, W] -> [B, C, H, W]``; each channel is blurred on its own.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["TRUNCATE", "Border", "gaussian_blur", "gaussian_kernel1d", "gaussian_radius"]

TRUNCATE = 4.0
"""Default truncation: kernels stop at ``ceil(4 sigma)`` pixels, where the weight is ``exp(-8) ~ 3e-4``
of the centre's."""

Border = Literal["replicate", "reflect"]


def gaussian_radius(sigma: float, truncate: float = TRUNCATE) -> int:
    """Half-width of the kernel: ``max(1, ceil(truncate sigma))`` pixels (``sigma > 0``)."""
    return max(1, int(math.ceil(truncate * sigma)))


def gaussian_kernel1d(sigma: float, truncate: float = TRUNCATE, *, radius: int | None = None,
                      dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian ``[2 R + 1]``, ``R = radius`` or :func:`gaussian_radius`;
    ``sigma <= 0`` -> ``[1.]``. Computed in float64, then cast."""
    if sigma <= 0:
        return torch.ones(1, dtype=dtype, device=device)
    r = gaussian_radius(sigma, truncate) if radius is None else int(radius)
    d = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (d / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = TRUNCATE,
                  border: Border = "replicate") -> torch.Tensor:
    """``g_sigma * x``, separable, per channel: ``[B, C, H, W] -> [B, C, H, W]``.

    ``border`` extends the image past its sides by repeating the edge pixel (``"replicate"``)
    or mirroring it without repeating the edge (``"reflect"``); a reflected kernel is cut at
    ``min(H, W) - 1`` pixels (and renormalised), the most a mirror can reach. ``sigma <= 0``
    returns ``x`` itself.
    """
    if sigma <= 0:
        return x
    r = gaussian_radius(sigma, truncate)
    if border == "reflect":
        r = min(r, min(x.shape[-2:]) - 1)
        if r < 1:
            return x
    elif border != "replicate":
        raise ValueError(f"gaussian_blur: border must be 'replicate' or 'reflect', not {border!r}")
    k = gaussian_kernel1d(sigma, radius=r, dtype=x.dtype, device=x.device)
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode=border), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode=border), k.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)
