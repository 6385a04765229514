"""A custom classifier whose evidence touches the image border, trained in seconds.

The failure issue 13 reports: a model trained on *whole* 96x96 images is fed the ImageNet
centre crop, which cuts off what it relies on, so it rejects its own class. Here class 0
("flagged") carries a red bar along one border, 5 px deep; class 1 ("plain") has none.
Both carry the same clutter (grey and blue blocks in the interior), so the red bar is the
only evidence. A centre crop of 87.5 % removes 6 px on each side: the whole bar.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

SIZE = 96
BAR_DEPTH = 5
CLASS_NAMES = ["flagged", "plain"]
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def border_image(rng: np.random.Generator, label: int) -> np.ndarray:
    """One ``[96, 96, 3]`` uint8 image of class ``label`` (0: red bar on a border; 1: none)."""
    img = rng.integers(90, 166, size=(SIZE, SIZE, 3)).astype(np.uint8)
    img = np.repeat(img.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)  # grey noise
    for _ in range(3):  # clutter shared by both classes
        w, h = rng.integers(10, 26, size=2)
        x, y = rng.integers(12, SIZE - 12 - w), rng.integers(12, SIZE - 12 - h)
        colour = (40, 60, 200) if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(30, 220, 1).repeat(3))
        img[y : y + h, x : x + w] = colour
    if label == 0:
        side = rng.integers(4)
        length = int(rng.integers(24, 48))
        start = int(rng.integers(8, SIZE - 8 - length))
        red = (220, 30, 30)
        if side == 0:
            img[:BAR_DEPTH, start : start + length] = red
        elif side == 1:
            img[-BAR_DEPTH:, start : start + length] = red
        elif side == 2:
            img[start : start + length, :BAR_DEPTH] = red
        else:
            img[start : start + length, -BAR_DEPTH:] = red
    return img


class BorderNet(nn.Module):
    """Three conv-ReLU blocks, global max pooling, a linear classifier: ``[B,3,96,96] -> [B,2]``."""

    class_names = CLASS_NAMES
    visum_preprocessing = {"input_size": SIZE, "mean": MEAN, "std": STD}

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
        )
        self.classifier = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).amax(dim=(2, 3)))


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


def train_border_net(seed: int = 0, n: int = 64, epochs: int = 30) -> tuple[BorderNet, float]:
    """A BorderNet trained on whole images; ``(model in eval mode, accuracy on 200 fresh images)``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    x = to_tensor([border_image(rng, int(k)) for k in labels])
    y = torch.from_numpy(labels).long()
    torch.manual_seed(seed)
    model = BorderNet()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    test_labels = np.arange(200) % 2
    with torch.no_grad():
        pred = model(to_tensor([border_image(rng, int(k)) for k in test_labels])).argmax(1).numpy()
    return model, float((pred == test_labels).mean())


def write_images(folder: Path, n: int, label: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        path = folder / f"{CLASS_NAMES[label]}_{k:03d}.png"
        Image.fromarray(border_image(rng, label)).save(path)
        paths.append(path)
    return paths


def save_torchscript(model: nn.Module, path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(model, torch.zeros(1, 3, SIZE, SIZE)).save(str(path))
    path.with_name(path.name + ".classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return path


def save_exported(model: nn.Module, path: Path) -> Path:
    program = torch.export.export(
        model, (torch.zeros(2, 3, SIZE, SIZE),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, str(path))
    path.with_name(path.name + ".classes.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    return path


def cat_views(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` random crops (60-95 % of the side), flips and colour changes of scikit-image's cat photo."""
    from skimage import data

    img = data.chelsea()
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    out = []
    for _ in range(n):
        s = rng.uniform(0.6, 0.95)
        ch, cw = int(h * s), int(w * s)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        view = img[y : y + ch, x : x + cw]
        if rng.random() < 0.5:
            view = view[:, ::-1]
        view = np.clip(view.astype(np.float32) * rng.uniform(0.8, 1.2, size=3), 0, 255).astype(np.uint8)
        out.append(np.ascontiguousarray(view))
    return out
