"""Model family x saliency method: does every built-in method run, how, and how long per image.

    python benchmarks/model_matrix.py [--families all] [--methods all] [--json out.json]

Each family is loaded the way a user would give it to visum (``load_model``): EfficientNet-Lite0
with its ImageNet weights, the others with random weights from a file written on the spot
(the classifier head random and rescaled so that the top class has a clear probability:
a near-uniform random head leaves a mask optimisation nothing to delete). Each method runs once with its **default options** on one photo (scikit-image's
``chelsea``) at the model's input size, explaining the class the model predicts; one torch
thread. A method *works* when it returns a finite ``[1, 1, S, S]`` map in [0, 1]; a constant map
is marked (a mask optimisation on random weights may find no evidence to delete); "how" says
what it does on that family. Random weights make the timings meaningful and the maps not:
quality is measured elsewhere (docs/saliency.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

FAMILIES = ["efficientnet-lite0", "torchvision:resnet18", "torchvision:vit_b_16", "timm:resnet10t",
            "timm:vit_tiny_patch16_224", "TorchScript (resnet18)", "torch.export (resnet18)"]


LOGIT_STD = 3.0  # a random head rescaled to this logit spread: the top class gets a clear probability


def _randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights whose classifier head separates the classes on the photo.

    A random head gives near-uniform probabilities over 1000 classes, and then a mask
    optimisation (iebb, crisp) has no evidence to delete: its best mask is empty. The head is
    drawn at random and rescaled so that the logits on the photo have a spread of
    ``LOGIT_STD``.
    """
    torch.manual_seed(seed)
    module.eval()
    for m in module.modules():  # timm and torchvision zero-initialise some residual BatchNorms
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
    heads = [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    name, head = heads[-1]
    torch.nn.init.normal_(head.weight, std=0.02)
    torch.nn.init.zeros_(head.bias)
    with torch.no_grad():
        spread = float(module(photo_tensor()).std())
        head.weight.mul_(LOGIT_STD / max(spread, 1e-8))
    return module


def photo_tensor() -> torch.Tensor:
    """scikit-image's cat, 224x224, ImageNet-normalised (only used to scale random heads)."""
    from skimage import data

    from visum.models.imagenet import imagenet_preprocessing

    pre = imagenet_preprocessing(224)
    return pre.to_tensor([pre.view(data.chelsea()).pixels])


def build(family: str, folder: Path):
    """``LoadedModel`` of ``family``, loaded through visum from a file where the family has one."""
    import torchvision

    from visum.models.loading import load_model

    if family == "efficientnet-lite0":
        return load_model(family)
    if family.startswith("torchvision:"):
        arch = family.split(":", 1)[1]
        path = folder / f"{arch}.pth"
        torch.save(_randomise(torchvision.models.get_model(arch)).state_dict(), path)
        return load_model(family, str(path))
    if family.startswith("timm:"):
        import timm
        from safetensors.torch import save_file

        arch = family.split(":", 1)[1]
        path = folder / f"{arch}.safetensors"
        save_file(_randomise(timm.create_model(arch)).state_dict(), str(path))
        return load_model(family, str(path))
    resnet = _randomise(torchvision.models.resnet18())
    x = torch.zeros(2, 3, 224, 224)
    if family.startswith("TorchScript"):
        path = folder / "resnet18.pt"
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(resnet, x).save(str(path))
        return load_model(str(path))
    path = folder / "resnet18.pt2"
    torch.export.save(torch.export.export(resnet, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)), str(path))
    return load_model(str(path))


def how(family: str, method: str, model, x, target) -> str:
    """What the method does on this family, in a few words."""
    vit = "vit" in family
    if method == "gradcam":
        from visum_plugins.saliency.gradcam import find_cam_layer

        try:
            layer = find_cam_layer(model.module, x, target)
        except ValueError:
            return "needs hookable layers"
        return f"token grid {layer.grid[1]}x{layer.grid[2]} at `{layer.name}`" if layer.grid else f"`{layer.name}`"
    if method == "guided-backprop":
        from visum_plugins.saliency.captum_baselines import runs_only_relu

        hooked = sum(isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6)) or runs_only_relu(m) for m in model.module.modules())
        return f"{hooked} ReLU modules guided" if hooked else "no ReLU module: the plain gradient"
    return "token model, input-level method" if vit else "input-level method"


def main() -> None:
    from skimage import data

    from visum.plugins import get_catalogue

    parser = argparse.ArgumentParser()
    parser.add_argument("--families", default="all")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    catalogue = get_catalogue()
    methods = [c.name for c in catalogue.list("saliency")] if args.methods == "all" else args.methods.split(",")
    families = FAMILIES if args.families == "all" else args.families.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in families:
            model = build(family, Path(tmp))
            pre = model.preprocessing
            x = pre.to_tensor([pre.view(data.chelsea()).pixels])
            with torch.no_grad():
                target = model.module(x).argmax(1)
            for method in methods:
                info = catalogue.get("saliency", method)
                component = catalogue.instantiate(info, catalogue.options("saliency", method, {}))
                start = time.perf_counter()
                try:
                    s = component.explain(model.module, x, target)
                    seconds = time.perf_counter() - start
                    works = bool(torch.isfinite(s).all() and s.min() >= 0 and s.max() <= 1
                                 and tuple(s.shape) == (1, 1, pre.input_size, pre.input_size))
                    constant = bool(s.std() == 0)
                    note = how(family, method, model, x, target)
                except Exception as e:  # noqa: BLE001 - the table reports what fails
                    seconds, works, constant = time.perf_counter() - start, False, False
                    note = f"{type(e).__name__}: {str(e).splitlines()[0][:90]}"
                    traceback.print_exc(file=sys.stderr)
                rows.append({"family": family, "method": method, "works": works, "constant": constant,
                             "seconds": round(seconds, 2), "how": note})
                print(f"{family:28s} {method:22s} {'yes' if works else 'NO':4s} {seconds:7.2f} s  "
                      f"{'(constant) ' if constant else ''}{note}", file=sys.stderr, flush=True)
    print("| model | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for family in families:
        cells = []
        for method in methods:
            r = next(r for r in rows if r["family"] == family and r["method"] == method)
            mark = "yes*" if r["constant"] else "yes"
            cells.append(f"{mark}, {r['seconds']:.1f} s" if r["works"] else f"no: {r['how']}")
        print(f"| {family} | " + " | ".join(cells) + " |")
    print("\n\\* a constant map.")
    print("\n| model | gradcam layer | guided-backprop |\n|---|---|---|")
    for family in families:
        notes = {r["method"]: r["how"] for r in rows if r["family"] == family}
        print(f"| {family} | {notes.get('gradcam', '')} | {notes.get('guided-backprop', '')} |")
    if args.json:
        args.json.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
