"""``visum evaluate deletion``: the paper's Table 2 protocol over any saliency plugins.

For every image and method: the mask (from the cache when an earlier run made it), its
area (mean of ``s``), the relative drop of the target's probability under ``Phi(x; s)``, and
deletion/insertion AUCs. A method named ``NAME-thresh`` is plugin ``NAME``'s mask made
binary at the area of the reference method's mask on the same image (``crisp`` by default),
as the paper does for IEBB. Targets are one class for all images, each image's top-1
class (``predicted``), or the integer that ends each file name (``filename``, e.g. the
``imagenet_07_609.jpg`` files that foolbox ships).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from visum.cache import Cache
from visum.config import RunConfig
from visum.evaluate.deletion import (
    curve_auc,
    deletion_insertion_curves,
    perturbed_probabilities,
    relative_drop,
    threshold_to_area,
)
from visum.evaluate.masks import evaluation_masks
from visum.pipeline import Reporter

THRESH = "-thresh"


@dataclass
class MethodScores:
    method: str
    drops: list[float] = field(default_factory=list)
    areas: list[float] = field(default_factory=list)
    binary: list[float] = field(default_factory=list)  # share of pixels within 0.05 of 0 or 1
    deletion_auc: list[float] = field(default_factory=list)
    insertion_auc: list[float] = field(default_factory=list)

    def row(self) -> dict[str, float | str | int]:
        def stat(values, fn):
            return float(fn(values)) if values else float("nan")

        return {
            "method": self.method, "n": len(self.drops),
            "drop_mean": stat(self.drops, np.mean), "drop_var": stat(self.drops, np.var),
            "area_mean": stat(self.areas, np.mean), "binary_mean": stat(self.binary, np.mean),
            "binary_min": stat(self.binary, np.min),
            "deletion_auc": stat(self.deletion_auc, np.mean), "insertion_auc": stat(self.insertion_auc, np.mean),
        }


@dataclass
class DeletionReport:
    model: str
    reference: str
    images: list[str]
    targets: list[int]
    p_clean: list[float]
    methods: list[MethodScores]
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # method -> fractions, mean deletion, mean insertion

    def rows(self) -> list[dict]:
        return [m.row() for m in self.methods]

    def markdown(self) -> str:
        lines = [
            f"model `{self.model}`, {len(self.images)} images, thresholded methods at the area of `{self.reference}`",
            "",
            "| method | % drop (var) | mask area | binary pixels, mean (min) | deletion AUC ↓ | insertion AUC ↑ |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows():
            lines.append(
                f"| {r['method']} | {100 * r['drop_mean']:.2f} ({r['drop_var']:.3g}) | {100 * r['area_mean']:.1f}% | "
                f"{100 * r['binary_mean']:.1f}% ({100 * r['binary_min']:.1f}%) | {r['deletion_auc']:.3f} | {r['insertion_auc']:.3f} |"
            )
        return "\n".join(lines) + "\n"


def evaluate_deletion(
    config: RunConfig,
    methods: list[str],
    out_dir: Path,
    *,
    reference: str = "crisp",
    steps: int = 20,
    cache: Cache | None = None,
    reporter: Reporter | None = None,
) -> DeletionReport:
    """Masks of every method on every image, then drops, areas and curves. See the module docstring."""
    reporter = reporter or Reporter()
    base_names = list(dict.fromkeys(m[: -len(THRESH)] if m.endswith(THRESH) else m for m in methods))
    if any(m.endswith(THRESH) for m in methods) and reference not in base_names:
        base_names.append(reference)
    found = evaluation_masks(config, base_names, out_dir, cache=cache, reporter=reporter)
    model, images, probs, targets, masks = found.model, found.images, found.probs, found.targets, found.masks

    pre = model.preprocessing
    x_all = pre.to_tensor([im.view.pixels for im in images]).to(config.device)
    t_all = torch.tensor(targets, dtype=torch.long, device=x_all.device)
    p_clean = probs[np.arange(len(images)), targets]
    scores, curves = [], {}
    for method in methods:
        base = method[: -len(THRESH)] if method.endswith(THRESH) else method
        per_image = []
        for im in images:
            s = masks[base][im.id]
            if method.endswith(THRESH):
                s = threshold_to_area(s, float(masks[reference][im.id].mean()))
            per_image.append(s)
        s_all = torch.from_numpy(np.stack(per_image)).unsqueeze(1).to(x_all.device)
        p_pert = []
        for start in range(0, len(images), config.batch_size):
            sl = slice(start, start + config.batch_size)
            p_pert.append(perturbed_probabilities(model.module, x_all[sl], s_all[sl], t_all[sl]).cpu().numpy())
        ms = MethodScores(method)
        ms.drops = relative_drop(p_clean, np.concatenate(p_pert)).tolist()
        ms.areas = [float(s.mean()) for s in per_image]
        ms.binary = [float(((s <= 0.05) | (s >= 0.95)).mean()) for s in per_image]
        dels, ins = [], []
        for k_im, im in enumerate(reporter.progress(images, f"curves ({method})", len(images))):
            f, d, i = deletion_insertion_curves(model.module, x_all[k_im : k_im + 1], per_image[k_im], targets[k_im], steps)
            dels.append(d)
            ins.append(i)
            ms.deletion_auc.append(curve_auc(f, d))
            ms.insertion_auc.append(curve_auc(f, i))
        curves[method] = (f, np.mean(dels, axis=0), np.mean(ins, axis=0))
        scores.append(ms)
    return DeletionReport(
        model=model.spec, reference=reference, images=[str(im.path) for im in images], targets=targets,
        p_clean=[float(p) for p in p_clean], methods=scores, curves=curves,
    )
