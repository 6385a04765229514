"""``visum sweep``: classes x models x saliency methods, each cell one run (:mod:`visum.sweep`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from visum.cli import TqdmReporter, app
from visum.errors import OutputError

#: what a sweep writes at the top of its folder; a folder holding anything else is refused
SWEEP_FILES = frozenset({"cells", "index.html", "sweep.json", "sweep.toml", "plots"})


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="The sweep file (TOML): models, saliency, classes or image_folder, [run]."),
    out: Path = typer.Option(..., "--out", help="The sweep's folder: cells/, index.html, sweep.json. Rerun with the "
                                                "same folder to go on where a stopped sweep stopped."),
    engine: str = typer.Option("local", "--engine", help="local (cells one after another) or ray (cells as Ray tasks; "
                                                         "pip install \"visum[ray]\")."),
    address: str | None = typer.Option(None, "--address", help="--engine ray: a running Ray cluster (default: start "
                                                               "a local Ray with this machine's cores)."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder shared by every cell (default "
                                                                    "$VISUM_CACHE_DIR or ~/.cache/visum)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run every cell of a sweep (skipping finished ones) and write its report: index.html links each cell's run,
    with a table and a plot per model of accuracy and kept summaries per class (paper Sec. 4.3)."""
    from visum.engines import check_engine, run_cells
    from visum.report.sweep import write_sweep_report
    from visum.sweep import cells_of, load_sweep

    check_engine(engine)
    spec, base = load_sweep(sweep_file)
    cells = cells_of(spec, base)  # every cell's configuration checked before any work
    _check_sweep_out(out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "sweep.toml").exists() or not (out / "sweep.toml").samefile(sweep_file):
        shutil.copyfile(sweep_file, out / "sweep.toml")  # what the sweep ran; `visum sweep OUT/sweep.toml` reruns it
    reporter = TqdmReporter(quiet)
    with reporter.bar(len(cells), f"sweep ({engine})") as bar:
        records = run_cells(cells, out, engine=engine, address=address,
                            cache_dir=None if cache_dir is None else str(cache_dir), cpus_per_cell=spec.cpus_per_cell,
                            progress=bar.update, say=reporter.info)
    index = write_sweep_report(records, out)
    failed = [r for r in records if r.error is not None]
    for r in failed:
        typer.echo(f"visum: error: cell {r.name}: {r.error}", err=True)
    reporter.info(f"{len(records) - len(failed)} of {len(records)} cells done")
    typer.echo(f"report: {index.resolve()}")
    if failed:
        raise typer.Exit(2)


def _check_sweep_out(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder holding anything a sweep does not write."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in SWEEP_FILES)
        if foreign:
            raise OutputError(f"--out {out} holds files a sweep did not write ({', '.join(foreign[:3])}): "
                              "choose a new folder, or the folder of the same sweep to go on")
