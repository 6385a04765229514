"""Train the benchmark's models on a world, deterministically, once; load them as visum models.

A :class:`Recipe` fixes everything a training run depends on (world, architecture, epochs,
fresh images per class and epoch, learning rate, seed). Its weights are kept under
``<cache>/worlds/<world>/<architecture>-<key>/`` with their metrics (held-out accuracy on
the world's ``val`` stream, training history), so a second use loads them. Every epoch draws
fresh images from the world's ``train`` stream (its only augmentation); the images visum
explains come from the ``eval`` stream, which training never sees.

``world:NAME/ARCH`` is a ``--model`` specification (:func:`load_world_model`): the model is
trained on first use (minutes, with a progress bar) and loaded afterwards.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from visum.atomic import atomic_write, write_text_atomic
from visum.benchmark.models import ARCHITECTURES, build
from visum.data.worlds import World, make_samples, world
from visum.errors import ConfigError
from visum.models.base import Preprocessing

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
PREFIX = "world:"
#: bumped whenever the drawing, the architectures or the training loop change what a recipe produces
TRAIN_FORMAT = 2


@dataclass(frozen=True)
class Recipe:
    """One training run of ``architecture`` on ``world``."""

    world: str
    architecture: str
    epochs: int = 8
    n_per_class: int = 250
    lr: float = 2e-3
    batch_size: int = 32
    seed: int = 0

    def key(self) -> str:
        """Everything that determines the weights: the recipe, the world's whole declaration, the
        normalisation, the training and drawing code's format, torch's version and the threads."""
        from visum.cache import make_key

        return make_key("world-model", recipe=asdict(self), world=repr(world(self.world)), mean=MEAN, std=STD,
                        format=TRAIN_FORMAT, torch=torch.__version__, threads=torch.get_num_threads())[:16]


#: the default recipe of each architecture (ViTs learn from fewer inductive biases: longer)
DEFAULTS: dict[str, dict] = {
    "cnn": {"epochs": 12, "n_per_class": 300, "lr": 3e-3},
    "resnet": {"epochs": 10, "n_per_class": 300, "lr": 2e-3},
    "vit": {"epochs": 24, "n_per_class": 300, "lr": 1e-3},
}


def default_recipe(world_name: str, architecture: str) -> Recipe:
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; use one of {', '.join(ARCHITECTURES)}")
    return Recipe(world_name, architecture, **DEFAULTS[architecture])


def preprocessing(w: World) -> Preprocessing:
    """World images are square at the world's size: fed whole."""
    return Preprocessing(w.size, w.size, MEAN, STD, "squash", "bilinear", source=f"world {w.name}: images fed whole")


def _tensor(pre: Preprocessing, samples) -> tuple[torch.Tensor, torch.Tensor]:
    x = pre.to_tensor([s.image for s in samples])
    return x, torch.tensor([s.label for s in samples], dtype=torch.int64)


@torch.no_grad()
def accuracy(model: nn.Module, pre: Preprocessing, samples, batch_size: int = 64) -> dict:
    """Accuracy overall and per class index on ``samples``."""
    model.eval()
    preds, labels = [], []
    for i in range(0, len(samples), batch_size):
        x, y = _tensor(pre, samples[i : i + batch_size])
        preds.append(model(x).argmax(1))
        labels.append(y)
    p, y = torch.cat(preds), torch.cat(labels)
    per_class = {int(k): float((p[y == k] == k).float().mean()) for k in torch.unique(y).tolist()}
    return {"accuracy": float((p == y).float().mean()), "per_class": per_class, "n": int(len(y))}


