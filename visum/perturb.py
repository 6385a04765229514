"""The blur perturbation ``Phi(x; s)`` of the paper's Sec. 3.1, fast and differentiable in ``s``.

Godi et al. (Sec. 3.1, after Fong & Vedaldi 2017, "IEBB") perturb an image by blurring each
pixel ``u`` with an isotropic Gaussian whose standard deviation grows with the mask::

    [Phi(x; s)](u) = sum_v g_{sigma0 s(u)}(v - u) x(v),        sigma0 = 10 pixels

Convention. visum's saliency ``s`` is 1 where the image is *perturbed* (the evidence is
deleted) and 0 where it is left alone; Fong & Vedaldi's mask is ``m = 1 - s`` (their ``m = 1``
preserves the pixel). ``s(u) = 0`` leaves the pixel as it is (``g_0`` is a Dirac delta),
``s(u) = 1`` blurs it with ``sigma0``.

Fast operator. ``blur_stack`` blurs ``x`` once into ``K + 1`` levels ``L_k = g_{sigma_k} * x``
with ``0 = sigma_0 < sigma_1 < ... < sigma_K = sigma0`` (``L_0 = x``); ``perturb`` then picks,
per pixel, the two levels bracketing ``t = sigma0 s(u)`` and interpolates linearly in ``sigma``::

    Phi(x; s)(u) ~= (1 - w) L_k(u) + w L_{k+1}(u),   w = (t - sigma_k) / (sigma_{k+1} - sigma_k)

which is exact at the knots, piecewise linear (so differentiable almost everywhere) in ``s``
and costs two gathers per call: the blurs are paid once per image, not once per iteration.

The knots are ``sigma_k = sigma0 k / K`` ("linear" spacing; "quadratic", ``sigma0 (k/K)^2``,
is available). Linear knots put ``sigma_1 = sigma0 / K`` (1.25 px for K = 8) well above the
~0.3 px below which a sampled Gaussian is the identity, so ``dPhi/ds`` is not zero at
``s = 0``. With quadratic knots ``sigma_1 = 0.16 px``, the first segment is flat (the score's
gradient at ``s = 0`` measured 1e-13 on the parts CNN) and a mask pixel that reaches 0 never
grows back. Interpolating in ``sigma^2`` (the heat equation's time) instead of ``sigma`` was
measured too: less accurate at every K.

Measured accuracy (``benchmarks/saliency_masks.py accuracy``): six 224 x 224 photos
(chelsea, coffee, astronaut, three ImageNet samples), four masks each (random 7 x 7, 14 x 14,
28 x 28 grids upsampled bilinearly, and ``s = 0.25``), against :func:`exact_perturb`.
Errors in EfficientNet-Lite0's normalised units (``std = 128/255``, so one grey level is
0.0078); ``|dp|`` is the change of the top-1 softmax probability::

    K   knots       mean |err|  max |err|  mean |dp|  max |dp|
    4   linear      0.0028      0.300      0.0087     0.115
    4   quadratic   0.0041      0.178      0.0051     0.045
    8   linear      0.0008      0.093      0.0014     0.011
    8   quadratic   0.0011      0.068      0.0020     0.024
    16  linear      0.0002      0.069      0.0007     0.010
    16  quadratic   0.0003      0.018      0.0005     0.007

K = 8 with linear knots is the default: a mean error of a tenth of a grey level, at most
12 grey levels on a few pixels of fine texture, about 0.001 of softmax probability.

Normalisation. Every blur here (:func:`visum.filters.gaussian_blur`) has a kernel that sums to 1 and replicates the border
pixels, so it commutes with any per-channel affine map ``x -> (x - mean) / std``:
blurring normalised pixels equals normalising blurred pixels. visum therefore perturbs the
model's normalised input directly.

Borders replicate the edge pixels; kernels are truncated at ``ceil(4 sigma)`` pixels (the
weight there is ``exp(-8) ~ 3e-4`` of the centre), identically here and in
:func:`exact_perturb`, so comparing them measures the interpolation alone.

Shapes: ``x [B, C, H, W]``, ``s [B, 1, H, W]`` in ``[0, 1]``, stacks ``[B, K + 1, C, H, W]``.
Everything is batched and runs on the device of its inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from visum.filters import TRUNCATE, gaussian_blur

__all__ = [
    "SIGMA0",
    "BlurStack",
    "blur_sigmas",
    "blur_stack",
    "perturb",
    "exact_perturb",
]

SIGMA0 = 10.0
"""The paper's maximum blur ``sigma0`` (pixels)."""

Spacing = Literal["quadratic", "linear"]


def blur_sigmas(sigma_max: float = SIGMA0, levels: int = 8, spacing: Spacing = "linear") -> torch.Tensor:
    """The knots ``sigma_k``, ``k = 0..K``: ``sigma_max (k/K)^2`` (quadratic) or ``sigma_max k/K`` (linear).

    ``sigma_0 = 0`` (the image itself), ``sigma_K = sigma_max``. Returns ``[K + 1]`` float64.
    """
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    if sigma_max <= 0:
        raise ValueError(f"sigma_max must be > 0, got {sigma_max}")
    r = torch.arange(levels + 1, dtype=torch.float64) / levels
    if spacing == "quadratic":
        return sigma_max * r**2
    if spacing == "linear":
        return sigma_max * r
    raise ValueError(f"unknown spacing {spacing!r}: expected 'quadratic' or 'linear'")


