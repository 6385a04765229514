"""``iebb``: Fong & Vedaldi's deletion game ("meaningful perturbation", ICCV 2017).

The smallest, smoothest blur mask that deletes the evidence for the target class::

    s* = argmin_{s in [0,1]^Lambda}  f_c(Phi(x; s)) + l1 A(s) + l2 TV_beta(s)

with ``f_c`` the target's softmax probability, ``Phi`` the per-pixel Gaussian blur of the
paper's Sec. 3.1 (``sigma0 s(u)``, ``sigma0 = 10``; :mod:`visum.perturb`), ``A`` the mean of
``s`` and ``TV_beta`` the mean ``beta``-total variation (:mod:`visum.saliency_opt`).
visum's ``s`` is 1 where the image is blurred; Fong & Vedaldi's mask is ``m = 1 - s``.

As in Fong & Vedaldi (Sec. 4): 300 Adam steps of 0.1, ``l1 = 1e-4``, ``l2 = 1e-2``,
``beta = 3`` (their penalties are sums over the 224 x 224 pixels; visum's are means, so the
defaults here are ``1e-4 x 224^2 ~ 5.0`` and ``1e-2 x 224^2 ~ 502``: taken as means, 1e-4 and
1e-2 make the area almost free and the masks spread over half the image); the mask lives on a grid 8 times coarser than the image (28 x 28 for 224 x 224),
blurred (``sigma_m = 5`` image pixels) and upsampled bilinearly, and is randomly shifted by a
few pixels at each step. The mask is clamped to ``[0, 1]`` after each step (the box
constraint of their eq. 3). Where our choices differ from theirs (initialisation, penalties
as means over pixels) the reasons are in ``docs/saliency.md``.

The result is a smooth heat map, not a binary mask: ``crisp`` is the paper's binary version.
"""

from __future__ import annotations

import torch
from pydantic import Field

from visum import Component, Options, hookimpl
from visum.saliency_opt import Checkpoint, Phase, optimise_mask

__all__ = ["FV_PIXELS", "MaskOptimisationOptions", "IEBBOptions", "IEBB", "register_saliency_methods"]

FV_PIXELS = 224 * 224
"""Pixels of Fong & Vedaldi's masks: their weights, on sums over them, become ``weight x FV_PIXELS`` on means."""


class MaskOptimisationOptions(Options):
    """Options shared by the mask-optimising saliency methods (``iebb``, ``crisp``)."""

    learning_rate: float = Field(default=0.1, gt=0.0, description="Adam's step size on the mask values.")
    beta: float = Field(
        default=3.0, ge=1.0, description="Exponent of the total-variation penalty (Fong & Vedaldi's beta)."
    )
    init: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Initial mask value everywhere (1 = fully blurred). 0.5 starts where the softmax is not "
            "saturated, so the score's gradient both grows and shrinks the mask."
        ),
    )
    mask_downsample: int = Field(
        default=8,
        ge=1,
        description="The mask is optimised on a grid this many times coarser than the image (28 x 28 for 224).",
    )
    mask_blur_sigma: float = Field(
        default=5.0,
        ge=0.0,
        description="Gaussian blur (in image pixels) of the low-resolution mask before it is upsampled; 0 = none.",
    )
    jitter: int = Field(
        default=2,
        ge=0,
        description="Each step shifts the mask by a random integer offset of up to this many pixels; 0 = off.",
    )
    seed: int = Field(
        default=0, description="Seed of the jitter; with the image's values it fixes each image's random shifts."
    )
    blur_sigma: float = Field(default=10.0, gt=0.0, description="sigma0: the blur (pixels) of a pixel with s = 1.")
    blur_levels: int = Field(
        default=8,
        ge=1,
        le=64,
        description="Pre-blurred levels interpolated by the perturbation; 8 changes the softmax score by ~0.001 on average.",
    )

    stop_tolerance: float = Field(
        default=0.0,
        ge=0.0,
        description=(
            "> 0: an image leaves a phase once its mask moved less than this share of its own mass in "
            "stop_patience steps (visum.saliency_opt.optimise_mask); fewer steps, less time. 0 = every step."
        ),
    )
    stop_patience: int = Field(default=25, ge=1, description="Steps between two looks at whether a mask has settled.")

    def shared(self) -> dict:
        """Keyword arguments of :func:`visum.saliency_opt.optimise_mask` common to every method."""
        return dict(
            lr=self.learning_rate,
            init=self.init,
            downsample=self.mask_downsample,
            mask_blur=self.mask_blur_sigma,
            jitter=self.jitter,
            seed=self.seed,
            sigma_max=self.blur_sigma,
            levels=self.blur_levels,
            stop_tolerance=self.stop_tolerance,
            stop_patience=self.stop_patience,
        )


class IEBBOptions(MaskOptimisationOptions):
    """Options of :class:`IEBB`."""

    iterations: int = Field(default=300, ge=1, description="Adam steps.")
    l1: float = Field(
        default=FV_PIXELS * 1e-4,
        ge=0.0,
        description=(
            "Weight of the mask's area (mean of s over pixels). Default: Fong & Vedaldi's 1e-4 on a sum "
            "over a 224 x 224 mask, i.e. 1e-4 x 224^2 ~ 5.02 on the mean."
        ),
    )
    l2: float = Field(
        default=FV_PIXELS * 1e-2,
        ge=0.0,
        description=(
            "Weight of the total variation (mean over pixels). Default: Fong & Vedaldi's 1e-2 on a sum, "
            "i.e. 1e-2 x 224^2 ~ 502 on the mean."
        ),
    )


class IEBB(Component):
    """Fong & Vedaldi 2017 deletion-game mask: a smooth heat map in ``[0, 1]``."""

    name = "iebb"
    summary = "Fong & Vedaldi 2017 meaningful perturbation: smooth mask whose blur deletes the class"
    Options = IEBBOptions

    def schedule(self) -> list[Phase]:
        o = self.options
        return [Phase(iterations=o.iterations, l1=o.l1, l2=o.l2, beta=o.beta)]

    def explain(self, model, x: torch.Tensor, target: torch.Tensor, checkpoint: Checkpoint | None = None) -> torch.Tensor:
        """``x [B, 3, H, W]`` float32 normalised, ``target [B]`` int64 -> ``s [B, 1, H, W]`` in [0, 1].

        ``checkpoint`` saves the optimisation in flight and picks it up after a kill
        (:class:`visum.saliency_opt.Checkpoint`); the mask does not depend on it."""
        stats: dict = {}
        s = optimise_mask(model, x, target, self.schedule(), stats=stats, checkpoint=checkpoint, **self.options.shared())
        self.steps_ = stats["steps"]  # [B] steps each image took (fewer than the schedule's with stop_tolerance)
        return s


@hookimpl
def register_saliency_methods():
    return [IEBB]
