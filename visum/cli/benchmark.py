"""``visum benchmark``: a pipeline configuration on every world x model, scored against measured reliance."""

from __future__ import annotations

from pathlib import Path

import typer

from visum.cli import (
    BatchSize,
    Opts,
    Quiet,
    TqdmReporter,
    Workers,
    _config_from_flags,
    app,
    with_component_flags,
)
from visum.errors import ConfigError


@app.command()
@with_component_flags
def benchmark(
    worlds: str = typer.Option("dev", "--worlds", help="dev, test, all, or comma-separated world names (see `visum worlds list`)."),
    models: str = typer.Option("cnn,resnet,vit", "--models", help="Architectures trained on each world: cnn, resnet, vit."),
    images: int = typer.Option(30, "--images", min=3, help="Held-out images of each world's main class to explain."),
    opt: Opts = None,
    config: Path | None = typer.Option(None, "--config", help="A run.toml to start from; flags override it."),
    seed: int | None = typer.Option(None, "--seed", help="Pipeline seed."),
    workers: Workers = None,
    batch_size: BatchSize = None,
    out: Path = typer.Option(Path("visum-out/benchmark"), "--out", help="Folder for benchmark.csv, .json, .html and every run."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute pipeline stages (trained models stay cached)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder (default $VISUM_CACHE_DIR or ~/.cache/visum)."),
    quiet: Quiet = False,
    components: dict | None = None,
) -> None:
    """Run one pipeline configuration on worlds x models and score it against what each model relies on."""
    from visum.benchmark.models import ARCHITECTURES
    from visum.benchmark.run import run_benchmark, summary
    from visum.cache import Cache, default_cache_dir
    from visum.data.worlds import WORLDS
    from visum.data.worlds import worlds as split_worlds

    if worlds in ("dev", "test", "all"):
        chosen = split_worlds(worlds)
    else:
        names = list(dict.fromkeys(n.strip() for n in worlds.split(",") if n.strip()))
        unknown = [n for n in names if n not in WORLDS]
        if unknown or not names:
            raise ConfigError(f"bad --worlds '{worlds}': use dev, test, all or names among {', '.join(WORLDS)}")
        chosen = [WORLDS[n] for n in names]
    archs = [m.strip() for m in models.split(",") if m.strip()]
    if not archs or any(a not in ARCHITECTURES for a in archs):
        raise ConfigError(f"bad --models '{models}': use names among {', '.join(ARCHITECTURES)}")
    flags = dict(**components, seed=seed,
                 workers=workers, batch_size=batch_size)
    base = _config_from_flags(config, flags, opt or [])
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    rows = run_benchmark(base, chosen, archs, images, out, Cache(cache_dir, enabled=not no_cache),
                         TqdmReporter(quiet), root)
    means = summary(rows)
    typer.echo(f"{means['ran']} of {means['runs']} runs ({means['kept_nothing']} kept no summary); mean purity "
               f"{means['purity']:.3f}, recall {means['recall']:.3f}, false summaries {means['false_summaries']:.2f}, "
               f"kept {means['kept']:.1f} per run")
    typer.echo(f"table: {(out / 'benchmark.html').resolve()}")
