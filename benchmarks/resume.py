"""What a kill costs in the middle of a saliency batch (issue 17, resume): crisp with its defaults on one
default batch (16 parts-benchmark images, the parts CNN), checkpointed every $VISUM_CHECKPOINT_SECONDS.

    python benchmarks/resume.py --images 16 --kills 0.35,0.75

1. An uninterrupted ``visum masks --saliency crisp`` run: its time ``T``, and the checkpoints it
   saved, watched from outside (the gaps between two saves, the size of one).
2. The same run with every mask in the cache: ``T0``, what any rerun pays to start and write.
3. For each fraction ``f`` of ``--kills``: a run in a fresh cache killed (SIGKILL) at ``f T``,
   then rerun to the end (``R``). The work the kill lost is what was computed after the last
   checkpoint the killed run saved (seen from outside); ``f T + R - T - T0`` is what the two
   runs spent beyond one uninterrupted run and one restart (the lost work plus this machine's
   noise). The masks must be the uninterrupted run's, byte for byte.

Run it alone: a second heavy job on 2 cores makes every time meaningless.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def visum(*args) -> list[str]:
    return [sys.executable, "-m", "visum.cli", *map(str, args)]


def masks_run(images: Path, out: Path, cache: Path, kill_at: float | None = None,
              watch: list[tuple[float, int]] | None = None) -> tuple[float, int]:
    """Run ``visum masks``; kill it at ``kill_at`` seconds if given; record (time, bytes) of each checkpoint seen."""
    cmd = visum("masks", "--saliency", "crisp", "--images", images, "--seed", 0, "-q", "--out", out,
                "--cache-dir", cache)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = None
    while proc.poll() is None:
        now = time.monotonic() - started
        if kill_at is not None and now >= kill_at:
            proc.send_signal(signal.SIGKILL)
            break
        if watch is not None:
            for p in (cache / "saliency-checkpoint").glob("*/*.vcache"):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                if st.st_mtime_ns != last:
                    last = st.st_mtime_ns
                    watch.append((now, st.st_size))
        time.sleep(0.02)
    code = proc.wait()
    if kill_at is None and code != 0:
        raise SystemExit(f"visum masks failed: {proc.stderr.read().decode()[-2000:]}")
    return time.monotonic() - started, code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16, help="parts-benchmark images (16 = one default batch)")
    ap.add_argument("--kills", default="0.35,0.75", help="moments of the kills, as fractions of the whole run")
    args = ap.parse_args()
    from visum.data.parts import make_dataset, write_dataset
    from visum.pipeline import checkpoint_seconds

    with tempfile.TemporaryDirectory(prefix="visum-resume-") as tmp:
        tmp = Path(tmp)
        write_dataset(make_dataset(args.images, seed=4242, labels=[0]), tmp / "images")
        saves: list[tuple[float, int]] = []
        whole, _ = masks_run(tmp / "images", tmp / "ref", tmp / "c0", watch=saves)
        restart, _ = masks_run(tmp / "images", tmp / "again", tmp / "c0")
        reference = [np.load(p) for p in sorted((tmp / "ref" / "masks").glob("*.npy"))]
        gaps = np.diff([0.0] + [t for t, _ in saves])
        print(f"{args.images} images, crisp defaults, checkpoint every {checkpoint_seconds():g} s "
              f"(VISUM_CHECKPOINT_SECONDS), torch threads {os.environ.get('OMP_NUM_THREADS', 'all')}")
        print(f"uninterrupted: T = {whole:.1f} s; restart with every mask cached: T0 = {restart:.1f} s")
        print(f"checkpoints seen: {len(saves)}, gap between two: median {np.median(gaps):.1f} s, "
              f"longest {gaps.max():.1f} s (the first from the start), one of {max(b for _, b in saves) / 1e6:.1f} MB")
        print("| kill at | last checkpoint before it | lost (kill - checkpoint) | rerun R | f T + R - T - T0 | masks equal |")
        print("|---|---|---|---|---|---|")
        for i, f in enumerate(float(v) for v in args.kills.split(",")):
            cache = tmp / f"c{i + 1}"
            seen: list[tuple[float, int]] = []
            masks_run(tmp / "images", tmp / f"k{i}", cache, kill_at=f * whole, watch=seen)
            last = max((t for t, _ in seen), default=0.0)
            rerun, _ = masks_run(tmp / "images", tmp / f"k{i}", cache)
            got = [np.load(p) for p in sorted((tmp / f"k{i}" / "masks").glob("*.npy"))]
            same = len(got) == len(reference) and all(np.array_equal(a, b) for a, b in zip(got, reference))
            lost = f * whole + rerun - whole - restart
            print(f"| {f * whole:.1f} s ({f:.0%}) | {last:.1f} s | {f * whole - last:.1f} s | {rerun:.1f} s | {lost:.1f} s "
                  f"| {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
