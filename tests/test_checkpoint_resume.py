"""A mask optimisation killed in flight picks up from its last checkpoint and ends with the mask an
uninterrupted run gives, bit for bit (visum.saliency_opt.Checkpoint; issue 17's resume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visum.cache_codec import decode, encode
from visum.saliency_opt import Checkpoint, Phase, optimise_mask, successive_masks


class Killed(Exception):
    pass


def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 4),
    )
    return net.eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(3, 3, 32, 32, generator=g), torch.tensor([0, 1, 2])


# no area weight: on this untrained net any weight keeps the masks empty, and empty masks end the rounds
SCHEDULE = (Phase(iterations=12, l1=0.0, l2=0.1), Phase(iterations=9, l1=0.0, l2=0.25, l3=2.0, full_resolution=True,
                                                      jitter=1, score_blur=1.0, adam_beta2=0.9))


def run(fn, checkpoint=None, **kw) -> torch.Tensor:
    model, (x, t) = small_net(), inputs()
    return fn(model, x, t, SCHEDULE, downsample=4, mask_blur=2.0, jitter=1, checkpoint=checkpoint, **kw)


def killed_after(fn, saves: int, state=None, **kw) -> dict:
    """Run with a checkpoint every step and 'kill' the run at its ``saves``-th save; the states go through
    the cache's file format, as they would on disk."""
    stored: list[dict] = []

    def save(s: dict) -> None:
        stored.append(decode(encode(s)))
        if len(stored) == saves:
            raise Killed

    with pytest.raises(Killed):
        run(fn, Checkpoint(state=state, save=save, interval=0.0), **kw)
    return stored[-1]


@pytest.mark.parametrize("stop_tolerance", [0.0, 0.3])
def test_optimise_mask_resumed_at_any_step_equals_the_uninterrupted_mask(stop_tolerance):
    every: list[dict] = []
    reference = run(optimise_mask, Checkpoint(save=every.append, interval=0.0), stop_tolerance=stop_tolerance,
                    stop_patience=4)
    assert torch.equal(reference, run(optimise_mask, stop_tolerance=stop_tolerance, stop_patience=4))  # saving changes nothing
    if stop_tolerance:
        assert min(len(st["live"]) for st in every) < 3  # some image settled and left the batch
    n = len(every)
    for saves in sorted({1, 5, 12, 13, n}):  # in the grid phase, at the phase change, in the pixel phase, the last step
        state = killed_after(optimise_mask, saves, stop_tolerance=stop_tolerance, stop_patience=4)
        resumed = Checkpoint(state=state)
        s = run(optimise_mask, resumed, stop_tolerance=stop_tolerance, stop_patience=4)
        assert resumed.rejected is None
        assert torch.equal(s, reference), saves


def test_successive_masks_resumed_in_any_round_and_after_a_second_kill_equals_the_uninterrupted_mask():
    kw = dict(rounds=3, min_drop=0.0, margin=1)
    stats: dict = {}
    every: list[dict] = []
    reference = run(successive_masks, Checkpoint(save=every.append, interval=0.0), stats=stats, **kw)
    rounds = [st["round"] for st in every]
    assert rounds.count(1) and int(stats["steps"].max()) > 21  # a second round ran, on some images
    first_of_round_1 = rounds.index(1) + 1
    for saves in (3, first_of_round_1 - 1, first_of_round_1, len(every) - 2):
        state = killed_after(successive_masks, saves, **kw)
        assert state["round"] == rounds[saves - 1]
        again = killed_after(successive_masks, 2, state=state, **kw)  # killed again soon after resuming
        assert (again["round"], again["inner"]["phase"], again["inner"]["step"]) >= \
            (state["round"], state["inner"]["phase"], state["inner"]["step"])
        resumed = Checkpoint(state=again)
        got_stats: dict = {}
        s = run(successive_masks, resumed, stats=got_stats, **kw)
        assert resumed.rejected is None
        assert torch.equal(s, reference), saves
        assert torch.equal(got_stats["steps"], stats["steps"])


@pytest.mark.parametrize("damage", ["shape", "range", "phase", "live", "missing", "round"])
def test_a_state_that_does_not_fit_is_rejected_and_the_run_starts_afresh(damage):
    kw = dict(rounds=2, min_drop=0.0)
    reference = run(successive_masks, **kw)
    state = killed_after(successive_masks, 30, **kw)
    inner = state["inner"]
    if damage == "shape":
        inner["param"] = inner["param"][:, :, :-1]
    elif damage == "range":
        inner["param"] = inner["param"] + 2.0
    elif damage == "phase":
        inner["phase"] = 7
    elif damage == "live":
        inner["live"] = np.array([2, 1])
    elif damage == "missing":
        del inner["adam"]
    else:
        state["round"] = "1"
    resumed = Checkpoint(state=state)
    s = run(successive_masks, resumed, **kw)
    assert resumed.rejected  # said, so the caller can warn
    assert torch.equal(s, reference)


def test_saves_follow_the_clock_not_the_steps():
    ticks = iter(range(10_000))
    saved: list[tuple[int, int]] = []
    cp = Checkpoint(save=lambda s: saved.append((s["phase"], s["step"])), interval=5.0, clock=lambda: float(next(ticks)))
    run(optimise_mask, cp)
    # the clock ticks once per look and once per save: a save every few steps, never two at one step
    assert 3 <= len(saved) <= 21 and len(set(saved)) == len(saved)
