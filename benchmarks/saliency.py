"""Cost of the crisp mask against its floor and against TorchRay, side by side in one run.

    python benchmarks/saliency.py [--iterations 90] [--batches 1,8] [--models efficientnet-lite0,alexnet]
                                  [--no-torchray]

For each model and batch size, in a fresh forked process each (so peak memory is that
configuration's own):

* ``crisp`` — visum's plugin with its schedule scaled to ``--iterations`` in total (2/3 rough,
  1/3 crisp, as the paper's 300 + 150); seconds per image;
* ``floor`` — the same number of bare forward + backward passes (gradient w.r.t. a mask-sized
  input, channels-last as the convolutions run fastest on) on the same batch: what any mask
  optimisation must pay; the ratio crisp / floor is the
  overhead of visum's perturbation, regularisers and optimiser (goal ≤ 1.3);
* ``torchray`` — TorchRay's ``extremal_perturbation`` at the same iterations (the reference
  implementation users pick today; install it with ``pip install --no-deps torchray``), one image
  per call as its API takes, so it is reported at batch 1 and as 8 calls for batch 8.

AlexNet has random weights (timing only). Per-image times at the paper's 450 iterations are the
reported ones × 450 / iterations: every term is linear in the iterations.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import time

import numpy as np
import torch


def build(name: str):
    from visum.models.loading import load_model

    if name == "alexnet":
        import torchvision

        module = torchvision.models.alexnet(weights=None).eval()
        for p in module.parameters():
            p.requires_grad_(False)
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        return module, mean, std
    model = load_model(name)
    return model.module, model.preprocessing.mean, model.preprocessing.std


def batch(n: int, mean, std) -> torch.Tensor:
    from PIL import Image
    from skimage import data

    photos = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    views = [np.asarray(Image.fromarray(photos[k % 4]).resize((224, 224))) for k in range(n)]
    x = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x.contiguous()  # plain NCHW, as visum's loaders make it


def run_crisp(module, x, target, iterations):
    from visum_plugins.saliency.crisp import Crisp, CrispOptions

    rough = round(iterations * 2 / 3)
    crisp = Crisp(CrispOptions(rough_iterations=rough, crisp_iterations=iterations - rough))
    t0 = time.perf_counter()
    crisp.explain(module, x, target)
    return time.perf_counter() - t0


def run_floor(module, x, target, iterations):
    s = torch.zeros(x.shape[0], 1, *x.shape[2:], requires_grad=True)
    x = x.contiguous(memory_format=torch.channels_last)  # the layout the convolutions run fastest on
    t0 = time.perf_counter()
    for _ in range(iterations):
        logits = module(x * (1 - s))
        torch.softmax(logits, 1).gather(1, target.view(-1, 1)).sum().backward()
    return time.perf_counter() - t0


def run_torchray(module, x, target, iterations):
    import warnings

    from torchray.attribution.extremal_perturbation import extremal_perturbation

    warnings.filterwarnings("ignore", message="torch.meshgrid")  # TorchRay's, not ours
    t0 = time.perf_counter()
    for k in range(x.shape[0]):
        extremal_perturbation(module, x[k : k + 1], int(target[k]), areas=[0.1], max_iter=iterations)
    return time.perf_counter() - t0


def measure(args) -> dict:
    model_name, bs, method, iterations = args
    torch.manual_seed(0)
    module, mean, std = build(model_name)
    x = batch(bs, mean, std)
    with torch.no_grad():
        target = module(x).argmax(1)
    run_floor(module, x, target, 2)  # warm-up: thread pools, allocator, lazy initialisation
    seconds = {"crisp": run_crisp, "floor": run_floor, "torchray": run_torchray}[method](module, x, target, iterations)
    return {"model": model_name, "batch": bs, "method": method, "s_per_image": seconds / bs,
            "peak_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=90)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--models", default="efficientnet-lite0,alexnet")
    ap.add_argument("--no-torchray", action="store_true")
    args = ap.parse_args()
    methods = ["crisp", "floor"]
    if not args.no_torchray:
        try:
            import torchray  # noqa: F401

            methods.append("torchray")
        except ImportError:
            print("torchray is not installed: pip install --no-deps torchray")
    ctx = multiprocessing.get_context("fork")
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
          f"{args.iterations} iterations per mask, 224² input\n")
    print("| model | batch | crisp s/image | floor s/image | crisp / floor | TorchRay s/image | TorchRay / crisp "
          "| crisp s/image at 450 it. | peak MiB (crisp) |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    for model_name in args.models.split(","):
        for bs in (int(b) for b in args.batches.split(",")):
            by = {}
            for method in methods:
                with ctx.Pool(1) as pool:  # a fresh process: its peak memory is this configuration's
                    by[method] = pool.map(measure, [(model_name, bs, method, args.iterations)])[0]
            c, f, t = by["crisp"], by["floor"], by.get("torchray")
            tr = f"{t['s_per_image']:.2f}" if t else "–"
            ratio = f"{t['s_per_image'] / c['s_per_image']:.2f}" if t else "–"
            print(f"| {model_name} | {bs} | {c['s_per_image']:.2f} | {f['s_per_image']:.2f} | "
                  f"{c['s_per_image'] / f['s_per_image']:.2f} | {tr} | {ratio} | "
                  f"{c['s_per_image'] * 450 / args.iterations:.1f} | {c['peak_MiB']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
