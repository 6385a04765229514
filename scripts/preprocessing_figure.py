"""Make docs/img/preprocessing.png: what a model is fed under two recipes, and what it answers.

    python scripts/preprocessing_figure.py

Top: scikit-image's cat photo through EfficientNet-Lite0's recipe (short side to 256, centre
224 crop) and squashed whole to 224. Bottom: an image of the test suite's border classifier
(tests/byom: trained on whole 96x96 images, its evidence a red bar along one border) through
the ImageNet centre crop visum used to apply to every model, and whole; each view is titled
with the model's answer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from byom import CLASS_NAMES, MEAN, STD, border_image, train_border_net  # noqa: E402

from visum.models.base import Preprocessing  # noqa: E402
from visum.models.loading import load_model  # noqa: E402
from visum.report.summary_image import outline_box  # noqa: E402


def answer(module, pre: Preprocessing, view: np.ndarray, names) -> str:
    with torch.no_grad():
        p = module(pre.to_tensor([view])).softmax(1)[0]
    k = int(p.argmax())
    return f"'{names[k]}' {p[k]:.2f}"


def main() -> None:
    from skimage import data

    torch.set_num_threads(1)
    lite0 = load_model("efficientnet-lite0")
    cat = data.chelsea()
    squash224 = lite0.preprocessing.with_changes(resize="squash", crop_ratio=1.0)
    border_model, _ = train_border_net(seed=1)
    bar = border_image(np.random.default_rng(5), 0)
    crop96 = Preprocessing(96, 110, MEAN, STD)  # the ImageNet recipe visum used to apply: round(96 * 256 / 224)
    whole96 = Preprocessing(96, 96, MEAN, STD, "squash")

    rows = [
        (cat, lite0.module, lite0.class_names, [("EfficientNet-Lite0's recipe", lite0.preprocessing),
                                                 ("squashed whole", squash224)]),
        (bar, border_model, CLASS_NAMES, [("ImageNet centre crop", crop96), ("whole image (no crop)", whole96)]),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(10.5, 7.2))
    for r, (image, module, names, recipes) in enumerate(rows):
        first = recipes[0][1].view(image)
        axes[r, 0].imshow(outline_box(image, first.crop_box()))
        axes[r, 0].set_title(f"original {image.shape[1]}x{image.shape[0]}\nyellow: what the crop keeps", fontsize=10)
        for c, (label, pre) in enumerate(recipes, start=1):
            view = pre.view(image).pixels
            axes[r, c].imshow(view)
            axes[r, c].set_title(f"{label}\nmodel says {answer(module, pre, view, names)}", fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    out = ROOT / "docs" / "img" / "preprocessing.png"
    fig.savefig(out, dpi=90)
    with Image.open(out) as img:  # a palette PNG: a fraction of the size, no visible change
        img.convert("RGB").quantize(256).save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    main()
