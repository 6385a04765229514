"""``visum evaluate localization``: weakly supervised localisation on the parts benchmark.

Simonyan et al. 2013 (Sec. 3.2) turn a class saliency map into an object box by GraphCut
colour segmentation seeded from the map (:func:`visum.localize.grabcut_localisation`) and
score boxes as ILSVRC does: a box is correct when its IoU with the true box is at least 0.5.
Here every image of a parts-benchmark folder is explained for its *true* class (``--target
truth``, ILSVRC's "ground-truth-known" localisation) by each saliency plugin, and the box of
the parrot glyph (``object_box`` of the ground truth: body and every drawn part) is the
truth. Next to GraphCut, two baselines box the largest component of the map thresholded
directly: at the regions stage's own threshold (crisp 0.5; Otsu after a sigma-2 blur for
the other methods) and at 20 % of the map's maximum (Zhou et al. 2016). The whole image as
the box is the trivial reference.

:func:`benchmark_masks` (also used by :mod:`visum.evaluate.pointing`) gets every method's
masks through :meth:`visum.pipeline.Pipeline.saliency_masks`, so they come from, and go
to, the same cache as ``visum run``/``visum masks``/``visum evaluate deletion``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from visum.cache import Cache
from visum.config import RunConfig
from visum.data.parts import GroundTruth, load_ground_truth
from visum.errors import InputError
from visum.evaluate.masks import evaluation_masks, image_targets
from visum.geometry import box_iou_one
from visum.localize import grabcut_localisation, threshold_localisation
from visum.models.base import LoadedModel
from visum.pipeline import InputImage, Reporter

IOU_CORRECT = 0.5  # ILSVRC: a box is correct at IoU >= 0.5
CAM_FRACTION = 0.2  # Zhou et al. 2016 box the largest component above 20 % of the map's maximum


@dataclass
class BenchmarkMasks:
    """Every method's mask of every image of a parts-benchmark folder, with the ground truth."""

    model: LoadedModel
    folder: Path
    images: list[InputImage]
    truths: list[GroundTruth]
    targets: list[int]
    predicted: list[int]
    masks: dict[str, dict[int, np.ndarray]]  # method -> image id -> [S, S] in [0, 1] (view pixels)
    binarisation: dict[str, tuple[float | str, float]]  # method -> regions-stage (threshold, sigma)


def benchmark_masks(
    config: RunConfig,
    methods: list[str],
    out_dir: Path,
    *,
    cache: Cache | None = None,
    reporter: Reporter | None = None,
) -> BenchmarkMasks:
    """Load the model and the benchmark, resolve the targets, compute (or fetch) every method's masks.

    ``config.images`` is a folder written by ``visum parts generate`` (with ``ground_truth/``);
    when it is ``None`` the parts model's default benchmark is generated in ``out_dir/images``.
    ``config.target``: ``None`` or ``truth`` (each image's true class), ``predicted``, a
    class, or ``filename``. Saliency options in ``config.options["saliency"]`` go to every
    method that has them.
    """
    folder = Path(config.images) if config.images is not None else Path(out_dir) / "images"
    truths: list[GroundTruth] = []

    def truth_or_configured(images: list[InputImage], probs: np.ndarray, resolve) -> list[int]:
        ground_truth = load_ground_truth(folder)
        for im in images:
            if im.path.name not in ground_truth:
                raise InputError(f"{im.path}: not in the ground truth of {folder / 'ground_truth'}")
            truths.append(ground_truth[im.path.name])
        if config.target in (None, "truth"):
            return [gt.label for gt in truths]
        return image_targets(config.target, images, probs, resolve)

    found = evaluation_masks(config, methods, out_dir, targets=truth_or_configured, cache=cache, reporter=reporter)
    return BenchmarkMasks(
        model=found.model, folder=folder, images=found.images, truths=truths, targets=found.targets,
        predicted=found.predicted, masks=found.masks, binarisation=found.binarisation,
    )


@dataclass
class LocalisationScores:
    """Per-image box IoUs of one method, by GraphCut and by the two threshold baselines."""

    method: str
    grabcut: list[float] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)  # the regions stage's threshold
    cam: list[float] = field(default_factory=list)  # 20 % of the maximum
    correct_class: list[bool] = field(default_factory=list)
    fallbacks: int = 0

    def row(self) -> dict:
        def acc(values):
            return float(np.mean(np.asarray(values) >= IOU_CORRECT)) if values else float("nan")

        def mean(values):
            return float(np.mean(values)) if values else float("nan")

        top1 = [c and iou >= IOU_CORRECT for c, iou in zip(self.correct_class, self.grabcut)]
        return {
            "method": self.method, "n": len(self.grabcut),
            "grabcut_accuracy": acc(self.grabcut), "grabcut_iou": mean(self.grabcut),
            "top1_accuracy": mean(top1),
            "threshold_accuracy": acc(self.threshold), "threshold_iou": mean(self.threshold),
            "cam_accuracy": acc(self.cam), "cam_iou": mean(self.cam), "fallbacks": self.fallbacks,
        }


