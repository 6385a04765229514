"""Proposal matching against ground truth: ``hog`` (appearance only) vs ``proposal-flow`` (LOM).

    python benchmarks/correspondence.py [--pairs N] [--seeds 1 2] \\
        [--out docs/matching.md] [--figure docs/img/proposal-flow-example.png] [--opt NAME=VALUE ...]

For each seed and each source (real photos; parts-benchmark images) it makes ``--pairs``
image pairs related by a known random warp plus photometric changes
(:mod:`visum.evaluate.correspondence`), computes up to ``--max-proposals`` selective-search
proposals per image, runs both matchers on the same proposals, and writes the mean of
each metric over the pairs as a Markdown table to ``--out`` together with the command,
the machine and the timings, and a figure of one photo pair with a few colour-coded
matches of each matcher.

BLAS threads. The script runs numpy single-threaded (``OPENBLAS_NUM_THREADS=1`` etc.,
unless already set): the matrices of one pair are small, and OpenBLAS's thread pool on a
busy 2-core machine made a 200 x 324 by 324 x 200 product 100x slower (40 ms vs 0.3 ms).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from visum.evaluate.correspondence import (  # noqa: E402
    PairResult,
    WarpedPair,
    evaluate_matchers,
    make_pairs,
    summarise,
)
from visum.geometry import box_iou_rows  # noqa: E402
from visum_plugins.matchers.hog import HOG  # noqa: E402
from visum_plugins.matchers.proposal_flow import ProposalFlow, ProposalFlowOptions  # noqa: E402
from visum_plugins.proposers.selective_search import SelectiveSearch, SelectiveSearchOptions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("photos", "parts")
COLUMNS = ["PCK@0.1", "PCK@0.25", "PCR@0.5", "mIoU@10", "mIoU@50", "oracle PCK@0.1"]


def parse_options(items: list[str]) -> dict[str, object]:
    """``["consensus=median", "tau_translation=0.25"]`` -> options (values read as JSON when they parse)."""
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--opt expects NAME=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def run(seeds: list[int], n_pairs: int, max_proposals: int, pf_options: dict[str, object] | None = None):
    """``{seed: {source: (pairs, {matcher: [PairResult]})}}``."""
    proposer = SelectiveSearch(SelectiveSearchOptions(max_proposals=max_proposals))
    matchers = {"hog": HOG(), "proposal-flow": ProposalFlow(ProposalFlowOptions(**(pf_options or {})))}
    out: dict[int, dict[str, tuple[list[WarpedPair], dict[str, list[PairResult]]]]] = {}
    for seed in seeds:
        out[seed] = {}
        for source in SOURCES:
            pairs = make_pairs(source, n_pairs, seed)
            out[seed][source] = (pairs, evaluate_matchers(pairs, proposer.propose, matchers))
            print(f"seed {seed} {source}: {len(pairs)} pairs done", file=sys.stderr)
    return out


def table(results) -> str:
    extra = ["valid proposals / pair", "describe ms / image", "match ms / pair"]
    head = "| source | matcher | " + " | ".join(COLUMNS + extra) + " |"
    rule = "|" + "---|" * (len(COLUMNS) + 5)
    rows = [head, rule]
    for source, (_, by_matcher) in results.items():
        for name, res in by_matcher.items():
            s = summarise(res)
            cells = [f"{s[c]:.3f}" for c in COLUMNS]
            bold = name == "proposal-flow"
            if bold:
                hog = summarise(by_matcher["hog"])
                cells[0] = f"**{s['PCK@0.1']:.3f}** ({s['PCK@0.1'] - hog['PCK@0.1']:+.3f})"
            rows.append(
                f"| {source} | `{name}` | " + " | ".join(cells)
                + f" | {s['valid proposals / pair']:.0f} | {1000 * s['describe s / image']:.0f}"
                + f" | {1000 * s['match s / pair']:.1f} |"
            )
    return "\n".join(rows)


def figure(pair: WarpedPair, results: dict[str, list[PairResult]], index: int, path: Path, n_show: int = 6) -> str:
    """Image a with a few proposals, and image b with each matcher's best match for them.

    Proposals are chosen among the valid, medium-to-large ones, spread over the image,
    where the two matchers disagree: proposal-flow right (and its match overlapping the
    truth with IoU >= 0.5) and hog wrong first. Returns a caption.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    hog, pf = results["hog"][index], results["proposal-flow"][index]
    a = pf.boxes_a
    scale = np.sqrt((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))
    ok = pf.valid & (scale >= 28)
    pf_iou = box_iou_rows(pf.boxes_b[pf.best], pf.true_boxes)
    rank = np.select(
        [pf.correct & (pf_iou >= 0.5) & ~hog.correct, pf.correct & ~hog.correct, pf.correct & hog.correct],
        [0, 1, 2],
        3,
    )
    order = np.lexsort((-scale, rank))
    chosen: list[int] = []
    for k in order:
        if not ok[k]:
            continue
        c = np.array([(a[k, 0] + a[k, 2]) / 2, (a[k, 1] + a[k, 3]) / 2])
        far = all(np.linalg.norm(c - np.array([(a[m, 0] + a[m, 2]) / 2, (a[m, 1] + a[m, 3]) / 2])) > 30 for m in chosen)
        if far:
            chosen.append(int(k))
        if len(chosen) == n_show:
            break
    colours = plt.cm.tab10(np.arange(len(chosen)) % 10)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    panels = [("image a: proposals", pair.image_a, None), ("image b: hog's best match", pair.image_b, hog),
              ("image b: proposal-flow's best match", pair.image_b, pf)]
    for ax, (title, img, res) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
        for colour, k in zip(colours, chosen):
            if res is None:
                x0, y0, x1, y1 = a[k]
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=2.2))
                continue
            t = res.true_boxes[k]
            ax.add_patch(Rectangle((t[0], t[1]), t[2] - t[0], t[3] - t[1], fill=False, ec=colour, lw=1.0, ls=":"))
            x0, y0, x1, y1 = res.boxes_b[res.best[k]]
            good = bool(res.correct[k])
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=colour, lw=2.2, ls="-" if good else "--"))
            if not good:
                ax.plot([(x0 + x1) / 2], [(y0 + y1) / 2], marker="x", color=colour, ms=9, mew=2.5)
    n_hog = int(hog.correct[chosen].sum())
    n_pf = int(pf.correct[chosen].sum())
    title = f"{pair.name}: {len(chosen)} proposals; correct at PCK@0.1: hog {n_hog}, proposal-flow {n_pf}"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100)
    plt.close(fig)
    from PIL import Image

    with Image.open(buffer) as im:  # a 256-colour palette keeps the file small (noisy photos compress badly)
        im.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    return (
        f"Pair `{pair.name}`. Left: {len(chosen)} proposals of image a. Middle and right: the true place of each "
        "in image b (dotted) and the matcher's best match (solid when correct at PCK@0.1, dashed with a cross "
        f"when not). Correct: hog {n_hog}/{len(chosen)}, proposal-flow {n_pf}/{len(chosen)}."
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=24, help="pairs per source and seed")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--max-proposals", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "matching.md")
    ap.add_argument("--figure", type=Path, default=ROOT / "docs" / "img" / "proposal-flow-example.png")
    ap.add_argument(
        "--opt", action="append", default=[], metavar="NAME=VALUE", help="a proposal-flow option (repeatable)"
    )
    args = ap.parse_args()
    pf_options = parse_options(args.opt)

    t0 = time.perf_counter()
    results = run(args.seeds, args.pairs, args.max_proposals, pf_options)
    elapsed = time.perf_counter() - t0
    first = results[args.seeds[0]]["photos"]
    pairs, by_matcher = first
    # the photo pair where proposal-flow gains most over hog (PCK@0.1 plus PCR@0.5)
    gains = [
        sum(r.metrics[key] - h.metrics[key] for key in ("PCK@0.1", "PCR@0.5"))
        for r, h in zip(by_matcher["proposal-flow"], by_matcher["hog"])
    ]
    best_pair = int(np.nanargmax(gains))
    try:
        fig_rel = args.figure.resolve().relative_to(args.out.resolve().parent)
    except ValueError:
        fig_rel = args.figure
    caption = figure(pairs[best_pair], by_matcher, best_pair, args.figure)

    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [
        "<!-- generated by benchmarks/correspondence.py; edit the script, not this table -->",
        "## Results",
        "",
        f"Command: `python benchmarks/correspondence.py {argv}`".rstrip() + "  ",
        f"Machine: {os.cpu_count()} cores ({platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}), numpy single-threaded; whole run {elapsed:.0f} s.  ",
        f"Proposals: `selective-search`, `max_proposals={args.max_proposals}`; `hog` with default options, "
        + (f"`proposal-flow` with {pf_options}." if pf_options else "`proposal-flow` with default options."),
        "",
    ]
    for seed in args.seeds:
        lines += [f"### Seed {seed} ({args.pairs} pairs per source)", "", table(results[seed]), ""]
    lines += [f"![proposal-flow vs hog]({fig_rel})", "", caption, ""]
    generated = "\n".join(lines)

    marker = "<!-- generated by benchmarks/correspondence.py"
    if args.out.exists():
        text = args.out.read_text(encoding="utf-8")
        head = text.split(marker)[0].rstrip() + "\n\n" if marker in text else text.rstrip() + "\n\n"
    else:
        head = "# Matching proposals\n\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(head + generated, encoding="utf-8")
    print(generated)


if __name__ == "__main__":
    main()
