"""All-pairs matching: every unordered pair of images through the matcher, in parallel, cached.

The per-image descriptions are made once in the parent process; worker processes are
forked afterwards so they share them copy-on-write, and each task is just a pair of
indices. A worker returns only the rows and columns of the proposals that lie in regions
(``selected``), so little crosses process boundaries. The parent writes each pair's block
to the cache as it arrives: an interrupted run keeps every finished pair.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from visum import checks
from visum.plugins import ComponentInfo


@dataclass
class MatchJob:
    """What every worker needs: the matcher and each image's description and selection."""

    info: ComponentInfo
    component: Any
    descriptions: Sequence[Any]
    sizes: Sequence[int]  # M_i, proposals described per image
    selected: Sequence[np.ndarray]  # rows of Q_ij kept for image i

    def block(self, pair: tuple[int, int]) -> np.ndarray:
        """``Q_ij`` restricted to the selected proposals of ``i`` (rows) and ``j`` (columns)."""
        i, j = pair
        q = checks.match(self.info, self.component, self.descriptions[i], self.descriptions[j],
                         self.sizes[i], self.sizes[j])
        return np.ascontiguousarray(q[np.ix_(self.selected[i], self.selected[j])])


_JOB: MatchJob | None = None  # set in the parent before forking; read by the workers


def _init_worker() -> None:
    """One BLAS/OpenMP thread per worker: N workers on N cores, no oversubscription."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import torch

    torch.set_num_threads(1)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Matching in this process with one BLAS and one torch thread, as in a worker: a sum split
    over threads rounds differently, so the manifest would depend on ``--workers``."""
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    with threadpool_limits(1):
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)


def _work(pairs: list[tuple[int, int]]) -> list[tuple[tuple[int, int], np.ndarray]]:
    assert _JOB is not None
    return [(pair, _JOB.block(pair)) for pair in pairs]


def resolve_workers(workers: int) -> int:
    """``0`` means every core this process may use."""
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def match_all_pairs(
    job: MatchJob,
    pairs: Sequence[tuple[int, int]],
    *,
    workers: int = 1,
    chunk: int = 8,
    done: Callable[[tuple[int, int], np.ndarray], None] = lambda pair, q: None,
    progress: Callable[[Iterable[Any], int], Iterable[Any]] = lambda it, total: it,
    engine: str = "local",
    address: str | None = None,
) -> dict[tuple[int, int], np.ndarray]:
    """``{(i, j): Q_ij[selected_i][:, selected_j]}`` for every pair; ``done`` sees each as it finishes.

    ``engine="ray"``: the chunks of pairs are Ray tasks (one CPU and one thread each, as a local
    worker), on a local Ray or the cluster at ``address``; the job goes to the object store once.
    Each block is computed the same way on either engine, so the result does not depend on it."""
    global _JOB
    results: dict[tuple[int, int], np.ndarray] = {}
    if not pairs:
        return results
    workers = min(resolve_workers(workers), max(1, len(pairs) // chunk))
    chunks = [list(pairs[k : k + chunk]) for k in range(0, len(pairs), chunk)]
    if engine == "ray":
        for finished in progress(_on_ray(job, chunks, address), len(pairs)):
            pair, q = finished
            results[pair] = q
            done(pair, q)
        return results
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        stream = (_one_chunk(job, c) for c in chunks)
        executor = None
    else:
        _JOB = job
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker)
        stream = executor.map(_work, chunks)
    try:
        with _one_thread() if executor is None else nullcontext():
            for finished in progress(_flatten(stream), len(pairs)):
                pair, q = finished
                results[pair] = q
                done(pair, q)
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)
            _JOB = None
    return results


def _one_chunk(job: MatchJob, pairs: list[tuple[int, int]]):
    return [(pair, job.block(pair)) for pair in pairs]


def _flatten(chunks):
    for chunk in chunks:
        yield from chunk


def _ray_chunk(job: MatchJob, pairs: list[tuple[int, int]]) -> list[tuple[tuple[int, int], np.ndarray]]:
    """A Ray task: one chunk of pairs with one BLAS and one torch thread, as in a local worker."""
    _init_worker()
    return _one_chunk(job, pairs)


def _on_ray(job: MatchJob, chunks: list[list[tuple[int, int]]], address: str | None):
    """Every chunk's blocks as its Ray task finishes (a local Ray started and stopped here, or ``address``'s)."""
    from visum.engines import ray_result, ray_session

    with ray_session(address) as ray:
        job_ref = ray.put(job)
        task = ray.remote(num_cpus=1, max_retries=3)(_ray_chunk)
        pending = [task.remote(job_ref, c) for c in chunks]
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    yield from ray_result(ray, ref, "a chunk of pair matching")
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
