"""What a loaded classifier looks like to the rest of visum, and how images reach it.

A model's :class:`Preprocessing` is its whole input recipe, declared by the model source
(:mod:`visum.models.loading`) and overridable part by part:

1. **resize** — ``"short-side"`` scales the image so its short side is ``resize_to`` pixels
   (aspect kept: the ImageNet evaluation convention); ``"squash"`` scales it to
   ``resize_to x resize_to`` (aspect lost, nothing cut off: how most custom models are
   trained on whole images);
2. **centre crop** — the central ``input_size x input_size`` pixels are kept (the *view*).
   ``crop_ratio = input_size / resize_to``: with ``squash``, 1 keeps the whole image; with
   ``short-side``, 1 keeps the whole short side and cuts the long side to it; 0.875 is the
   usual ImageNet crop;
3. **normalise** — ``(v / 255 - mean) / std`` per channel.

Every stage after loading works on views; :class:`View` maps boxes and maps back to the
original image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from PIL import Image

ResizeMode = Literal["short-side", "squash"]
Interpolation = Literal["bilinear", "bicubic", "nearest"]
RESIZE_MODES: tuple[str, ...] = ("short-side", "squash")
INTERPOLATIONS: dict[str, Image.Resampling] = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def resized_side(input_size: int, crop_ratio: float) -> int:
    """The side an image is resized to so that the centre crop keeps ``crop_ratio`` of it.

    ``floor(input_size / crop_ratio)`` (timm's convention; equal to torchvision's 256 for
    224 / 0.875), never below ``input_size``.
    """
    if not 0.0 < crop_ratio <= 1.0:
        raise ValueError(f"crop ratio {crop_ratio!r} must be in (0, 1]")
    return max(int(input_size), int(math.floor(input_size / crop_ratio + 1e-6)))


@dataclass(frozen=True)
class View:
    """The crop the model sees, and its place in the original image.

    A view pixel ``(u, v)`` covers original pixels ``(ox + u / sx, oy + v / sy)`` where
    ``scale = (sx, sy)`` (equal unless the image was squashed) and ``offset = (ox, oy)``.
    """

    pixels: np.ndarray  # [S, S, 3] uint8
    scale: tuple[float, float]  # view pixels per original pixel, (x, y)
    offset: tuple[float, float]  # (x, y) of the crop's top-left corner, original pixels
    original_size: tuple[int, int]  # (width, height) of the original image

    def box_to_original(self, box) -> tuple[int, int, int, int]:
        """Map ``[x0, y0, x1, y1]`` (view pixels, exclusive ends) to original pixels, clipped."""
        x0, y0, x1, y1 = (float(v) for v in box)
        ox, oy = self.offset
        sx, sy = self.scale
        w, h = self.original_size
        ax0 = int(np.floor(ox + x0 / sx))
        ay0 = int(np.floor(oy + y0 / sy))
        ax1 = int(np.ceil(ox + x1 / sx))
        ay1 = int(np.ceil(oy + y1 / sy))
        ax0, ax1 = min(max(ax0, 0), w - 1), min(max(ax1, 1), w)
        ay0, ay1 = min(max(ay0, 0), h - 1), min(max(ay1, 1), h)
        return ax0, ay0, max(ax1, ax0 + 1), max(ay1, ay0 + 1)

    def crop_box(self) -> tuple[int, int, int, int]:
        """The part of the original image the model sees, ``[x0, y0, x1, y1]`` original pixels."""
        s = self.pixels.shape
        return self.box_to_original((0, 0, s[1], s[0]))

    def to_original(self, array: np.ndarray) -> np.ndarray:
        """Paste a view-sized ``[S, S]`` float map into a zero map of the original's size."""
        w, h = self.original_size
        rows, cols = array.shape[:2]
        ox, oy = self.offset
        sx, sy = self.scale
        x0, y0 = int(round(ox)), int(round(oy))
        width, height = max(1, int(round(cols / sx))), max(1, int(round(rows / sy)))
        resized = np.asarray(
            Image.fromarray(array.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR)
        )
        out = np.zeros((h, w), dtype=np.float32)
        x1, y1 = min(w, x0 + width), min(h, y0 + height)
        out[y0:y1, x0:x1] = resized[: y1 - y0, : x1 - x0]
        return out


