"""Four classic attribution methods from Captum, as visum saliency plugins (Grad-CAM, which
needs a layer and token grids for vision transformers, is :mod:`visum_plugins.saliency.gradcam`).

==================== ====================================== =========== ========= ==========
plugin               Captum class                           sign        channels  resolution
==================== ====================================== =========== ========= ==========
integrated-gradients ``IntegratedGradients``                 positive    sum       pixel
occlusion            ``Occlusion``                           positive    (shared)  window
guided-backprop      ``GuidedBackprop`` (+ ``nn.ReLU6``)      absolute    max       pixel
smoothgrad           ``NoiseTunnel(Saliency)``               absolute    max       pixel
==================== ====================================== =========== ========= ==========

Every method turns a Captum attribution ``a`` (``[B, 3, H, W]``) into a visum mask ``s [B, 1, H, W]`` in ``[0, 1]`` in three steps:

1. **sign** — *positive part* for the methods whose attribution is a signed contribution to
   the class score relative to a reference (integrated gradients, occlusion): a
   positive value means "replacing this by the reference lowers the score", which is what
   visum's ``s = 1`` means (the perturbation deletes evidence). *Absolute value* for the
   gradient-like maps (guided backprop, SmoothGrad): their sign depends on the colour of the
   pixel and of the first-layer filters, not on whether the pixel is evidence, so the
   magnitude is what carries the information (Simonyan et al. 2013, Smilkov et al. 2017).
2. **channel reduction** — *sum* over the colour channels for integrated gradients, because
   its attributions are additive (completeness: they sum to ``S_c(x) - S_c(baseline)``), so a
   pixel's contribution is the sum of its channels'. *Max* of the magnitudes for guided
   backprop and SmoothGrad, the convention of the ``gradient`` plugin (Simonyan et al. 2013).
   Occlusion windows span all three channels, so the channels are equal and one is taken.
3. **normalisation** — each map is divided by a high quantile of its own values (option
   ``normalise_quantile``, default 0.995) and clipped to ``[0, 1]``, exactly as ``gradient``
   does (:func:`visum_plugins.saliency.gradient.normalise_by_quantile`).

Baselines and normalised inputs
-------------------------------
``x`` arrives already normalised (``(pixel - mean) / std``) and the plugin is not told
``mean`` and ``std``. A zero baseline is therefore **the dataset-mean image** (a flat grey
for ImageNet statistics), *not* a black image; black would be ``-mean / std``, which the
plugin cannot compute. Integrated gradients and occlusion both use this mean image. For
integrated gradients ``baseline = "blur"`` is offered as well (Sturmfels et al. 2020): a
Gaussian blur of the image itself, which needs no statistics because blurring commutes with
a per-channel affine normalisation.

Guided backprop and activations
-------------------------------
Captum's ``GuidedBackprop`` rewrites the backward pass of ``nn.ReLU`` *modules* only.
:class:`GuidedBackpropReLU6` also hooks ``nn.ReLU6`` (the activation of EfficientNet-Lite and
MobileNet-V2), whose gradient is that of a ReLU clipped at 6, so the guided rule
``grad_in = max(grad_in, 0)`` applies unchanged, and the ReLU leaves of an unflattened
``torch.export`` program (:func:`runs_only_relu`). A TorchScript module cannot be hooked. Functional calls (``F.relu``, ``torch.relu``,
``F.relu6``, ``x.clamp(min=0)``) and other activations (SiLU/swish, GELU, sigmoid) are not
modules that can be hooked: through them guided backprop falls back to the plain gradient.
A vision transformer (GELU, no ReLU module) therefore gets the plain gradient's map.

Batches
-------
Every method explains image ``b`` for class ``target[b]``; images of a batch never influence
each other's masks. SmoothGrad explains one image at a time and draws its noise from the
global RNG, forked and seeded with ``seed`` for each image, so a mask does not depend on the
batch it was computed in and the caller's random state is left as it was.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from pydantic import Field, model_validator

from visum import Component, Options, hookimpl
from visum.filters import gaussian_blur
from visum_plugins.saliency.gradient import SMOOTH_TRUNCATE, max_over_channels, normalise_by_quantile, quantile_field

with warnings.catch_warnings():  # captum imports tqdm.auto, which warns in a notebook that has no ipywidgets
    warnings.simplefilter("ignore")
    from captum._utils.common import _register_backward_hook
    from captum.attr import GuidedBackprop, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

__all__ = [
    "IntegratedGradientsOptions",
    "IntegratedGradientsSaliency",
    "OcclusionOptions",
    "OcclusionSaliency",
    "GuidedBackpropOptions",
    "GuidedBackpropSaliency",
    "SmoothGradOptions",
    "SmoothGradSaliency",
    "GuidedBackpropReLU6",
    "runs_only_relu",
    "check_batch",
    "positive_part",
    "sum_over_channels",
    "blurred_baseline",
    "occlusion_window",
    "register_saliency_methods",
]

# --------------------------------------------------------------------------- pure functions


def check_batch(x: torch.Tensor, target) -> torch.Tensor:
    """Validate a batch and return ``target`` as int64 ``[B]`` on ``x``'s device.

    Shapes: ``x [B, C, H, W]``, ``target`` anything ``torch.as_tensor`` turns into ``B``
    integers. Raises ``ValueError`` naming the mismatch.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f"x must be a [B, C, H, W] tensor, got shape {tuple(getattr(x, 'shape', ()))}")
    target = torch.as_tensor(target, dtype=torch.int64, device=x.device).reshape(-1)
    if target.shape[0] != x.shape[0]:
        raise ValueError(f"target has {target.shape[0]} entries for a batch of {x.shape[0]}")
    return target


