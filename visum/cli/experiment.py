"""``visum experiment summaries-vs-accuracy|specialise``: the paper's Sec. 4.3 and 4.4."""

from __future__ import annotations

from pathlib import Path

import typer

from visum.atomic import write_text_atomic
from visum.cli import (  # the pipeline flags the experiments share with `visum benchmark`
    BatchSize,
    Device,
    Opts,
    Quiet,
    TqdmReporter,
    Workers,
    _config_from_flags,
    app,
    with_component_flags,
)
from visum.components import KINDS

experiment_app = typer.Typer(help="The paper's experiments: summaries against accuracy (4.3), specialisation (4.4).")
app.add_typer(experiment_app, name="experiment")

_MODEL_HELP = ("parts (the shipped CNN), parts:RECIPE (a parts CNN trained once and cached; see "
               "visum.experiments.models.RECIPES), or SPEC[=WEIGHTS] as for `visum run --model/--weights`; repeatable.")




_CONFIG_HELP = ("A run.toml to start from; flags override it. Without one, summaries are not merged "
                "(summaries.merge = \"none\"): the paper counts them as clustered.")


def _base_config(components, opt, seed, workers, batch_size, device, config_file: Path | None):
    """The pipeline of every run of an experiment. Without a config file, the run's default but
    unmerged: the paper's Sec. 4.3 and 4.4 count and describe summaries as clustered, and the default
    merge would also treat models with and without an nn.Linear differently within one ladder."""
    flags = {**components, "seed": seed, "workers": workers, "batch_size": batch_size, "device": device}
    cfg = _config_from_flags(config_file, flags, opt or [])
    if config_file is None:
        cfg = cfg.model_copy(update={"summaries": cfg.summaries.model_copy(update={"merge": "none"})})
    return cfg


