"""What a model relies on, measured by intervention: remove one part, see the score fall.

For an image ``x`` of the main class showing part ``P`` and the same image rendered without
``P`` (:func:`visum.data.worlds.render` with ``omit={P}``: what was behind the part shows
instead), the *relative drop* of the target's probability is

    d(x, P) = (p(x) - p(x without P)) / p(x)          in (-inf, 1]

averaged over the held-out (``eval``) images that show ``P``. A part is **relied on** when
its mean drop is at least :data:`RELIED_ON` (0.2: removing it takes a fifth of the model's
confidence on average). The threshold is a documented convention, fixed before any pipeline
was scored; the drops themselves are reported so any other threshold can be applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from visum.data.worlds import World, render, sample_rng

#: mean relative drop from which a part counts as relied on
RELIED_ON = 0.2


@dataclass(frozen=True)
class PartReliance:
    part: str
    mean_drop: float
    images: int  # eval images of the main class that show the part
    relied_on: bool


@torch.no_grad()
def _probabilities(model, x: torch.Tensor, target: int, batch_size: int = 64) -> np.ndarray:
    out = []
    for i in range(0, len(x), batch_size):
        out.append(torch.softmax(model(x[i : i + batch_size]).float(), dim=1)[:, target])
    return torch.cat(out).numpy()


def part_reliance(model, world: World, n_images: int = 40, target: int = 0, threshold: float = RELIED_ON,
                  tensor=None) -> list[PartReliance]:
    """The mean relative drop of ``model``'s probability for ``target`` when each part is removed.

    ``n_images`` eval images of class ``target``; ``tensor(samples) -> [B, 3, S, S]`` prepares
    them for the model (default: :func:`visum.benchmark.train.image_tensor`).
    """
    if tensor is None:
        from visum.benchmark.train import image_tensor

        def tensor(samples):
            return image_tensor(world, samples)

    rngs = [lambda i=i: sample_rng(world, target, i, "eval") for i in range(n_images)]
    originals = [render(world, target, rng()) for rng in rngs]
    p = _probabilities(model, tensor(originals), target)
    results = []
    for part in world.part_names:
        shown = [i for i, s in enumerate(originals) if s.part_masks[part].any()]
        if not shown:
            results.append(PartReliance(part, float("nan"), 0, False))
            continue
        without = [render(world, target, rngs[i](), omit={part}) for i in shown]
        q = _probabilities(model, tensor(without), target)
        drops = (p[shown] - q) / np.maximum(p[shown], 1e-12)
        mean = float(drops.mean())
        results.append(PartReliance(part, mean, len(shown), mean >= threshold))
    return results
