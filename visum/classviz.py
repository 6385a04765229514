"""Class model visualisation (Simonyan, Vedaldi & Zisserman 2013, Sec. 2), as pure functions.

The image that a classifier finds most typical of class ``c`` is found by gradient ascent on
the *unnormalised* class score (the logit, not the softmax) with an L2 penalty::

    I* = argmax_I  S_c(I) - lambda * ||I||_2^2                                   (Sec. 2, eq. 1)

``I`` is a *mean-subtracted* image: the optimisation starts from ``I = 0`` (the zero image)
and the training mean is added back for display. visum's models carry their training
statistics as per-channel ``mean`` and ``std`` in ``[0, 1]`` units (:class:`~visum.models.base.
Preprocessing`), so here ``I = v / 255 - mean`` for pixel values ``v``, the model sees
``x = I / std``, and the picture is ``v = 255 * clip(I + mean, 0, 1)``. ``lambda`` is in those
units (``||I||^2`` summed over ``3 x S x S`` values of about ``+-0.5``).

Each step moves ``I`` along the objective's gradient ``d = dS_c/dI - 2 lambda I``. With
``step="plain"`` it is ``I <- I + lr * d``; with ``step="normalised"`` (the default)
``I <- I + lr * d / mean|d|``, so ``lr`` is the mean change per pixel in ``[0, 1]`` units
whatever the network's gradient scale (EfficientNet-Lite0's logit gradients are ~40x
smaller than the parts CNN's). Both ascend the same objective and stop moving at the same
stationary points (``d = 0``).

Additions that the paper does not use, all off by default (Yosinski et al. 2015,
Mordvintsev et al. 2015): a random circular *jitter* of ``I`` before each gradient, a
Gaussian *blur* of ``I`` every few steps, *clipping* ``I + mean`` to ``[0, 1]`` after each
step (projected ascent onto displayable images), and a contrast *stretch* of the picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from visum.cache_codec import cacheable
from visum.filters import gaussian_blur

__all__ = ["ClassModel", "class_model_visualisation", "stretch_contrast", "to_display"]

Step = Literal["plain", "normalised"]


@cacheable
@dataclass(frozen=True)
class ClassModel:
    """The result of :func:`class_model_visualisation` for one class.

    ``image`` is the picture (training mean added back), ``centred`` the optimised
    ``I`` itself, ``scores`` the target's logit ``S_c`` before the first step and after each
    step, ``objective`` ``S_c(I) - lambda ||I||^2`` at the same moments, ``logits`` every
    class's score on the final ``I`` (unjittered).
    """

    target: int
    image: np.ndarray  # [S, S, 3] uint8
    centred: np.ndarray  # [3, S, S] float32, I = v / 255 - mean
    scores: np.ndarray  # [iterations + 1] float64
    objective: np.ndarray  # [iterations + 1] float64
    logits: np.ndarray  # [K] float64

    @property
    def rank(self) -> int:
        """0 when the target's score is the highest of all classes on the result."""
        return int((self.logits > self.logits[self.target]).sum())


def to_display(centred: torch.Tensor, mean) -> np.ndarray:
    """``I [3, S, S]`` (mean-subtracted, ``[0, 1]`` units) -> picture ``[S, S, 3]`` uint8: ``255 clip(I + mean)``."""
    m = torch.as_tensor(mean, dtype=centred.dtype, device=centred.device).view(3, 1, 1)
    v = ((centred + m).clamp(0, 1) * 255).round().to(torch.uint8)
    return v.permute(1, 2, 0).cpu().numpy()


def stretch_contrast(centred: np.ndarray, mean, quantile: float = 0.99) -> np.ndarray:
    """Display with stretched contrast: ``255 clip(0.45 I / q + mean)``, ``q`` the ``quantile`` of ``|I|``.

    Shapes: ``I [3, S, S]`` -> ``[S, S, 3]`` uint8. Only for looking at: the classifier's
    score belongs to the unstretched image.
    """
    q = float(np.quantile(np.abs(centred), quantile))
    scaled = centred * (0.45 / q) if q > 0 else centred
    return to_display(torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32)), mean)


def class_model_visualisation(
    model: torch.nn.Module,
    target: int,
    *,
    size: int,
    mean,
    std,
    iterations: int = 200,
    lr: float = 0.01,
    l2: float = 1e-4,
    step: Step = "normalised",
    jitter: int = 0,
    blur_sigma: float = 0.0,
    blur_every: int = 4,
    clip: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback: Callable[[int, float], None] | None = None,
) -> ClassModel:
    """Gradient ascent on ``S_c(I) - l2 * ||I||^2`` from the zero image (module docstring).

    ``model`` maps ``[B, 3, size, size]`` normalised input to logits ``[B, K]`` (eval mode);
    ``mean``/``std`` are its per-channel normalisation in ``[0, 1]`` units. ``jitter`` is the
    largest circular shift in pixels applied before each step (0: none); ``blur_sigma > 0``
    blurs ``I`` every ``blur_every`` steps. ``seed`` fixes the jitter offsets. ``callback(k,
    S_c)`` is called after step ``k`` (progress bars). Returns a :class:`ClassModel`.
    """
    if int(target) < 0:
        raise ValueError(f"target must be a class index >= 0, got {target}")
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    if step not in ("plain", "normalised"):
        raise ValueError(f"step must be 'plain' or 'normalised', got {step!r}")
    dev = torch.device(device)
    inv_std = 1.0 / torch.as_tensor(std, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    generator = torch.Generator().manual_seed(int(seed))
    centred = torch.zeros(1, 3, size, size, dtype=torch.float32, device=dev)
    scores, objective = [], []

    def score_and_grad(img: torch.Tensor) -> tuple[float, torch.Tensor]:
        img = img.detach().requires_grad_(True)
        s_c = model(img * inv_std)[0, target]
        (grad,) = torch.autograd.grad(s_c, img)
        return float(s_c.detach()), grad

    for k in range(iterations):
        if jitter > 0:
            dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
            s_c, grad = score_and_grad(torch.roll(centred, shifts=(dy, dx), dims=(2, 3)))
            grad = torch.roll(grad, shifts=(-dy, -dx), dims=(2, 3))
        else:
            s_c, grad = score_and_grad(centred)
        scores.append(s_c)
        objective.append(s_c - l2 * float((centred**2).sum()))
        with torch.no_grad():
            ascent = grad - 2.0 * l2 * centred  # d/dI [S_c(I) - l2 ||I||^2]
            if step == "normalised":
                ascent = ascent / ascent.abs().mean().clamp_min(1e-12)
            centred = centred + lr * ascent
            if blur_sigma > 0 and blur_every > 0 and (k + 1) % blur_every == 0:
                centred = gaussian_blur(centred, blur_sigma, truncate=3.0, border="reflect")
            if clip:
                centred = torch.maximum(torch.minimum(centred, 1.0 - mean_t), -mean_t)
        if callback is not None:
            callback(k + 1, s_c)

    with torch.no_grad():
        logits = model(centred * inv_std)[0].double().cpu().numpy()
    scores.append(float(logits[target]))
    objective.append(scores[-1] - l2 * float((centred**2).sum()))
    return ClassModel(
        target=int(target),
        image=to_display(centred[0], mean),
        centred=centred[0].cpu().numpy(),
        scores=np.asarray(scores, dtype=np.float64),
        objective=np.asarray(objective, dtype=np.float64),
        logits=logits,
    )