@dataclass
class LocalisationReport:
    model: str
    folder: str
    images: list[str]
    targets: list[int]
    true_boxes: list[list[int]]
    whole_image: list[float]  # IoU of the whole image as the box
    methods: list[LocalisationScores]
    settings: dict

    def rows(self) -> list[dict]:
        return [m.row() for m in self.methods]

    def markdown(self) -> str:
        whole = float(np.mean(np.asarray(self.whole_image) >= IOU_CORRECT)) if self.whole_image else float("nan")
        lines = [
            (f"model `{self.model}`, {len(self.images)} images of `{self.folder}`, "
            f"seeds: foreground > {self.settings['fg_quantile']:.0%} quantile, background < "
            f"{self.settings['bg_quantile']:.0%} quantile; a box is correct at IoU >= {IOU_CORRECT}"),
            "",
            ("| saliency | GraphCut: loc. accuracy | mean IoU | top-1 loc. accuracy | "
            "threshold (regions stage): accuracy | mean IoU | threshold 20 % of max: accuracy | mean IoU |"),
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows():
            lines.append(
                f"| {r['method']} | {100 * r['grabcut_accuracy']:.1f}% | {r['grabcut_iou']:.3f} | "
                f"{100 * r['top1_accuracy']:.1f}% | {100 * r['threshold_accuracy']:.1f}% | {r['threshold_iou']:.3f} | "
                f"{100 * r['cam_accuracy']:.1f}% | {r['cam_iou']:.3f} |"
            )
        lines.append(f"| (whole image as the box) | {100 * whole:.1f}% | {np.mean(self.whole_image):.3f} | | | | | |")
        fallbacks = sum(m.fallbacks for m in self.methods)
        if fallbacks:
            lines += ["", f"{fallbacks} map(s) had too few seeds for GraphCut; their foreground seeds were used."]
        return "\n".join(lines) + "\n"


def evaluate_localisation(
    config: RunConfig,
    methods: list[str],
    out_dir: Path,
    *,
    fg_quantile: float = 0.95,
    bg_quantile: float = 0.30,
    refine: int = 0,
    cache: Cache | None = None,
    reporter: Reporter | None = None,
) -> LocalisationReport:
    """Boxes of every method on every benchmark image, and their IoU with the true object box."""
    reporter = reporter or Reporter()
    bench = benchmark_masks(config, methods, out_dir, cache=cache, reporter=reporter)
    scores = []
    for method in methods:
        ms = LocalisationScores(method)
        threshold, sigma = bench.binarisation[method]
        for im, gt, p in reporter.progress(
            list(zip(bench.images, bench.truths, bench.predicted)), f"localise ({method})", len(bench.images)
        ):
            s = bench.masks[method][im.id]
            loc = grabcut_localisation(im.view.pixels, s, fg_quantile=fg_quantile, bg_quantile=bg_quantile,
                                       refine=refine, seed=config.seed)
            ms.fallbacks += bool(loc.fallback)
            ms.grabcut.append(box_iou_one(_to_original(im, loc.box), gt.object_box))
            ms.threshold.append(box_iou_one(_to_original(im, threshold_localisation(s, threshold, sigma).box), gt.object_box))
            ms.cam.append(box_iou_one(_to_original(im, threshold_localisation(s, CAM_FRACTION).box), gt.object_box))
            ms.correct_class.append(p == gt.label)
        scores.append(ms)
    whole = [box_iou_one((0, 0, *im.view.original_size), gt.object_box) for im, gt in zip(bench.images, bench.truths)]
    return LocalisationReport(
        model=bench.model.spec, folder=str(bench.folder), images=[str(im.path) for im in bench.images],
        targets=bench.targets, true_boxes=[list(gt.object_box) for gt in bench.truths], whole_image=whole,
        methods=scores, settings={"fg_quantile": fg_quantile, "bg_quantile": bg_quantile, "refine": refine,
                                  "binarisation": {m: list(b) for m, b in bench.binarisation.items()}},
    )


def _to_original(im: InputImage, box) -> tuple[int, int, int, int] | None:
    return None if box is None else im.view.box_to_original(box)
