"""Draw docs/img/captum-baselines.png and time the Captum baseline saliency plugins.

    python benchmarks/captum_figure.py [--out docs/img/captum-baselines.png]

Three real photos (scikit-image's ``chelsea`` and ``coffee``, and one of foolbox's bundled
ImageNet images) go through EfficientNet-Lite0's preprocessing; each of the five methods of
``visum_plugins.saliency.captum_baselines`` explains the top-1 class with its default
options. One row per photo: the model's view with the predicted class, then each method's
mask over a grey copy of the view. The script prints the wall-clock time of every
``explain`` call (one image per call, after one warm-up call per method), their minimum and
median per method, the process CPU time per call, and the time of one forward and one
forward+backward pass for scale. On a shared machine wall-clock times swing with the load;
``--threads 1`` makes the CPU time a load-independent measure of the work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from visum.models.loading import load_model  # noqa: E402
from visum_plugins.saliency.captum_baselines import (  # noqa: E402
    GuidedBackpropSaliency,
    IntegratedGradientsSaliency,
    OcclusionSaliency,
    SmoothGradSaliency,
)
from visum_plugins.saliency.gradcam import GradCAMSaliency  # noqa: E402

METHODS = [IntegratedGradientsSaliency, GradCAMSaliency, OcclusionSaliency, GuidedBackpropSaliency, SmoothGradSaliency]
ROOT = Path(__file__).resolve().parents[1]


def foolbox_image(name: str) -> np.ndarray:
    import importlib.util

    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.origin is None:
        raise SystemExit("foolbox is not installed (pip install -e '.[test]')")
    path = Path(spec.origin).parent / "data" / name
    return np.asarray(Image.open(path).convert("RGB"))


def overlay(view: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``view [S, S, 3]`` uint8, ``s [S, S]`` in [0, 1] -> RGB float: mask colours over a grey view."""
    grey = view.astype(np.float32).mean(axis=2, keepdims=True) / 255.0
    heat = plt.get_cmap("inferno")(s)[..., :3]
    alpha = 0.35 + 0.65 * s[..., None]
    return (1 - alpha) * 0.6 * grey + alpha * heat


def _median_time(fn, repeats: int = 5) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "captum-baselines.png")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--foolbox", default="imagenet_06_609.jpg", help="foolbox image (ImageNet class 609, jeep)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)

    loaded = load_model("efficientnet-lite0")
    model, pre = loaded.module, loaded.preprocessing
    photos = {"chelsea": data.chelsea(), "coffee": data.coffee(), a.foolbox: foolbox_image(a.foolbox)}
    views = {k: pre.view(v).pixels for k, v in photos.items()}

    rows = []
    for key, view in views.items():
        x = pre.to_tensor([view])
        with torch.no_grad():
            prob = torch.softmax(model(x), dim=1)
        target = prob.argmax(dim=1)
        label = loaded.class_names[int(target)] if loaded.class_names else str(int(target))
        rows.append((key, view, x, target, f"{label.split(',')[0]} ({float(prob.max()):.2f})"))

    times: dict[str, list[float]] = {cls.name: [] for cls in METHODS}
    cpu: dict[str, list[float]] = {cls.name: [] for cls in METHODS}
    masks: dict[tuple[str, str], np.ndarray] = {}
    for cls in METHODS:
        method = cls()
        method.explain(model, rows[0][2], rows[0][3])  # warm-up
        for key, _view, x, target, _label in rows:
            t0, c0 = time.perf_counter(), time.process_time()
            s = method.explain(model, x, target)
            times[cls.name].append(time.perf_counter() - t0)
            cpu[cls.name].append(time.process_time() - c0)
            masks[key, cls.name] = s[0, 0].numpy()

    x0 = rows[0][2]
    with torch.no_grad():
        forward = _median_time(lambda: model(x0))
    xg = x0.clone().requires_grad_(True)
    backward = _median_time(lambda: model(xg)[0, int(rows[0][3])].backward())
    print(f"EfficientNet-Lite0, 224x224, one image per call, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  reference: one forward {forward:.3f} s, one forward+backward {backward:.3f} s")
    for name, ts in times.items():
        print(f"  {name:22s} wall min {min(ts):6.2f}  median {statistics.median(ts):6.2f} s/image   "
              f"({', '.join(f'{t:.2f}' for t in ts)});  CPU median {statistics.median(cpu[name]):6.2f} s/image")

    n_cols = 1 + len(METHODS)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.1 * n_cols, 2.35 * len(rows)))
    for r, (key, view, _x, _target, label) in enumerate(rows):
        axes[r, 0].imshow(view)
        axes[r, 0].set_title(label, fontsize=8)
        for c, cls in enumerate(METHODS, start=1):
            axes[r, c].imshow(overlay(view, masks[key, cls.name]))
            if r == 0:
                axes[r, c].set_title(cls.name, fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Captum baselines on EfficientNet-Lite0, top-1 class, default options", fontsize=9)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=80)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
