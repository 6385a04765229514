"""``visum worlds list|generate``: the dev and test worlds (:mod:`visum.data.worlds`)."""

from __future__ import annotations

from pathlib import Path

import typer

from visum.cli import app
from visum.errors import ConfigError

worlds_app = typer.Typer(help="The synthetic worlds with ground-truth parts: dev worlds to tune on, test worlds to report on.")
app.add_typer(worlds_app, name="worlds")


@worlds_app.command("list")
def worlds_list(split: str = typer.Option("all", "--split", help="dev, test or all.")) -> None:
    """Every world: split, classes, parts, how the class depends on them."""
    from visum.data.worlds import worlds

    try:
        chosen = worlds(split)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for w in chosen:
        rule = {"all": "every part needed", "k_of_n": f"any {w.rule.k} of {len(w.ruled_parts)} parts",
                "dominant": f"dominant part: {w.rule.part}"}[w.rule.kind]
        typer.echo(f"{w.name:10s} {w.split:4s} {w.size:3d} px  {rule}; parts: {', '.join(w.part_names)}")
        typer.echo(f"{'':15s} classes: {', '.join(w.class_names)}")
        if w.description:
            typer.echo(f"{'':15s} {w.description}")


@worlds_app.command("generate")
def worlds_generate(
    name: str = typer.Argument(..., help="A world (see `visum worlds list`)."),
    folder: Path = typer.Argument(..., help="Where to write the images (ground truth goes to FOLDER/ground_truth)."),
    n: int = typer.Option(30, "--n", min=1, help="Images per class."),
    label: list[str] = typer.Option([], "--class", help="Class name or index; repeatable. Default: the main class only."),
    purpose: str = typer.Option("eval", "--purpose", help="train, val or eval: disjoint image streams of the world."),
) -> None:
    """Write a world's images with ground-truth part masks, ready for `visum run --images FOLDER`."""
    from visum.data.ground_truth import write_samples
    from visum.data.worlds import make_samples, world

    try:
        w = world(name)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if purpose not in ("train", "val", "eval"):
        raise ConfigError(f"bad --purpose '{purpose}': use train, val or eval")
    labels = []
    for item in label or ["0"]:
        if item.isdigit() and int(item) < len(w.class_names):
            labels.append(int(item))
        elif item in w.class_names:
            labels.append(w.class_names.index(item))
        else:
            raise ConfigError(f"unknown class '{item}' of world {name} (classes: {', '.join(w.class_names)})")
    samples = make_samples(w, n, purpose=purpose, labels=labels)
    paths = write_samples(samples, folder, w.class_names, w.part_names, extra={"world": w.name, "purpose": purpose})
    typer.echo(f"wrote {len(paths)} images of world {name} to {folder}")
