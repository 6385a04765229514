"""visum from Python: explain the model you hold, in a notebook or a script.

    import visum
    result = visum.summarize(model, images, target="tabby cat", saliency="crisp", clusterer="ap")
    result.kept            # the summaries kept, each with its members (image, region, part box, score)
    result                 # in Jupyter: the summaries inline
    result.save("out/")    # the files `visum run` writes
    mask = visum.explain(model, image, target="tabby cat", method="crisp")   # one image, one mask

The same pipeline, cache, determinism and checks as ``visum run`` (which is this function's
command-line shell): a configuration is built from the arguments and validated before any
work, and the run is a :class:`visum.pipeline.Pipeline`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from visum.config import RunConfig, load_config, make_config
from visum.engines import check_engine
from visum.errors import ConfigError, InputError
from visum.result import Result

__all__ = ["explain", "summarize"]

Model = Any  # torch.nn.Module, or a model specification string as `visum run --model` takes
Images = Any  # a folder, a list of paths, PIL images or uint8 [H, W, 3] arrays


def _config(config: RunConfig | str | os.PathLike | None, model: Model, target: Any,
            overrides: Mapping[str, Any], options: Mapping[str, Mapping[str, Any]] | None) -> RunConfig:
    base = config if isinstance(config, RunConfig) else (load_config(config) if config is not None else RunConfig())
    data = base.model_dump(mode="python")
    if isinstance(model, str):
        data["model"]["spec"] = model
    if target is not None:
        data["target"] = str(target)
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"options: expected a mapping of kind -> {{option: value}}, got {type(options).__name__}")
    for kind, opts in (options or {}).items():
        if not isinstance(opts, Mapping):
            raise ConfigError(f"options[{kind!r}]: expected a mapping of option -> value, got {type(opts).__name__}")
        data["options"].setdefault(kind, {}).update(opts)
    return make_config(data)


def _image_paths(images: Images, out_dir: Path) -> tuple[Path | None, list[Path] | None]:
    """``(folder, None)`` for a folder, ``(None, paths)`` for anything else; pictures in memory are
    written to ``out_dir/images`` as PNG (the manifest names every image by its file)."""
    from PIL import Image

    from visum.atomic import atomic_write

    if images is None:
        return None, None
    if isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if path.is_dir():
            return path, None
        if path.is_file():
            return None, [path]
        raise InputError(f"{path}: no such folder or image file")
    if isinstance(images, (np.ndarray, Image.Image)):
        images = [images]
    if not isinstance(images, (list, tuple)) and not hasattr(images, "__iter__"):
        raise InputError(f"images: a {type(images).__name__}; give a folder, image paths, PIL images or uint8 arrays")
    paths = []
    for k, item in enumerate(images):
        if isinstance(item, (str, os.PathLike)):
            if not Path(item).is_file():
                raise InputError(f"{item}: no such image file")
            paths.append(Path(item))
            continue
        if isinstance(item, Image.Image):
            picture = item.convert("RGB")
        elif isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim == 3 and item.shape[2] == 3:
            picture = Image.fromarray(item)
        else:
            what = (f"an array of shape {item.shape} and dtype {item.dtype}" if isinstance(item, np.ndarray)
                    else f"a {type(item).__name__}")
            raise InputError(f"images[{k}]: {what}; give a path, a PIL image or a uint8 [H, W, 3] array")
        path = out_dir / "images" / f"{k:04d}.png"
        with atomic_write(path, "wb") as fh:
            picture.save(fh, format="PNG")
        paths.append(path)
    if not paths:
        raise InputError("no images given")
    return None, paths


def _same_folder(paths: list[Path]) -> Path | None:
    """The folder whose images are exactly ``paths``, if there is one (then run.toml can name it)."""
    from visum.data.images import list_images

    parents = {p.resolve().parent for p in paths}
    if len(parents) != 1:
        return None
    folder = parents.pop()
    try:
        return folder if sorted(p.resolve() for p in list_images(folder)) == sorted(p.resolve() for p in paths) else None
    except InputError:
        return None


def _pipeline(model: Model, images: Images, cfg: RunConfig, out_dir: Path, *, preprocessing, class_names,
              cache_dir, progress: bool, cache: bool = True, engine: str = "local", address: str | None = None):
    from visum.cache import Cache
    from visum.cli import TqdmReporter
    from visum.models.loading import load_module
    from visum.pipeline import Pipeline

    folder, paths = _image_paths(images, out_dir)
    if paths is not None:
        folder = _same_folder(paths)  # the manifest's configuration names the images' folder when it can
    if folder is not None:
        cfg = cfg.model_copy(update={"images": folder.absolute()})
    loaded = None
    if not isinstance(model, str):
        loaded = load_module(model, preprocessing=preprocessing, class_names=class_names, device=cfg.device)
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"spec": loaded.spec})})
    elif preprocessing is not None or class_names is not None:
        raise ConfigError("preprocessing and class_names go with a model object; for a model specification "
                          "set them in the configuration (model.input_size, model.classes, ...)")
    return Pipeline(cfg, out_dir, cache=Cache(cache_dir, enabled=cache), reporter=TqdmReporter(not progress), model=loaded,
                    image_paths=paths, engine=engine, address=address)


class _ModuleState:
    """What running visum changes on the caller's module (eval mode, frozen weights, device), put back after."""

    def __init__(self, model: Model) -> None:
        import torch

        self.module = model if isinstance(model, torch.nn.Module) else None
        if self.module is not None:
            params = list(self.module.parameters())
            self.training = self.module.training
            self.grads = [p.requires_grad for p in params]
            self.device = params[0].device if params else None

    def __enter__(self) -> "_ModuleState":
        return self

    def __exit__(self, *exc) -> None:
        if self.module is None:
            return
        if self.device is not None:
            self.module.to(self.device)
        self.module.train(self.training)
        for p, g in zip(self.module.parameters(), self.grads):
            p.requires_grad_(g)


