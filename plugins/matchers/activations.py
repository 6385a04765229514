"""``activations``: proposals matched by the explained model's own activations (ACE's features).

ACE (Ghorbani et al., NeurIPS 2019, Sec. 3) describes each segment by the activations it
causes in a layer of the network being explained: the segment is resized to the network's
input size and passed through it, and the layer's activation (spatially averaged) is the
segment's feature. Segments of one concept land close together in that space, because the
network treats them alike — a notion of similarity that belongs to the model, not to the
pixels (compare HOG) or to geometry (compare Proposal Flow).

Here each proposal's box is cropped from the model's view of the image, resized to the
model's input side (bilinear), normalised with the model's own preprocessing and passed
through the model up to ``layer``; the activation ``a`` (``[C, h, w]`` averaged to ``[C]``,
or a token layer ``[T, C]`` averaged over tokens) is L2-normalised, and two proposals match
as ``Q_ij(k, l) = max(0, <a_ik, a_jl>)``. ACE crops the segment itself and fills the rest of
the box with the mean value; visum's proposals are boxes, so the box's pixels are used as they are.

Layer. ``layer`` names a module of the model (``model.named_modules()``); by default the
input of the last ``nn.Linear`` — the features the classifier reads, the layer ACE's
authors found most concept-like among deep layers. This matcher needs the model: the
pipeline calls :meth:`Activations.bind_model` before describing any image (``uses_model``),
and the model's fingerprint is part of the description's cache key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import Field
from visum_plugins.matchers.hog import cosine_similarity_nonneg

from visum import Component, Options, cacheable, hookimpl
from visum.model_features import box_features, default_layer

__all__ = ["ActivationsOptions", "ActivationDescription", "Activations", "register_matchers"]


@cacheable
@dataclass(frozen=True)
class ActivationDescription:
    """What :meth:`Activations.describe` computes once per image."""

    features: np.ndarray  # [M, C] float32, unit rows (zero for a dead activation)
    boxes: np.ndarray  # [M, 4] int64


class ActivationsOptions(Options):
    """Options of :class:`Activations`."""

    layer: str | None = Field(default=None, description="Module whose activation describes a proposal; None = the "
                                                          "input of the model's last nn.Linear (the classifier's features).")
    batch_size: int = Field(default=64, ge=1, description="Crops per forward pass.")


class Activations(Component):
    """Matches proposals by the cosine similarity of the explained model's activations on their crops."""

    name = "activations"
    summary = "ACE (Ghorbani et al. 2019): cosine similarity of the model's own activations on each proposal's crop"
    Options = ActivationsOptions
    uses_model: ClassVar[bool] = True

    def __init__(self, options: ActivationsOptions | None = None) -> None:
        super().__init__(options)
        self._model = None

    def bind_model(self, module: Any, preprocessing: Any, device: str = "cpu") -> None:
        """Give the matcher the model to read activations from (``module`` in eval mode) and its
        preprocessing (``input_size`` and ``to_tensor``, :class:`visum.models.base.Preprocessing`)."""
        self._model = (module, preprocessing, device)
        self.layer_ = self.options.layer or default_layer(module)
        if self.layer_ not in dict(module.named_modules()):
            raise ValueError(f"no layer named {self.layer_!r} in the model")

    def __getstate__(self) -> dict:  # worker processes only match: they never need the model
        state = dict(self.__dict__)
        state["_model"] = None
        return state

    def describe(self, image: np.ndarray, boxes: np.ndarray) -> ActivationDescription:
        """``image [S, S, 3]`` uint8 (the model's view), ``boxes [M, 4]`` -> unit features ``[M, C]``
        (:func:`visum.model_features.box_features`)."""
        if self._model is None:
            raise RuntimeError("the activations matcher needs the model: call bind_model() first")
        module, pre, device = self._model
        boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        f = box_features(module, pre, image, boxes, self.options.layer, device, self.options.batch_size)
        return ActivationDescription(f, boxes)

    def match(self, description_i: ActivationDescription, description_j: ActivationDescription) -> np.ndarray:
        """``Q[M_i, M_j]`` float32 in ``[0, 1]``: clamped cosine similarity of the activations."""
        if description_i.features.shape[1] != description_j.features.shape[1]:  # an image without boxes
            return np.zeros((len(description_i.boxes), len(description_j.boxes)), dtype=np.float32)
        return cosine_similarity_nonneg(description_i.features, description_j.features)


@hookimpl
def register_matchers():
    return [Activations]
