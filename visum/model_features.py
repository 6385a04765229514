"""What the explained model sees in a box: its activations on the box's crop.

A crop of the model's view (``[S, S, 3]`` uint8), resized to the model's input side, is
normalised with the model's own preprocessing and passed through the model; the activation
of ``layer`` — by default the *input* of the last ``nn.Linear``, the features the classifier
reads — averaged over space (``[B, C, h, w]``) or tokens (``[B, T, C]``) and L2-normalised is
the box's feature ``f`` (``[C]``, unit norm; zero when the activation is). Two boxes look alike
*to the model* when ``<f_a, f_b>`` is high: pose and colour changes that the model has learned
to ignore do not separate them, as they separate HOG descriptors.

Used by the ``activations`` matcher (ACE's features) and by ``summaries.merge = "model"``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

__all__ = ["box_crops", "default_layer", "box_features"]


def box_crops(image: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """Every box of ``image`` resized to ``side x side`` (area averaging when shrinking, else bilinear).

    Shapes: ``image [H, W, 3]`` uint8, ``boxes [M, 4]`` int -> ``[M, side, side, 3]`` uint8 (zeros for an empty box).
    """
    out = np.zeros((len(boxes), side, side, 3), dtype=np.uint8)
    for m, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.int64).reshape(-1, 4)):
        crop = image[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
        if crop.size == 0:
            continue
        shrink = crop.shape[0] >= side and crop.shape[1] >= side
        out[m] = cv2.resize(np.ascontiguousarray(crop), (side, side),
                            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out


def default_layer(module: Any) -> str:
    """The name of the last ``nn.Linear`` of ``module`` (its input is the classifier's features)."""
    import torch.nn as nn

    names = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("the model has no nn.Linear layer: name a layer")
    return names[-1]


def box_features(module: Any, preprocessing: Any, image: np.ndarray, boxes: np.ndarray, layer: str | None = None,
                 device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Unit features ``[M, C]`` float32 of the boxes of one view (see the module docstring).

    ``layer=None``: the input of the last ``nn.Linear``; a name: that module's output.
    ``preprocessing``: :class:`visum.models.base.Preprocessing` (``input_size``, ``to_tensor``).
    """
    import torch

    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    name = layer or default_layer(module)
    modules = dict(module.named_modules())
    if name not in modules:
        raise ValueError(f"no layer named {name!r} in the model")
    caught: list[torch.Tensor] = []

    def hook(_m, inputs, output):
        a = (inputs[0] if layer is None else output).detach().float()
        if a.ndim == 4:
            a = a.mean(dim=(2, 3))
        elif a.ndim == 3:
            a = a.mean(dim=1)
        caught.append(a.reshape(a.shape[0], -1).cpu())

    crops = box_crops(np.asarray(image, dtype=np.uint8), boxes, int(preprocessing.input_size))
    handle = modules[name].register_forward_hook(hook)
    try:
        with torch.no_grad():
            for start in range(0, len(crops), batch_size):
                module(preprocessing.to_tensor(list(crops[start:start + batch_size])).to(device))
    finally:
        handle.remove()
    if not caught:
        return np.zeros((0, 0), dtype=np.float32)
    f = torch.cat(caught).numpy().astype(np.float32)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    return np.divide(f, norm, out=np.zeros_like(f), where=norm > 1e-12)
