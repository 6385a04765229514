"""The models an experiment compares: parts-benchmark CNNs of several capacities, or any ``--model``.

A :class:`PartsRecipe` is a deterministic training run of :class:`visum.models.parts_cnn.PartsCNN`
(conv widths, epochs, fresh images per class and epoch, seed). Its weights are trained
once and kept under ``<cache>/models/<key>/parts-cnn.pt``, the key covering every training
argument, the torch thread count and visum's version, so a rerun loads them instead of
retraining.

Model references on the command line:

``parts``           the shipped parts CNN (``visum/models/weights/parts-cnn.pt``)
``parts:NAME``      a recipe of :data:`RECIPES` (trained on first use, then cached)
``SPEC[=WEIGHTS]``  any other ``--model`` specification with its ``--weights``
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from visum.cache import make_key
from visum.errors import ConfigError


@dataclass(frozen=True)
class PartsRecipe:
    """How to train one parts CNN from scratch (see :func:`visum.models.train_parts.train_parts_cnn`)."""

    name: str
    widths: tuple[int, int, int, int, int]
    epochs: int
    n_per_class: int
    seed: int = 0

    @property
    def parameters(self) -> int:
        from visum.models.parts_cnn import PartsCNN

        return sum(p.numel() for p in PartsCNN(widths=self.widths).parameters())


# Capacities and training lengths spanning ~50 % to ~100 % held-out accuracy (docs/experiments.md):
# NAME = w<first conv width>-e<epochs>-n<fresh images per class and epoch>. The shipped model
# (12 epochs of 600 images per class at widths 16-32-48-64-64, 99.9 %) tops the ladder.
RECIPES: dict[str, PartsRecipe] = {
    r.name: r
    for r in (
        PartsRecipe("w8-e2-n300", (8, 16, 24, 32, 32), epochs=2, n_per_class=300),
        PartsRecipe("w8-e2-n400", (8, 16, 24, 32, 32), epochs=2, n_per_class=400),
        PartsRecipe("w8-e3-n400", (8, 16, 24, 32, 32), epochs=3, n_per_class=400),
        PartsRecipe("w16-e3-n400", (16, 32, 48, 64, 64), epochs=3, n_per_class=400),
        # tiny models for tests and smoke runs (seconds)
        PartsRecipe("tiny-a", (4, 4, 8, 8, 8), epochs=1, n_per_class=8),
        PartsRecipe("tiny-b", (4, 8, 8, 16, 16), epochs=1, n_per_class=16),
    )
}

LADDERS: dict[str, tuple[str, ...]] = {
    "default": ("parts:w8-e2-n300", "parts:w8-e2-n400", "parts:w8-e3-n400", "parts:w16-e3-n400", "parts"),
    "tiny": ("parts:tiny-a", "parts:tiny-b"),
}


@dataclass(frozen=True)
class ModelRef:
    """A model of an experiment: ``label`` names it in tables; ``recipe`` is set for trained parts CNNs."""

    label: str
    spec: str
    weights: str | None = None
    recipe: PartsRecipe | None = None

    @property
    def is_parts(self) -> bool:
        return self.spec == "parts"


def parse_model_ref(text: str) -> ModelRef:
    """``parts``, ``parts:NAME`` (a recipe) or ``SPEC[=WEIGHTS]``; unknown recipe names are a :class:`ConfigError`."""
    text = text.strip()
    if not text:
        raise ConfigError("empty --model")
    if text == "parts":
        return ModelRef("parts (shipped)", "parts")
    if text.startswith("parts:"):
        name = text[len("parts:"):]
        if name not in RECIPES:
            raise ConfigError(f"unknown parts recipe {name!r} in --model {text!r} (recipes: {', '.join(RECIPES)})")
        return ModelRef(name, "parts", recipe=RECIPES[name])
    spec, _, weights = text.partition("=")
    return ModelRef(text, spec.strip(), weights.strip() or None)


def ladder_refs(ladder: str) -> list[ModelRef]:
    if ladder not in LADDERS:
        raise ConfigError(f"unknown ladder {ladder!r} (ladders: {', '.join(LADDERS)})")
    return [parse_model_ref(t) for t in LADDERS[ladder]]


def recipe_path(recipe: PartsRecipe, cache_root: Path, threads: int = 2) -> Path:
    """Where the weights of ``recipe`` trained with ``threads`` torch threads are kept."""
    key = make_key("parts-model", **(asdict(recipe) | {"name": None}), threads=int(threads), torch=torch.__version__)
    return Path(cache_root) / "models" / key[:16] / "parts-cnn.pt"


def recipe_weights(recipe: PartsRecipe, cache_root: Path, threads: int = 2, progress: bool = False) -> Path:
    """The weight file of ``recipe``: trained now (deterministically) unless the cache has it."""
    from visum.models.train_parts import train_parts_cnn

    path = recipe_path(recipe, cache_root, threads)
    if not path.is_file():
        train_parts_cnn(path, seed=recipe.seed, epochs=recipe.epochs, n_per_class=recipe.n_per_class,
                        threads=threads, progress=progress, n_saliency=0,
                        n_test_per_class=min(50, recipe.n_per_class),
                        widths=recipe.widths)
    return path


def resolve_weights(ref: ModelRef, cache_root: Path, threads: int = 2, progress: bool = False) -> str | None:
    """The ``--weights`` value to load ``ref`` with (training a recipe first if needed)."""
    if ref.recipe is not None:
        return str(recipe_weights(ref.recipe, cache_root, threads, progress))
    return ref.weights