@dataclass(frozen=True)
class BlurStack:
    """``x`` blurred at each knot: ``levels [B, K + 1, C, H, W]``, ``levels[:, k] = g_{sigmas[k]} * x``.

    ``sigmas [K + 1]`` (float64, on the CPU) starts at 0 and ends at ``sigma_max``.
    """

    levels: torch.Tensor
    sigmas: torch.Tensor

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])


def blur_stack(
    x: torch.Tensor,
    sigma_max: float = SIGMA0,
    levels: int = 8,
    spacing: Spacing = "linear",
    truncate: float = TRUNCATE,
) -> BlurStack:
    """Blur ``x [B, C, H, W]`` once at each of the ``levels + 1`` knots of :func:`blur_sigmas`.

    Computed without gradient (the image is a constant of the mask optimisation).
    Returns a :class:`BlurStack` with ``levels [B, K + 1, C, H, W]``.
    """
    sigmas = blur_sigmas(sigma_max, levels, spacing)
    with torch.no_grad():
        stack = torch.stack([gaussian_blur(x, float(sg), truncate) for sg in sigmas], dim=1)
    return BlurStack(levels=stack, sigmas=sigmas)


def perturb(stack: BlurStack, s: torch.Tensor) -> torch.Tensor:
    """``Phi(x; s)``: per pixel, linear interpolation in ``sigma`` between the two bracketing levels.

    ``t(u) = sigma_max clamp(s(u), 0, 1)`` (the clamp passes gradients through); with ``sigma_k <= t < sigma_{k+1}``::

        Phi(x; s)(u) = L_k(u) + (t - sigma_k) / (sigma_{k+1} - sigma_k) (L_{k+1}(u) - L_k(u))

    Differentiable in ``s`` (piecewise linear; the gradient is that of the segment ``t`` is in).
    Shapes: ``stack.levels [B, K+1, C, H, W]``, ``s [B, 1, H, W]`` -> ``[B, C, H, W]``.
    """
    lv = stack.levels
    b, n, c, h, w = lv.shape
    if s.shape != (b, 1, h, w):
        raise ValueError(f"s must be [{b}, 1, {h}, {w}], got {tuple(s.shape)}")
    sig = stack.sigmas.to(device=s.device, dtype=s.dtype)
    # clamp the value but not the gradient: torch's clamp has zero gradient *at* 0 and 1,
    # which would freeze every mask pixel that touches the box constraint
    s = s + (s.clamp(0.0, 1.0) - s).detach()
    t = s * sig[-1]
    # segment index k in 0..K-1 with sig[k] <= t <= sig[k+1]
    k = (torch.bucketize(t.detach(), sig, right=True) - 1).clamp_(0, n - 2)
    lo_sig, hi_sig = sig[k], sig[k + 1]
    frac = (t - lo_sig) / (hi_sig - lo_sig)
    idx = k.unsqueeze(1).expand(b, 1, c, h, w)
    lo = torch.gather(lv, 1, idx).squeeze(1)
    hi = torch.gather(lv, 1, idx + 1).squeeze(1)
    return lo + frac * (hi - lo)


def exact_perturb(
    x: torch.Tensor, s: torch.Tensor, sigma_max: float = SIGMA0, truncate: float = TRUNCATE, rows: int = 8
) -> torch.Tensor:
    """Reference ``Phi(x; s)`` with one Gaussian kernel per pixel (slow: tests and measurement only).

    Pixel ``u`` gets ``sum_v g_{sigma(u)}(v - u) x(v)`` with ``sigma(u) = sigma_max s(u)``, the
    kernel on the square ``|v - u|_inf <= ceil(truncate sigma(u))`` normalised to sum 1 (the
    same truncation and replicated borders as :func:`gaussian_blur`, so a constant ``s``
    gives exactly ``gaussian_blur``). Processes ``rows`` image rows at a time; memory is about
    ``C (2R+1)^2 rows W`` floats with ``R = ceil(truncate sigma_max)``.
    Shapes: ``x [B, C, H, W]``, ``s [B, 1, H, W]`` -> ``[B, C, H, W]``; not differentiable.
    """
    b, c, h, w = x.shape
    radius = max(1, int(math.ceil(truncate * sigma_max)))
    side = 2 * radius + 1
    d = torch.arange(-radius, radius + 1, dtype=torch.float64, device=x.device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    r2 = (dy**2 + dx**2).reshape(-1, 1)  # [side^2, 1]
    cheb = torch.maximum(dy.abs(), dx.abs()).reshape(-1, 1)
    out = torch.empty_like(x)
    with torch.no_grad():
        padded = F.pad(x.double(), (radius, radius, radius, radius), mode="replicate")
        sig_all = (s.double().clamp(0, 1) * sigma_max)[:, 0]  # [B, H, W]
        for i in range(b):
            for y0 in range(0, h, rows):
                y1 = min(h, y0 + rows)
                patch = padded[i : i + 1, :, y0 : y1 + 2 * radius, :]
                cols = F.unfold(patch, side)  # [1, C * side^2, (y1-y0) * W]
                cols = cols.view(c, side * side, -1)
                sg = sig_all[i, y0:y1].reshape(1, -1)  # [1, P]
                reach = torch.ceil(truncate * sg).clamp(min=1.0)
                wgt = torch.exp(-0.5 * r2 / sg.clamp(min=1e-12) ** 2) * (cheb <= reach)
                delta = (r2 == 0).double().expand_as(wgt)
                wgt = torch.where(sg > 0, wgt, delta)
                wgt = wgt / wgt.sum(0, keepdim=True)
                vals = (cols * wgt.unsqueeze(0)).sum(1)  # [C, P]
                out[i, :, y0:y1] = vals.view(c, y1 - y0, w).to(x.dtype)
    return out
