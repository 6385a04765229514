"""All-pairs matching cost: wall time, pairs per second, peak memory, and the size of Corr.

    python benchmarks/matching.py [--matchers hog,proposal-flow] [--sizes 10,25,50]
                                  [--proposals 200] [--workers 2] [--corr-proposals 500]

For each matcher and each N: N parts-benchmark images upscaled to 224² (the size an
ImageNet model sees), selective-search proposals cut to exactly ``--proposals`` per image,
every image described once, then all N(N-1)/2 pairs matched through visum's own
`match_all_pairs` (forked workers, as in `visum run`). Everything runs side by side in one
process so the figures compare. A last section assembles Corr for 50 images with
``--corr-proposals`` proposals each and reports its memory, sparse against dense.
Prints a Markdown table; paste it into docs/performance.md with the machine it ran on.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np
from PIL import Image

from visum.data.parts import make_dataset
from visum.stages.matching import MatchJob, match_all_pairs, resolve_workers
from visum.plugins import get_catalogue
from visum.stages.regions import assemble_corr


def images(n: int, side: int = 224) -> list[np.ndarray]:
    samples = make_dataset(n, seed=123, labels=[0])
    return [np.asarray(Image.fromarray(s.image).resize((side, side), Image.BILINEAR)) for s in samples]


def proposals(imgs: list[np.ndarray], m: int) -> list[np.ndarray]:
    cat = get_catalogue()
    proposer = cat.create("proposer", "selective-search", {"max_proposals": m, "mode": "fast"})
    out = []
    for im in imgs:
        boxes = proposer.propose(im)
        if len(boxes) < m:  # top up with a deterministic grid so every image has exactly m
            rng = np.random.default_rng(len(out))
            xy = rng.integers(0, im.shape[1] - 32, size=(m - len(boxes), 2))
            wh = rng.integers(16, 96, size=(m - len(boxes), 2))
            extra = np.concatenate([xy, np.minimum(xy + wh, im.shape[1])], axis=1)
            boxes = np.concatenate([boxes, extra])
        out.append(boxes[:m])
    return out


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its (finished) children, MiB."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return me, kids


def bench(matcher: str, n: int, m: int, workers: int, pool: list[np.ndarray], boxes: list[np.ndarray]) -> dict:
    cat = get_catalogue()
    info = cat.get("matcher", matcher)
    component = cat.create("matcher", matcher)
    t0 = time.perf_counter()
    descriptions = [component.describe(pool[k], boxes[k]) for k in range(n)]
    t_describe = time.perf_counter() - t0
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    everything = [np.arange(m)] * n
    job = MatchJob(info, component, descriptions, [m] * n, everything)
    t0 = time.perf_counter()
    blocks = match_all_pairs(job, pairs, workers=workers)
    t_match = time.perf_counter() - t0
    return {
        "matcher": matcher, "N": n, "pairs": len(pairs), "describe_s": t_describe, "match_s": t_match,
        "pairs_per_s": len(pairs) / max(t_match, 1e-9), "total_s": t_describe + t_match, "blocks": blocks,
    }


ASSEMBLE_LIMIT_GIB = 4.0


def corr_memory(blocks: dict, n: int, m: int, min_score: float) -> dict:
    """Corr assembled from real matcher blocks, as the pipeline does: nnz and memory.

    The entries are counted first; when the CSR would exceed ``ASSEMBLE_LIMIT_GIB`` (an
    unthresholded appearance-only Corr is nearly dense) the size is reported from the count
    (8 bytes an entry: float32 value + int32 column) and nothing is assembled.
    """
    nnz = 2 * sum(int((q > min_score).sum()) for q in blocks.values())
    estimate = (nnz * 8 + (n * m + 1) * 4) / 2**20
    dense_mb = (n * m) ** 2 * 4 / 2**20
    if estimate > ASSEMBLE_LIMIT_GIB * 1024:
        return {"N_P": n * m, "min_score": min_score, "nnz": nnz, "density": nnz / (n * m) ** 2,
                "sparse_MiB": estimate, "dense_MiB": dense_mb, "assemble_s": float("nan")}
    t0 = time.perf_counter()
    corr = assemble_corr(blocks, np.arange(n + 1) * m, min_score)
    seconds = time.perf_counter() - t0
    sparse_mb = (corr.data.nbytes + corr.indices.nbytes + corr.indptr.nbytes) / 2**20
    return {"N_P": n * m, "min_score": min_score, "nnz": corr.nnz, "density": corr.nnz / (n * m) ** 2,
            "sparse_MiB": sparse_mb, "dense_MiB": dense_mb, "assemble_s": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--matchers", default="hog,proposal-flow")
    ap.add_argument("--sizes", default="10,25,50")
    ap.add_argument("--proposals", type=int, default=200)
    ap.add_argument("--workers", type=int, default=0, help="0 = one per core")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    matchers = [m for m in args.matchers.split(",") if m]
    available = set(get_catalogue().names("matcher"))
    workers = resolve_workers(args.workers)
    pool = images(max(sizes))
    boxes = proposals(pool, args.proposals)
    print(f"machine: {platform.machine()}, {workers} worker processes, python {platform.python_version()}")
    print(f"{args.proposals} proposals per image, 224² images\n")
    print("| matcher | N | pairs | describe (s) | match all pairs (s) | pairs/s | total (s) |")
    print("|---|---|---|---|---|---|---|")
    largest = {}
    for matcher in matchers:
        if matcher not in available:
            print(f"| {matcher} | not installed | | | | | |")
            continue
        for n in sizes:
            r = bench(matcher, n, args.proposals, workers, pool, boxes)
            largest[matcher] = (n, r.pop("blocks"))
            print(f"| {matcher} | {n} | {r['pairs']} | {r['describe_s']:.2f} | {r['match_s']:.2f} | "
                  f"{r['pairs_per_s']:.1f} | {r['total_s']:.2f} |")
    me, kids = peak_rss_mb()
    print(f"\npeak RSS: parent {me:.0f} MiB, largest worker {kids:.0f} MiB")
    print("\nCorr over every proposal of the largest N (no region filter: the worst case)\n")
    print("| matcher | N_P | min_score | nnz | density | sparse (MiB) | dense float32 (MiB) | assemble (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for matcher, (n, blocks) in largest.items():
        for min_score in (0.0, 0.1, 0.3):
            c = corr_memory(blocks, n, args.proposals, min_score)
            print(f"| {matcher} | {c['N_P']} | {c['min_score']} | {c['nnz']:,} | {c['density']:.3f} | "
                  f"{c['sparse_MiB']:.1f} | {c['dense_MiB']:.0f} | "
                  + ("not assembled (too large)" if np.isnan(c["assemble_s"]) else f"{c['assemble_s']:.2f}") + " |")


if __name__ == "__main__":
    main()
