"""Saliency masks of several methods on one set of images: the first step of every evaluation.

Table 2 (deletion, :mod:`visum.evaluate.table2`), localisation and pointing on the parts
benchmark (:mod:`visum.evaluate.localisation`, :mod:`visum.evaluate.pointing`) and the
``visum localize`` command all start the same way: check the method names and the saliency
options, load the model and the images once, choose one target class per image, and compute
(or fetch from the cache) each method's mask of each image. :func:`evaluation_masks` does it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from visum.cache import Cache
from visum.config import RunConfig
from visum.errors import ConfigError, InputError
from visum.models.base import LoadedModel
from visum.pipeline import InputImage, Pipeline, Reporter
from visum.plugins import get_catalogue

__all__ = ["EvaluationMasks", "TargetRule", "config_for_method", "evaluation_masks", "image_targets"]

TargetRule = Callable[[list[InputImage], np.ndarray, Callable[[], int]], list[int]]
"""``(images, probs [N, K], resolve) -> one target per image``; ``resolve()`` gives the
configured ``--target`` as a class index."""


@dataclass
class EvaluationMasks:
    """Every method's mask of every image, and what they were computed for."""

    model: LoadedModel
    images: list[InputImage]
    probs: np.ndarray  # [N, K] softmax of each image
    targets: list[int]  # [N] the class each mask explains
    masks: dict[str, dict[int, np.ndarray]]  # method -> image id -> [S, S] in [0, 1] (view pixels)
    binarisation: dict[str, tuple[float | str, float]]  # method -> regions-stage (threshold, sigma)

    @property
    def predicted(self) -> list[int]:
        return [int(p) for p in self.probs.argmax(axis=1)]


def image_targets(mode: str | None, images: Sequence[InputImage], probs: np.ndarray,
                  resolve: Callable[[], int]) -> list[int]:
    """One target per image from ``mode``: ``predicted``, ``filename`` (the file name ends in a
    class index) or anything else ``resolve()`` turns into one class for every image."""
    if mode == "predicted":
        return [int(p) for p in probs.argmax(axis=1)]
    if mode == "filename":
        out = []
        for im in images:
            found = re.search(r"(\d+)$", im.path.stem)
            if not found:
                raise InputError(f"{im.path}: --target filename needs a file name ending in a class index")
            out.append(int(found.group(1)))
        return out
    return [resolve()] * len(images)


def config_for_method(config: RunConfig, method: str) -> RunConfig:
    """``config`` with ``method`` as saliency, keeping only the saliency options it has."""
    fields = get_catalogue().get("saliency", method).cls.Options.model_fields
    mine = {k: v for k, v in config.options.get("saliency", {}).items() if k in fields}
    return config.model_copy(update={"saliency": method, "options": {**config.options, "saliency": mine}})


def evaluation_masks(
    config: RunConfig,
    methods: Sequence[str],
    out_dir: Path,
    *,
    targets: TargetRule | None = None,
    cache: Cache | None = None,
    reporter: Reporter | None = None,
) -> EvaluationMasks:
    """Masks of ``methods`` on the images of ``config``, each for its image's target.

    Fails before any work on an unknown method, or a saliency option (``config.options
    ["saliency"]``) that none of the methods has; each method gets the options it has.
    ``targets`` chooses the classes (default: :func:`image_targets` of ``config.target``).
    """
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ConfigError("no saliency methods given")
    catalogue = get_catalogue()
    for name in methods:
        catalogue.get("saliency", name)  # an unknown name fails here, with the known ones listed
    for key in config.options.get("saliency", {}):
        if not any(key in catalogue.get("saliency", n).cls.Options.model_fields for n in methods):
            raise ConfigError(f"saliency option '{key}' belongs to none of {', '.join(methods)}")
    pipelines = {name: Pipeline(config_for_method(config, name), out_dir, cache=cache, reporter=reporter)
                 for name in methods}
    first = pipelines[methods[0]]
    model, images, probs = first.load()
    if not images:
        raise InputError("no images to evaluate")
    rule = targets or (lambda ims, p, resolve: image_targets(config.target, ims, p, resolve))
    chosen = rule(images, probs, lambda: first.resolve_target(model))
    k = probs.shape[1]
    if any(t < 0 or t >= k for t in chosen):
        raise ConfigError(f"a target is outside the model's {k} classes")
    by_id = {im.id: t for im, t in zip(images, chosen)}
    return EvaluationMasks(
        model=model, images=images, probs=probs, targets=list(chosen),
        masks={name: p.saliency_masks(model, images, by_id) for name, p in pipelines.items()},
        binarisation={name: p.binarisation() for name, p in pipelines.items()},
    )
