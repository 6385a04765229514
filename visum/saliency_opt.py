"""Mask optimisation shared by the ``iebb`` and ``crisp`` saliency plugins (paper Sec. 3.1).

Both minimise, for each image ``x`` of target class ``c``, a deletion-game objective over a
mask ``s : Lambda -> [0, 1]`` (``s = 1`` perturbed; Fong & Vedaldi's ``m = 1 - s``)::

    E(s) = f_c(Phi(x; s)) + l1 A(s) + l2 TV_beta(s) + l3 Bin(s)

    A(s)       = 1/N sum_u s(u)                                  (= ||1 - m||_1 / N)
    TV_beta(s) = 1/N sum_u |s(u + e_x) - s(u)|^beta + |s(u + e_y) - s(u)|^beta
    Bin(s)     = 1/N sum_u s(u) (1 - s(u))                       (= |1 - m| m, paper eq. 2)

with ``f_c`` the target's softmax probability, ``Phi`` the blur of :mod:`visum.perturb` and
``N = H W`` the number of pixels. The penalties are *means* over pixels (sums divided by
``N``): the paper's crisp weights (``l1 = 0.01``, then ``l2 = 1``, ``l3 = 2``) only make
sense that way (as sums, ``l1 = 0.01`` makes deleting a 20 x 20 patch cost 4 > max f_c = 1
and the mask stays empty), and means make every weight independent of the input size.
``docs/saliency.md`` has the measurements behind this.

IEBB's ``l3 = 0`` and a single phase; crisp (eq. 2) is a two-phase *schedule* of weights.
Each :class:`Phase` runs ``iterations`` steps of Adam on the mask's parameters, clamped
to ``[0, 1]`` after each step (projected gradient: the paper's box constraint
``m in [0, 1]^Lambda``; a sigmoid could never reach the exact 0 and 1 that crisp masks need).

A phase parameterises the mask either at low resolution, Fong & Vedaldi's defence against
adversarial masks (a ``ceil(H / d) x ceil(W / d)`` grid, ``d = 8``: 28 x 28 for 224 x 224,
blurred by ``g_{sigma_m / d}`` and upsampled bilinearly to ``H x W``), or at full resolution
(``s`` itself, optionally blurred by ``Phase.blur``), which a crisp mask needs: a bilinear
``d``-fold upsampling can only make ramps ``d`` pixels wide; or on *segments* (superpixels,
one value per segment, ``s(u) = theta_{l(u)}`` for the segment ``l(u)`` of pixel ``u``): a
binary ``theta`` gives a binary mask whose edges follow the image's, in as many pieces as
there are groups of touching chosen segments. Phases move forward through grid, segments,
pixels, each starting from the previous phase's mask (its mean over a segment).
Each step perturbs with a randomly *jittered* mask
(shifted by up to ``jitter`` pixels, borders replicated) so that the mask cannot exploit
pixel-exact alignments; the penalties see the unshifted mask.

Batches. All masks of a batch are optimised together: one forward and one backward pass
per step, the per-image objectives summed. Images never interact: the model is in eval
mode, Adam is per coordinate and each image's jitter comes from its own generator, seeded
by ``seed`` and a hash of the image's values, so an image gets the same mask whatever batch
it is in.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import torch
import torch.nn.functional as F

from visum.filters import gaussian_blur
from visum.perturb import SIGMA0, BlurStack, blur_stack, perturb

__all__ = [
    "Phase",
    "area_penalty",
    "tv_penalty",
    "binary_penalty",
    "target_probability",
    "low_resolution_size",
    "upsample_mask",
    "upsampling_matrix",
    "shift_masks",
    "image_seeds",
    "segment_means",
    "superpixels",
    "jitter_offsets",
    "Checkpoint",
    "optimise_mask",
    "successive_masks",
]


@dataclass(frozen=True)
class Phase:
    """One stage of the schedule: ``iterations`` Adam steps with fixed weights.

    ``l1`` area, ``l2`` total variation with exponent ``beta``, ``l3`` binarisation (see the
    module docstring); ``full_resolution`` optimises ``s`` pixel by pixel instead of the
    blurred, upsampled low-resolution grid; ``segments`` optimises one value per segment of
    :func:`optimise_mask`'s ``segments`` (not with ``full_resolution``); ``jitter`` is the largest random shift (pixels)
    of the mask at each step, ``None`` for :func:`optimise_mask`'s ``jitter``; ``blur`` (full
    resolution only) is a Gaussian blur in pixels applied to the parameters to make ``s``, so
    that pixel-level speckle turns into grey that the binarisation penalty charges for;
    ``score_blur`` is a Gaussian blur (pixels) of the mask *as the classifier sees it*
    (``Phi(x; g * s)``) while the penalties see ``s`` itself: the score's gradient is then
    smooth across neighbouring pixels, so it cannot reward pixel-level dithering, and the
    binarisation penalty alone decides each pixel; ``adam_beta2`` is the decay of Adam's
    running mean of squared gradients, which sets each pixel's step size (see below); ``hard``
    shows the classifier the mask thresholded, ``1[s > 0.5]``, with the straight-through gradient
    (the threshold's derivative taken as 1), so the phase minimises the score of the *binary*
    mask the regions stage reads while the penalties see ``s``; a schedule that ends on a hard
    phase returns the binary mask.

    Why ``adam_beta2`` is a phase's business: Adam divides each coordinate's gradient by the
    root of that running mean, which with PyTorch's ``0.999`` remembers ~1000 steps. In a
    phase that ends with the target's score saturated at 0 the score's gradient vanishes, and
    what is left to move a grey pixel is the penalties' gradient, thousands of times smaller
    than the score's gradients the running mean still remembers: the pixel freezes wherever it
    was, grey. ``0.9`` (~10 steps of memory) lets the step size follow the gradient that acts
    *now*, so the binarisation penalty settles the pixels the score no longer cares about.
    """

    iterations: int
    l1: float
    l2: float
    beta: float = 3.0
    l3: float = 0.0
    full_resolution: bool = False
    segments: bool = False
    jitter: int | None = None
    blur: float = 0.0
    score_blur: float = 0.0
    adam_beta2: float = 0.999
    hard: bool = False


@dataclass
class Checkpoint:
    """Where a mask optimisation in flight is saved and picked up again (a kill loses seconds, not a batch).

    * ``state`` — what an earlier, interrupted call on the same inputs saved, or ``None``;
    * ``save(state)`` — stores a state (a dict of NumPy arrays, ints and ``None``); called at a
      step boundary once ``interval`` seconds (``clock``) have passed since the last save;
    * ``rejected`` — set to the reason when ``state`` does not fit the call (wrong shapes, steps
      or values): the optimisation then starts afresh, and the caller can say so.

    Resuming gives the mask an uninterrupted call gives, bit for bit: a state holds the
    parameters, Adam's moments and step count, which images are done and the step reached; the
    jitter and the blur stack are derived again from the seed and the images. Only where the
    state is saved depends on the clock, never the result.
    """

    state: dict | None = None
    save: Callable[[dict], None] | None = None
    interval: float = 5.0
    clock: Callable[[], float] = time.monotonic
    rejected: str | None = None
    _last: float = field(default=0.0, repr=False)
    _parent: "Checkpoint | None" = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._last = self.clock()

    def maybe_save(self, make_state: Callable[[], dict]) -> None:
        """``save(make_state())`` if ``interval`` seconds have passed since the last save."""
        if self.save is not None and self.clock() - self._last >= self.interval:
            self.save(make_state())
            self._last = self.clock()

    def reject(self, reason: str) -> None:
        self.rejected = reason
        if self._parent is not None:
            self._parent.reject(reason)

    def within(self, outer: dict, state: dict | None) -> "Checkpoint":
        """A checkpoint for a nested optimisation whose saved states are ``{**outer, "inner": state}``."""
        parent = self

        def save(inner: dict) -> None:
            parent.save({**outer, "inner": inner})
            parent._last = parent.clock()

        child = Checkpoint(state=state, save=save if self.save else None, interval=self.interval, clock=self.clock,
                           _parent=self)
        child._last = self._last
        return child


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().copy()


def _tensor(a: Any, name: str, shape: tuple[int, ...] | None = None, kind: str = "f",
            low: float | None = None, high: float | None = None) -> torch.Tensor:
    """A saved array checked before use (:func:`visum.cache.expect_array`: NumPy, of dtype kind ``kind``, of
    ``shape`` — one axis of any length for ``None`` — finite, in range), as a tensor."""
    from visum.cache import expect_array

    try:
        expect_array(1 if shape is None else len(shape), kind, shape, low, high)(a)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    return torch.from_numpy(np.array(a, dtype=np.float32 if kind == "f" else np.int64))


def _int(v: Any, name: str, low: int, high: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not low <= v <= high:
        raise ValueError(f"{name} = {v!r}, expected an int in [{low}, {high}]")
    return v


def area_penalty(s: torch.Tensor) -> torch.Tensor:
    """``A(s) = 1/N sum_u s(u)``, the mean deleted fraction: ``[B, 1, H, W] -> [B]``."""
    return s.flatten(1).mean(1)


def tv_penalty(s: torch.Tensor, beta: float) -> torch.Tensor:
    """``TV_beta(s) = 1/N sum_u |d_x s(u)|^beta + |d_y s(u)|^beta`` (forward differences).

    Fong & Vedaldi's total variation (their eq. 4, ``beta = 3``) divided by ``N = H W``.
    ``beta > 1`` prefers gentle ramps to steps: a ramp ``w`` pixels wide costs ``w^(1-beta)``
    per unit of edge length. Shapes: ``[B, 1, H, W] -> [B]``.
    """
    n = s.shape[-1] * s.shape[-2]
    dx = (s[..., :, 1:] - s[..., :, :-1]).abs().pow(beta).flatten(1).sum(1)
    dy = (s[..., 1:, :] - s[..., :-1, :]).abs().pow(beta).flatten(1).sum(1)
    return (dx + dy) / n


def binary_penalty(s: torch.Tensor) -> torch.Tensor:
    """``Bin(s) = 1/N sum_u s(u) (1 - s(u))``, 0 iff the mask is binary (paper eq. 2): ``[B, 1, H, W] -> [B]``."""
    return (s * (1.0 - s)).flatten(1).mean(1)


def target_probability(model, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``f_c(x)``: softmax probability of class ``target[b]`` for image ``b``: ``[B, C, H, W] -> [B]``."""
    logits = model(x)
    return torch.softmax(logits, dim=1).gather(1, target.view(-1, 1)).squeeze(1)


def low_resolution_size(h: int, w: int, downsample: int) -> tuple[int, int]:
    """Side lengths of the mask grid: ``(ceil(h / d), ceil(w / d))`` (28 x 28 for 224 x 224, ``d = 8``)."""
    return max(1, math.ceil(h / downsample)), max(1, math.ceil(w / downsample))


def upsample_mask(m: torch.Tensor, size: tuple[int, int], blur_sigma: float) -> torch.Tensor:
    """Low-resolution mask -> image resolution: blur by ``g_{blur_sigma}`` (grid cells), then bilinear.

    Both steps average, so ``[0, 1]`` maps into ``[0, 1]``. Shapes: ``[B, 1, h, w] -> [B, 1, *size]``.
    """
    if blur_sigma > 0:
        m = gaussian_blur(m, blur_sigma)
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)