def _train_batch(w: World, pre: Preprocessing, recipe: Recipe, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Epoch ``epoch``'s images (indices ``epoch * n .. (epoch + 1) * n`` of the train stream, every class)
    as ``(x [N, 3, S, S], y [N])``; only pixels and labels are kept, not the masks."""
    from visum.data.worlds import render, sample_rng

    n = recipe.n_per_class
    offset = (recipe.seed * 1000 + epoch) * n
    images, labels = [], []
    for k in range(len(w.class_names)):
        for i in range(n):
            images.append(render(w, k, sample_rng(w, k, offset + i, "train")).image)
            labels.append(k)
    return pre.to_tensor(images), torch.tensor(labels, dtype=torch.int64)


def train(recipe: Recipe, out_dir: Path, progress: bool = True, n_val_per_class: int = 100) -> dict:
    """Train ``recipe`` from scratch; write ``model.pt`` and ``metrics.json`` into ``out_dir``; return the metrics."""
    w = world(recipe.world)
    pre = preprocessing(w)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(recipe.seed)
        model = build(recipe.architecture, len(w.class_names), w.size)
        decay = [p for p in model.parameters() if p.ndim > 1]
        rest = [p for p in model.parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}],
                                lr=recipe.lr)
        n_train = recipe.n_per_class * len(w.class_names)
        steps = math.ceil(n_train / recipe.batch_size)
        total = max(1, recipe.epochs * steps)
        warmup = max(1, min(total // 10, 2 * steps))

        def lr_at(step: int) -> float:  # linear warm-up, then cosine decay to zero
            if step < warmup:
                return recipe.lr * (step + 1) / warmup
            return recipe.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

        gen = torch.Generator().manual_seed(recipe.seed)
        history, step = [], 0
        bar = tqdm(total=total, desc=f"train {recipe.world}/{recipe.architecture}", unit="batch", disable=not progress)
        for epoch in range(recipe.epochs):
            model.train()
            x_all, y_all = _train_batch(w, pre, recipe, epoch)
            order = torch.randperm(n_train, generator=gen)
            loss_sum, correct = 0.0, 0
            for i in range(0, n_train, recipe.batch_size):
                idx = order[i : i + recipe.batch_size]
                for group in opt.param_groups:
                    group["lr"] = lr_at(step)
                logits = model(x_all[idx])
                loss = nn.functional.cross_entropy(logits, y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                loss_sum += float(loss.detach()) * len(idx)
                correct += int((logits.argmax(1) == y_all[idx]).sum())
                bar.update(1)
            history.append({"epoch": epoch + 1, "loss": round(loss_sum / n_train, 5),
                            "train_accuracy": round(correct / n_train, 4)})
        bar.close()
        model.eval()
        val = accuracy(model, pre, make_samples(w, n_val_per_class, purpose="val"))
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(out_dir / "model.pt", "wb") as fh:
            torch.save(model.state_dict(), fh)
        metrics = {
            "recipe": asdict(recipe),
            "classes": w.class_names,
            "parameters": sum(p.numel() for p in model.parameters()),
            "val": val,
            "history": history,
            "threads": torch.get_num_threads(),
            "wall_time_s": round(time.perf_counter() - start, 1),
            "torch": torch.__version__,
            "platform": platform.platform(),
        }
        write_text_atomic(out_dir / "metrics.json", json.dumps(metrics, indent=1))
        return metrics
    finally:
        torch.use_deterministic_algorithms(deterministic)


def recipe_dir(recipe: Recipe, cache_root: Path) -> Path:
    return Path(cache_root) / "worlds" / recipe.world / f"{recipe.architecture}-{recipe.key()}"


def trained(recipe: Recipe, cache_root: Path, progress: bool = True) -> tuple[nn.Module, dict]:
    """``(model in eval mode, metrics)`` of ``recipe``: trained now unless its weights are in the cache."""
    folder = recipe_dir(recipe, cache_root)
    w = world(recipe.world)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        model = build(recipe.architecture, len(w.class_names), w.size)
        model.load_state_dict(state)
    except Exception:  # noqa: BLE001 - absent, damaged or foreign: nothing read back is trusted, train again
        metrics = train(recipe, folder, progress=progress)
        model = build(recipe.architecture, len(w.class_names), w.size)
        model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
    return model.eval(), metrics


def load_world_model(spec: str, cache_root: Path | None = None, progress: bool = True):
    """``world:NAME/ARCH`` → ``(module, preprocessing, class names, weights identity, extras)`` (a loader of
    :func:`visum.models.loading.load_model`)."""
    from visum.cache import default_cache_dir
    from visum.models.files import hash_file

    body = spec[len(PREFIX) :]
    name, _, arch = body.partition("/")
    try:
        w = world(name)
    except ValueError as e:
        raise ConfigError(f"model {spec!r}: {e}") from None
    recipe = default_recipe(name, arch or "cnn")
    root = Path(cache_root) if cache_root is not None else default_cache_dir()
    model, metrics = trained(recipe, root, progress=progress)
    path = recipe_dir(recipe, root) / "model.pt"
    extras = {"source": "world", "weights_path": str(path), "num_classes": len(w.class_names),
              "val_accuracy": metrics["val"]["accuracy"]}
    return model, preprocessing(w), list(w.class_names), hash_file(path), extras


def image_tensor(w: World, samples) -> torch.Tensor:
    """The normalised batch ``[B, 3, S, S]`` of world samples."""
    return preprocessing(w).to_tensor([np.asarray(s.image) for s in samples])
