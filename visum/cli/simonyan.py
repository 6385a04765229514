"""Simonyan et al. 2013: ``visum classviz``, ``visum localize``, ``visum evaluate localization|pointing``."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import typer

from visum.atomic import atomic_write, write_text_atomic
from visum.cli import (
    TqdmReporter,
    _config_from_flags,
    app,
    evaluate_app,
    with_model_flags,
)
from visum.errors import ConfigError

DEFAULT_LOCALISATION_METHODS = "gradient,iebb,crisp,gradcam"
DEFAULT_POINTING_METHODS = (
    "gradient,integrated-gradients,gradcam,occlusion,guided-backprop,smoothgrad,iebb,crisp"
)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.split(",")[0].strip().lower()).strip("-")[:40] or "class"


@app.command()
@with_model_flags
def classviz(
    model: str | None = typer.Option(None, "--model", help="Model specification, as for `visum run` (default 'parts')."),
    target: list[str] = typer.Option([], "--target", help="Class index or name; repeatable. Default for 'parts': its main class."),
    iterations: int = typer.Option(200, "--iterations", min=0, help="Gradient ascent steps."),
    lr: float = typer.Option(0.01, "--lr", min=0.0, help="Step size: mean change per pixel and step in 0..1 units with --step normalised, the gradient's factor with --step plain."),
    l2: float = typer.Option(1e-4, "--l2", min=0.0, help="lambda of the L2 penalty lambda*||I||^2 (I = mean-subtracted image in 0..1 units)."),
    step: str = typer.Option("normalised", "--step", help="'normalised' (step = lr * d / mean|d|) or 'plain' (lr * d), d the objective's gradient."),
    jitter: int = typer.Option(0, "--jitter", min=0, help="Addition: random circular shift of up to this many pixels before each step (0 = off, as the paper)."),
    blur_sigma: float = typer.Option(0.0, "--blur-sigma", min=0.0, help="Addition: Gaussian blur of this sigma (pixels) every --blur-every steps (0 = off, as the paper)."),
    blur_every: int = typer.Option(4, "--blur-every", min=1, help="Steps between blurs."),
    clip: bool = typer.Option(False, "--clip/--no-clip", help="Addition: keep I + mean inside [0, 1] after each step."),
    display: str = typer.Option("mean", "--display", help="'mean': the training mean added back, clipped (the paper); 'stretch': contrast stretched too."),
    seed: int = typer.Option(0, "--seed", help="Seed of the jitter offsets."),
    device: str = typer.Option("cpu", "--device", help="torch device."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default ./visum-out/classviz-<timestamp>)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute; do not read or write the cache."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    model_flags: dict | None = None,
) -> None:
    """Sec. 2: the image maximising S_c(I) - lambda ||I||^2 by gradient ascent from the zero image; a PNG per target."""
    from PIL import Image

    from visum.cache import Cache, make_key
    from visum.classviz import class_model_visualisation, stretch_contrast
    from visum.config import make_config
    from visum.models.loading import load_configured_model, num_classes, resolve_target

    if step not in ("normalised", "plain"):
        raise ConfigError(f"bad --step '{step}': use 'normalised' or 'plain'")
    if display not in ("mean", "stretch"):
        raise ConfigError(f"bad --display '{display}': use 'mean' or 'stretch'")
    spec = model or "parts"
    model_config = make_config({"model": {"spec": spec, **{k: v for k, v in model_flags.items() if v is not None}}}).model
    loaded = load_configured_model(model_config, device=device)
    k = num_classes(loaded)
    names = [t for t in target if t.strip()]
    if not names:
        if spec != "parts":
            raise ConfigError("--target is required for this model (a class index or name)")
        names = ["0"]
    targets = list(dict.fromkeys(resolve_target(t, loaded.class_names, k) for t in names))
    pre = loaded.preprocessing
    settings = {"iterations": iterations, "lr": lr, "l2": l2, "step": step, "jitter": jitter, "blur_sigma": blur_sigma,
                    "blur_every": blur_every, "clip": clip, "seed": seed}
    out_dir = out or Path("visum-out") / datetime.now().strftime("classviz-%Y%m%d-%H%M%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    cache = Cache(cache_dir, enabled=not no_cache)
    reporter = TqdmReporter(quiet)
    rows = []
    for t in targets:
        name = loaded.class_names[t] if loaded.class_names else str(t)
        key = make_key("classviz", model=loaded.fingerprint, pre=pre.key(),
                       target=t, **settings)
        result = cache.get("classviz", key)
        if result is None:
            with reporter.bar(iterations, f"classviz ({name})") as bar:
                result = class_model_visualisation(
                    loaded.module, t, size=pre.input_size, mean=pre.mean, std=pre.std, device=device,
                    callback=lambda _k, _s: bar.update(1), **settings,
                )
            cache.put("classviz", key, result)
        picture = result.image if display == "mean" else stretch_contrast(result.centred, pre.mean)
        path = out_dir / f"classviz-{t}-{_slug(name)}.png"
        with atomic_write(path, "wb") as fh:
            Image.fromarray(picture).save(fh, format="PNG")
        top = [int(i) for i in (-result.logits).argsort()[:5]]
        rows.append({
            "target": t, "name": name, "png": path.name, "score_start": float(result.scores[0]),
            "score_end": float(result.scores[-1]), "rank": result.rank, "top5": top,
            "top5_names": [loaded.class_names[i] for i in top] if loaded.class_names else None,
            "mean_abs_I": float(abs(result.centred).mean()),
        })
        typer.echo(f"{name} ({t}): S_c {result.scores[0]:.2f} -> {result.scores[-1]:.2f}, "
                   f"rank {result.rank} of {k} on the result; {path}")
    manifest = {"model": spec, "fingerprint": loaded.fingerprint, "mean": list(pre.mean), "std": list(pre.std),
                "input_size": pre.input_size, "display": display, "settings": settings, "targets": rows}
    write_text_atomic((out_dir / "classviz.json"), json.dumps(manifest, indent=1))


@app.command()
@with_model_flags
def localize(
    saliency: str = typer.Option(..., "--saliency", help="Saliency plugin whose maps seed the segmentation (see `visum plugins --kind saliency`)."),
    images: Path | None = typer.Option(None, "--images", help="Folder of images. Default: the parts benchmark."),
    model: str | None = typer.Option(None, "--model", help="Model specification, as for `visum run`."),
    target: str | None = typer.Option(None, "--target", help="A class for every image, 'predicted' (each image's top-1) or 'filename'."),
    method: str = typer.Option("grabcut", "--method", help="'grabcut' (Sec. 3.2) or 'threshold' (the map thresholded directly, regions-stage threshold)."),
    fg_quantile: float = typer.Option(0.95, "--fg-quantile", min=0.0, max=1.0, help="Foreground seeds: saliency above this quantile."),
    bg_quantile: float = typer.Option(0.30, "--bg-quantile", min=0.0, max=1.0, help="Background seeds: saliency below this quantile."),
    refine: int = typer.Option(0, "--refine", min=0, help="GrabCut iterations re-learning the colour models after the first cut (0: the paper's single cut)."),
    opt: list[str] = typer.Option([], "--opt", help="Saliency option saliency.KEY=VALUE, repeatable."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default ./visum-out/localize-<timestamp>)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per saliency batch."),
    device: str | None = typer.Option(None, "--device", help="torch device."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute masks."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    model_flags: dict | None = None,
) -> None:
    """Sec. 3.2: object box and mask per image from a saliency map by GraphCut; localization.json, masks/, overlays/."""
    import numpy as np
    from PIL import Image

    from visum.cache import Cache
    from visum.data.parts import load_ground_truth
    from visum.errors import InputError
    from visum.evaluate.masks import evaluation_masks
    from visum.geometry import box_iou_one
    from visum.localize import grabcut_localisation, threshold_localisation

    if method not in ("grabcut", "threshold"):
        raise ConfigError(f"bad --method '{method}': use 'grabcut' or 'threshold'")
    if bg_quantile > fg_quantile:
        raise ConfigError(f"--bg-quantile {bg_quantile} is above --fg-quantile {fg_quantile}")
    flags = {"images": images, "model": model, "target": target, "saliency": saliency, "seed": seed,
             **model_flags,
             "batch_size": batch_size, "device": device, "keep_misclassified": True}
    cfg = _config_from_flags(None, flags, opt)
    out_dir = out or Path("visum-out") / datetime.now().strftime("localize-%Y%m%d-%H%M%S")
    reporter = TqdmReporter(quiet)
    cache = Cache(cache_dir, enabled=not no_cache)
    found = evaluation_masks(cfg, [saliency], out_dir, cache=cache, reporter=reporter)
    all_images, targets, masks = found.images, found.targets, found.masks[saliency]
    threshold, sigma = found.binarisation[saliency]
    folder = Path(cfg.images) if cfg.images is not None else out_dir / "images"
    try:
        truth = load_ground_truth(folder)
    except InputError:
        truth = {}
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    (out_dir / "overlays").mkdir(parents=True, exist_ok=True)
    rows, ious = [], []
    for im, t in zip(reporter.progress(all_images, f"localise ({saliency})", len(all_images)), targets):
        s = masks[im.id]
        if method == "grabcut":
            loc = grabcut_localisation(im.view.pixels, s, fg_quantile=fg_quantile, bg_quantile=bg_quantile,
                                       refine=refine, seed=cfg.seed)
        else:
            loc = threshold_localisation(s, threshold, sigma)
        box = im.view.box_to_original(loc.box) if loc.box is not None else None
        mask = im.view.to_original(loc.mask.astype(np.float32)) >= 0.5
        with atomic_write(out_dir / "masks" / f"{im.id:04d}.png", "wb") as fh:
            Image.fromarray((mask * 255).astype(np.uint8)).save(fh, format="PNG")
        with atomic_write(out_dir / "overlays" / f"{im.id:04d}.png", "wb") as fh:
            Image.fromarray(_overlay(im.original, mask, box)).save(fh, format="PNG")
        row = {"image": str(im.path), "target": t, "box": list(box) if box else None,
               "view_box": list(loc.box) if loc.box else None, "mask": f"masks/{im.id:04d}.png",
               "mask_area": float(mask.mean()), "fallback": loc.fallback or None}
        gt = truth.get(im.path.name)
        if gt is not None:
            row["true_box"] = list(gt.object_box)
            row["iou"] = box_iou_one(box, gt.object_box)
            ious.append(row["iou"])
        rows.append(row)
    data = {"saliency": saliency, "model": found.model.spec, "method": method,
            "settings": {"fg_quantile": fg_quantile, "bg_quantile": bg_quantile, "refine": refine,
                         "threshold": [threshold, sigma] if method == "threshold" else None},
            "images": rows}
    write_text_atomic((out_dir / "localization.json"), json.dumps(data, indent=1))
    if ious:
        acc = float(np.mean(np.asarray(ious) >= 0.5))
        reporter.info(f"{len(ious)} images with a true box: localisation accuracy {100 * acc:.1f}% "
                      f"(IoU >= 0.5), mean IoU {np.mean(ious):.3f}")
    typer.echo(f"boxes: {(out_dir / 'localization.json').resolve()}")


def _overlay(image, mask, box):
    """The image with the object mask tinted red and its box drawn in yellow."""
    import cv2
    import numpy as np

    out = image.astype(np.float32).copy()
    out[mask] = 0.55 * out[mask] + 0.45 * np.array([255, 0, 0], np.float32)
    out = out.round().astype(np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (255, 230, 0), max(1, round(min(out.shape[:2]) / 128)))
    return out


def _benchmark_config(images, model, weights, target, seed, batch_size, device, opt):
    from visum.cli.evaluate import _with_saliency_options

    flags = {"images": images, "model": model, "weights": weights, "target": target, "seed": seed, "batch_size": batch_size,
                 "device": device, "keep_misclassified": True}
    return _with_saliency_options(_config_from_flags(None, flags, []), opt)


_IMAGES_HELP = "A parts-benchmark folder (`visum parts generate`). Default: the parts model's default benchmark."
_TARGET_HELP = "'truth' (each image's true class, default), 'predicted', a class, or 'filename'."


@evaluate_app.command("localization")
def evaluate_localization_cmd(
    images: Path | None = typer.Option(None, "--images", help=_IMAGES_HELP),
    model: str | None = typer.Option(None, "--model", help="Model specification, as for `visum run`."),
    weights: str | None = typer.Option(None, "--weights", help="Weights, as for `visum run`."),
    target: str | None = typer.Option(None, "--target", help=_TARGET_HELP),
    methods: str = typer.Option(DEFAULT_LOCALISATION_METHODS, "--methods", help="Comma-separated saliency plugins."),
    fg_quantile: float = typer.Option(0.95, "--fg-quantile", min=0.0, max=1.0, help="Foreground seeds: saliency above this quantile."),
    bg_quantile: float = typer.Option(0.30, "--bg-quantile", min=0.0, max=1.0, help="Background seeds: saliency below this quantile."),
    refine: int = typer.Option(0, "--refine", min=0, help="Extra GrabCut iterations after the first cut."),
    opt: list[str] = typer.Option([], "--opt", help="Saliency options saliency.KEY=VALUE (applied to every method that has the option)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per batch."),
    device: str | None = typer.Option(None, "--device", help="torch device."),
    out: Path = typer.Option(Path("visum-out/localization"), "--out", help="Folder for localization.md and localization.json."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute masks."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Sec. 3.2: localisation accuracy (IoU >= 0.5 with the true object box) of GraphCut boxes and of thresholded maps."""
    from visum.cache import Cache
    from visum.evaluate.localisation import evaluate_localisation

    if bg_quantile > fg_quantile:
        raise ConfigError(f"--bg-quantile {bg_quantile} is above --fg-quantile {fg_quantile}")
    cfg = _benchmark_config(images, model, weights, target, seed, batch_size, device, opt)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    report = evaluate_localisation(cfg, names, out, fg_quantile=fg_quantile, bg_quantile=bg_quantile, refine=refine,
                                   cache=Cache(cache_dir, enabled=not no_cache), reporter=TqdmReporter(quiet))
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic((out / "localization.md"), report.markdown())
    data = {"model": report.model, "folder": report.folder, "settings": report.settings, "rows": report.rows(),
            "images": report.images, "targets": report.targets, "true_boxes": report.true_boxes,
            "whole_image_iou": report.whole_image,
            "per_image": {m.method: {"grabcut_iou": m.grabcut, "threshold_iou": m.threshold, "cam_iou": m.cam}
                          for m in report.methods}}
    write_text_atomic((out / "localization.json"), json.dumps(data, indent=1))
    typer.echo(report.markdown())
    typer.echo(f"table: {(out / 'localization.md').resolve()}")


