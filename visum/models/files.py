"""Reading what a user hands visum about a model: weight files, class-name files, hashes.

Nothing here executes code from a file: state dicts are read with ``torch.load(...,
weights_only=True)`` or from safetensors; class names are plain text.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import torch

from visum.errors import ConfigError


def first_line(e: BaseException) -> str:
    """The informative line of an exception message (TorchScript puts it last)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    if "TorchScript interpreter" in lines[0]:
        return lines[-1]
    return lines[0]


def existing_file(value: str | Path, spec: str) -> Path:
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"model {spec!r}: file {value} not found")
    if not path.is_file():
        raise ConfigError(f"model {spec!r}: {value} is not a file")
    return path


def zip_members(path: Path) -> list[str]:
    """The member names of a zip archive (TorchScript and torch.export files are zips); [] otherwise."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def is_torchscript(path: Path) -> bool:
    return any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in zip_members(path))


def is_exported_program(path: Path) -> bool:
    """A ``torch.export.save`` archive: a zip holding a serialised ``models/`` graph."""
    names = zip_members(path)
    marks = ("models/model.json", "serialized_exported_program.json", "/archive_format")
    return any(n.endswith(marks) for n in names) and not is_torchscript(path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``torch.save`` file (``weights_only``) or a ``.safetensors`` file.

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) and DataParallel's
    ``module.`` prefix are removed.
    """
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ConfigError(f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)") from None
        try:
            obj = load_file(str(path), device="cpu")
        except Exception as e:
            raise ConfigError(f"{path}: not a readable safetensors file ({type(e).__name__}: {first_line(e)})") from None
    else:
        if is_torchscript(path):
            raise ConfigError(f"{path}: is a TorchScript archive, not a state dict; give it as the model spec")
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConfigError(
                f"{path}: not a state-dict file ({type(e).__name__}: {first_line(e)}); "
                "save it with torch.save(model.state_dict(), path)"
            ) from None
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path}: not a state dict (expected a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def load_state(module: torch.nn.Module, state: dict, path: Path, spec: str) -> None:
    """``module.load_state_dict(state)``; any missing, unexpected or misshapen key is a ConfigError."""
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), first_line(e))
        raise ConfigError(f"{path}: does not fit model {spec!r} ({detail})") from None
    problems = []
    if result.missing_keys:
        problems.append(f"missing {len(result.missing_keys)} keys, e.g. {', '.join(result.missing_keys[:3])}")
    if result.unexpected_keys:
        problems.append(f"unexpected {len(result.unexpected_keys)} keys, e.g. {', '.join(result.unexpected_keys[:3])}")
    if problems:
        raise ConfigError(f"{path}: does not fit model {spec!r} ({'; '.join(problems)})")


def read_class_names(path: Path) -> list[str]:
    """One class name a line (blank lines skipped), UTF-8."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"{path}: class names file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({first_line(e)})") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise ConfigError(f"{path}: no class names in it (one name a line)")
    return names


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def hash_file(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASHES[key] = "file:" + h.hexdigest()
    return _FILE_HASHES[key]


def hash_module(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "tensors:" + h.hexdigest()