def summarize(
    model: Model,
    images: Images = None,
    target: str | int | None = None,
    *,
    saliency: str | None = None,
    proposer: str | None = None,
    matcher: str | None = None,
    clusterer: str | None = None,
    scorer: str | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    config: RunConfig | str | os.PathLike | None = None,
    preprocessing: Any = None,
    class_names: Sequence[str] | None = None,
    device: str | None = None,
    seed: int | None = None,
    keep_misclassified: bool | None = None,
    out_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    cache: bool = True,
    progress: bool = True,
    engine: str = "local",
    address: str | None = None,
) -> Result:
    """Visual summaries of what ``model`` relies on for class ``target`` in ``images``.

    ``model``: a ``torch.nn.Module`` (``preprocessing``: a mapping of input_size, crop_ratio,
    resize, interpolation, mean, std, or a :class:`visum.models.base.Preprocessing`; default:
    what the module declares in ``visum_preprocessing``, else visum's no-crop default, said in
    the result's warnings and report) or any ``--model`` specification (``"efficientnet-lite0"``,
    ``"timm:NAME"``, a file, ``"parts"``). ``images``: a folder, image paths, PIL images or
    uint8 ``[H, W, 3]`` arrays (written to ``out_dir/images``). Components by name, and
    ``options={"saliency": {"rounds": 1}}`` as ``--opt``; ``config``: a run.toml or a
    :class:`RunConfig` to start from. The findings are written only by ``result.save(folder)``
    (``out_dir``, when given, is the default folder; it is checked before any work); the run
    writes its inputs (images given in memory, as PNG, and the generated parts benchmark) in a
    temporary folder that goes with the result, and ``save`` copies them along. The
    module is put back as it was (training mode, ``requires_grad``, device) after the run. ``cache_dir``: the cache (default ``$VISUM_CACHE_DIR`` or ``~/.cache/visum``);
    ``cache=False`` neither reads nor writes it. ``engine="ray"`` computes the saliency batches and matches the
    pairs as Ray tasks (a local Ray, or the cluster at ``address``); the result is the local engine's. ``visum run`` is this function.
    """
    check_engine(engine)
    overrides = {"saliency": saliency, "proposer": proposer, "matcher": matcher, "clusterer": clusterer,
                 "scorer": scorer, "device": device, "seed": seed, "keep_misclassified": keep_misclassified}
    cfg = _config(config, model, target, overrides, options)
    if out_dir is not None:
        from visum.output import check_out

        check_out(Path(out_dir))  # before any work: never a folder holding someone else's files
    workdir = tempfile.TemporaryDirectory(prefix="visum-")  # the run's inputs; save() copies them along
    with _ModuleState(model):
        result = _pipeline(model, images, cfg, Path(workdir.name), preprocessing=preprocessing,
                           class_names=class_names, cache_dir=cache_dir, progress=progress, cache=cache,
                           engine=engine, address=address).run()
    result.workdir = workdir  # the temporary folder lives as long as the result
    result.save_to = Path(out_dir) if out_dir is not None else None
    return result


def explain(
    model: Model,
    image: Any,
    target: str | int | None = None,
    *,
    method: str = "crisp",
    options: Mapping[str, Any] | None = None,
    preprocessing: Any = None,
    class_names: Sequence[str] | None = None,
    device: str | None = None,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The saliency mask of one image for ``target``: ``[H, W]`` float32 in ``[0, 1]`` at the image's size.

    ``method``: a saliency plugin (``visum plugins --kind saliency``), its ``options`` as a
    mapping; ``model``, ``preprocessing`` and ``class_names`` as for :func:`summarize`. The
    mask is 0 outside the part of the image the model sees (its centre crop).
    """
    from PIL import Image

    one = isinstance(image, (np.ndarray, Image.Image)) or (
        isinstance(image, (str, os.PathLike)) and not Path(image).is_dir())
    if not one and not (isinstance(image, (list, tuple)) and len(image) == 1):
        raise InputError("explain takes one image (a path, a PIL image or a uint8 [H, W, 3] array); "
                         "for many, use visum.summarize or visum masks")
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"options: expected a mapping of option -> value, got {type(options).__name__}")
    with tempfile.TemporaryDirectory(prefix="visum-") as tmp, _ModuleState(model):
        cfg = _config(None, model, target, {"saliency": method, "device": device, "seed": seed},
                      {"saliency": dict(options or {})})
        result = _pipeline(model, image, cfg, Path(tmp), preprocessing=preprocessing, class_names=class_names,
                           cache_dir=cache_dir, progress=progress).masks()
        return next(iter(result.masks.values()))
