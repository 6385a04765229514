"""A run killed at any moment loses at most the work in flight, and the rerun ends with the manifest an
uninterrupted run gives (issue 17)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import manifest_without_timings, visum_command as visum


@pytest.fixture(scope="module")
def five_images(parts_folder, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("five")
    for p in sorted(parts_folder.glob("*.png"))[:5]:
        shutil.copy(p, folder / p.name)
    return folder


def test_sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_manifest(five_images, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["run", "--saliency", "gradient", "--images", five_images, "--seed", "3", "-q"]
    started = time.monotonic()
    ref = subprocess.run(visum(*common, "--out", tmp_path / "ref", "--no-cache", "--cache-dir", tmp_path / "c0"),
                         env=env, capture_output=True, text=True, timeout=600)
    whole = time.monotonic() - started
    assert ref.returncode == 0, ref.stderr
    reference = manifest_without_timings(tmp_path / "ref")

    out, cache = tmp_path / "o", tmp_path / "c1"

    def entries(stage: str) -> int:
        return sum(1 for p in (cache / stage).glob("*/*.vcache")) if (cache / stage).is_dir() else 0

    # kill when the run is inside a stage (entries of that stage appearing), then at seeded random moments
    moments = [("describe", 2), ("match", 3)] + [("time", random.Random(17).uniform(0.2, 1.0) * whole)
                                                 for _ in range(2)]
    killed = 0
    for what, when in moments:
        proc = subprocess.Popen(visum(*common, "--out", out, "--cache-dir", cache), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started = time.monotonic()
        while proc.poll() is None and time.monotonic() - started < 300:
            if (what == "time" and time.monotonic() - started >= when) or (what != "time" and entries(what) >= when):
                proc.send_signal(signal.SIGKILL)
                killed += 1
                break
            time.sleep(0.01)
        proc.wait()
        # --out is never half-written: absent, or a whole run
        assert not out.exists() or manifest_without_timings(out) == reference
    assert killed >= 2, moments
    done = subprocess.run(visum(*common, "--out", out, "--cache-dir", cache), env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert manifest_without_timings(out) == reference


def test_sigkill_inside_a_crisp_batch_then_rerun_picks_it_up_and_gives_the_same_masks(parts_folder, tmp_path):
    """A saliency batch is checkpointed every $VISUM_CHECKPOINT_SECONDS: a kill in the middle of one loses
    seconds, not the batch, and the masks are the uninterrupted run's, byte for byte."""
    import numpy as np

    images = tmp_path / "two"
    images.mkdir()
    for p in sorted(parts_folder.glob("*.png"))[:2]:
        shutil.copy(p, images / p.name)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VISUM_CHECKPOINT_SECONDS": "0.5"}
    common = ["masks", "--saliency", "crisp", "--images", images, "--seed", "5"]
    ref = subprocess.run(visum(*common, "-q", "--out", tmp_path / "ref", "--cache-dir", tmp_path / "c0"),
                         env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr

    cache = tmp_path / "c1"
    saved = cache / "saliency-checkpoint"
    proc = subprocess.Popen(visum(*common, "-q", "--out", tmp_path / "o", "--cache-dir", cache), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started, seen = time.monotonic(), 0.0
    while proc.poll() is None and time.monotonic() - started < 300:
        if saved.is_dir() and any(saved.glob("*/*.vcache")):
            seen = seen or time.monotonic()
            if time.monotonic() - seen > 3.0:  # a few checkpoints into the batch
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "o").exists()

    done = subprocess.run(visum(*common, "--out", tmp_path / "o", "--cache-dir", cache), env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "picking a batch up where a stopped run left it (round " in done.stderr, done.stderr
    assert manifest_without_timings(tmp_path / "o") == manifest_without_timings(tmp_path / "ref")
    ours, theirs = sorted((tmp_path / "o" / "masks").glob("*.npy")), sorted((tmp_path / "ref" / "masks").glob("*.npy"))
    assert [p.name for p in ours] == [p.name for p in theirs] and len(ours) == 2
    for a, b in zip(ours, theirs):
        assert np.array_equal(np.load(a), np.load(b))
    assert not any(saved.glob("*/*.vcache")), "the finished batch's checkpoint is left behind"
