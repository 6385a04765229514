"""Running a sweep's cells: one after another in this process (``local``), or as Ray tasks (``ray``).

Both engines skip a cell whose folder already holds its finished run (:func:`visum.sweep.cell_record`),
run every other cell through :func:`visum.sweep.run_cell` with the same number of torch threads,
and return one :class:`~visum.sweep.CellRecord` per cell in the sweep's order: the same records
and the same cell folders whichever engine ran them.

``ray``: ``ray.init(address)`` — a local Ray with this machine's cores and GPUs when no address
is given (shut down at the end), a running cluster otherwise. Each cell is a task asking for
``cpus_per_cell`` CPUs (and a GPU when the runs use ``cuda``), retried up to
:data:`RAY_RETRIES` times when its worker dies; a cell that fails with an error is recorded with
that error and the others go on. Ray is an optional extra: ``pip install "visum[ray]"``.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal

from visum.errors import ConfigError, EngineError, VisumError

if TYPE_CHECKING:
    from visum.sweep import Cell, CellRecord

__all__ = ["ENGINES", "RAY_RETRIES", "check_engine", "ray_result", "ray_session", "run_cells"]

Engine = Literal["local", "ray"]
ENGINES: tuple[str, ...] = ("local", "ray")
RAY_RETRIES = 3  # a cell whose worker process dies is run again this many times


def run_cells(cells: list[Cell], out: Path, *, engine: str = "local", address: str | None = None,
              cache_dir: str | None = None, cpus_per_cell: int = 1,
              progress: Callable[[int], Any] = lambda n: None, say: Callable[[str], None] = lambda m: None
              ) -> list[CellRecord]:
    """Every cell's record, in order; ``progress(n)`` as cells finish (done cells count at once)."""
    from visum.sweep import CELLS, cell_record, run_cell

    check_engine(engine)
    records: dict[str, CellRecord] = {}
    for cell in cells:
        done = cell_record(cell, Path(out) / CELLS / cell.name)
        if done is not None:
            records[cell.name] = done
    if records:
        say(f"{len(records)} of {len(cells)} cells already done (their runs are in {Path(out) / CELLS})")
        progress(len(records))
    todo = [c for c in cells if c.name not in records]
    if engine == "local":
        for cell in todo:
            records[cell.name] = run_cell(cell, out, cache_dir, cpus_per_cell)
            progress(1)
    elif todo:
        records.update(_on_ray(todo, out, address, cache_dir, cpus_per_cell, progress, say))
    return [records[c.name] for c in cells]


def check_engine(engine: str) -> None:
    """One line naming ``--engine`` when it is not one of :data:`ENGINES`."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")


@contextmanager
def ray_session(address: str | None) -> Iterator[Any]:
    """The ``ray`` module, initialised: a local Ray (shut down on exit) or the cluster at ``address``;
    one ConfigError line when Ray is missing or the cluster cannot be reached."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install \"visum[ray]\" (or use --engine local)") from None
    ours = not ray.is_initialized()
    if ours and address:
        _reachable(address)  # ray.init retries an address where nothing listens for minutes
    if ours:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise ConfigError(f"--engine ray: could not start or reach {where}: {str(exc).splitlines()[0]}") from None
    try:
        yield ray
    finally:
        if ours:
            ray.shutdown()


def ray_result(ray: Any, ref: Any, what: str) -> Any:
    """``ray.get(ref)``: a task's own :class:`~visum.errors.VisumError` raised as itself (one line), any other
    failure of the task or its worker as an :class:`~visum.errors.EngineError` naming ``what``."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, VisumError):
            raise cause from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise EngineError(f"--engine ray: {what} failed ({type(exc).__name__}: {first}); "
                          "what finished is cached, a rerun resumes") from None


def _on_ray(todo: list[Cell], out: Path, address: str | None, cache_dir: str | None, cpus: int,
            progress: Callable[[int], Any], say: Callable[[str], None]) -> dict[str, CellRecord]:
    with ray_session(address) as ray:
        return _cells_on_ray(ray, todo, out, cache_dir, cpus, progress, say)


def _cells_on_ray(ray: Any, todo: list[Cell], out: Path, cache_dir: str | None, cpus: int,
                  progress: Callable[[int], Any], say: Callable[[str], None]) -> dict[str, CellRecord]:
    from visum.sweep import CellRecord, run_cell

    pending: dict[Any, Cell] = {}
    records: dict[str, CellRecord] = {}
    try:
        have = ray.cluster_resources()
        say(f"ray: {len(todo)} cells on {have.get('CPU', 0):g} CPUs, {cpus} per cell")
        gpu_cells = [c for c in todo if c.config.device.startswith("cuda")]
        # a task asking for more than the cluster has waits forever: say so instead
        if cpus > have.get("CPU", 0):
            raise ConfigError(f"cpus_per_cell = {cpus}, but the Ray cluster has {have.get('CPU', 0):g} CPUs")
        if gpu_cells and have.get("GPU", 0) < 1:
            raise ConfigError(f"{len(gpu_cells)} cells run on cuda, but the Ray cluster has no GPU")
        out_dir = str(Path(out).resolve())  # workers may run in another folder, on another machine
        cache = None if cache_dir is None else str(Path(cache_dir).resolve())
        task = ray.remote(num_cpus=cpus, max_retries=RAY_RETRIES)(run_cell)
        on_gpu = {c.name for c in gpu_cells}
        for cell in todo:
            pending[task.options(num_gpus=1 if cell.name in on_gpu else 0).remote(cell, out_dir, cache, cpus)] = cell
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                cell = pending.pop(ref)
                try:
                    records[cell.name] = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died more than RAY_RETRIES times, or the task raised
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                    records[cell.name] = CellRecord(cell.name, cell.model, cell.klass, cell.saliency, cell.key,
                                                    error=f"Ray: {type(exc).__name__}: {first}")
                progress(1)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
    return records


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` address must accept a TCP connection (``auto`` and ``ray://`` addresses are Ray's to find)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or address.startswith("ray://") or not port.isdigit():
        return
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConfigError(f"--engine ray: could not start or reach the Ray cluster at {address}: "
                          f"{exc.strerror or exc}") from None
