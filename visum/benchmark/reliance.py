"""What a model relies on, measured by intervention: remove one part, see the score fall.

For held-out (``eval``) images ``x`` of the main class showing part ``P``, and the same
images rendered without ``P`` (:func:`visum.data.worlds.render` with ``omit={P}``: what was
behind the part shows instead), the *drop* of the target's probability is the ratio of means

    d(P) = sum_x (p(x) - p(x without P)) / sum_x p(x)          in (-inf, 1]

(a ratio of sums, so one image with a tiny ``p(x)`` cannot swing it). A part is **relied on**
when ``d(P) >= RELIED_ON`` (0.2: removing it takes a fifth of the model's confidence), a
convention fixed before any pipeline was scored; the drops themselves are reported.

Which images. Those the model classifies as the target, as the pipeline explains those (all
of them when fewer than :data:`MIN_IMAGES` are). In a world whose class needs any ``k`` of
``n`` parts, a part matters only where it is *pivotal*: the images that show exactly ``k``
parts; elsewhere removing one leaves the class intact whatever the model does, so the drop is
measured on pivotal images only. Removing a part present in every training image (the
distractor, the shortcut tag) shows the model images it never saw: that drop describes the
model off its training distribution, which is still what it relies on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from visum.data.worlds import World, render, sample_rng

#: drop from which a part counts as relied on
RELIED_ON = 0.2
#: fewest correctly classified images to measure on; below it, every image is used
MIN_IMAGES = 5


@dataclass(frozen=True)
class PartReliance:
    part: str
    mean_drop: float  # the ratio-of-means drop d(P); NaN when no image shows the part
    images: int  # images the drop was measured on
    relied_on: bool


@torch.no_grad()
def _probabilities(model, x: torch.Tensor, target: int, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(p(target) [N], predicted class [N])``."""
    p, top = [], []
    for i in range(0, len(x), batch_size):
        prob = torch.softmax(model(x[i : i + batch_size]).float(), dim=1)
        p.append(prob[:, target])
        top.append(prob.argmax(dim=1))
    return torch.cat(p).numpy(), torch.cat(top).numpy()


def _eval_samples(world: World, target: int, n_images: int) -> tuple[list[int], list]:
    """``(indices, samples)`` of the eval images to measure on: the first ``n_images``, or in a
    k-of-n world the first ``n_images`` that show exactly ``k`` parts (pivotal), looking at most
    ``20 n_images`` far."""
    indices, samples = [], []
    ruled = set(world.ruled_parts)
    for i in range(n_images if world.rule.kind != "k_of_n" else 20 * n_images):
        sample = render(world, target, sample_rng(world, target, i, "eval"))
        if world.rule.kind == "k_of_n" and sum(1 for p in sample.present if p in ruled) != world.rule.k:
            continue
        indices.append(i)
        samples.append(sample)
        if len(indices) == n_images:
            break
    return indices, samples


def part_reliance(model, world: World, n_images: int = 40, target: int = 0, threshold: float = RELIED_ON,
                  tensor=None) -> list[PartReliance]:
    """The drop of ``model``'s probability for ``target`` when each part is removed (see the module docstring).

    ``tensor(samples) -> [B, 3, S, S]`` prepares images for the model (default:
    :func:`visum.benchmark.train.image_tensor`).
    """
    if tensor is None:
        from visum.benchmark.train import image_tensor

        def tensor(samples):
            return image_tensor(world, samples)

    indices, originals = _eval_samples(world, target, n_images)
    p, top = _probabilities(model, tensor(originals), target) if originals else (np.zeros(0), np.zeros(0))
    chosen = [k for k in range(len(originals)) if top[k] == target]
    if len(chosen) < MIN_IMAGES:
        chosen = list(range(len(originals)))
    results = []
    for part in world.part_names:
        shown = [k for k in chosen if originals[k].part_masks[part].any()]
        if not shown:
            results.append(PartReliance(part, float("nan"), 0, False))
            continue
        without = [render(world, target, sample_rng(world, target, indices[k], "eval"), omit={part}) for k in shown]
        q, _ = _probabilities(model, tensor(without), target)
        drop = float((p[shown] - q).sum() / max(float(p[shown].sum()), 1e-12))
        results.append(PartReliance(part, drop, len(shown), drop >= threshold))
    return results
