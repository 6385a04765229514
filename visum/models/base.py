"""What a loaded classifier looks like to the rest of visum, and how images reach it.

Preprocessing follows the usual ImageNet evaluation convention: the short side of the
image is resized to ``resize`` pixels, the centre ``input_size x input_size`` crop is kept
(the *view*), and channels are normalised as ``(v / 255 - mean) / std``. Every stage after
loading works on views; :class:`View` maps boxes back to the original image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image


@dataclass(frozen=True)
class View:
    """The centre crop the model sees, and its place in the original image.

    A view pixel ``(u, v)`` covers original pixels ``offset + (u, v) / scale``.
    """

    pixels: np.ndarray  # [S, S, 3] uint8
    scale: float  # view pixels per original pixel
    offset: tuple[float, float]  # (x, y) of the crop's top-left corner, original pixels
    original_size: tuple[int, int]  # (width, height) of the original image

    def box_to_original(self, box) -> tuple[int, int, int, int]:
        """Map ``[x0, y0, x1, y1]`` (view pixels, exclusive ends) to original pixels, clipped."""
        x0, y0, x1, y1 = (float(v) for v in box)
        ox, oy = self.offset
        w, h = self.original_size
        ax0 = int(np.floor(ox + x0 / self.scale))
        ay0 = int(np.floor(oy + y0 / self.scale))
        ax1 = int(np.ceil(ox + x1 / self.scale))
        ay1 = int(np.ceil(oy + y1 / self.scale))
        ax0, ax1 = min(max(ax0, 0), w - 1), min(max(ax1, 1), w)
        ay0, ay1 = min(max(ay0, 0), h - 1), min(max(ay1, 1), h)
        return ax0, ay0, max(ax1, ax0 + 1), max(ay1, ay0 + 1)

    def to_original(self, array: np.ndarray) -> np.ndarray:
        """Paste a view-sized ``[S, S]`` float map into a zero map of the original's size."""
        w, h = self.original_size
        s = array.shape[0]
        ox, oy = self.offset
        x0, y0 = int(round(ox)), int(round(oy))
        side = max(1, int(round(s / self.scale)))
        resized = np.asarray(
            Image.fromarray(array.astype(np.float32), mode="F").resize((side, side), Image.BILINEAR)
        )
        out = np.zeros((h, w), dtype=np.float32)
        x1, y1 = min(w, x0 + side), min(h, y0 + side)
        out[y0:y1, x0:x1] = resized[: y1 - y0, : x1 - x0]
        return out


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side to ``resize``, centre-crop ``input_size``, normalise.

    ``mean`` and ``std`` are per channel in [0, 1] units (torchvision's convention), so
    EfficientNet-Lite's ``(x - 127) / 128`` on 0..255 pixels is ``mean = 127/255``,
    ``std = 128/255``.
    """

    input_size: int
    resize: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def view(self, image: np.ndarray) -> View:
        """``image`` ``[H, W, 3]`` uint8 → the model's view ``[S, S, 3]`` uint8."""
        h, w = image.shape[:2]
        scale = self.resize / min(h, w)
        rw, rh = max(self.input_size, round(w * scale)), max(self.input_size, round(h * scale))
        resized = np.asarray(Image.fromarray(image).resize((rw, rh), Image.BILINEAR))
        left = (rw - self.input_size) // 2
        top = (rh - self.input_size) // 2
        crop = resized[top : top + self.input_size, left : left + self.input_size]
        sx, sy = rw / w, rh / h
        return View(
            pixels=np.ascontiguousarray(crop),
            scale=float((sx + sy) / 2),
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


@dataclass
class LoadedModel:
    """A classifier ready for visum: eval-mode module mapping ``[B,3,S,S]`` → logits ``[B,K]``."""

    module: torch.nn.Module
    spec: str
    preprocessing: Preprocessing
    class_names: list[str] | None = None
    fingerprint: str = ""  # hash of everything that determines the outputs (cache key)
    extras: dict = field(default_factory=dict)