@dataclass(frozen=True)
class Preprocessing:
    """Resize (short side or squash) to ``resize_to``, centre-crop ``input_size``, normalise.

    ``mean`` and ``std`` are per channel in [0, 1] units (torchvision's convention), so
    EfficientNet-Lite's ``(x - 127) / 128`` on 0..255 pixels is ``mean = 127/255``,
    ``std = 128/255``. Provenance is reported, never used: ``source`` says where the recipe
    came from (the model's declaration, a default), ``assumed`` names the parts nothing
    declared (visum guessed them), ``overridden`` the parts the user set.
    """

    input_size: int
    resize_to: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: ResizeMode = "short-side"
    interpolation: Interpolation = "bilinear"
    source: str = field(default="", compare=False)
    assumed: tuple[str, ...] = field(default=(), compare=False)
    overridden: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize {self.resize!r} must be one of {', '.join(RESIZE_MODES)}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation {self.interpolation!r} must be one of {', '.join(INTERPOLATIONS)}")
        if self.resize_to < self.input_size:
            raise ValueError(f"resize_to {self.resize_to} is smaller than the input size {self.input_size}")

    @property
    def crop_ratio(self) -> float:
        """``input_size / resize_to``: the share of the resized image's side the crop keeps."""
        return self.input_size / self.resize_to

    def with_changes(
        self,
        *,
        input_size: int | None = None,
        crop_ratio: float | None = None,
        resize: ResizeMode | None = None,
        interpolation: Interpolation | None = None,
        mean=None,
        std=None,
        source: str | None = None,
        overridden: bool = False,
    ) -> "Preprocessing":
        """This recipe with some parts replaced. A new ``input_size`` keeps the crop ratio
        unless ``crop_ratio`` is given too. With ``overridden`` the replaced parts are
        recorded as the user's (and are no longer assumed)."""
        given = [k for k, v in (("input_size", input_size), ("crop_ratio", crop_ratio), ("resize", resize),
                                ("interpolation", interpolation), ("mean", mean), ("std", std)) if v is not None]
        size = int(input_size) if input_size is not None else self.input_size
        ratio = float(crop_ratio) if crop_ratio is not None else self.crop_ratio
        resize_to = self.resize_to if (size == self.input_size and crop_ratio is None) else resized_side(size, ratio)
        return replace(
            self,
            input_size=size,
            resize_to=resize_to,
            resize=resize or self.resize,
            interpolation=interpolation or self.interpolation,
            mean=tuple(float(v) for v in (mean if mean is not None else self.mean)),
            std=tuple(float(v) for v in (std if std is not None else self.std)),
            source=self.source if source is None else source,
            assumed=tuple(k for k in self.assumed if k not in given),
            overridden=tuple(dict.fromkeys(self.overridden + tuple(given))) if overridden else self.overridden,
        )

    def provenance(self) -> str:
        """Where each part came from, in words: source, assumed parts, the user's overrides."""
        text = [self.source] if self.source else []
        if self.assumed:
            text.append(f"assumed, as nothing declares them: {', '.join(self.assumed)}")
        if self.overridden:
            text.append(f"set by the user: {', '.join(self.overridden)}")
        return "; ".join(text)

    def view(self, image: np.ndarray) -> View:
        """``image`` ``[H, W, 3]`` uint8 → the model's view ``[S, S, 3]`` uint8."""
        h, w = image.shape[:2]
        s = self.input_size
        if self.resize == "squash":
            rw = rh = self.resize_to
        else:
            scale = self.resize_to / min(h, w)
            rw, rh = max(s, round(w * scale)), max(s, round(h * scale))
        resized = np.asarray(Image.fromarray(image).resize((rw, rh), INTERPOLATIONS[self.interpolation]))
        left = (rw - s) // 2
        top = (rh - s) // 2
        crop = resized[top : top + s, left : left + s]
        sx, sy = rw / w, rh / h
        return View(
            pixels=np.ascontiguousarray(crop),
            scale=(float(sx), float(sy)),
            offset=(left / sx, top / sy),
            original_size=(w, h),
        )

    def to_tensor(self, views: list[np.ndarray]) -> torch.Tensor:
        """Views ``[S, S, 3]`` uint8 → normalised batch ``[B, 3, S, S]`` float32."""
        x = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def to_pixels(self, x: torch.Tensor) -> np.ndarray:
        """Inverse of :meth:`to_tensor`: ``[B, 3, S, S]`` → ``[B, S, S, 3]`` uint8."""
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        v = ((x * std + mean).clamp(0, 1) * 255).round().byte()
        return v.permute(0, 2, 3, 1).cpu().numpy()

    def key(self) -> list:
        """Everything that determines the model's input, for cache keys and fingerprints."""
        return [self.input_size, self.resize_to, list(self.mean), list(self.std), self.resize, self.interpolation]

    def describe(self) -> str:
        """One line a person can check, e.g. ``short side resized to 256 px (bilinear), centre
        224x224 crop (87.5 % of the short side), mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)``."""
        s, r = self.input_size, self.resize_to
        if self.resize == "squash":
            how = f"whole image squashed to {r}x{r} px ({self.interpolation})"
            crop = "no crop" if r == s else f"centre {s}x{s} crop ({100 * self.crop_ratio:.1f} % of each side)"
        else:
            how = f"short side resized to {r} px ({self.interpolation})"
            crop = (f"centre {s}x{s} crop (the whole short side; the long side cut to it)" if r == s
                    else f"centre {s}x{s} crop ({100 * self.crop_ratio:.1f} % of the short side)")
        mean = ", ".join(f"{v:.3g}" for v in self.mean)
        std = ", ".join(f"{v:.3g}" for v in self.std)
        return f"{how}, {crop}, mean ({mean}), std ({std})"


@dataclass
class LoadedModel:
    """A classifier ready for visum: eval-mode module mapping ``[B,3,S,S]`` → logits ``[B,K]``."""

    module: torch.nn.Module
    spec: str
    preprocessing: Preprocessing
    class_names: list[str] | None = None
    fingerprint: str = ""  # hash of everything that determines the outputs (cache key)
    extras: dict = field(default_factory=dict)
