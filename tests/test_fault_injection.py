"""A run killed at any moment loses at most the work in flight, and the rerun ends with the manifest an
uninterrupted run gives (issue 17)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import manifest_without_timings


@pytest.fixture(scope="module")
def five_images(parts_folder, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("five")
    for p in sorted(parts_folder.glob("*.png"))[:5]:
        shutil.copy(p, folder / p.name)
    return folder


def visum(*args) -> list[str]:
    return [sys.executable, "-m", "visum.cli", *map(str, args)]


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
