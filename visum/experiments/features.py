"""Image features for Sec. 4.4: the network's first fully connected layer, read by a forward hook.

The paper takes the features "from the first fully connected layer of the network"
(AlexNet's fc6). Where a network has a hidden fully connected layer before its classifier
(AlexNet, VGG) the features are that layer's output; where its only ``nn.Linear`` is the
classifier (the parts CNN, ResNet, GoogLeNet, EfficientNet) they are the classifier's input,
i.e. the pooled penultimate features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from visum.errors import ConfigError
from visum.models.base import LoadedModel


@dataclass(frozen=True)
class FeatureLayer:
    """Which ``nn.Linear`` is hooked (its name in ``named_modules``) and which side: ``input`` or ``output``."""

    name: str
    side: str


def feature_layer(module: nn.Module) -> FeatureLayer:
    """The first ``nn.Linear`` in module order: its output if another ``nn.Linear`` follows, else its input."""
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"{type(module).__name__} has no nn.Linear layer to take features from")
    return FeatureLayer(linears[0], "output" if len(linears) > 1 else "input")


@torch.no_grad()
def features_and_probs(
    model: LoadedModel, views: Sequence[np.ndarray], batch_size: int = 64, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray, FeatureLayer]:
    """Features ``[N, D]`` (float32) and softmax probabilities ``[N, K]`` of views ``[S, S, 3]`` uint8, in one pass."""
    module = model.module
    layer = feature_layer(module)
    target = dict(module.named_modules())[layer.name]
    caught: list[torch.Tensor] = []

    def hook(_m, inputs, output):
        t = inputs[0] if layer.side == "input" else output
        caught.append(torch.flatten(t, 1).float().cpu())

    handle = target.register_forward_hook(hook)
    feats, probs = [], []
    try:
        for start in range(0, len(views), batch_size):
            x = model.preprocessing.to_tensor(list(views[start : start + batch_size])).to(device)
            caught.clear()
            logits = module(x)
            if len(caught) != 1:
                raise ConfigError(f"{model.spec}: layer {layer.name!r} ran {len(caught)} times in one forward pass")
            feats.append(caught[0].numpy())
            probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    finally:
        handle.remove()
    if not feats:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), layer
    return np.concatenate(feats), np.concatenate(probs), layer
