"""Time to quality: seconds per photo for crisp and for TorchRay to reach the same mean drop (issue 15, sec. 3).

    pip install --no-deps torchray
    python benchmarks/time_to_quality.py --pool visum-out/photos --split test --n 12 \\
        --crisp-budgets 90,180,300,450 --torchray-budgets 100,200,400,800 --drops 0.5,0.6,0.7,0.8,0.9

Both methods run side by side in one process on the same photos (the pool's correctly
classified photos of ``--split``, as ``crisp_variants.py`` picks them; choose on dev, report on
test), at several iteration budgets each:

* ``crisp`` — visum's plugin with ``--crisp`` options (JSON; default one deletion per image,
  ``{"rounds": 1}``, the mask issue 15's targets are about), its schedule scaled to the budget
  (2/3 rough, 1/3 crisp, as the paper's 300 + 150), in batches of ``--batch``;
* ``torchray`` — TorchRay's ``extremal_perturbation`` (Fong et al. 2019), deletion variant, area
  ``--area``, ``max_iter`` = the budget, one photo per call as its API takes.

Quality is measured the same way for both: the relative drop of the target's probability under
visum's perturbation ``Phi(x; s)`` (16 blur levels) with the method's mask ``s`` (TorchRay's
deletion mask marks what it deletes, as ``s`` does). The first table lists each budget's mean
drop, area and seconds per photo; the second, for each drop in ``--drops``, the fewest seconds
per photo at which each method's mean drop reaches it with masks no larger than ``--max-area``
on average (TorchRay's deletion starts from a mask that deletes everything and shrinks it to its
area), and TorchRay's time over crisp's (the issue's goal: ≥ 3). A method that never reaches a
drop shows "–".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crisp_variants import drops, photos  # noqa: E402  (a sibling script, not a package)


def crisp_masks(module, x, t, budget: int, options: dict, batch: int) -> torch.Tensor:
    from visum_plugins.saliency.crisp import Crisp, CrispOptions

    rough = round(budget * 2 / 3)
    crisp = Crisp(CrispOptions(**{**options, "rough_iterations": rough, "crisp_iterations": budget - rough}))
    return torch.cat([crisp.explain(module, x[i : i + batch], t[i : i + batch]) for i in range(0, len(x), batch)])


def torchray_masks(module, x, t, budget: int, area: float) -> torch.Tensor:
    import warnings

    from torchray.attribution.extremal_perturbation import DELETE_VARIANT, extremal_perturbation

    warnings.filterwarnings("ignore", message="torch.meshgrid")  # TorchRay's, not ours
    out = []
    for k in range(len(x)):
        mask, _ = extremal_perturbation(module, x[k : k + 1], int(t[k]), areas=[area], max_iter=budget,
                                        variant=DELETE_VARIANT)
        out.append(mask.detach().float())
    return torch.cat(out)


def fewest_seconds(rows: list[dict], method: str, drop: float, max_area: float = 1.0) -> float | None:
    """The smallest seconds per photo among ``method``'s budgets whose mean drop reaches ``drop`` with a
    mean area (``s > 0.5``) of at most ``max_area``: deleting the whole photo removes any class."""
    times = [r["seconds"] for r in rows if r["method"] == method and r["drop"] >= drop and r["area"] <= max_area]
    return min(times) if times else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=Path, default=None, help="a folder made by benchmarks/photo_pool.py")
    ap.add_argument("--split", choices=("dev", "test"), default="dev")
    ap.add_argument("--n", type=int, default=12)
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crisp", default='{"rounds": 1}', help="crisp plugin options, JSON")
    ap.add_argument("--crisp-budgets", default="90,180,300,450")
    ap.add_argument("--torchray-budgets", default="100,200,400,800")
    ap.add_argument("--area", type=float, default=0.1, help="TorchRay's deletion area (share of the image)")
    ap.add_argument("--drops", default="0.5,0.6,0.7,0.8,0.9")
    ap.add_argument("--max-area", type=float, default=0.25,
                    help="a budget counts in the second table only if its masks' mean area (s > 0.5) is at most this: "
                         "TorchRay starts from a mask that deletes everything")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    try:
        options = json.loads(args.crisp)
        budgets = {"crisp": [int(b) for b in args.crisp_budgets.split(",")],
                   "torchray": [int(b) for b in args.torchray_budgets.split(",")]}
        levels = [float(d) for d in args.drops.split(",")]
    except ValueError as exc:
        ap.error(f"bad --crisp, budgets or --drops: {exc}")
    try:
        import torchray  # noqa: F401
    except ImportError:
        print("torchray is not installed: pip install --no-deps torchray", file=sys.stderr)
        return 2

    from visum.data.images import load_image
    from visum.models.loading import load_model

    model = load_model(args.model)
    pre = model.preprocessing
    chosen = photos(args.n, args.pool, args.split, args.model)
    x = pre.to_tensor([pre.view(load_image(p)).pixels for p, _ in chosen])
    t = torch.tensor([label for _, label in chosen])
    module = model.module
    print(f"{len(chosen)} photos ({f'{args.pool} {args.split}' if args.pool else 'foolbox'}), {args.model}, "
          f"{torch.get_num_threads()} torch threads; crisp options {json.dumps(options)}, TorchRay area {args.area:g}\n")
    print("| method | iterations | s/photo | mean drop | area s > 0.5 |")
    print("|---|---|---|---|---|", flush=True)
    rows = []
    for method, method_budgets in budgets.items():
        for budget in method_budgets:
            started = time.perf_counter()
            s = (crisp_masks(module, x, t, budget, options, args.batch) if method == "crisp"
                 else torchray_masks(module, x, t, budget, args.area))
            seconds = (time.perf_counter() - started) / len(chosen)
            d = float(drops(module, x, t, s).mean())
            area = float((s > 0.5).float().mean())
            rows.append({"method": method, "iterations": budget, "seconds": seconds, "drop": d, "area": area})
            print(f"| {method} | {budget} | {seconds:.1f} | {d:.3f} | {100 * area:.1f} % |", flush=True)
    print(f"\nWith a mean area of at most {100 * args.max_area:g} % of the photo:\n")
    print("| mean drop reached | crisp s/photo | TorchRay s/photo | TorchRay / crisp |")
    print("|---|---|---|---|")
    for level in levels:
        c, r = (fewest_seconds(rows, m, level, args.max_area) for m in ("crisp", "torchray"))
        ratio = f"{r / c:.2f}" if c and r else "–"
        print(f"| ≥ {level:g} | {'–' if c is None else f'{c:.1f}'} | {'–' if r is None else f'{r:.1f}'} | {ratio} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"photos": [str(p) for p, _ in chosen], "model": args.model,
                                        "crisp": options, "area": args.area, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
