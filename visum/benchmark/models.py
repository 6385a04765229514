"""The architectures trained on every world: a small CNN, a ResNet-18-style network and a small ViT.

All three take ``[B, 3, S, S]`` at the world's image size ``S`` (a multiple of 16) and end
in a linear classifier; all three are small enough to train on two CPU cores in minutes.

==========  =====================================================================  ==========
``cnn``     five 3x3 conv-BN-ReLU blocks with three max-pools, global average pooling  ~0.1 M
``resnet``  ResNet-18's layout (a stride-2 stem, four stages of two basic blocks) at   ~0.7 M
            widths 16-32-64-128
``vit``     torchvision's VisionTransformer: 16 px patches, 4 layers, 4 heads, width 96  ~0.5 M
==========  =====================================================================  ==========
"""

from __future__ import annotations

import torch
from torch import nn

from visum.models.parts_cnn import PartsCNN

ARCHITECTURES = ("cnn", "resnet", "vit")


class SmallResNet(nn.Module):
    """ResNet-18's layout — a strided 3x3 stem and four stages of two basic blocks — at small widths."""

    def __init__(self, num_classes: int, widths: tuple[int, int, int, int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for k, w in enumerate(widths):
            stride = 1 if k == 0 else 2
            down = None
            if stride != 1 or cin != w:
                down = nn.Sequential(nn.Conv2d(cin, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
            stages.append(nn.Sequential(BasicBlock(cin, w, stride, down), BasicBlock(w, w)))
            cin = w
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def build(architecture: str, num_classes: int, size: int) -> nn.Module:
    """A freshly initialised network of ``architecture`` for ``size`` x ``size`` inputs."""
    if architecture == "cnn":
        return PartsCNN(num_classes=num_classes)
    if architecture == "resnet":
        return SmallResNet(num_classes)
    if architecture == "vit":
        from torchvision.models import VisionTransformer

        if size % 16:
            raise ValueError(f"vit: the image size {size} is not a multiple of the 16 px patch")
        return VisionTransformer(image_size=size, patch_size=16, num_layers=4, num_heads=4, hidden_dim=96,
                                 mlp_dim=192, num_classes=num_classes)
    raise ValueError(f"unknown architecture {architecture!r}; use one of {', '.join(ARCHITECTURES)}")
