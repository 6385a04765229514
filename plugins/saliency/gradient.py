"""``gradient``: image-specific class saliency of Simonyan, Vedaldi & Zisserman (2013).

For an image ``x`` and a class ``c`` with unnormalised score (logit) ``S_c(x)``, the
saliency of pixel ``(i, j)`` is the largest magnitude of the class-score gradient over the
colour channels (Simonyan et al. 2013, Sec. 3.1)::

    w = dS_c / dx |_x                      # [3, H, W], one backward pass
    M(i, j) = max_ch |w(ch, i, j)|         # [H, W]

visum needs saliency in ``[0, 1]`` (``s = 1`` where the image matters most), so each map is
optionally smoothed with a Gaussian and then divided by a high quantile of itself and
clipped. Dividing by a quantile rather than by the maximum keeps a handful of extreme
gradient pixels from squashing the rest of the map towards 0.
"""

from __future__ import annotations

import warnings

import torch
from pydantic import Field

from visum import Component, Options, hookimpl
from visum.filters import gaussian_blur

with warnings.catch_warnings():  # captum imports tqdm.auto, which warns in a notebook that has no ipywidgets
    warnings.simplefilter("ignore")
    from captum.attr import Saliency

__all__ = [
    "GradientOptions",
    "Gradient",
    "class_score_gradient_magnitude",
    "max_over_channels",
    "normalise_by_quantile",
    "quantile_field",
    "register_saliency_methods",
]

SMOOTH_TRUNCATE = 3.0
"""Smoothing kernels stop at ``ceil(3 sigma)`` pixels (:func:`visum.filters.gaussian_blur`, replicated borders)."""


def class_score_gradient_magnitude(model, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``|dS_c/dx|`` for every image of a batch, with Captum's :class:`~captum.attr.Saliency`.

    ``S_c`` is the model's output for class ``target[b]`` of image ``b`` — the logit, not
    the softmax, as in Simonyan et al. 2013. One forward and one backward pass for the whole
    batch: the gradient of ``sum_b S_{target[b]}(x_b)`` w.r.t. ``x_b`` equals that of
    ``S_{target[b]}(x_b)`` alone whenever the model treats images independently (any model
    in eval mode).

    Shapes: ``x [B, C, H, W]`` float, ``target [B]`` int64 -> ``[B, C, H, W]`` float, >= 0,
    detached. ``x`` itself is not modified (a detached copy is differentiated).
    """
    inputs = x.detach().clone().requires_grad_(True)
    grads = Saliency(model).attribute(inputs, target=target, abs=True)
    return grads.detach()


def max_over_channels(w: torch.Tensor) -> torch.Tensor:
    """``M(i, j) = max_ch w(ch, i, j)``: ``[B, C, H, W] -> [B, 1, H, W]``."""
    return w.amax(dim=1, keepdim=True)


def normalise_by_quantile(s: torch.Tensor, q: float) -> torch.Tensor:
    """Map each image's saliency to ``[0, 1]``: ``clip(s / quantile_q(s), 0, 1)``.

    The quantile is taken over the ``H x W`` pixels of each image separately. If an image's
    quantile is 0 (a mostly flat map) its maximum is used instead; an all-zero map stays 0.
    Shapes: ``[B, 1, H, W]`` (``>= 0``) -> ``[B, 1, H, W]`` in ``[0, 1]``.
    """
    flat = s.flatten(start_dim=1).to(torch.float32)
    if flat.shape[1] == 0:
        return s.to(torch.float32)
    # one image at a time: torch.quantile refuses inputs of more than 2**24 elements
    scale = torch.stack([torch.quantile(row, q) for row in flat])
    peak = flat.amax(dim=1)
    scale = torch.where(scale > 0, scale, peak)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    out = flat / scale[:, None]
    return out.clamp_(0.0, 1.0).view(s.shape)


def quantile_field() -> float:
    """The ``normalise_quantile`` option every heat-map plugin shares (:func:`normalise_by_quantile`)."""
    return Field(
        default=0.995,
        gt=0.0,
        le=1.0,
        description=(
            "Each map is divided by this quantile of its own values, then clipped to [0, 1]; "
            "1.0 divides by the maximum. Below 1 a few extreme values cannot darken the rest."
        ),
    )


class GradientOptions(Options):
    """Options of :class:`Gradient`."""

    normalise_quantile: float = quantile_field()
    smooth_sigma: float = Field(
        default=0.0,
        ge=0.0,
        description=(
            "Standard deviation in pixels of a Gaussian blur applied to |dS_c/dx| before "
            "normalising; 0 turns it off (the raw gradient map is speckled pixel by pixel)."
        ),
    )


class Gradient(Component):
    """Simonyan et al. 2013 gradient saliency, normalised per image to ``[0, 1]``."""

    name = "gradient"
    summary = "Simonyan et al. 2013: |dS_c/dx| of the class logit, max over colour channels"
    Options = GradientOptions

    def explain(self, model, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``x [B, 3, H, W]`` float32, ``target [B]`` int64 -> ``s [B, 1, H, W]`` float32 in [0, 1]."""
        if x.ndim != 4:
            raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
        target = torch.as_tensor(target, dtype=torch.int64, device=x.device).reshape(-1)
        if target.shape[0] != x.shape[0]:
            raise ValueError(f"target has {target.shape[0]} entries for a batch of {x.shape[0]}")
        if x.shape[0] == 0:
            return torch.zeros((0, 1, *x.shape[2:]), dtype=torch.float32, device=x.device)
        w = class_score_gradient_magnitude(model, x, target)
        s = max_over_channels(w).to(torch.float32)
        s = gaussian_blur(s, self.options.smooth_sigma, truncate=SMOOTH_TRUNCATE)
        return normalise_by_quantile(s, self.options.normalise_quantile).detach()


@hookimpl
def register_saliency_methods():
    return [Gradient]
