"""Measure the iebb and crisp saliency methods on real models; draw docs/img/saliency-masks.png.

    python benchmarks/saliency_masks.py run --out visum-out/saliency-check
    python benchmarks/saliency_masks.py accuracy          # Phi vs exact (slow)
    python benchmarks/saliency_masks.py figure --out visum-out/saliency-check

``run`` explains 8 parts-benchmark parrots (the parts CNN) and 8 photos (EfficientNet-Lite0:
scikit-image's chelsea and coffee, six of foolbox's ImageNet samples; target = top-1 class)
with both methods at batch 8, times batch 1 (full runs for parts; for EfficientNet the mean
of 20 steps times the number of steps), and prints mask area, binariness (share of pixels
within 0.05 of 0 or 1) and the relative score drop ``(p(x) - p(Phi(x; s))) / p(x)``, with
``Phi`` interpolated over 16 levels. Masks go to ``OUT/masks.npz``; ``figure`` draws them.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from visum.data.parts import make_dataset
from visum.models.loading import load_model
from visum.perturb import blur_stack, exact_perturb, perturb
from visum_plugins.saliency.crisp import Crisp
from visum_plugins.saliency.iebb import IEBB


def photos() -> tuple[list[str], list[np.ndarray]]:
    from skimage import data

    names, images = ["chelsea", "coffee"], [data.chelsea(), data.coffee()]
    spec = importlib.util.find_spec("foolbox")
    folder = Path(spec.origin).parent / "data"
    for path in sorted(glob.glob(str(folder / "imagenet_*.jpg")))[:6]:
        names.append(Path(path).stem)
        images.append(np.asarray(Image.open(path).convert("RGB")))
    return names, images


def inputs(which: str):
    if which == "parts":
        model = load_model("parts")
        samples = make_dataset(8, seed=77, labels=[0])
        views = [model.preprocessing.view(s.image).pixels for s in samples]
        names = [f"parrot-{i}" for i in range(8)]
        x = model.preprocessing.to_tensor(views)
        target = torch.zeros(8, dtype=torch.int64)
    else:
        model = load_model("efficientnet-lite0")
        names, images = photos()
        views = [model.preprocessing.view(im).pixels for im in images]
        x = model.preprocessing.to_tensor(views)
        with torch.no_grad():
            target = model.module(x).argmax(1)
    return model, names, views, x, target


def metrics(model, x, target, s) -> dict:
    stack = blur_stack(x, levels=16)
    with torch.no_grad():
        p0 = torch.softmax(model.module(x), 1).gather(1, target[:, None])[:, 0]
        p1 = torch.softmax(model.module(perturb(stack, s)), 1).gather(1, target[:, None])[:, 0]
    flat = s.flatten(1)
    return {
        "area_mean_s": flat.mean(1).tolist(),
        "area_above_half": (flat > 0.5).float().mean(1).tolist(),
        "binariness": ((flat < 0.05) | (flat > 0.95)).float().mean(1).tolist(),
        "p0": p0.tolist(),
        "drop": ((p0 - p1) / p0).tolist(),
    }


def run(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results, masks = {}, {}
    for which in ("parts", "efficientnet-lite0"):
        model, names, views, x, target = inputs(which)
        for cls in (IEBB, Crisp):
            method = cls()
            t0 = time.perf_counter()
            s = method.explain(model.module, x, target)
            batch8 = (time.perf_counter() - t0) / len(x)
            if which == "parts":
                t0 = time.perf_counter()
                for i in range(len(x)):
                    method.explain(model.module, x[i : i + 1], target[i : i + 1])
                batch1 = (time.perf_counter() - t0) / len(x)
            else:  # 20 steps of one image, scaled to the schedule's length
                steps = sum(p.iterations for p in method.schedule())
                short = cls(cls.Options(**_short(cls)))
                t0 = time.perf_counter()
                short.explain(model.module, x[:1], target[:1])
                batch1 = (time.perf_counter() - t0) / 20 * steps
            key = f"{which}/{cls.name}"
            results[key] = {"names": names, "seconds_per_image_batch8": batch8, "seconds_per_image_batch1": batch1}
            results[key].update(metrics(model, x, target, s))
            masks[f"{which}_{cls.name}"] = s[:, 0].numpy()
            masks[f"{which}_views"] = np.stack(views)
            print(json.dumps({key: _summary(results[key])}), flush=True)
    np.savez_compressed(out / "masks.npz", **masks)
    (out / "results.json").write_text(json.dumps(results, indent=1))


def _short(cls) -> dict:
    return {"iterations": 20} if cls is IEBB else {"rough_iterations": 13, "crisp_iterations": 7}


def _summary(r: dict) -> dict:
    out = {k: round(v, 3) for k, v in r.items() if isinstance(v, float)}
    for k in ("area_mean_s", "area_above_half", "binariness", "drop"):
        v = np.asarray(r[k])
        out[k] = f"mean {v.mean():.4f} min {v.min():.4f} max {v.max():.4f}"
    return out


def accuracy() -> None:
    """Phi (K = 4, 8, 16; linear and quadratic knots) against exact_perturb on six photos."""
    model = load_model("efficientnet-lite0")
    _, images = photos()
    from skimage import data

    images = [images[0], images[1], data.astronaut()] + images[2:5]
    x = model.preprocessing.to_tensor([model.preprocessing.view(im).pixels for im in images])
    with torch.no_grad():
        target = model.module(x).argmax(1)
    g = torch.Generator().manual_seed(1)
    masks = [
        F.interpolate(torch.rand(len(x), 1, c, c, generator=g), size=224, mode="bilinear", align_corners=False)
        for c in (7, 14, 28)
    ] + [torch.full((len(x), 1, 224, 224), 0.25)]
    exact = [exact_perturb(x, s, rows=4) for s in masks]

    def prob(z):
        with torch.no_grad():
            return torch.softmax(model.module(z), 1).gather(1, target[:, None])[:, 0]

    pe = [prob(e) for e in exact]
    for k in (4, 8, 16):
        for spacing in ("linear", "quadratic"):
            stack = blur_stack(x, levels=k, spacing=spacing)
            err, mx, ds = [], 0.0, []
            for s, e, p in zip(masks, exact, pe):
                a = perturb(stack, s)
                d = (a - e).abs()
                err.append(d.mean().item())
                mx = max(mx, d.max().item())
                ds.append((prob(a) - p).abs())
            ds = torch.cat(ds)
            print(f"K={k:2d} {spacing:9s} mean|err| {np.mean(err):.4f} max|err| {mx:.3f} "
                  f"|dp| mean {ds.mean():.4f} max {ds.max():.4f}", flush=True)


def figure(out: Path, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.load(out / "masks.npz")
    res = json.loads((out / "results.json").read_text())
    cols = [("parts", 0), ("parts", 1), ("efficientnet-lite0", 0), ("efficientnet-lite0", 1), ("efficientnet-lite0", 2)]
    fig, axes = plt.subplots(3, len(cols), figsize=(2.2 * len(cols), 7.0))
    for j, (which, i) in enumerate(cols):
        r_i, r_c = res[f"{which}/iebb"], res[f"{which}/crisp"]
        axes[0, j].imshow(m[f"{which}_views"][i])
        axes[0, j].set_title(r_i["names"][i], fontsize=8)
        axes[1, j].imshow(m[f"{which}_iebb"][i], cmap="inferno", vmin=0, vmax=1)
        axes[1, j].set_title(f"iebb: drop {r_i['drop'][i]:.2f}", fontsize=8)
        axes[2, j].imshow(m[f"{which}_crisp"][i], cmap="gray", vmin=0, vmax=1)
        axes[2, j].set_title(
            f"crisp: area {r_c['area_above_half'][i]:.3f}, drop {r_c['drop'][i]:.2f}", fontsize=8
        )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for a, label in zip(axes[:, 0], ["image", "iebb heat map", "crisp mask"]):
        a.set_ylabel(label)
    fig.tight_layout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "accuracy", "figure"])
    parser.add_argument("--out", type=Path, default=Path("visum-out/saliency-check"))
    parser.add_argument("--figure", type=Path, default=Path(__file__).resolve().parents[1] / "docs/img/saliency-masks.png")
    args = parser.parse_args()
    if args.command == "run":
        run(args.out)
    elif args.command == "accuracy":
        accuracy()
    else:
        figure(args.out, args.figure)


if __name__ == "__main__":
    main()
