"""``visum ablate``: the pipeline from a base configuration, one component changed at a time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from visum.cli import TqdmReporter, _config_from_flags, app, with_component_flags
from visum.errors import ConfigError


@app.command()
@with_component_flags(role="Base")
def ablate(
    vary: Annotated[list[str] | None, typer.Option("--vary", help="KEY=V1,V2,... repeatable: KIND=NAME,... (a component), KIND.KEY=... (its option) or any run setting (seed=0,1).")] = None,
    grid: Annotated[bool, typer.Option("--grid", help="Every combination of the --vary values instead of one change at a time.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="A run.toml as the base configuration; flags override it.")] = None,
    images: Annotated[Path | None, typer.Option("--images", help="Folder of images. Default: the parts benchmark (scored with its ground truth).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model specification, as for `visum run`.")] = None,
    weights: Annotated[str | None, typer.Option("--weights", help="Weights, as for `visum run`.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Class to explain, as for `visum run`.")] = None,
    opt: Annotated[list[str] | None, typer.Option("--opt", help="Base plugin option KIND.KEY=VALUE, repeatable.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed of the base configuration.")] = None,
    benchmark_images: Annotated[int | None, typer.Option("--benchmark-images", help="Parts-benchmark images when --images is not given.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Processes for all-pairs matching.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per saliency batch.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="torch device.")] = None,
    share: Annotated[float, typer.Option("--share", help="Ground truth: a box shows a part filling this share of the box or holding this share of the part.")] = 0.5,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default ./visum-out/ablate-<timestamp>).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute everything (variants then share nothing).")] = False,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Cache folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    components: dict | None = None,
) -> None:
    """Run the pipeline for every variant, score the summaries against ground truth, write ablation.md/.csv/.json."""
    from visum.ablate import (
        markdown_table,
        parse_vary,
        plan_variants,
        run_ablation,
        write_tables,
    )

    if not vary:
        raise ConfigError("nothing to ablate: give at least one --vary KEY=V1,V2 (e.g. --vary clusterer=ap,agglomerative)")
    flags = {
        "images": images, "model": model, "weights": weights, "target": target, **components, "seed": seed,
        "benchmark_images": benchmark_images, "workers": workers, "batch_size": batch_size, "device": device,
    }
    base = _config_from_flags(config, flags, opt or [])
    variants = plan_variants(base, [parse_vary(v) for v in vary], grid=grid)
    out_dir = out or Path("visum-out") / datetime.now().strftime("ablate-%Y%m%d-%H%M%S")
    reporter = TqdmReporter(quiet)
    reporter.info(f"{len(variants)} variants into {out_dir}")
    rows = run_ablation(variants, out_dir, cache_root=cache_dir, cache_enabled=not no_cache, reporter=reporter,
                        score_settings={"share": share})
    paths = write_tables(rows, out_dir)
    typer.echo(markdown_table(rows), nl=False)
    typer.echo(f"table: {paths['md'].resolve()}")
