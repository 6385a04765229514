"""Crisp mask variants on real photos (docs/saliency.md, crisp).

    python benchmarks/crisp_variants.py --pool visum-out/photos --split dev [--n 40] \
        [--model efficientnet-lite0] [--variant NAME='{"option": value, ...}' ...]
    python benchmarks/crisp_variants.py [--n 8]          # foolbox's photos, as before the pool

With ``--pool`` (made by ``benchmarks/photo_pool.py`` with the same ``--model``; docs/photos.md)
the photos are the first ``--n`` of that split the model classifies correctly, target = their
label; without it, the first ``--n`` of foolbox's 20 ImageNet validation photos (``pip install
--no-deps foolbox``), target = the label in the file name. Choose on ``--split dev``; report on
``test``. For each variant (crisp plugin options as JSON; ``{}`` = visum's defaults): share of
binary pixels (within 0.05 of 0 or 1), area (s > 0.5), connected components of s > 0.5 (median
and quartiles), relative drop of the target's probability under Phi(x; s) and under Phi(x; 1[s > 0.5])
(the mask the regions stage reads), iebb's drop, the drop of iebb's mask thresholded per image
to the same area (iebb-thresh), seconds and network steps per photo.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

PAPER = {"rough_l1": 0.01, "rough_l2": 1e-4, "crisp_l2": 1.0, "crisp_score_blur": 0.0, "rounds": 1}


def photos(n: int, pool: Path | None = None, split: str = "dev", model: str = "efficientnet-lite0"):
    """``[(path, target)]``: the pool's correctly classified photos of ``split``, or foolbox's."""
    if pool is not None:
        listing = json.loads((pool / "pool.json").read_text())
        if listing["model"] != model:
            raise SystemExit(f"{pool}/pool.json was made with {listing['model']}, not {model}: rerun photo_pool.py")
        rows = sorted((r for r in listing["photos"] if r.get("correct") and r["split"] == split), key=lambda r: r["name"])
        return [(pool / split / f"{r['name']}.png", r["label"]) for r in rows][:n]
    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.origin is None:
        raise SystemExit("needs foolbox's images: pip install --no-deps foolbox")
    paths = sorted((Path(spec.origin).parent / "data").glob("imagenet_*.jpg"))[:n]
    return [(p, int(p.stem.split("_")[-1])) for p in paths]


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
    ap.add_argument("--pool", type=Path, default=None, help="a folder made by benchmarks/photo_pool.py")
    ap.add_argument("--split", choices=("dev", "test"), default="dev")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--variant", action="append", default=[], help="NAME=JSON options of the crisp plugin")
    ap.add_argument("--save", type=Path, default=None, help="folder for each variant's masks (NAME.npy, [N, H, W])")
    args = ap.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or {"paper": json.dumps(PAPER), "default": "{}"}

    from visum.data.images import load_image
    from visum.evaluate.deletion import threshold_to_area
    from visum.models.loading import load_model
    from visum.plugins import get_catalogue

    model = load_model(args.model)
    pre = model.preprocessing
    chosen = photos(args.n, args.pool, args.split, args.model)
    paths = [p for p, _ in chosen]
    x = pre.to_tensor([pre.view(load_image(p)).pixels for p in paths])
    t = torch.tensor([label for _, label in chosen])
    catalogue = get_catalogue()

    steps: list[int] = []  # network steps per photo of the last masks() call

    def masks(method: str, options: dict) -> torch.Tensor:
        comp = catalogue.create("saliency", method, options)
        out = []
        steps.clear()
        for i in range(0, len(paths), args.batch):
            out.append(comp.explain(model.module, x[i : i + args.batch], t[i : i + args.batch]))
            steps.extend(int(n) for n in comp.steps_)
        return torch.cat(out)

    listing = {"model": args.model, "photos": [[str(p), int(label)] for p, label in chosen]}
    saved_iebb = None
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        same = (args.save / "photos.json").exists() and json.loads((args.save / "photos.json").read_text()) == listing
        if same and (args.save / "iebb.npy").exists():  # iebb's masks of exactly these photos and model
            saved_iebb = np.load(args.save / "iebb.npy").astype(np.float32)
            if saved_iebb.shape != (len(paths), *x.shape[2:]):
                saved_iebb = None
        (args.save / "photos.json").write_text(json.dumps(listing))
    started = time.perf_counter()
    iebb_s = torch.from_numpy(saved_iebb)[:, None] if saved_iebb is not None else masks("iebb", {})
    iebb_seconds = (time.perf_counter() - started) / len(paths)
    if args.save and saved_iebb is None:
        np.save(args.save / "iebb.npy", iebb_s.numpy()[:, 0].astype(np.float32))
    iebb = iebb_s.numpy()[:, 0]
    where = f"{args.pool} {args.split}" if args.pool else "foolbox"
    print(f"{len(paths)} photos ({where}), {args.model}; iebb's drop {drops(model.module, x, t, iebb_s).mean():.3f}, "
          f"{iebb_seconds:.1f} s/photo{' (saved masks)' if saved_iebb is not None else ''}\n")
    print("| variant | binary pixels mean (min) | >= 99 % | area s > 0.5 | components median (quartiles) | drop "
          "| drop of s > 0.5 | iebb-thresh drop | s/photo | steps/photo |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for name, text in variants.items():
        started = time.perf_counter()
        s = masks("crisp", json.loads(text))
        seconds = (time.perf_counter() - started) / len(paths)
        if args.save:
            np.save(args.save / f"{name}.npy", s.numpy()[:, 0].astype(np.float16))
        sn = s.numpy()[:, 0]
        binary = ((sn <= 0.05) | (sn >= 0.95)).mean((1, 2))
        area = (sn > 0.5).mean((1, 2))
        components = [ndimage.label(a > 0.5)[1] for a in sn]
        thresh = np.stack([threshold_to_area(iebb[i], float(sn[i].mean())) for i in range(len(sn))])
        d, dt = drops(model.module, x, t, s), drops(model.module, x, t, torch.from_numpy(thresh)[:, None].float())
        db = drops(model.module, x, t, (s > 0.5).float())  # the mask the regions stage reads
        print(f"| {name} | {100 * binary.mean():.2f} % ({100 * binary.min():.1f} %) | {(binary >= 0.99).sum()}/{len(sn)} "
              f"| {100 * area.mean():.1f} % | {np.median(components):.0f} ({np.percentile(components, 25):.0f}-"
              f"{np.percentile(components, 75):.0f}) | {d.mean():.3f} | {db.mean():.3f} | {dt.mean():.3f} | {seconds:.1f} | {np.mean(steps):.0f} |", flush=True)


if __name__ == "__main__":
    main()