def upsampling_matrix(n_in: int, n_out: int, blur_sigma: float) -> torch.Tensor:
    """:func:`upsample_mask` along one axis as a matrix ``[n_out, n_in]``.

    The blur (separable, replicated borders) and bilinear interpolation both act on rows and
    columns separately, so ``upsample_mask(m) = A_h @ m @ A_w^T`` with
    ``A_h = upsampling_matrix(h, H, sigma)``, ``A_w = upsampling_matrix(w, W, sigma)``: two
    small matrix products per step instead of padded convolutions and an interpolation
    (which cost more in fixed overhead than in arithmetic at these sizes). With
    ``n_out = n_in`` it is the blur alone: ``gaussian_blur(s, sigma) = B_h @ s @ B_w^T``.
    """
    basis = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, n_in, 1)
    cols = upsample_mask(basis, (n_out, 1), blur_sigma)  # [n_in, 1, n_out, 1]
    return cols[:, 0, :, 0].T.contiguous().float()


def shift_masks(s: torch.Tensor, offsets: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Shift mask ``b`` by ``offsets[b] = (dy, dx)`` pixels (``|dy|, |dx| <= max_shift``), borders replicated.

    ``out[b, :, i, j] = s[b, :, i - dy, j - dx]`` (clamped to the image). Differentiable.
    Shapes: ``s [B, 1, H, W]``, ``offsets [B, 2]`` int -> ``[B, 1, H, W]``.
    """
    if max_shift <= 0:
        return s
    h, w = s.shape[-2:]
    p = max_shift
    padded = F.pad(s, (p, p, p, p), mode="replicate")
    rows = []
    for b, (dy, dx) in enumerate(offsets.tolist()):
        rows.append(padded[b, :, p - dy : p - dy + h, p - dx : p - dx + w])
    return torch.stack(rows)


def image_seeds(x: torch.Tensor, seed: int, stream: int = 0) -> list[int]:
    """One 63-bit seed per image from ``seed``, ``stream`` and the image's values (not its place in the batch)."""
    seeds = []
    key = int(seed).to_bytes(8, "little", signed=True) + int(stream).to_bytes(8, "little", signed=True)
    for img in x.detach().to("cpu", torch.float32).contiguous():
        h = hashlib.blake2b(img.numpy().tobytes(), digest_size=8, key=key)
        seeds.append(int.from_bytes(h.digest(), "little") & ((1 << 63) - 1))
    return seeds


def jitter_offsets(x: torch.Tensor, seed: int, iterations: int, max_shift: int, stream: int = 0) -> torch.Tensor:
    """Integer shifts ``(dy, dx)`` uniform in ``[-max_shift, max_shift]``: ``[B, iterations, 2]`` int64.

    Image ``b``'s shifts come from a ``torch.Generator`` seeded by :func:`image_seeds`, so they
    depend on ``seed``, ``stream`` (one per phase) and on the image alone.
    """
    out = torch.zeros((x.shape[0], iterations, 2), dtype=torch.int64)
    if max_shift <= 0:
        return out
    for b, sd in enumerate(image_seeds(x, seed, stream)):
        g = torch.Generator().manual_seed(sd)
        out[b] = torch.randint(-max_shift, max_shift + 1, (iterations, 2), generator=g)
    return out


def segment_means(s: torch.Tensor, segments: torch.Tensor, count: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``theta [B, count]``: the mean of ``s [B, 1, H, W]`` over each segment of ``segments [B, H, W]``
    (labels ``0 .. count - 1``; a label an image does not use gets 0), weighted by ``weight
    [B, 1, H, W]`` if given (0 leaves a pixel out; a segment with no weight gets 0)."""
    flat = segments.reshape(segments.shape[0], -1)
    w = torch.ones_like(s) if weight is None else weight.to(s).expand_as(s)
    sums = torch.zeros(s.shape[0], count, dtype=s.dtype, device=s.device)
    sums.scatter_add_(1, flat, (s * w).reshape(s.shape[0], -1))
    sizes = torch.zeros_like(sums).scatter_add_(1, flat, w.reshape(s.shape[0], -1))
    return sums / sizes.clamp(min=1e-12)


def superpixels(x: torch.Tensor, n_segments: int, compactness: float = 10.0, sigma: float = 1.0) -> torch.Tensor:
    """``[B, H, W]`` int64 SLIC superpixels (Achanta et al. 2012, scikit-image) of each image of ``x [B, 3, H, W]``.

    ``x`` may be normalised as a model's input: each channel is rescaled to ``[0, 1]`` per
    image before SLIC's CIELAB conversion (a per-channel affine map, which undoes the
    normalisation up to each channel's range), smoothed by ``g_sigma`` (without it, pixel
    noise breaks segments into fragments that SLIC's connectivity step then merges into a
    few large ones). Labels are ``0 .. K_b - 1``, each segment
    connected; an image's segments do not depend on the rest of the batch.
    """
    import numpy as np
    from skimage.segmentation import slic

    if x.shape[0] == 0:
        return torch.zeros((0, *x.shape[2:]), dtype=torch.int64)
    out = []
    for image in x.detach().float().cpu().numpy():
        lo = image.min(axis=(1, 2), keepdims=True)
        unit = (image - lo) / np.maximum(image.max(axis=(1, 2), keepdims=True) - lo, 1e-12)
        labels = slic(unit.transpose(1, 2, 0), n_segments=n_segments, compactness=compactness, sigma=sigma,
                      start_label=0, channel_axis=-1, enforce_connectivity=True)
        out.append(np.unique(labels, return_inverse=True)[1].reshape(labels.shape))
    return torch.from_numpy(np.stack(out)).to(torch.int64)


def optimise_mask(
    model,
    x: torch.Tensor,
    target: torch.Tensor,
    phases: list[Phase] | tuple[Phase, ...],
    *,
    lr: float = 0.1,
    init: float = 0.5,
    downsample: int = 8,
    mask_blur: float = 5.0,
    jitter: int = 2,
    seed: int = 0,
    sigma_max: float = SIGMA0,
    levels: int = 8,
    stack: BlurStack | None = None,
    keep: torch.Tensor | None = None,
    segments: torch.Tensor | None = None,
    stop_tolerance: float = 0.0,
    stop_patience: int = 25,
    stats: dict | None = None,
    checkpoint: Checkpoint | None = None,
) -> torch.Tensor:
    """Minimise ``E(s)`` (module docstring) through ``phases`` in order; returns ``s [B, 1, H, W]`` in ``[0, 1]``.

    * ``model`` maps normalised ``x [B, 3, H, W]`` to logits ``[B, K]`` (eval mode); its
      parameters are never updated and receive no ``.grad``;
    * ``target [B]`` int64; ``lr`` Adam's step; ``init`` the initial value of every mask cell;
    * ``downsample`` ``d`` and ``mask_blur`` ``sigma_m`` (image pixels, applied to the grid as
      ``sigma_m / d``) define the low-resolution parameterisation;
    * ``jitter`` the largest random shift (pixels) of the mask at each step (unless a phase
      sets its own), ``seed`` its seed;
    * ``sigma_max``, ``levels``: the blur stack of :mod:`visum.perturb` (or pass ``stack``);
    * ``keep [B, 1, H, W]`` in ``{0, 1}``: pixels the mask may not perturb (``s`` is multiplied
      by ``1 - keep`` before the penalties see it, and again after the score's blur and the
      jitter, so the classifier never sees a kept pixel perturbed), or ``None``;
    * ``segments [B, H, W]`` int64 labels ``0 .. K_b - 1`` (each image's superpixels), needed
      by a phase with ``segments=True``;
    * ``stop_tolerance`` > 0 stops each image's phase early once its mask has settled: every
      ``stop_patience`` steps the mask ``s_t`` is compared with ``s_{t - patience}``, and the
      image is done with the phase when ``sum_u |s_t(u) - s_{t-patience}(u)| <= stop_tolerance
      * max(sum_u s_t(u), 1)`` (its mask moved less than that share of its own mass). A done
      image leaves the batch: later steps of the phase run the network on the others only, so
      the time saved is the steps skipped. The decision reads one image's mask only, so it
      does not depend on the batch (for that, every phase then starts a new Adam). 0 runs
      every step;
    * ``stats``: if a dict, ``stats["steps"]`` receives ``[B]`` int64, the steps each image took;
    * ``checkpoint``: saves the state every ``checkpoint.interval`` seconds and, given a saved
      state, picks up from it (:class:`Checkpoint`; the result is the uninterrupted one).

    A phase that changes the parameterisation (grid, then segments, then pixels; never back)
    starts from the previous phase's mask with a new Adam; a phase with the same
    parameterisation as the one before keeps the parameters and Adam's moments (with the new
    phase's ``adam_beta2``).
    The returned mask is detached, float32, on ``x``'s device.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    target = torch.as_tensor(target, dtype=torch.int64, device=x.device).reshape(-1)
    if target.shape[0] != b:
        raise ValueError(f"target has {target.shape[0]} entries for a batch of {b}")
    if not phases:
        raise ValueError("at least one phase is needed")
    if any(p.segments and p.full_resolution for p in phases):
        raise ValueError("a phase is on segments or at full resolution, not both")
    if any(p.segments for p in phases):
        if segments is None or tuple(segments.shape) != (b, h, w):
            raise ValueError(f"a phase on segments needs segments of shape {(b, h, w)}")
    if b == 0:
        if stats is not None:
            stats["steps"] = torch.zeros(0, dtype=torch.int64)
        return torch.zeros((0, 1, h, w), dtype=torch.float32, device=x.device)
    if stack is None:
        stack = blur_stack(x.detach().float(), sigma_max=sigma_max, levels=levels)
    grid = low_resolution_size(h, w, downsample)
    a_h = upsampling_matrix(grid[0], h, mask_blur / downsample).to(x.device)
    a_w = upsampling_matrix(grid[1], w, mask_blur / downsample).to(x.device)

    blur_matrices: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    def blurred(s: torch.Tensor, sigma: float) -> torch.Tensor:
        """``gaussian_blur(s, sigma)`` as ``B_h @ s @ B_w^T``: ~8x faster than its 1-channel convolutions on a CPU."""
        if sigma <= 0:
            return s
        if sigma not in blur_matrices:
            blur_matrices[sigma] = tuple(upsampling_matrix(n, n, sigma).to(x.device) for n in (h, w))
        b_h, b_w = blur_matrices[sigma]
        return b_h @ s @ b_w.T

    allowed = None if keep is None else (1.0 - keep.to(device=x.device, dtype=torch.float32)).expand(b, 1, h, w)

    labels = None if segments is None else segments.to(device=x.device, dtype=torch.int64).reshape(b, -1)
    count = 0 if labels is None else int(labels.max()) + 1
    GRID, SEGMENTS, PIXELS = 0, 1, 2  # parameterisations, in the only order phases may take them

    def mode_of(phase: Phase) -> int:
        return SEGMENTS if phase.segments else PIXELS if phase.full_resolution else GRID

    def to_mask(param: torch.Tensor, mode: int, blur: float = 0.0) -> torch.Tensor:
        if mode == GRID:
            s = a_h @ param @ a_w.T  # = upsample_mask(param, (h, w), mask_blur / d)
        elif mode == SEGMENTS:
            s = param.gather(1, labels).view(b, 1, h, w)
        else:
            s = blurred(param, blur)
        return s if allowed is None else s * allowed

    shapes = {GRID: (b, 1, *grid), SEGMENTS: (b, count), PIXELS: (b, 1, h, w)}

    def restored(state: dict) -> dict:
        """The saved ``state`` as tensors, after checking that it fits this call (``ValueError`` if not)."""
        if not isinstance(state, dict):
            raise TypeError(f"a saved state is a dict, found a {type(state).__name__}")
        number = _int(state["phase"], "phase", 0, len(phases) - 1)
        mode = _int(state["mode"], "mode", GRID, PIXELS)
        if mode != mode_of(phases[number]):
            raise ValueError(f"mode {mode} is not phase {number}'s")
        shape = shapes[mode]
        live = _tensor(state["live"], "live", None, "iu", 0, b - 1)
        if live.numel() == 0 or (live.numel() > 1 and bool((live[1:] <= live[:-1]).any())):
            raise ValueError("live is not an increasing list of images")
        adam = state["adam"]
        if not isinstance(adam, dict) or set(adam) not in (set(), {"step", "exp_avg", "exp_avg_sq"}):
            raise ValueError("adam is not Adam's state (none, or step, exp_avg and exp_avg_sq)")
        out = {
            "phase": number,
            "step": _int(state["step"], "step", 0, max(phases[number].iterations - 1, 0)),
            "mode": mode,
            "param": _tensor(state["param"], "param", shape, "f", 0.0, 1.0),
            "adam": {k: _tensor(v, f"adam {k}", () if k == "step" else shape, "f", 0.0 if k != "exp_avg" else None)
                     for k, v in adam.items()},
            "live": live,
            "frozen": None if state["frozen"] is None else _tensor(state["frozen"], "frozen", shape, "f", 0.0, 1.0),
            "previous": None if state["previous"] is None
            else _tensor(state["previous"], "previous", (live.numel(), h * w), "f"),
            "steps_taken": _tensor(state["steps_taken"], "steps_taken", (b,), "iu", 0, sum(p.iterations for p in phases)),
        }
        # what the loop holds at a step boundary: `previous` once a phase with early stopping has run a step,
        # `frozen` once an image has left the batch
        if (out["previous"] is not None) != (stop_tolerance > 0 and out["step"] > 0):
            raise ValueError("previous does not fit the step and stop_tolerance")
        if (out["frozen"] is not None) != (live.numel() < b):
            raise ValueError("frozen does not fit the images still optimising")
        return out

    resume = None
    if checkpoint is not None and checkpoint.state is not None:
        try:
            resume = restored(checkpoint.state)
        except (KeyError, TypeError, ValueError) as exc:
            checkpoint.reject(f"{type(exc).__name__}: {exc}")

    param: torch.Tensor | None = None
    mode = GRID
    opt = None
    steps_taken = torch.zeros(b, dtype=torch.int64)
    if resume is not None:
        mode, steps_taken = resume["mode"], resume["steps_taken"]
        param = resume["param"].to(x.device).requires_grad_(True)
    for number, phase in enumerate(phases):
        if resume is not None and number < resume["phase"]:
            continue
        shift = jitter if phase.jitter is None else phase.jitter
        offsets = jitter_offsets(x, seed, phase.iterations, shift, stream=number)
        first_step = 0
        if resume is not None and number == resume["phase"]:
            opt = torch.optim.Adam([param], lr=lr, betas=(0.9, phase.adam_beta2))
            if resume["adam"]:
                opt.state[param] = {k: v.to(x.device) if k != "step" else v for k, v in resume["adam"].items()}
            live = resume["live"].to(x.device)
            frozen = None if resume["frozen"] is None else resume["frozen"].to(x.device)
            previous = None if resume["previous"] is None else resume["previous"].to(x.device)
            live_stack = stack if live.numel() == b else BlurStack(levels=stack.levels[live], sigmas=stack.sigmas)
            first_step = resume["step"]
        else:
            if param is None:
                mode = mode_of(phase)
                param = torch.full(shapes[mode], float(init), dtype=torch.float32, device=x.device, requires_grad=True)
                opt = torch.optim.Adam([param], lr=lr, betas=(0.9, phase.adam_beta2))
            elif mode_of(phase) != mode:
                if mode_of(phase) < mode:
                    raise ValueError("phases go from the grid to segments to pixels, never back")
                with torch.no_grad():
                    start = to_mask(param, mode).clamp(0, 1)
                mode = mode_of(phase)
                start = segment_means(start, labels, count, allowed) if mode == SEGMENTS else start  # kept pixels left out
                param = start.clone().requires_grad_(True)
                opt = torch.optim.Adam([param], lr=lr, betas=(0.9, phase.adam_beta2))
            elif stop_tolerance > 0:  # Adam's step count is the tensor's: an image done early must not carry it on
                opt = torch.optim.Adam([param], lr=lr, betas=(0.9, phase.adam_beta2))
            else:
                opt.param_groups[0]["betas"] = (0.9, phase.adam_beta2)
            live = torch.arange(b, device=x.device)  # images still optimising in this phase
            live_stack, frozen, previous = stack, None, None

        def state() -> dict:
            return {"phase": number, "step": step, "mode": mode, "param": _np(param),
                    "adam": {k: _np(v) for k, v in opt.state.get(param, {}).items()},
                    "live": _np(live), "frozen": _np(frozen), "previous": _np(previous),
                    "steps_taken": _np(steps_taken)}

        for step in range(first_step, phase.iterations):
            if checkpoint is not None:
                checkpoint.maybe_save(state)
            s = to_mask(param, mode, phase.blur)
            if stop_tolerance > 0 and step and step % stop_patience == 0:
                with torch.no_grad():
                    now = s.detach()[live].flatten(1)
                    moved = (now - previous).abs().sum(1)
                    settled = moved <= stop_tolerance * now.sum(1).clamp(min=1.0)
                    previous = now[~settled]
                if settled.any():
                    frozen = param.detach().clone() if frozen is None else frozen
                    frozen[live[settled]] = param.detach()[live[settled]]
                    live = live[~settled]
                    if live.numel() == 0:
                        break
                    live_stack = BlurStack(levels=stack.levels[live], sigmas=stack.sigmas)
            elif stop_tolerance > 0 and step == 0:
                previous = s.detach().flatten(1).clone()
            steps_taken[live.cpu()] += 1
            if live.numel() < b:
                s = s[live]
            seen = s + ((s > 0.5).to(s.dtype) - s).detach() if phase.hard else s  # straight through
            seen = blurred(seen, phase.score_blur)
            s_shifted = shift_masks(seen, offsets[live.cpu(), step], shift)
            if allowed is not None:  # the score's blur and the jitter must not reach into kept pixels either
                s_shifted = s_shifted * allowed[live]
            # channels-last input: oneDNN's convolutions run ~30% faster on it (EfficientNet, CPU)
            inp = perturb(live_stack, s_shifted).contiguous(memory_format=torch.channels_last)
            score = target_probability(model, inp, target[live])
            energy = score + phase.l1 * area_penalty(s)
            if phase.l2:
                energy = energy + phase.l2 * tv_penalty(s, phase.beta)
            if phase.l3:
                energy = energy + phase.l3 * binary_penalty(s)
            (grad,) = torch.autograd.grad(energy.sum(), [param])
            param.grad = grad
            opt.step()
            with torch.no_grad():
                param.clamp_(0.0, 1.0)
                if frozen is not None:  # Adam's momentum moves done images too: put them back
                    done = torch.ones(b, dtype=torch.bool, device=x.device)
                    done[live] = False
                    param[done] = frozen[done]
    if stats is not None:
        stats["steps"] = steps_taken
    with torch.no_grad():
        s = to_mask(param, mode, phases[-1].blur).clamp(0.0, 1.0)
        if phases[-1].hard:
            s = (s > 0.5).to(s.dtype)
    return s.detach().to(torch.float32)


def successive_masks(
    model,
    x: torch.Tensor,
    target: torch.Tensor,
    phases: list[Phase] | tuple[Phase, ...],
    *,
    rounds: int = 1,
    min_drop: float = 0.5,
    margin: int = 2,
    binarize_at: float = 0.5,
    seed: int = 0,
    **kwargs,
) -> torch.Tensor:
    """Up to ``rounds`` disjoint deletions per image, merged: ``s = max_r s_r``, ``[B, 1, H, W]``.

    A deletion mask is the *smallest* deletion that removes the class, so where the class needs
    every one of several parts it shows one of them (deleting any one is enough). Round ``r + 1``
    solves the same problem (:func:`optimise_mask` with ``keep``) with every pixel of the
    accepted rounds, binarised at ``binarize_at`` and grown by ``margin`` pixels, kept intact:
    it finds the next-cheapest deletion elsewhere in the image.

    Round 1 is exactly :func:`optimise_mask` (seed ``seed``) and is always returned; rounds
    ``2, 3, ...`` use seeds ``seed + 1, seed + 2, ...``. A round *counts* when its binarised mask
    ``b_r = 1[s_r > t]`` is not empty and deleting it alone takes at least ``min_drop`` of the
    target's probability, ``1 - f_c(Phi(x; b_r)) / f_c(x) >= min_drop``; a round that does not
    count is left out of the union and ends that image's rounds (a round 1 that does not count
    ends them at once). Each image's rounds depend on that image alone, so its mask does not
    depend on the batch. ``kwargs`` are :func:`optimise_mask`'s (not ``keep``); ``stats["steps"]``
    counts the steps of every round. A ``checkpoint`` saves the round reached with the inner
    optimisation's state, and picks up from a saved one.
    """
    if "keep" in kwargs:
        raise TypeError("successive_masks sets keep itself")
    stack = kwargs.pop("stack", None)
    if stack is None:  # built once: every round and every check below perturbs with it
        stack = blur_stack(x.detach().float(), sigma_max=kwargs.get("sigma_max", SIGMA0), levels=kwargs.get("levels", 8))
    segments = kwargs.pop("segments", None)
    stats = kwargs.pop("stats", None)
    checkpoint: Checkpoint | None = kwargs.pop("checkpoint", None)
    b, _, h, w = x.shape
    saved, first_round = None, 0
    if checkpoint is not None and checkpoint.state is not None and b > 0:
        try:
            saved = checkpoint.state
            if not isinstance(saved, dict) or not isinstance(saved.get("inner"), (dict, type(None))):
                raise TypeError("a saved state is a dict, with a dict or None as inner")
            first_round = _int(saved["round"], "round", 0, max(rounds - 1, 0))
            if first_round:
                merged = _tensor(saved["merged"], "merged", (b, 1, h, w), "f", 0.0, 1.0).to(x.device)
                kept = _tensor(saved["kept"], "kept", (b, 1, h, w), "f", 0.0, 1.0).to(x.device)
                active = _tensor(saved["active"], "active", (b,), "bui", 0, 1).to(x.device).bool()
                steps = _tensor(saved["steps"], "steps", (b,), "iu", 0, None)
        except (KeyError, TypeError, ValueError) as exc:
            checkpoint.reject(f"{type(exc).__name__}: {exc}")
            saved, first_round = None, 0

    def within(r: int, outer: dict) -> Checkpoint | None:
        """Round ``r``'s checkpoint: its states carry ``outer``, and a saved state of that round is picked up."""
        if checkpoint is None:
            return None
        return checkpoint.within({"round": r, **outer}, saved.get("inner") if saved and r == first_round else None)

    round_stats: dict = {}
    if first_round == 0:
        s = optimise_mask(model, x, target, phases, seed=seed, stack=stack, segments=segments, stats=round_stats,
                          checkpoint=within(0, {}), **kwargs)
        steps = round_stats["steps"].clone()
    if stats is not None:
        stats["steps"] = steps
    if rounds <= 1 or x.shape[0] == 0:
        return s
    from visum.evaluate.deletion import relative_drop

    target = torch.as_tensor(target, dtype=torch.int64, device=x.device).reshape(-1)
    with torch.no_grad():
        p_clean = target_probability(model, x, target).cpu().numpy()

    def counts(idx: torch.Tensor, b: torch.Tensor, sub: BlurStack) -> torch.Tensor:
        """Rounds whose binarised masks ``b`` (of images ``idx``) are not empty and delete >= ``min_drop``."""
        with torch.no_grad():
            p = target_probability(model, perturb(sub, b), target[idx]).cpu().numpy()
        drop = torch.from_numpy(relative_drop(p_clean[idx.cpu().numpy()], p) >= min_drop).to(x.device)
        return drop & (b.flatten(1).sum(1) > 0)

    if first_round == 0:
        first = (s > binarize_at).float()
        active = counts(torch.arange(x.shape[0], device=x.device), first, stack)
        merged, kept = s.clone(), first
    for r in range(max(first_round, 1), rounds):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        sub = BlurStack(levels=stack.levels[idx], sigmas=stack.sigmas)
        grown = F.max_pool2d(kept[idx], 2 * margin + 1, stride=1, padding=margin) if margin else kept[idx]
        outer = {"merged": _np(merged), "kept": _np(kept), "active": _np(active), "steps": _np(steps)} \
            if checkpoint is not None else {}
        s_r = optimise_mask(model, x[idx], target[idx], phases, seed=seed + r, keep=grown, stack=sub,
                            segments=None if segments is None else segments[idx], stats=round_stats,
                            checkpoint=within(r, outer), **kwargs)
        steps[idx.cpu()] += round_stats["steps"]
        b_r = (s_r > binarize_at).float()
        ok = counts(idx, b_r, sub)
        good = idx[ok]
        merged[good] = torch.maximum(merged[good], s_r[ok])
        kept[good] = torch.maximum(kept[good], b_r[ok])
        active = torch.zeros_like(active)
        active[good] = True
    return merged
