"""Saliency masks batch by batch: in this process, or each batch a Ray task (``--engine ray``).

A batch is ``[B, 3, S, S]`` pixels and ``B`` targets; its masks are ``[B, S, S]`` in [0, 1]
(:func:`visum.checks.saliency`). Every batch starts from the run's seed, so a mask depends on
its batch, never on which batch ran before it or where. A method that takes a
:class:`~visum.saliency_opt.Checkpoint` saves its state in flight to the cache
(``saliency-checkpoint``) and picks it up after a kill; on Ray the worker saves it to the same
cache folder (one file system shared by the machines), so a batch whose worker died is picked up
by the next. The caller stores the masks and only then deletes the checkpoint
(:func:`finish_batch`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from visum import checks
from visum.cache import Cache
from visum.errors import VisumError
from visum.plugins import ComponentInfo
from visum.saliency_opt import Checkpoint

__all__ = ["CHECKPOINT_STAGE", "BatchMasks", "SaliencyJob", "batch_masks", "finish_batch", "masks_on_ray",
           "seed_everything"]

CHECKPOINT_STAGE = "saliency-checkpoint"
RAY_RETRIES = 3  # a batch whose worker dies is run again this many times (from its checkpoint)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class SaliencyJob:
    """What every batch needs: the method, the network, where it runs, the seed, where checkpoints go.

    ``checkpoints``: the cache that holds states in flight, or ``None`` (no checkpoint: the
    method takes none, the cache is off, or ``$VISUM_CHECKPOINT_SECONDS`` is 0)."""

    info: ComponentInfo
    component: Any
    module: torch.nn.Module
    preprocessing: Any  # visum.models.base.Preprocessing: pixels [H, W, 3] uint8 -> the network's input
    device: str
    seed: int
    checkpoints: Cache | None = None
    interval: float = 5.0


@dataclass
class BatchMasks:
    """One batch's masks ``[S, S]`` (in the batch's order) and what the caller should say about it."""

    masks: list[np.ndarray]
    key: str
    checkpointed: bool = False  # a checkpoint may be in the cache: delete it once the masks are stored
    rejected: str | None = None  # a saved state did not fit: why (its work was done again)
    notes: list[tuple[str, str]] = field(default_factory=list)  # ("info" | "warn", line), in order


def _checkpoint(job: SaliencyJob, key: str, notes: list[tuple[str, str]]) -> Checkpoint | None:
    cache = job.checkpoints
    if cache is None:
        return None
    state = cache.get(CHECKPOINT_STAGE, key, _a_dict)
    if state is not None:
        notes.append(("info", f"saliency ({job.info.name}): picking a batch up where a stopped run left it "
                              f"({_where(state)})"))
    return Checkpoint(state=state, save=lambda st: cache.put(CHECKPOINT_STAGE, key, st), interval=job.interval)


Batch = tuple[Sequence[np.ndarray], Sequence[int], str]  # (B images [H, W, 3] uint8, B targets, checkpoint key)


def batch_masks(job: SaliencyJob, pixels: Sequence[np.ndarray], targets: Sequence[int], key: str,
                say: Callable[[str, str], None] | None = None) -> BatchMasks:
    """The masks of one batch (``pixels``: B images, preprocessed to ``[B, 3, S, S]``) for ``targets``
    (B ints); ``key`` names its checkpoint. ``say(level, line)`` hears the notes as they happen;
    without it they are kept in the result.

    A saved state that passes every check and still breaks the method is deleted and the batch
    computed afresh, with a warning."""
    out = BatchMasks([], key, checkpointed=job.checkpoints is not None)
    if say is not None:
        out.notes = _Said(say)
    x = job.preprocessing.to_tensor(list(pixels)).to(job.device)
    t = torch.tensor(list(targets), dtype=torch.long, device=x.device)
    seed_everything(job.seed)
    checkpoint = _checkpoint(job, key, out.notes)
    try:
        computed = checks.saliency(job.info, job.component, job.module, x, t, checkpoint)
    except VisumError:
        if checkpoint is None or checkpoint.state is None:
            raise
        assert job.checkpoints is not None
        job.checkpoints.delete(CHECKPOINT_STAGE, key)
        out.notes.append(("warn", f"a {job.info.name} batch failed from its saved state; computing it afresh"))
        seed_everything(job.seed)
        checkpoint = _checkpoint(job, key, out.notes)
        computed = checks.saliency(job.info, job.component, job.module, x, t, checkpoint)
    out.masks = list(computed)
    out.rejected = checkpoint.rejected if checkpoint is not None else None
    return out


class _Said(list):
    """Notes passed on as they are appended, not kept."""

    def __init__(self, say: Callable[[str, str], None]) -> None:
        super().__init__()
        self._say = say

    def append(self, note: tuple[str, str]) -> None:
        self._say(*note)


def finish_batch(job: SaliencyJob, done: BatchMasks) -> list[tuple[str, str]]:
    """After the batch's masks are stored: delete its checkpoint; the lines to say, in order."""
    notes = list(done.notes)
    if done.checkpointed and job.checkpoints is not None:
        job.checkpoints.delete(CHECKPOINT_STAGE, done.key)
    if done.rejected:
        notes.append(("warn", f"the saved state of a {job.info.name} batch did not fit ({done.rejected}); "
                              "the work it held was done again"))
    return notes


