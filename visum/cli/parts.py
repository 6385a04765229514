"""``visum parts generate|train``: the synthetic parts benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from visum.cli import (
    parts_app,
)
from visum.errors import ConfigError


@parts_app.command("generate")
def parts_generate(
    folder: Path = typer.Argument(..., help="Where to write the images (ground truth goes to FOLDER/ground_truth)."),
    n: int = typer.Option(30, "--n", help="Images per class."),
    label: list[str] = typer.Option([], "--class", help="Class name or index; repeatable. Default: the main class only."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write parts-benchmark images with ground-truth part masks."""
    from visum.data.parts import CLASS_NAMES, make_dataset, write_dataset

    labels = []
    for item in label or ["0"]:
        if item.isdigit() and int(item) < len(CLASS_NAMES):
            labels.append(int(item))
        elif item in CLASS_NAMES:
            labels.append(CLASS_NAMES.index(item))
        else:
            raise ConfigError(f"unknown parts class '{item}' (classes: {', '.join(CLASS_NAMES)})")
    paths = write_dataset(make_dataset(n, seed=seed, labels=labels), folder)
    typer.echo(f"wrote {len(paths)} images to {folder}")


@parts_app.command("train")
def parts_train(
    out: Path = typer.Option(Path("visum/models/weights/parts-cnn.pt"), "--out", help="Where to write the weights (metrics go beside them as .json)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights and the batch order."),
    epochs: int = typer.Option(12, "--epochs", help="Training epochs over freshly generated images."),
    n_per_class: int = typer.Option(600, "--n-per-class", help="Training images per class and epoch."),
    threads: int = typer.Option(2, "--threads", help="torch threads; results are identical for the same thread count."),
    held_out: int = typer.Option(200, "--held-out", min=1, help="Held-out test images per class for the metrics."),
) -> None:
    """Retrain the parts-benchmark CNN deterministically from scratch (about 5-10 minutes on 2 cores)."""
    from visum.models.train_parts import train_parts_cnn

    metrics = train_parts_cnn(out, seed=seed, epochs=epochs, n_per_class=n_per_class, threads=threads,
                              n_test_per_class=held_out)
    typer.echo(json.dumps(metrics, indent=2, default=str))
