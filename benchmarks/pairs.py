"""All pairs against each image's K nearest (``--pairs``): quality, time and peak memory as N grows.

    python benchmarks/pairs.py --sizes 100,300,1000 --pairings all,knn:10,knn:20 --skip-all-above 300

For each N and pairing, one ``visum run`` of the paper's pipeline on N parts-benchmark images
(``--saliency gradient --matcher proposal-flow --clusterer ap``, the issue's setting; gradient
saliency keeps saliency's share small, "saliency aside"), from an empty cache, one process at a
time, 2 torch threads and matching processes. Reported: wall time of the whole run and of its
matching stage (describe and match), peak RSS (GNU ``/usr/bin/time -f %M``: the largest process), pairs
matched, clustering time, kept summaries, and the ground-truth scores of the run's report (mean purity of the kept
summaries, parts recovered of those present). All pairs above ``--skip-all-above`` images are not
run (N^2 / 2 pairs: ~20 minutes of matching at 1,000).
Run it alone: a second heavy job on 2 cores makes every time meaningless.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(n: int, pairing: str, tmp: Path) -> dict:
    out, cache = tmp / f"run-{n}-{pairing.replace(':', '')}", tmp / f"cache-{n}-{pairing.replace(':', '')}"
    cmd = [sys.executable, "-m", "visum.cli", "run", "--benchmark-images", str(n), "--saliency", "gradient",
           "--matcher", "proposal-flow", "--clusterer", "ap", "--pairs", pairing, "--seed", "0", "--workers", "2",
           "--out", str(out), "--cache-dir", str(cache)]
    rss = tmp / "maxrss"
    started = time.monotonic()
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), *cmd], capture_output=True, text=True)
    wall = time.monotonic() - started
    peak = int(rss.read_text().split()[-1])  # KiB, GNU time: the largest process of the run
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    from visum.evaluate.summaries import scores_for_report
    from visum.manifest import Manifest

    manifest = Manifest.model_validate_json((out / "manifest.json").read_text())
    scores = scores_for_report(manifest, out)
    pairs = n * (n - 1) // 2
    found = re.search(r"matching (\d+) pairs of", done.stderr)
    if found:
        pairs = int(found.group(1))
    t = manifest.timings
    return {"n": n, "pairing": pairing, "wall": wall, "match": t.get("matching", 0.0), "cluster": t.get("clustering", 0.0),
            "peak_gb": peak / 2**20, "pairs": pairs,
            "kept": len(manifest.kept_summaries),
            "purity": scores.mean_purity if scores else float("nan"),
            "recovered": f"{len(scores.parts_recovered)}/{len(scores.parts_present)}" if scores else "-"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,300,1000")
    ap.add_argument("--pairings", default="all,knn:10,knn:20")
    ap.add_argument("--skip-all-above", type=int, default=300)
    args = ap.parse_args()
    print("| N | pairs | pairs matched | run (s) | matching (s) | clustering (s) | peak RSS (GB) | kept | mean purity "
          "| parts recovered |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="visum-pairs-") as tmp:
        for n in (int(v) for v in args.sizes.split(",")):
            for pairing in args.pairings.split(","):
                if pairing == "all" and n > args.skip_all_above:
                    print(f"| {n} | all | {n * (n - 1) // 2} | not run | | | | | | |", flush=True)
                    continue
                r = run(n, pairing, Path(tmp))
                print(f"| {r['n']} | {r['pairing']} | {r['pairs']} | {r['wall']:.1f} | {r['match']:.1f} | {r['cluster']:.1f} | "
                      f"{r['peak_gb']:.2f} | {r['kept']} | {r['purity']:.3f} | {r['recovered']} |", flush=True)
                print(json.dumps(r), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
