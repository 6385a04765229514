"""The ``visum`` command line (typer). Printing and progress bars live here, nowhere else.

Every user-caused error ends the command with one line ``visum: error: ...`` on stderr and
exit status 2.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, List, Optional

import typer
from tqdm.auto import tqdm

from visum import __version__
from visum.errors import ConfigError, VisumError

app = typer.Typer(
    help="visum: visual summaries of the parts an image classifier relies on (Godi, Carletti et al., BMVC 2018).",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
parts_app = typer.Typer(help="The synthetic parts benchmark: generate images with ground truth, retrain its CNN.")
app.add_typer(parts_app, name="parts")
evaluate_app = typer.Typer(help="The paper's evaluations of masks and summaries.")
app.add_typer(evaluate_app, name="evaluate")
DEFAULT_DELETION_METHODS = (
    "iebb,iebb-thresh,crisp,gradient,gradient-thresh,integrated-gradients-thresh,gradcam-thresh,"
    "occlusion-thresh,guided-backprop-thresh,smoothgrad-thresh"
)


class TqdmReporter:
    """Progress bars on stderr (hidden when ``quiet``)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def progress(self, items: Iterable[Any], desc: str, total: int | None = None) -> Iterable[Any]:
        return tqdm(items, desc=desc, total=total, disable=self.quiet or None, leave=False, file=sys.stderr)

    def bar(self, total: int, desc: str):
        return tqdm(total=total, desc=desc, disable=self.quiet or None, leave=False, file=sys.stderr)

    def info(self, message: str) -> None:
        if not self.quiet:
            typer.echo(message, err=True)


def _config_from_flags(config_file: Path | None, flags: dict[str, Any], opts: list[str]):
    from visum.config import RunConfig, load_config, make_config, parse_opt

    base = load_config(config_file) if config_file else RunConfig()
    data = base.model_dump(mode="python")
    model_keys = {"model": "spec", "weights": "weights", "input_size": "input_size", "mean": "mean", "std": "std"}
    for flag, value in flags.items():
        if value is None:
            continue
        if flag in model_keys:
            data["model"][model_keys[flag]] = value
        else:
            data[flag] = value
    for text in opts:
        kind, key, value = parse_opt(text)
        data["options"].setdefault(kind, {})[key] = value
    return make_config(data)