def positive_part(a: torch.Tensor) -> torch.Tensor:
    """``max(a, 0)`` elementwise; any shape."""
    return a.clamp(min=0.0)


def sum_over_channels(a: torch.Tensor) -> torch.Tensor:
    """``M(i, j) = sum_ch a(ch, i, j)``: ``[B, C, H, W] -> [B, 1, H, W]``."""
    return a.sum(dim=1, keepdim=True)


def blurred_baseline(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each channel of each image blurred by a Gaussian of ``sigma`` pixels (replicated borders).

    Blurring is linear and preserves constants, so ``blur((p - mean) / std) ==
    (blur(p) - mean) / std``: the baseline is the normalised blurred image whatever the
    normalisation. Shapes: ``[B, C, H, W] -> [B, C, H, W]``; ``sigma <= 0`` returns ``x``.
    """
    return gaussian_blur(x, sigma, truncate=SMOOTH_TRUNCATE)


def occlusion_window(height: int, width: int, window: int | None, stride: int | None) -> tuple[int, int]:
    """Side of the square occluding window and its stride, in pixels.

    Defaults: ``window = round(min(H, W) / 8)`` (at least 1), ``stride = max(1, window // 2)``.
    Raises ``ValueError`` if the window exceeds the image or the stride exceeds the window
    (Captum would leave pixels unoccluded).
    """
    side = min(height, width)
    if window is None:
        window = max(1, round(side / 8))
    if stride is None:
        stride = max(1, window // 2)
    if window > side:
        raise ValueError(f"occlusion: window {window} px does not fit a {height}x{width} image")
    if stride > window:
        raise ValueError(f"occlusion: stride {stride} px is larger than the window {window} px")
    return window, stride


def _empty(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros((0, 1, *x.shape[2:]), dtype=torch.float32, device=x.device)


def _finish(s: torch.Tensor, quantile: float) -> torch.Tensor:
    return normalise_by_quantile(s.detach().to(torch.float32), quantile).detach()


def _inputs(x: torch.Tensor, grad: bool = True) -> torch.Tensor:
    """A detached float32 copy of ``x`` (requiring grad) that Captum may use without touching ``x``."""
    return x.detach().to(torch.float32).clone().requires_grad_(grad)


# --------------------------------------------------------------------------- integrated gradients


class IntegratedGradientsOptions(Options):
    """Options of :class:`IntegratedGradientsSaliency`."""

    n_steps: int = Field(
        default=50,
        ge=1,
        description=(
            "Number of points on the path from the baseline to the image (Captum's n_steps, same "
            "default); cost is n_steps forward+backward passes per image."
        ),
    )
    method: Literal["gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"] = (
        Field(default="gausslegendre", description="Quadrature rule of the path integral (Captum's method).")
    )
    baseline: Literal["zero", "blur"] = Field(
        default="zero",
        description=(
            "'zero' is 0 in the model's normalised input space, i.e. the dataset-MEAN image (grey "
            "for ImageNet statistics), not black: the plugin does not know mean/std. 'blur' is a "
            "Gaussian blur of the image itself (independent of the normalisation)."
        ),
    )
    blur_sigma: float = Field(
        default=0.05,
        gt=0.0,
        description="Std of the 'blur' baseline's Gaussian, as a fraction of the image's shorter side.",
    )
    internal_batch_size: int | None = Field(
        default=16,
        ge=1,
        description=(
            "Path points evaluated per forward pass (Captum's internal_batch_size); bounds memory, "
            "does not change the result. None evaluates all n_steps x B at once."
        ),
    )
    sign: Literal["positive", "absolute"] = Field(
        default="positive",
        description=(
            "Per-pixel attribution (sum over colour channels) kept as its positive part (evidence "
            "for the class) or its absolute value (evidence for and against)."
        ),
    )
    normalise_quantile: float = quantile_field()


class IntegratedGradientsSaliency(Component):
    """Integrated gradients (Sundararajan et al. 2017), summed over channels, positive part."""

    name = "integrated-gradients"
    summary = "Sundararajan et al. 2017 integrated gradients from the mean image (Captum), channel sum, positive part"
    Options = IntegratedGradientsOptions

    def explain(self, model, x: torch.Tensor, target) -> torch.Tensor:
        """``x [B, 3, H, W]``, ``target [B]`` -> ``s [B, 1, H, W]`` float32 in [0, 1]."""
        target = check_batch(x, target)
        if x.shape[0] == 0:
            return _empty(x)
        o = self.options
        inputs = _inputs(x)
        if o.baseline == "zero":
            baseline = torch.zeros_like(inputs)
        else:
            baseline = blurred_baseline(inputs.detach(), o.blur_sigma * min(x.shape[2:]))
        with torch.enable_grad():
            a = IntegratedGradients(model).attribute(
                inputs,
                baselines=baseline,
                target=target,
                n_steps=o.n_steps,
                method=o.method,
                internal_batch_size=o.internal_batch_size,
            )
        s = sum_over_channels(a.detach())
        s = positive_part(s) if o.sign == "positive" else s.abs()
        return _finish(s, o.normalise_quantile)


# --------------------------------------------------------------------------- occlusion


class OcclusionOptions(Options):
    """Options of :class:`OcclusionSaliency`."""

    window: int | None = Field(
        default=None,
        ge=1,
        description="Side of the square occluding patch in pixels; None = 1/8 of the image's shorter side.",
    )
    stride: int | None = Field(
        default=None,
        ge=1,
        description="Step of the patch in pixels (at most the window); None = half the window.",
    )
    perturbations_per_eval: int = Field(
        default=16,
        ge=1,
        description="Occluded copies per forward pass (Captum's perturbations_per_eval); speed/memory only.",
    )
    normalise_quantile: float = quantile_field()

    @model_validator(mode="after")
    def _stride_fits_window(self):
        if self.window is not None and self.stride is not None and self.stride > self.window:
            raise ValueError(f"stride {self.stride} is larger than window {self.window}: pixels would be skipped")
        return self


class OcclusionSaliency(Component):
    """Occlusion (Zeiler & Fergus 2014): score drop when a grey patch hides each pixel."""

    name = "occlusion"
    summary = "Zeiler & Fergus 2014 occlusion with a mean-image patch (Captum), positive part of the score drop"
    Options = OcclusionOptions

    def explain(self, model, x: torch.Tensor, target) -> torch.Tensor:
        """``x [B, 3, H, W]``, ``target [B]`` -> ``s [B, 1, H, W]`` float32 in [0, 1].

        Captum gives each pixel the mean, over the windows covering it, of
        ``S_c(x) - S_c(x with the window set to 0)``; 0 is the mean image (see the module
        docstring). Positive = hiding the pixel lowers the class score = evidence.
        """
        target = check_batch(x, target)
        if x.shape[0] == 0:
            return _empty(x)
        o = self.options
        b, c, h, w = x.shape
        window, stride = occlusion_window(h, w, o.window, o.stride)
        with torch.no_grad():
            a = Occlusion(model).attribute(
                _inputs(x, grad=False),
                sliding_window_shapes=(c, window, window),
                strides=(c, stride, stride),
                baselines=0.0,
                target=target,
                perturbations_per_eval=o.perturbations_per_eval,
            )
        s = positive_part(a.detach()[:, :1])  # the window spans all channels: they are equal
        return _finish(s, o.normalise_quantile)


# --------------------------------------------------------------------------- guided backprop


class GuidedBackpropReLU6(GuidedBackprop):
    """Captum's :class:`~captum.attr.GuidedBackprop` that also rewrites ``nn.ReLU6`` modules.

    ReLU6's gradient is ``grad_out * 1[0 < x < 6]``; guided backprop keeps its positive
    part, as for ReLU. Functional activations cannot be hooked (see the module docstring).
    """

    _HOOKED = (torch.nn.ReLU, torch.nn.ReLU6)

    def _register_hooks(self, module: torch.nn.Module) -> None:
        if isinstance(module, self._HOOKED) or runs_only_relu(module):
            self.backward_hooks.extend(_register_backward_hook(module, self._backward_hook, self))


def runs_only_relu(module: torch.nn.Module) -> bool:
    """A leaf of an unflattened ``torch.export`` program that only applies a ReLU (or ReLU6).

    Such leaves keep their names but not their classes; the ATen ops they run tell them
    (``relu``, ``relu_``, ``hardtanh`` for ReLU6), so guided backprop guides them as the
    eager modules they were.
    """
    graph = getattr(module, "graph", None)
    if graph is None or isinstance(module, torch.jit.ScriptModule) or next(module.children(), None) is not None:
        return False
    ops = [str(n.target) for n in graph.nodes if n.op == "call_function"]
    return bool(ops) and all("relu" in op or "hardtanh" in op for op in ops)


class GuidedBackpropOptions(Options):
    """Options of :class:`GuidedBackpropSaliency`."""

    normalise_quantile: float = quantile_field()


class GuidedBackpropSaliency(Component):
    """Guided backprop (Springenberg et al. 2015), |.| then max over colour channels."""

    name = "guided-backprop"
    summary = "Springenberg et al. 2015 guided backprop through nn.ReLU/ReLU6 (Captum), max |.| over channels"
    Options = GuidedBackpropOptions

    def explain(self, model, x: torch.Tensor, target) -> torch.Tensor:
        """``x [B, 3, H, W]``, ``target [B]`` -> ``s [B, 1, H, W]`` float32 in [0, 1]."""
        target = check_batch(x, target)
        if x.shape[0] == 0:
            return _empty(x)
        with warnings.catch_warnings(), torch.enable_grad():
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            a = GuidedBackpropReLU6(model).attribute(_inputs(x), target=target)
        s = max_over_channels(a.detach().abs())
        return _finish(s, self.options.normalise_quantile)


# --------------------------------------------------------------------------- smoothgrad


class SmoothGradOptions(Options):
    """Options of :class:`SmoothGradSaliency`."""

    nt_samples: int = Field(default=25, ge=1, description="Noisy copies averaged per image (Captum's nt_samples).")
    stdev: float = Field(
        default=0.15,
        gt=0.0,
        description=(
            "Noise standard deviation as a fraction of the image's value range max(x) - min(x), "
            "as in Smilkov et al. 2017 (who recommend 0.1-0.2)."
        ),
    )
    nt_type: Literal["smoothgrad", "smoothgrad_sq"] = Field(
        default="smoothgrad",
        description="Average of |gradient| ('smoothgrad') or of its square ('smoothgrad_sq').",
    )
    seed: int = Field(default=0, description="Seed of each image's noise: the same image gets the same mask.")
    nt_samples_batch_size: int = Field(
        default=8,
        ge=1,
        description="Noisy copies per forward pass (Captum's nt_samples_batch_size); speed/memory only.",
    )
    normalise_quantile: float = quantile_field()


class SmoothGradSaliency(Component):
    """SmoothGrad (Smilkov et al. 2017): mean |gradient| over noisy copies, max over channels."""

    name = "smoothgrad"
    summary = "Smilkov et al. 2017 SmoothGrad: |dS_c/dx| averaged over noisy copies (Captum NoiseTunnel), seeded"
    Options = SmoothGradOptions

    def explain(self, model, x: torch.Tensor, target) -> torch.Tensor:
        """``x [B, 3, H, W]``, ``target [B]`` -> ``s [B, 1, H, W]`` float32 in [0, 1].

        Images are explained one at a time, each with the global RNG forked and seeded with
        ``seed`` (Captum draws the noise from it), so masks are reproducible, independent of
        the batch, and the caller's random state is left as it was.
        """
        target = check_batch(x, target)
        if x.shape[0] == 0:
            return _empty(x)
        o = self.options
        tunnel = NoiseTunnel(Saliency(model))
        cuda = x.device.type == "cuda"
        index = (x.device.index if x.device.index is not None else torch.cuda.current_device()) if cuda else None
        devices = [index] if cuda else []
        maps = []
        for b in range(x.shape[0]):
            xb = _inputs(x[b : b + 1], grad=False)
            stdev = float(o.stdev * (xb.max() - xb.min()))
            with torch.random.fork_rng(devices=devices), torch.enable_grad():
                # Captum draws the noise on x's device: seed that generator only
                generator = torch.cuda.default_generators[index] if cuda else torch.random.default_generator
                generator.manual_seed(o.seed)
                a = tunnel.attribute(
                    xb,
                    nt_type=o.nt_type,
                    nt_samples=o.nt_samples,
                    nt_samples_batch_size=o.nt_samples_batch_size,
                    stdevs=max(stdev, 1e-12),
                    target=target[b : b + 1],
                    abs=True,
                )
            maps.append(max_over_channels(a.detach()))
        return _finish(torch.cat(maps), o.normalise_quantile)


@hookimpl
def register_saliency_methods():
    return [
        IntegratedGradientsSaliency,
        OcclusionSaliency,
        GuidedBackpropSaliency,
        SmoothGradSaliency,
    ]
