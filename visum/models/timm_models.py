"""``timm:NAME`` — any architecture of timm (PyTorch Image Models), weights from a file or the
user's local Hugging Face cache; never downloaded.

``NAME`` is a timm model name, optionally with its pretrained tag (``resnet18.a1_in1k``):
the tag selects the pretrained configuration whose preprocessing visum uses and whose
Hugging Face repository it looks for in the cache. Weights:

- ``--weights FILE``: a state dict (``torch.save``) or a ``.safetensors`` file; the number
  of classes follows its classifier;
- no ``--weights``: the ``model.safetensors`` (or ``pytorch_model.bin``) of the tag's
  Hugging Face repository (``timm/NAME.TAG``) in the local cache (``$HF_HUB_CACHE``,
  ``$HF_HOME/hub`` or ``~/.cache/huggingface/hub``), as ``timm.create_model(...,
  pretrained=True)`` leaves it; visum only reads the cache;
- ``random``: random weights (tests and benchmarks).

Preprocessing comes from timm's data configuration of the model
(``timm.data.resolve_model_data_config``): input size, interpolation, mean, std,
``crop_pct`` (our crop ratio; the resized side is ``floor(S / crop_pct)`` as in timm) and
``crop_mode`` (``center`` → short side, ``squash`` → squash; ``border``, a letterbox, becomes
squash and is reported as assumed).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from visum.errors import ConfigError
from visum.models.base import Preprocessing, resized_side
from visum.models.files import existing_file, first_line, hash_file, hash_module, load_state, read_state_dict

PREFIX = "timm:"
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def _timm():
    try:
        import timm
        import timm.data
    except ImportError:
        raise ConfigError("models 'timm:NAME' need the timm package: pip install 'visum[timm]'") from None
    return timm


def timm_preprocessing(model) -> Preprocessing:
    """The preprocessing timm's data configuration declares for ``model``.

    A non-square input size (visum feeds square views) keeps its height, and crop mode
    ``border`` (letterbox, which visum does not do) becomes ``squash``; both are reported as
    assumed, and the flags override them.
    """
    timm = _timm()
    cfg = timm.data.resolve_model_data_config(model)
    _, h, w = cfg["input_size"]
    assumed = []
    if h != w:
        assumed.append("input_size")
    mode = cfg.get("crop_mode", "center")
    if mode not in ("center", "squash"):
        assumed.append("resize")
    interpolation = cfg.get("interpolation", "bilinear")
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        interpolation = "bicubic"
        assumed.append("interpolation")
    ratio = float(cfg.get("crop_pct", 0.875))
    return Preprocessing(
        input_size=int(h),
        resize_to=resized_side(int(h), ratio),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        resize="short-side" if mode == "center" else "squash",
        interpolation=interpolation,
        source=f"timm data config of the model (input {h}x{w}, crop_pct {ratio:g}, crop_mode {mode})",
        assumed=tuple(assumed),
    )


def cached_hub_weights(hf_hub_id: str | None, filename: str | None = None) -> Path | None:
    """The weight file of ``hf_hub_id`` in the local Hugging Face cache, or ``None`` (no network).

    ``filename`` is the configuration's ``hf_hub_filename`` when it names one; otherwise
    timm's usual files are tried.
    """
    if not hf_hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ([filename] if filename else []) + list(HUB_FILES):
        found = try_to_load_from_cache(hf_hub_id, filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def load_timm(spec: str, weights: str | None):
    """``(module, preprocessing, class names, weights identity, extras)`` of ``timm:NAME``."""
    timm = _timm()
    name = spec[len(PREFIX) :].strip()
    if not name or not timm.is_model(name):
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=5)
        hint = f"; did you mean: {', '.join(close)}?" if close else "; see timm.list_models()"
        raise ConfigError(f"model {spec!r}: {name!r} is not a timm model{hint}")

    def build(**kwargs):
        try:
            return timm.create_model(name, pretrained=False, **kwargs)
        except Exception as e:
            raise ConfigError(f"model {spec!r}: timm cannot build it ({type(e).__name__}: {first_line(e)})") from None

    module = build()
    extras: dict = {"source": "timm", "architecture": name}
    hub_id = module.pretrained_cfg.get("hf_hub_id")
    if weights == "random":
        content = hash_module(module)
    else:
        if weights is not None:
            path = existing_file(weights, spec)
        else:
            path = cached_hub_weights(hub_id, module.pretrained_cfg.get("hf_hub_filename"))
            if path is None:
                raise ConfigError(
                    f"model {spec!r}: no --weights given and {hub_id or name} is not in the local Hugging Face "
                    "cache; give --weights FILE (a state dict or .safetensors), or 'random'. visum never downloads: "
                    f"fetch it elsewhere with timm.create_model({name!r}, pretrained=True) and copy the cache"
                )
            extras["hf_hub_id"] = hub_id
        state = read_state_dict(path)
        classifier = module.pretrained_cfg.get("classifier", "")
        if isinstance(classifier, (list, tuple)):  # distilled models: ("head", "head_dist")
            classifier = classifier[0] if classifier else ""
        key = f"{classifier}.weight"
        if key in state and state[key].dim() >= 1 and int(state[key].shape[0]) != module.num_classes:
            module = build(num_classes=int(state[key].shape[0]))
        load_state(module, state, path, spec)
        content = hash_file(path)
        extras["weights_path"] = str(path)
    k = int(module.num_classes)
    extras["num_classes"] = k
    from visum.models.imagenet import imagenet_class_names

    names = imagenet_class_names() if k == 1000 else None
    return module, timm_preprocessing(module), names, content, extras
