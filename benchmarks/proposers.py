"""Side-by-side figures of the two built-in proposers: time per image, box counts, recall.

    python benchmarks/proposers.py [--repeats 5] [--sizes 128 224]
        [--edge-opt min_box_area=500 ...] [--ss-opt mode=single ...]

scikit-image's ``astronaut`` (512x512) and ``chelsea`` (451x300) are resized (``INTER_AREA``,
aspect ratio not kept) to each ``S x S``, as the pipeline's views are square. Both proposers
run in this one process on the same arrays; each (image, size, proposer) is run once to warm
up, then ``--repeats`` times, and the median wall time and the median CPU time of the process
(less sensitive to other load on a shared machine; may exceed wall time with OpenCV threads)
are reported. Recall is the fraction
of the hand-made rectangles below (drawn on the original images, scaled with them) that
some proposal covers with IoU >= 0.5 / >= 0.7, over all the proposals returned (at most
500 by default) and over the top 50. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import cv2
import numpy as np
import skimage.data

from visum.geometry import box_iou
from visum_plugins.proposers.edge_boxes import EdgeBoxes, EdgeBoxesOptions
from visum_plugins.proposers.selective_search import SelectiveSearch, SelectiveSearchOptions

# Hand-made [x0, y0, x1, y1] (exclusive) rectangles, in the original images' pixels.
HAND_BOXES: dict[str, dict[str, tuple[int, int, int, int]]] = {
    "astronaut": {
        "head": (150, 15, 300, 185),
        "mission patch": (133, 350, 210, 425),
        "helmet": (278, 343, 512, 512),
        "shuttle model": (352, 0, 470, 285),
        "neck ring": (112, 150, 305, 290),
    },
    "chelsea": {
        "left eye": (135, 82, 208, 148),
        "right eye": (295, 108, 345, 165),
        "nose": (230, 222, 295, 265),
        "both eyes": (130, 80, 350, 170),
        "face": (40, 0, 390, 300),
    },
}


def recall(truth: np.ndarray, boxes: np.ndarray, threshold: float) -> float:
    if len(truth) == 0:
        return float("nan")
    if len(boxes) == 0:
        return 0.0
    return float((box_iou(truth, boxes).max(axis=1) >= threshold).mean())


def scaled_truth(name: str, shape: tuple[int, int], size: int) -> np.ndarray:
    h, w = shape
    boxes = np.array(list(HAND_BOXES[name].values()), dtype=np.float64)
    boxes[:, [0, 2]] *= size / w
    boxes[:, [1, 3]] *= size / h
    return np.rint(boxes).astype(np.int64)


def parse_opts(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    parser.add_argument("--edge-opt", nargs="*", default=[], help="edge-boxes options KEY=VALUE")
    parser.add_argument("--ss-opt", nargs="*", default=[], help="selective-search options KEY=VALUE")
    args = parser.parse_args()

    proposers = {
        "selective-search": SelectiveSearch(SelectiveSearchOptions(**parse_opts(args.ss_opt))),
        "edge-boxes": EdgeBoxes(EdgeBoxesOptions(**parse_opts(args.edge_opt))),
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"python {platform.python_version()}, OpenCV {cv2.__version__}, cv2 threads {cv2.getNumThreads()}, "
          f"{os.cpu_count()} CPUs ({platform.machine()}), 1-min load {load:.1f}; "
          f"median of {args.repeats} runs after a warm-up")
    for label, p in proposers.items():
        print(f"{label}: {p.options.model_dump()}")
    print()
    print("| image | size | proposer | wall ms / image | CPU ms / image | boxes | median box side (px) | recall@0.5 | recall@0.7 | top-50 recall@0.5 | top-50 recall@0.7 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    totals: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for name in HAND_BOXES:
        original = getattr(skimage.data, name)()
        for size in args.sizes:
            image = cv2.resize(original, (size, size), interpolation=cv2.INTER_AREA)
            truth = scaled_truth(name, original.shape[:2], size)
            for label, proposer in proposers.items():
                boxes = proposer.propose(image)
                times, cpu = [], []
                for _ in range(args.repeats):
                    t0, c0 = time.perf_counter(), time.process_time()
                    again = proposer.propose(image)
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                    assert np.array_equal(again, boxes), f"{label} is not deterministic"
                ms = 1000 * statistics.median(times)
                cpu_ms = 1000 * statistics.median(cpu)
                sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) if len(boxes) else [np.nan]
                r = [recall(truth, boxes, 0.5), recall(truth, boxes, 0.7),
                     recall(truth, boxes[:50], 0.5), recall(truth, boxes[:50], 0.7)]
                totals.setdefault((size, label), []).append((ms, cpu_ms))
                print(f"| {name} | {size}² | {label} | {ms:.1f} | {cpu_ms:.1f} | {len(boxes)} | {np.median(sides):.0f} | "
                      + " | ".join(f"{x:.0%}" for x in r) + " |")
    print()
    for (size, label), ms in sorted(totals.items()):
        wall = statistics.mean(m for m, _ in ms)
        cpu_mean = statistics.mean(c for _, c in ms)
        print(f"mean over images, {size}², {label}: {wall:.1f} ms wall, {cpu_mean:.1f} ms CPU / image")


if __name__ == "__main__":
    main()
