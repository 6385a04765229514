"""``visum run``, ``masks``, ``plugins``, ``schema``."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from visum.atomic import write_text_atomic
from visum.cli import (
    TqdmReporter,
    _config_from_flags,
    app,
    with_component_flags,
    with_model_flags,
)
from visum.components import KINDS
from visum.engines import check_engine
from visum.errors import ConfigError
from visum.output import check_out


Engine = Annotated[str, typer.Option("--engine", help="local, or ray: saliency batches (and a run's pair matching) as "
                                     "Ray tasks (pip install \"visum\\[ray]\"); the result is the same.")]
Address = Annotated[str | None, typer.Option("--address", help="--engine ray: a running Ray cluster (default: a local "
                                                "Ray).")]


@app.command()
@with_model_flags
@with_component_flags
def run(
    images: Path | None = typer.Option(None, "--images", help="Folder of images of the target class (every file in it is used). Default: generate the parts benchmark."),
    model: str | None = typer.Option(None, "--model", help="efficientnet-lite0|1|2, torchvision:NAME (with --weights), timm:NAME, a TorchScript *.pt or torch.export *.pt2 file, package.module:factory, or 'parts' (default)."),
    target: str | None = typer.Option(None, "--target", help="Class to explain: index or name (e.g. 'tabby cat'). Default: the parts benchmark's main class."),
    opt: list[str] = typer.Option([], "--opt", help="Plugin option KIND.KEY=VALUE, repeatable (e.g. --opt clusterer.preference=0.2)."),
    config: Path | None = typer.Option(None, "--config", help="A run.toml to start from; flags override it."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed: the same inputs and seed give the same manifest."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default ./visum-out/<timestamp>)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per saliency/classification batch."),
    device: str | None = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    workers: int | None = typer.Option(None, "--workers", help="Processes for all-pairs matching (default: one per core)."),
    pairs: str | None = typer.Option(None, "--pairs", help="Pairs of images to match: all (the paper's), knn:K (each image with its K nearest by the model's features, ~N K pairs) or auto (default: all up to 100 images, knn:10 above)."),
    keep_misclassified: bool | None = typer.Option(None, "--keep-misclassified/--drop-misclassified", help="Keep images the model does not classify as the target (default: drop them, as the paper does)."),
    benchmark_images: int | None = typer.Option(None, "--benchmark-images", help="How many parts-benchmark images to generate when --images is not given."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute everything; do not read or write the cache."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder (default $VISUM_CACHE_DIR or ~/.cache/visum)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    engine: Engine = "local",
    address: Address = None,
    model_flags: dict | None = None,
    components: dict | None = None,
) -> None:
    """Explain one class: saliency → regions → proposals → matching → pruning → clustering → scoring → summaries."""
    from visum.api import summarize

    flags = dict(
        images=images, model=model, target=target,
        **model_flags,
        **components, seed=seed, batch_size=batch_size, device=device,
        workers=workers, keep_misclassified=keep_misclassified, benchmark_images=benchmark_images,
        **{"pruning.pairs": pairs},
    )
    cfg = _config_from_flags(config, flags, opt)
    out_dir = out or Path("visum-out") / datetime.now().strftime("%Y%m%d-%H%M%S")
    check_out(out_dir)  # before any work
    reporter = TqdmReporter(quiet)
    # the run's inputs (a generated benchmark) go to a temporary folder; save() writes out_dir whole
    result = summarize(cfg.model.spec, config=cfg, cache_dir=cache_dir, cache=not no_cache, progress=not quiet,
                       engine=engine, address=address)
    result.save(out_dir)
    kept = len(result.manifest.kept_summaries)
    reporter.info(
        f"{kept} summaries kept of {len(result.manifest.summaries)} clusters; "
        f"cache: {result.cache_hits} hits, {result.cache_misses} misses"
    )
    typer.echo(f"report: {result.report.resolve()}")


@app.command()
@with_model_flags
def masks(
    saliency: str = typer.Option(..., "--saliency", help="Saliency plugin (see `visum plugins --kind saliency`)."),
    images: Path | None = typer.Option(None, "--images", help="Folder of images. Default: the parts benchmark."),
    model: str | None = typer.Option(None, "--model", help="Model specification, as for `visum run`."),
    target: str | None = typer.Option(None, "--target", help="Class to explain in every image: index or name."),
    opt: list[str] = typer.Option([], "--opt", help="Saliency option saliency.KEY=VALUE, repeatable."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default ./visum-out/masks-<timestamp>)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per batch: a batch's masks are optimised together."),
    device: str | None = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute; do not read or write the cache."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    engine: Engine = "local",
    address: Address = None,
    model_flags: dict | None = None,
) -> None:
    """Compute and save saliency masks alone: masks/NNNN.png (original size), .npy (model input size), manifest.json."""
    from visum.cache import Cache
    from visum.pipeline import Pipeline

    flags = dict(images=images, model=model, target=target, saliency=saliency, seed=seed,
                 **model_flags,
                 batch_size=batch_size, device=device, keep_misclassified=True)
    cfg = _config_from_flags(None, flags, opt)
    check_engine(engine)
    out_dir = out or Path("visum-out") / datetime.now().strftime("masks-%Y%m%d-%H%M%S")
    check_out(out_dir)  # before any work
    reporter = TqdmReporter(quiet)
    with tempfile.TemporaryDirectory(prefix="visum-") as work:  # inputs of the run; save() writes out_dir whole
        result = Pipeline(cfg, Path(work), cache=Cache(cache_dir, enabled=not no_cache), reporter=reporter,
                          engine=engine, address=address).masks()
        result.save(out_dir)
    reporter.info(f"{len(result.manifest.images)} masks; cache: {result.cache_hits} hits, {result.cache_misses} misses")
    typer.echo(f"masks: {result.report.resolve()}")


@app.command()
def plugins(
    kind: str | None = typer.Option(None, "--kind", help=f"Only this kind ({', '.join(KINDS)})."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable listing."),
) -> None:
    """List every component visum can use, with its kind, source, options and defaults.

    Third-party plugins that failed to load are listed at the end with their errors;
    VISUM_LOAD_PLUGINS=name,... loads only the named ones.
    """
    from visum.plugins import LOAD_PLUGINS_ENV, get_catalogue

    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown kind '{kind}' (kinds: {', '.join(KINDS)})")
    catalogue = get_catalogue()
    items = catalogue.list(kind)
    if as_json:
        rows = [
            {"kind": c.kind, "name": c.name, "source": c.source, "plugin": c.plugin, "summary": c.summary,
             "options": c.options_table()}
            for c in items
        ]
        rows += [{"kind": None, "name": None, "plugin": b.name, "source": b.source, "error": b.error}
                 for b in catalogue.broken]
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    current = None
    for c in items:
        if c.kind != current:
            current = c.kind
            typer.echo(f"\n{c.kind}")
        typer.echo(f"  {c.name:<20} {c.summary}  [{c.source}]")
        for o in c.options_table():
            default = "required" if o["required"] else f"default {o['default']!r}"
            typer.echo(f"      --opt {c.kind}.{o['name']}=<{o['type']}>  ({default})  {o['description']}")
    if catalogue.broken or catalogue.skipped or catalogue.unmatched:
        typer.echo("\nnot loaded")
    for b in catalogue.broken:
        typer.echo(f"  {b.name:<20} BROKEN  [{b.source}]  {b.error}")
    for name in catalogue.skipped:
        typer.echo(f"  {name:<20} left out by {LOAD_PLUGINS_ENV}")
    for name in catalogue.unmatched:
        typer.echo(f"  {name:<20} named by {LOAD_PLUGINS_ENV}, but no installed plugin has that name")


@app.command()
def schema(out: Path | None = typer.Option(None, "--out", help="Write to this file instead of stdout.")) -> None:
    """Print the JSON schema of manifest.json."""
    from visum.manifest import manifest_schema

    text = json.dumps(manifest_schema(), indent=2) + "\n"
    if out:
        write_text_atomic(out, text)
    else:
        typer.echo(text, nl=False)