@evaluate_app.command("pointing")
def evaluate_pointing_cmd(
    images: Path | None = typer.Option(None, "--images", help=_IMAGES_HELP),
    model: str | None = typer.Option(None, "--model", help="Model specification, as for `visum run`."),
    weights: str | None = typer.Option(None, "--weights", help="Weights, as for `visum run`."),
    target: str | None = typer.Option(None, "--target", help=_TARGET_HELP),
    methods: str = typer.Option(DEFAULT_POINTING_METHODS, "--methods", help="Comma-separated saliency plugins."),
    tolerance: int = typer.Option(0, "--tolerance", min=0, help="Pixels by which the object and the parts are grown for the pointing game."),
    opt: list[str] = typer.Option([], "--opt", help="Saliency options saliency.KEY=VALUE (applied to every method that has the option)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per batch."),
    device: str | None = typer.Option(None, "--device", help="torch device."),
    out: Path = typer.Option(Path("visum-out/pointing"), "--out", help="Folder for pointing.md and pointing.json."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Recompute masks."),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Per-image saliency scores: pointing game (maximum inside the object / the parts) and IoU with the true parts."""
    from visum.cache import Cache
    from visum.evaluate.pointing import evaluate_pointing

    cfg = _benchmark_config(images, model, weights, target, seed, batch_size, device, opt)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    report = evaluate_pointing(cfg, names, out, tolerance=tolerance, cache=Cache(cache_dir, enabled=not no_cache),
                               reporter=TqdmReporter(quiet))
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic((out / "pointing.md"), report.markdown())
    data = {"model": report.model, "folder": report.folder, "settings": report.settings, "rows": report.rows(),
            "images": report.images, "targets": report.targets, "parts_area": report.parts_area,
            "per_image": {m.method: {"pointing_box": m.box_hits, "pointing_parts": m.part_hits,
                                     "iou_threshold": m.iou_threshold, "iou_true_area": m.iou_area}
                          for m in report.methods}}
    write_text_atomic((out / "pointing.json"), json.dumps(data, indent=1))
    typer.echo(report.markdown())
    typer.echo(f"table: {(out / 'pointing.md').resolve()}")