@experiment_app.command("summaries-vs-accuracy")
@with_component_flags
def summaries_vs_accuracy_cmd(
    model: list[str] = typer.Option([], "--model", help=_MODEL_HELP + " Default: the --ladder."),
    ladder: str = typer.Option("default", "--ladder", help="Preset list of parts models: default (5 models) or tiny (2, for smoke tests)."),
    images: Path | None = typer.Option(None, "--images", help="Non-parts models: folder of class subfolders to explain (DIR/<class name or index>/*)."),
    held_out: Path | None = typer.Option(None, "--held-out", help="Non-parts models: folder of class subfolders for the accuracy."),
    images_per_class: int = typer.Option(30, "--images-per-class", min=2, help="Correctly classified images each class is explained on."),
    pool_per_class: int = typer.Option(240, "--pool-per-class", min=2, help="Parts: fresh images per class to pick them from."),
    held_out_per_class: int = typer.Option(200, "--held-out-per-class", min=1, help="Parts: held-out images per class (seed 999)."),
    opt: Opts = None,
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the pipeline and of the images drawn."),
    threads: int = typer.Option(2, "--threads", help="torch threads for training parts recipes (part of their cache key)."),
    workers: Workers = None,
    batch_size: BatchSize = None,
    device: Device = None,
    out: Path = typer.Option(Path("visum-out/summaries-vs-accuracy"), "--out", help="Folder for the table, JSON, figure and the pipeline runs."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute pipeline stages (trained recipes stay cached)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder (default $VISUM_CACHE_DIR or ~/.cache/visum)."),
    quiet: Quiet = False,
    components: dict | None = None,
) -> None:
    """Sec. 4.3 / Table 3: held-out accuracy and mean kept summaries per class of several models, Spearman's rho."""
    from visum.cache import Cache
    from visum.experiments.models import ladder_refs, parse_model_ref
    from visum.experiments.report import accuracy_figure, accuracy_markdown, write_json
    from visum.experiments.run import summaries_vs_accuracy

    base = _base_config(components, opt, seed, workers, batch_size, device, config)
    refs = [parse_model_ref(m) for m in model] if model else ladder_refs(ladder)
    cache = Cache(cache_dir, enabled=not no_cache)
    report = summaries_vs_accuracy(
        refs, base, out, images_per_class=images_per_class, pool_per_class=pool_per_class,
        held_out_per_class=held_out_per_class, images=images, held_out=held_out, cache=cache,
        reporter=TqdmReporter(quiet), threads=threads, progress=not quiet, models_root=Cache(cache_dir).root,
    )
    text = accuracy_markdown(report)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic((out / "summaries-vs-accuracy.md"), text + "\n")
    write_json(report.to_json(), out / "summaries-vs-accuracy.json")
    figure = accuracy_figure(report, out / "summaries-vs-accuracy.png")
    typer.echo(text)
    typer.echo(f"table: {(out / 'summaries-vs-accuracy.md').resolve()}\nfigure: {figure.resolve()}")


@experiment_app.command("specialise")
@with_component_flags
def specialise_cmd(
    model: list[str] = typer.Option(["parts", "parts:w8-e2-n400", "parts:w8-e3-n400"], "--model", help=_MODEL_HELP),
    images: Path | None = typer.Option(None, "--images", help="Non-parts models: folder of class subfolders, split into train/validation/test."),
    fractions: str = typer.Option("0.4,0.2,0.4", "--fractions", help="Non-parts models: train,validation,test shares of each class."),
    train_per_class: int = typer.Option(40, "--train-per-class", min=2, help="Parts: images per class the summaries and SVMs are made from."),
    validation_per_class: int = typer.Option(200, "--validation-per-class", min=1, help="Parts: images per class choosing lambda."),
    test_per_class: int = typer.Option(400, "--test-per-class", min=1, help="Parts: images per class for the reported accuracy."),
    svm_c: float = typer.Option(1.0, "--svm-c", min=0.0, help="C of every linear SVM."),
    steps: int = typer.Option(21, "--steps", min=2, help="Grid of lambda in [0, 1]."),
    opt: Opts = None,
    config: Path | None = typer.Option(None, "--config", help=_CONFIG_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the pipeline, the images/splits and the SVMs."),
    threads: int = typer.Option(2, "--threads", help="torch threads for training parts recipes."),
    workers: Workers = None,
    batch_size: BatchSize = None,
    device: Device = None,
    out: Path = typer.Option(Path("visum-out/specialise"), "--out", help="Folder for the table, JSON and the pipeline runs."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute pipeline stages (trained recipes stay cached)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder."),
    quiet: Quiet = False,
    components: dict | None = None,
) -> None:
    """Sec. 4.4: a linear SVM per summary, combined with the softmax; accuracy before and after on held-out images."""
    from dataclasses import asdict

    from visum.cache import Cache
    from visum.errors import ConfigError
    from visum.experiments.models import parse_model_ref
    from visum.experiments.report import specialise_markdown, write_json
    from visum.experiments.run import specialise

    try:
        shares = tuple(float(v) for v in fractions.split(","))
    except ValueError:
        raise ConfigError(f"bad --fractions {fractions!r}: expected three numbers, e.g. 0.4,0.2,0.4") from None
    base = _base_config(components, opt, seed, workers, batch_size, device, config)
    cache = Cache(cache_dir, enabled=not no_cache)
    reporter = TqdmReporter(quiet)
    results = []
    for text in model:
        ref = parse_model_ref(text)
        reporter.info(f"model {ref.label}")
        results.append(specialise(
            ref, base, out, train_per_class=train_per_class, validation_per_class=validation_per_class,
            test_per_class=test_per_class, images=images, fractions=shares, C=svm_c, steps=steps, cache=cache,
            reporter=reporter, threads=threads, progress=not quiet, models_root=Cache(cache_dir).root,
        ))
    text = specialise_markdown(results)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic((out / "specialise.md"), text + "\n")
    write_json({"results": [asdict(r) for r in results], "seed": base.seed, "components":
                {k: base.component(k) for k in KINDS},
                "options": base.options}, out / "specialise.json")
    typer.echo(text)
    typer.echo(f"table: {(out / 'specialise.md').resolve()}")
