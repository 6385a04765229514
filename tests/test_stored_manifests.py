"""`visum run` finds what it found before: manifests stored from an earlier commit, rerun now.

The files in tests/data/manifests were written by commit d2c591f (before the core was split
from its presentation, issue 16), timings removed, with

    visum run --benchmark-images 6 --seed 0 --out OUT                                      # the default pipeline
    visum run --benchmark-images 24 --saliency gradient --seed 0 --out OUT                 # default components
    visum run --benchmark-images 24 --saliency gradient --matcher proposal-flow \
              --clusterer ap --seed 0 --out OUT                                             # the paper's

The default's crisp masks take ~6 s an image on two cores, hence 6 images for it and gradient
saliency for the 24-image runs. A change that is meant to alter what a run finds rewrites these
files in the same commit and says why.

Since those runs, the default merges summaries the model sees as one part
(``summaries.merge = "auto"``, chosen on the dev worlds, docs/benchmark.md); those three are
rerun with the merge settings of then (``UNMERGED``), so they still check that every stage
before the merge finds what it found. ``merged-gradient-24.json`` was stored on 2026-12-03, after merging
became the default, with ``visum run --benchmark-images 24 --saliency gradient --seed 0``
(4 kept summaries, two of them merged from 2 and 4).

Numbers are compared to within 5e-6 (everything else exactly): the same commit finds the same
members, boxes and decisions on any x86_64 CPU, but its float sums round by the SIMD width the
libraries pick (AVX2 or AVX-512): match scores moved in the sixth decimal between two machines
of this project (2026-12-03), every member and box the same. On one machine a run is exact
(tests/test_determinism.py).
"""

import json
from pathlib import Path

import pytest

from conftest import run_cli

STORED = Path(__file__).parent / "data" / "manifests"
RUNS = {
    "default-crisp-6": ["--benchmark-images", 6],
    "default-gradient-24": ["--benchmark-images", 24, "--saliency", "gradient"],
    "paper-gradient-24": ["--benchmark-images", 24, "--saliency", "gradient", "--matcher", "proposal-flow",
                          "--clusterer", "ap"],
    # stored after merging became the default (2026-12-03), with its defaults
    "merged-gradient-24": ["--benchmark-images", 24, "--saliency", "gradient"],
}
#: the runs stored before merging became the default, rerun with the merge settings of then
STORED_UNMERGED = {"default-crisp-6", "default-gradient-24", "paper-gradient-24"}


#: the summaries settings of the stored runs: no merging, and the merge threshold's default of then
UNMERGED = '[summaries]\nmerge = "none"\nmerge_similarity = 0.9\n'
#: config fields added after the manifests were stored (they do nothing when merge = "none")
ADDED_SINCE = {"summaries": ("merge_after", "merge_centre", "merge_apart")}
#: config fields added after every manifest was stored ('auto' pairs = all pairs up to 100 images, as then)
ADDED_SINCE_ALL = {"pruning": ("pairs",)}


TOLERANCE = 5e-6  # five units of the sixth decimal the manifest keeps


def _assert_close(now, stored, where: str = "manifest") -> None:
    """``now == stored`` but for floats, which may differ by :data:`TOLERANCE` (see the module docstring)."""
    if isinstance(stored, float) and isinstance(now, (int, float)) and not isinstance(now, bool):
        assert abs(now - stored) <= TOLERANCE, f"{where}: {now} != {stored}"
    elif isinstance(stored, dict) and isinstance(now, dict):
        assert sorted(now) == sorted(stored), f"{where}: keys {sorted(now)} != {sorted(stored)}"
        for k in stored:
            _assert_close(now[k], stored[k], f"{where}.{k}")
    elif isinstance(stored, list) and isinstance(now, list):
        assert len(now) == len(stored), f"{where}: {len(now)} items != {len(stored)}"
        for i, (a, b) in enumerate(zip(now, stored)):
            _assert_close(a, b, f"{where}[{i}]")
    else:
        assert now == stored, f"{where}: {now!r} != {stored!r}"


def _comparable(manifest: dict) -> dict:
    return {k: v for k, v in manifest.items() if k not in ("timings", "visum_version")}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_manifest_is_the_stored_one(name, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(UNMERGED if name in STORED_UNMERGED else "")
    code, _, err = run_cli(capsys, "run", "-q", "--seed", 0, "--config", config, *RUNS[name],
                           "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    now = _comparable(json.loads((tmp_path / "run" / "manifest.json").read_text()))
    stored = _comparable(json.loads((STORED / f"{name}.json").read_text()))
    _assert_close(now["summaries"], stored["summaries"], "summaries")
    for section, fields in ADDED_SINCE_ALL.items():
        for field in fields:
            assert now["config"][section].pop(field) == "auto"
    if name in STORED_UNMERGED:  # options added since the manifests were stored are not in them
        for section, fields in ADDED_SINCE.items():
            for field in fields:
                now["config"][section].pop(field, None)
    _assert_close(now, stored)
