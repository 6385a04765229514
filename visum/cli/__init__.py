"""The ``visum`` command line (typer). Printing and progress bars live here, nowhere else.

The app, its shared helpers and ``main`` are here; each command group is a module of this
package (:mod:`.run`, :mod:`.evaluate`, :mod:`.parts`, ...) imported at the end for its
``@app.command`` side effects.

Every user-caused error ends the command with one line ``visum: error: ...`` on stderr and
exit status 2.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

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

    def warn(self, message: str) -> None:
        """Shown even when quiet: a result the run cannot vouch for."""
        typer.echo(f"visum: warning: {message}", err=True)


# The flags of the commands that run the pipeline; the component flags come from KIND_TABLE (with_component_flags)
Opts = Annotated[list[str] | None, typer.Option("--opt", help="Plugin option KIND.KEY=VALUE, repeatable.")]
Workers = Annotated[int | None, typer.Option("--workers", help="Processes for all-pairs matching.")]
BatchSize = Annotated[int | None, typer.Option("--batch-size")]
Device = Annotated[str | None, typer.Option("--device")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


# The model flags every command that loads a model shares, declared once: `with_model_flags` adds
# them to a command, which receives them parsed as one `model_flags` dict (ModelConfig's keys).
_MODEL_OPTIONS: dict[str, Any] = {
    "weights": (str | None, typer.Option("--weights", help="torchvision weights enum name (e.g. IMAGENET1K_V1), a state-dict or .safetensors file, or 'random'.")),
    "classes": (Path | None, typer.Option("--classes", help="File of class names, one a line, so that --target accepts names.")),
    "input_size": (int | None, typer.Option("--input-size", help="Preprocessing: side of the square the model sees, pixels.")),
    "crop_ratio": (float | None, typer.Option("--crop-ratio", help="Preprocessing: share of the resized (short) side kept by the centre crop; 1 with --resize squash feeds the whole image, 0.875 is ImageNet's.")),
    "resize": (str | None, typer.Option("--resize", help="Preprocessing: 'short-side' (aspect kept) or 'squash' (whole image to a square).")),
    "interpolation": (str | None, typer.Option("--interpolation", help="Preprocessing: bilinear, bicubic or nearest.")),
    "mean": (str | None, typer.Option("--mean", help="Preprocessing: normalisation mean, 'r,g,b' in 0..1 units.")),
    "std": (str | None, typer.Option("--std", help="Preprocessing: normalisation std, 'r,g,b' in 0..1 units.")),
}
MODEL_FLAGS = tuple(_MODEL_OPTIONS)


def _with_flags(command, into: str, flags: dict[str, Any], gather):
    """``command`` with the keyword flags ``flags`` (name -> ``Annotated[type, typer.Option]``) added to
    its signature; the wrapper hands ``gather({name: value})`` to the command's own ``into`` parameter.
    String annotations (``from __future__ import annotations``) are resolved first, so typer sees the
    ``Annotated`` options of the command's own parameters too."""
    import functools
    import inspect

    signature = inspect.signature(command)
    hints = typing.get_type_hints(command, include_extras=True)
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in signature.parameters.values() if p.name != into]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
             for name, annotation in flags.items()]

    @functools.wraps(command)
    def wrapper(**kwargs):
        given = {name: kwargs.pop(name, None) for name in flags}
        return command(**kwargs, **{into: gather(given)})

    wrapper.__signature__ = signature.replace(parameters=own + added)
    wrapper.__annotations__ = {p.name: p.annotation for p in own + added}
    return wrapper


def with_model_flags(command):
    """Give a typer command the shared model flags; it receives them as ``model_flags`` (a dict of
    configuration values, ``--mean``/``--std`` parsed), in place of its own ``model_flags`` parameter."""
    def parsed(given: dict[str, Any]) -> dict[str, Any]:
        given["mean"], given["std"] = _triple(given["mean"], "--mean"), _triple(given["std"], "--std")
        return given

    return _with_flags(command, "model_flags",
                       {name: Annotated[kind, option] for name, (kind, option) in _MODEL_OPTIONS.items()}, parsed)


def with_component_flags(command=None, *, role: str = ""):
    """Give a typer command one flag per component kind (``--saliency``, ``--proposer``, ... from
    :data:`visum.components.KIND_TABLE`); it receives them as ``components`` (kind -> name or
    ``None``), in place of its own ``components`` parameter. ``role`` prefixes the help ("Base")."""
    from visum.components import KIND_TABLE

    flags = {
        k.kind: Annotated[str | None, typer.Option(
            f"--{k.kind}", help=f"{role + ' ' + k.kind if role else k.kind.capitalize()} plugin: {k.stage} "
                                f"(default {k.default}; see `visum plugins --kind {k.kind}`).")]
        for k in KIND_TABLE
    }

    def decorate(command):
        return _with_flags(command, "components", flags, dict)

    return decorate(command) if command is not None else decorate


def _config_from_flags(config_file: Path | None, flags: dict[str, Any], opts: list[str]):
    from visum.config import RunConfig, load_config, make_config, parse_opt

    base = load_config(config_file) if config_file else RunConfig()
    data = base.model_dump(mode="python")
    model_keys = {"model": "spec", **{k: k for k in MODEL_FLAGS}}
    for flag, value in flags.items():
        if value is None:
            continue
        if flag in model_keys:
            data["model"][model_keys[flag]] = value
        elif "." in flag:  # a section's field, e.g. pruning.pairs
            section, key = flag.split(".", 1)
            data[section][key] = value
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
    from visum.allocator import steady_allocator

    steady_allocator()  # long torch loops: no mmap/munmap at every step (visum.allocator)
    try:
        app(args=argv, prog_name="visum")
    except SystemExit as exc:  # typer ends every command this way
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except VisumError as exc:
        typer.echo(f"visum: error: {exc}", err=True)
        return 2
    except OSError as exc:  # the machine, not visum: a full disk, a folder that cannot be written
        name = exc.filename2 or exc.filename  # os.replace(tmp, dst): dst is the one the user named
        where = f"{name}: " if name else ""
        typer.echo(f"visum: error: {where}{exc.strerror or exc}", err=True)
        return 2
    except KeyboardInterrupt:
        code = INTERRUPTED
    else:
        code = 0
    if code == INTERRUPTED:
        typer.echo("visum: interrupted; finished stages are cached, run again to resume", err=True)
    return code


# command modules register themselves on the apps above
from visum.cli import evaluate, parts, run  # noqa: F401
from visum.cli import experiment  # noqa: E402,F401
from visum.cli import simonyan  # noqa: E402,F401
from visum.cli import ablate  # noqa: E402,F401
from visum.cli import worlds  # noqa: E402,F401
from visum.cli import benchmark  # noqa: E402,F401
from visum.cli import sweep  # noqa: E402,F401
