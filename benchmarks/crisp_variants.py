"""Crisp mask variants on foolbox's ImageNet photos with EfficientNet-Lite0 (docs/saliency.md, crisp).

    python benchmarks/crisp_variants.py [--n 8] [--variant NAME='{"option": value, ...}' ...]

For each variant (crisp plugin options as JSON; ``{}`` = visum's defaults) on the first ``--n``
of foolbox's 20 ImageNet validation photos (``pip install --no-deps foolbox``), target = the
label in the file name: share of binary pixels (within 0.05 of 0 or 1), area (s > 0.5),
connected components of s > 0.5, relative drop of the target's probability under Phi(x; s),
and the drop of iebb's mask thresholded per image to the same area (iebb-thresh).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

PAPER = {"rough_l1": 0.01, "rough_l2": 1e-4, "crisp_l2": 1.0, "crisp_score_blur": 0.0}


def photos(n: int):
    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.origin is None:
        raise SystemExit("needs foolbox's images: pip install --no-deps foolbox")
    return sorted((Path(spec.origin).parent / "data").glob("imagenet_*.jpg"))[:n]


def drops(module, x, t, s) -> np.ndarray:
    """Relative drop of the target's probability under ``Phi(x; s)``, 16 blur levels."""
    from visum.evaluate.deletion import perturbed_probabilities, relative_drop

    with torch.no_grad():
        p0 = torch.softmax(module(x), 1).gather(1, t.view(-1, 1)).squeeze(1)
        p1 = perturbed_probabilities(module, x, s, t, levels=16)
    return relative_drop(p0.numpy(), p1.numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--variant", action="append", default=[], help="NAME=JSON options of the crisp plugin")
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or {"paper": json.dumps(PAPER), "default": "{}"}

    from visum.data.images import load_image
    from visum.evaluate.deletion import threshold_to_area
    from visum.models.loading import load_model
    from visum.plugins import get_catalogue

    model = load_model("efficientnet-lite0")
    pre = model.preprocessing
    paths = photos(args.n)
    x = pre.to_tensor([pre.view(load_image(p)).pixels for p in paths])
    t = torch.tensor([int(p.stem.split("_")[-1]) for p in paths])
    catalogue = get_catalogue()

    def masks(method: str, options: dict) -> torch.Tensor:
        comp = catalogue.create("saliency", method, options)
        return torch.cat([comp.explain(model.module, x[i : i + args.batch], t[i : i + args.batch])
                          for i in range(0, len(paths), args.batch)])

    iebb = masks("iebb", {}).numpy()[:, 0]
    print(f"{len(paths)} photos, EfficientNet-Lite0\n")
    print("| variant | binary pixels mean (min) | >= 99 % | area s > 0.5 | components (median) | drop | iebb-thresh drop |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name, text in variants.items():
        s = masks("crisp", json.loads(text))
        sn = s.numpy()[:, 0]
        binary = ((sn <= 0.05) | (sn >= 0.95)).mean((1, 2))
        area = (sn > 0.5).mean((1, 2))
        components = [ndimage.label(a > 0.5)[1] for a in sn]
        thresh = np.stack([threshold_to_area(iebb[i], float(sn[i].mean())) for i in range(len(sn))])
        d, dt = drops(model.module, x, t, s), drops(model.module, x, t, torch.from_numpy(thresh)[:, None].float())
        print(f"| {name} | {100 * binary.mean():.2f} % ({100 * binary.min():.1f} %) | {(binary >= 0.99).sum()}/{len(sn)} "
              f"| {100 * area.mean():.1f} % | {np.median(components):.0f} | {d.mean():.3f} | {dt.mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()
