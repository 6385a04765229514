"""``visum evaluate ...``: the paper's evaluations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from visum.cli import (
    TqdmReporter,
    with_model_flags,
    _config_from_flags,
    evaluate_app,
)
from visum.errors import ConfigError

DEFAULT_DELETION_METHODS = (
    "iebb,iebb-thresh,crisp,gradient,gradient-thresh,integrated-gradients-thresh,gradcam-thresh,"
    "occlusion-thresh,guided-backprop-thresh,smoothgrad-thresh"
)


@evaluate_app.command("deletion")
@with_model_flags
def evaluate_deletion_cmd(
    images: Path | None = typer.Option(None, "--images", help="Folder of images. Default: the parts benchmark."),
    model: str | None = typer.Option(None, "--model", help="Model specification, as for `visum run`."),
    target: str | None = typer.Option(None, "--target", help="A class for every image, 'predicted' (each image's top-1) or 'filename' (the integer ending each file name)."),
    methods: str = typer.Option(DEFAULT_DELETION_METHODS, "--methods", help="Comma-separated saliency plugins; NAME-thresh = NAME's mask binarised at the reference's area, per image."),
    reference: str = typer.Option("crisp", "--reference", help="Method whose per-image area the -thresh variants match."),
    steps: int = typer.Option(20, "--steps", help="Points of the deletion/insertion curves."),
    opt: list[str] = typer.Option([], "--opt", help="Saliency options saliency.KEY=VALUE (applied to every method that has the option)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per batch."),
    device: str | None = typer.Option(None, "--device", help="torch device."),
    out: Path = typer.Option(Path("visum-out/deletion"), "--out", help="Folder for deletion.md, deletion.json and curves.png."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute masks."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    model_flags: dict | None = None,
) -> None:
    """Sec. 4.1 / Table 2: relative drop of the target's probability when each method's mask is blurred away."""
    from visum.cache import Cache
    from visum.evaluate.report import write_deletion_report
    from visum.evaluate.table2 import evaluate_deletion

    flags = dict(images=images, model=model, target=target, seed=seed, batch_size=batch_size,
                 **model_flags,
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


@evaluate_app.command("summaries")
def evaluate_summaries_cmd(
    run_dir: Annotated[Path, typer.Argument(help="Output folder of `visum run` on parts-benchmark images.")],
    share: Annotated[float, typer.Option("--share", help="A box shows a part when the part fills this share of the box or this share of the part lies in the box.")] = 0.5,
    min_purity: Annotated[float, typer.Option("--min-purity", help="A part is recovered when it is the majority of a kept summary at least this pure.")] = 0.5,
    draws: Annotated[int, typer.Option("--draws", help="Random draws of images per summary for mu_R.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random draws of mu_R.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Score a run's summaries against the parts benchmark's ground truth: purity, parts recovered, NMI, mu_S vs mu_R."""
    import json

    from visum.evaluate.summaries import evaluate_run

    if not 0 < share <= 1:
        raise ConfigError(f"bad --share {share}: expected a share in (0, 1]")
    scores = evaluate_run(run_dir, share=share, min_purity=min_purity, draws=draws, seed=seed)
    if as_json:
        typer.echo(json.dumps(scores.as_dict(), indent=1))
    else:
        typer.echo(scores.markdown(), nl=False)