def _triple(text: str | None, flag: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise ConfigError(f"bad {flag} '{text}': expected three comma-separated numbers, e.g. 0.485,0.456,0.406")
    return values  # type: ignore[return-value]


@app.command()
def run(
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of images of the target class (every file in it is used). Default: generate the parts benchmark."),
    model: Optional[str] = typer.Option(None, "--model", help="efficientnet-lite0|1|2, torchvision:NAME (with --weights), a TorchScript *.pt file, package.module:factory, or 'parts' (default)."),
    weights: Optional[str] = typer.Option(None, "--weights", help="torchvision weights enum name (e.g. IMAGENET1K_V1) or a state-dict file."),
    target: Optional[str] = typer.Option(None, "--target", help="Class to explain: index or name (e.g. 'tabby cat'). Default: the parts benchmark's main class."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Override the model's input size (pixels)."),
    mean: Optional[str] = typer.Option(None, "--mean", help="Override the normalisation mean, 'r,g,b' in 0..1 units."),
    std: Optional[str] = typer.Option(None, "--std", help="Override the normalisation std, 'r,g,b' in 0..1 units."),
    saliency: Optional[str] = typer.Option(None, "--saliency", help="Saliency plugin (see `visum plugins`)."),
    proposer: Optional[str] = typer.Option(None, "--proposer", help="Object proposal plugin."),
    matcher: Optional[str] = typer.Option(None, "--matcher", help="Proposal matching plugin."),
    clusterer: Optional[str] = typer.Option(None, "--clusterer", help="Clustering plugin."),
    scorer: Optional[str] = typer.Option(None, "--scorer", help="Cluster scoring plugin."),
    opt: List[str] = typer.Option([], "--opt", help="Plugin option KIND.KEY=VALUE, repeatable (e.g. --opt clusterer.preference=0.2)."),
    config: Optional[Path] = typer.Option(None, "--config", help="A run.toml to start from; flags override it."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed: the same inputs and seed give the same manifest."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default ./visum-out/<timestamp>)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per saliency/classification batch."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Processes for all-pairs matching (default: one per core)."),
    keep_misclassified: Optional[bool] = typer.Option(None, "--keep-misclassified/--drop-misclassified", help="Keep images the model does not classify as the target (default: drop them, as the paper does)."),
    benchmark_images: Optional[int] = typer.Option(None, "--benchmark-images", help="How many parts-benchmark images to generate when --images is not given."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute everything; do not read or write the cache."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache folder (default $VISUM_CACHE_DIR or ~/.cache/visum)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Explain one class: saliency → regions → proposals → matching → pruning → clustering → scoring → summaries."""
    from visum.cache import Cache
    from visum.pipeline import Pipeline

    flags = dict(
        images=images, model=model, weights=weights, target=target, input_size=input_size,
        mean=_triple(mean, "--mean"), std=_triple(std, "--std"), saliency=saliency, proposer=proposer,
        matcher=matcher, clusterer=clusterer, scorer=scorer, seed=seed, batch_size=batch_size, device=device,
        workers=workers, keep_misclassified=keep_misclassified, benchmark_images=benchmark_images,
    )
    cfg = _config_from_flags(config, flags, opt)
    out_dir = out or Path("visum-out") / datetime.now().strftime("%Y%m%d-%H%M%S")
    reporter = TqdmReporter(quiet)
    pipeline = Pipeline(cfg, out_dir, cache=Cache(cache_dir, enabled=not no_cache), reporter=reporter)
    result = pipeline.run()
    kept = len(result.manifest.kept_summaries)
    reporter.info(
        f"{kept} summaries kept of {len(result.manifest.summaries)} clusters; "
        f"cache: {result.cache_hits} hits, {result.cache_misses} misses"
    )
    typer.echo(f"report: {result.report.resolve()}")


@app.command()
def masks(
    saliency: str = typer.Option(..., "--saliency", help="Saliency plugin (see `visum plugins --kind saliency`)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of images. Default: the parts benchmark."),
    model: Optional[str] = typer.Option(None, "--model", help="Model specification, as for `visum run`."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weights, as for `visum run`."),
    target: Optional[str] = typer.Option(None, "--target", help="Class to explain in every image: index or name."),
    opt: List[str] = typer.Option([], "--opt", help="Saliency option saliency.KEY=VALUE, repeatable."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default ./visum-out/masks-<timestamp>)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per batch: a batch's masks are optimised together."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cpu or cuda."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute; do not read or write the cache."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Compute and save saliency masks alone: masks/NNNN.png (original size), .npy (model input size), manifest.json."""
    from visum.cache import Cache
    from visum.pipeline import Pipeline

    flags = dict(images=images, model=model, weights=weights, target=target, saliency=saliency, seed=seed,
                 batch_size=batch_size, device=device, keep_misclassified=True)
    cfg = _config_from_flags(None, flags, opt)
    out_dir = out or Path("visum-out") / datetime.now().strftime("masks-%Y%m%d-%H%M%S")
    reporter = TqdmReporter(quiet)
    result = Pipeline(cfg, out_dir, cache=Cache(cache_dir, enabled=not no_cache), reporter=reporter).masks()
    reporter.info(f"{len(result.manifest.images)} masks; cache: {result.cache_hits} hits, {result.cache_misses} misses")
    typer.echo(f"masks: {result.report.resolve()}")


@app.command()
def plugins(
    kind: Optional[str] = typer.Option(None, "--kind", help="Only this kind: saliency, proposer, matcher, clusterer or scorer."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable listing."),
) -> None:
    """List every component visum can use, with its kind, source, options and defaults."""
    from visum.components import KINDS
    from visum.plugins import get_catalogue

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


@app.command()
def schema(out: Optional[Path] = typer.Option(None, "--out", help="Write to this file instead of stdout.")) -> None:
    """Print the JSON schema of manifest.json."""
    from visum.manifest import manifest_schema

    text = json.dumps(manifest_schema(), indent=2) + "\n"
    if out:
        out.write_text(text, "utf-8")
    else:
        typer.echo(text, nl=False)


@evaluate_app.command("deletion")
def evaluate_deletion_cmd(
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of images. Default: the parts benchmark."),
    model: Optional[str] = typer.Option(None, "--model", help="Model specification, as for `visum run`."),
    weights: Optional[str] = typer.Option(None, "--weights", help="Weights, as for `visum run`."),
    target: Optional[str] = typer.Option(None, "--target", help="A class for every image, 'predicted' (each image's top-1) or 'filename' (the integer ending each file name)."),
    methods: str = typer.Option(DEFAULT_DELETION_METHODS, "--methods", help="Comma-separated saliency plugins; NAME-thresh = NAME's mask binarised at the reference's area, per image."),
    reference: str = typer.Option("crisp", "--reference", help="Method whose per-image area the -thresh variants match."),
    steps: int = typer.Option(20, "--steps", help="Points of the deletion/insertion curves."),
    opt: List[str] = typer.Option([], "--opt", help="Saliency options saliency.KEY=VALUE (applied to every method that has the option)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per batch."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device."),
    out: Path = typer.Option(Path("visum-out/deletion"), "--out", help="Folder for deletion.md, deletion.json and curves.png."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute masks."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Sec. 4.1 / Table 2: relative drop of the target's probability when each method's mask is blurred away."""
    from visum.cache import Cache
    from visum.evaluate.report import write_deletion_report
    from visum.evaluate.table2 import evaluate_deletion

    flags = dict(images=images, model=model, weights=weights, target=target, seed=seed, batch_size=batch_size,
                 device=device, keep_misclassified=True)
    cfg = _config_from_flags(None, flags, [])
    cfg = _with_saliency_options(cfg, opt)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    report = evaluate_deletion(cfg, names, out, reference=reference, steps=steps,
                               cache=Cache(cache_dir, enabled=not no_cache), reporter=TqdmReporter(quiet))
    path = write_deletion_report(report, out)
    typer.echo(report.markdown())
    typer.echo(f"table: {path.resolve()}")


def _with_saliency_options(cfg, opts: list[str]):
    """``--opt saliency.KEY=V`` for evaluations that run several saliency plugins: each takes the keys it has."""
    from visum.config import parse_opt

    shared = {}
    for text in opts:
        kind, key, value = parse_opt(text)
        if kind != "saliency":
            raise ConfigError(f"bad --opt '{text}': only saliency options apply here")
        shared[key] = value
    return cfg.model_copy(update={"options": {**cfg.options, "saliency": shared}}) if shared else cfg


@parts_app.command("generate")
def parts_generate(
    folder: Path = typer.Argument(..., help="Where to write the images (ground truth goes to FOLDER/ground_truth)."),
    n: int = typer.Option(30, "--n", help="Images per class."),
    label: List[str] = typer.Option([], "--class", help="Class name or index; repeatable. Default: the main class only."),
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
) -> None:
    """Retrain the parts-benchmark CNN deterministically from scratch (about 5-10 minutes on 2 cores)."""
    from visum.models.train_parts import train_parts_cnn

    metrics = train_parts_cnn(out, seed=seed, epochs=epochs, n_per_class=n_per_class, threads=threads)
    typer.echo(json.dumps(metrics, indent=2, default=str))


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print visum's version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one line and exit status 2."""
    try:
        app(args=argv, prog_name="visum")
    except SystemExit as exc:  # typer ends every command this way
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except VisumError as exc:
        typer.echo(f"visum: error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        code = INTERRUPTED
    else:
        code = 0
    if code == INTERRUPTED:
        typer.echo("visum: interrupted; finished stages are cached, run again to resume", err=True)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