def _ray_batch(job: SaliencyJob, threads: int, pixels: list[np.ndarray], targets: list[int], key: str) -> BatchMasks:
    """A Ray task: one batch with ``threads`` torch threads; the cache's warnings come back as notes."""
    torch.set_num_threads(threads)
    notes: list[tuple[str, str]] = []
    if job.checkpoints is not None:
        job.checkpoints.warn = lambda line: notes.append(("warn", line))
    done = batch_masks(job, pixels, targets, key)
    done.notes[:0] = notes
    return done


def masks_on_ray(job: SaliencyJob, batches: Iterable[Batch], *, address: str | None = None, threads: int = 1,
                 say: Callable[[str], None] = lambda line: None) -> Iterator[tuple[int, BatchMasks]]:
    """``(position, masks)`` of each batch, as its Ray task asking for ``threads`` CPUs (capped at the cluster's largest node),
    yielded as it finishes; the job (network included) goes to the object store once, and no more
    batches are in flight than twice the tasks the cluster can run at once. A worker that dies is
    replaced and its batch run again from its checkpoint."""
    from visum.engines import ray_result, ray_session

    with ray_session(address) as ray:
        per_node = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        cpus = max(1, min(threads, int(max(per_node, default=1))))
        window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)) // cpus)
        say(f"ray: saliency batches as tasks of {cpus} CPUs")
        shipped = replace(job, checkpoints=None if job.checkpoints is None
                          else Cache(job.checkpoints.root.resolve(), enabled=job.checkpoints.enabled))
        job_ref = ray.put(shipped)
        gpus = 1 if str(job.device).startswith("cuda") else 0
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RAY_RETRIES)(_ray_batch)
        queue = enumerate(batches)
        pending: list[Any] = []
        position: dict[Any, int] = {}
        try:
            while True:
                for i, (pixels, targets, key) in islice(queue, window - len(pending)):
                    ref = task.remote(job_ref, cpus, list(pixels), list(targets), key)
                    position[ref] = i
                    pending.append(ref)
                if not pending:
                    return
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    yield position.pop(ref), ray_result(ray, ref, f"a {job.info.name} saliency batch")
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def _a_dict(value: Any) -> None:
    """A saved checkpoint is a dict; :func:`visum.saliency_opt.optimise_mask` checks the rest before using it."""
    if not isinstance(value, dict):
        raise TypeError(f"a checkpoint is a dict, found a {type(value).__name__}")


def _where(state: dict) -> str:
    """Where a saved mask optimisation stood, for the log (the state is checked later, not here)."""
    try:
        inner = state["inner"] if "inner" in state else state
        return f"round {int(state.get('round', 0)) + 1}, phase {int(inner['phase']) + 1}, step {int(inner['step'])}"
    except Exception:  # noqa: BLE001 - only a log line; the state is checked where it is used
        return "a saved state"
