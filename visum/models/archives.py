"""Model archives that carry their own architecture and weights: TorchScript and torch.export.

Neither format declares how images are to be prepared, so both default to the recipe most
custom models are trained with: the whole image squashed to the input size, no crop
(:data:`NO_CROP_SOURCE`); the flags override each part. A torch.export program does record
the shape it was exported with: its height and width become the default input size.

A torch.export program is loaded *unflattened* (``torch.export.unflatten``), which rebuilds
the original module hierarchy: hooks fire on named submodules, so Grad-CAM's layer search
and the ``layer`` option work as on the eager model. A TorchScript module cannot be hooked.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from visum.errors import ConfigError
from visum.models.base import Preprocessing
from visum.models.files import existing_file, first_line, hash_file, is_exported_program, is_torchscript
from visum.models.imagenet import IMAGENET_MEAN, IMAGENET_STD

TORCHSCRIPT_SUFFIXES = (".pt", ".pth")
EXPORT_SUFFIXES = (".pt2",)
#: the input size assumed when a model declares none
DEFAULT_INPUT_SIZE = 224
NO_CROP_SOURCE = "no crop: the whole image squashed to the input size"
#: every part of a recipe, as named by the overrides: what is assumed when nothing is declared
ALL_PARTS = ("input_size", "crop_ratio", "resize", "interpolation", "mean", "std")


def no_crop_preprocessing(
    input_size: int = DEFAULT_INPUT_SIZE, source: str = NO_CROP_SOURCE, assumed: tuple[str, ...] = ()
) -> Preprocessing:
    """The default of models that declare nothing: squash to ``input_size``, no crop, ImageNet mean/std."""
    return Preprocessing(
        input_size=input_size, resize_to=input_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        resize="squash", interpolation="bilinear", source=source, assumed=assumed,
    )


def load_torchscript(spec: str, weights: str | None):
    """``(module, preprocessing, class names, weights identity, extras)`` of a TorchScript file."""
    path = existing_file(spec, spec)
    if weights is not None:
        raise ConfigError(f"model {spec!r}: a TorchScript archive carries its own weights; do not give weights")
    if is_exported_program(path):
        raise ConfigError(f"{path}: is a torch.export archive; name it *.pt2")
    if not is_torchscript(path):
        raise ConfigError(
            f"{path}: not a TorchScript archive (a state-dict file needs an architecture: use "
            "'torchvision:NAME', 'timm:NAME' or 'package.module:factory' with this file as weights)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ConfigError(f"{path}: cannot load the TorchScript archive ({type(e).__name__}: {first_line(e)})") from None
    extras: dict = {"source": "torchscript", "weights_path": str(path)}
    names = None
    classes_file = path.with_name(path.name + ".classes.txt")
    if classes_file.is_file():
        from visum.models.files import read_class_names

        names = read_class_names(classes_file)
        extras["class_names_source"] = str(classes_file)
    pre = no_crop_preprocessing(source=f"TorchScript: the archive declares no preprocessing; visum's default, "
                                f"{NO_CROP_SOURCE}", assumed=ALL_PARTS)
    return module, pre, names, hash_file(path), extras


def feed_one_at_a_time(module: torch.nn.Module) -> torch.nn.Module:
    """Make ``module`` (exported for a batch of one) run each image of a batch in turn.

    The instance's ``forward`` is wrapped in place rather than the module wrapped in another,
    so its submodules keep their names: Grad-CAM's ``layer`` option reads as on the eager
    model, and a hooked layer fires once per image.
    """
    single = module.forward

    def forward(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return torch.cat([single(x[b : b + 1], *args, **kwargs) for b in range(x.shape[0])])

    module.forward = forward
    return module


def exported_input_shape(program) -> list[int | None]:
    """The shape of the exported program's single user input, ``None`` for dynamic dimensions."""
    users = list(program.graph_signature.user_inputs)
    if len(users) != 1:
        raise ConfigError(f"the exported program takes {len(users)} inputs; visum calls it with one image batch")
    node = next((n for n in program.graph.nodes if n.op == "placeholder" and n.name == users[0]), None)
    val = node.meta.get("val") if node is not None else None
    if val is None or not hasattr(val, "shape"):
        return [None, None, None, None]
    return [int(d) if isinstance(d, int) else None for d in val.shape]


def load_exported(spec: str, weights: str | None):
    """``(module, preprocessing, class names, weights identity, extras)`` of a ``torch.export`` archive."""
    path = existing_file(spec, spec)
    if weights is not None:
        raise ConfigError(f"model {spec!r}: a torch.export archive carries its own weights; do not give weights")
    if not is_exported_program(path):
        raise ConfigError(f"{path}: not a torch.export archive (write one with torch.export.save)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(str(path))
            module = torch.export.unflatten(program)
    except Exception as e:
        raise ConfigError(f"{path}: cannot load the torch.export archive ({type(e).__name__}: {first_line(e)})") from None
    shape = exported_input_shape(program)
    if len(shape) != 4 or shape[1] not in (None, 3):
        raise ConfigError(f"{path}: the program was exported for inputs of shape {shape}; visum feeds [B, 3, S, S]")
    batch, height, width = shape[0], shape[2], shape[3]
    extras: dict = {"source": "torch.export", "weights_path": str(path)}
    if batch is not None:
        if batch != 1:
            raise ConfigError(
                f"{path}: exported for a fixed batch of {batch}; export with batch 1 or a dynamic batch "
                "(dynamic_shapes=({0: torch.export.Dim('batch')},))"
            )
        module = feed_one_at_a_time(module)
        extras["one_at_a_time"] = True
    if height is not None and width is not None:
        if height != width:
            raise ConfigError(f"{path}: exported for {height}x{width} inputs; visum feeds square views")
        pre = no_crop_preprocessing(height, f"torch.export: input size from the program; visum's default, "
                                    f"{NO_CROP_SOURCE}", assumed=tuple(k for k in ALL_PARTS if k != "input_size"))
    else:
        pre = no_crop_preprocessing(source=f"torch.export: dynamic input size; visum's default, {NO_CROP_SOURCE}",
                                    assumed=ALL_PARTS)
    classes_file = path.with_name(path.name + ".classes.txt")
    names = None
    if classes_file.is_file():
        from visum.models.files import read_class_names

        names = read_class_names(classes_file)
        extras["class_names_source"] = str(classes_file)
    return module, pre, names, hash_file(path), extras


def is_archive_spec(spec: str) -> bool:
    return spec.lower().endswith(TORCHSCRIPT_SUFFIXES + EXPORT_SUFFIXES)


def load_archive(spec: str, weights: str | None):
    if spec.lower().endswith(EXPORT_SUFFIXES):
        return load_exported(spec, weights)
    if Path(spec).is_file() and is_exported_program(Path(spec)):
        return load_exported(spec, weights)
    return load_torchscript(spec, weights)
