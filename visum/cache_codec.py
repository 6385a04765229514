"""The cache's file format: data only, checksummed, nothing that runs code when read.

An entry is one file::

    b"visum-cache 2\\n" + sha256(payload) as 64 hex digits + b"\\n" + payload

where ``payload`` is an uncompressed NumPy ``.npz`` archive read with ``allow_pickle=False``:
its member ``tree`` holds the value as UTF-8 JSON, with each array replaced by
``{"$array": i}`` and stored as member ``a<i>``. The JSON can hold ``None``, booleans,
numbers (NaN and infinities included), strings, lists, ``{"$tuple": [...]}``,
``{"$dict": [[key, value], ...]}`` for dicts whose keys are not all strings, and
``{"$dataclass": "module:QualName", "fields": {...}}`` for an instance of a dataclass
registered with :func:`cacheable` (the built-in matchers' descriptions are; a third-party
plugin registers its own, or its results are computed but not cached). Object arrays cannot
be stored.

Reading an entry never unpickles, never imports a module and never looks a name up anywhere
but in the registry: the class named must have been registered by code already running, and
is called with the stored fields (registered classes are plain records). The archive's
members must be stored uncompressed, and each ``.npy`` header must describe exactly the bytes
that follow it, so a crafted entry cannot make the reader allocate more than the file holds.
The checksum is not a signature: it finds damage, not forgery; safety against a forged entry
comes from reading data only.

:func:`encode` raises :class:`TypeError` for a value it cannot store; :func:`decode` raises
:class:`DamagedEntry` for anything that is not a whole, well-formed entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from typing import Any

import numpy as np

__all__ = ["MAGIC", "DamagedEntry", "cacheable", "decode", "encode"]

MAGIC = b"visum-cache 2\n"
MAX_DEPTH = 64  # nesting of the stored value; deeper is a forged entry

_REGISTRY: dict[str, type] = {}


def cacheable(cls: type) -> type:
    """Class decorator: instances of the dataclass ``cls`` may be stored in the cache."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"cacheable: {cls!r} is not a dataclass")
    _REGISTRY[f"{cls.__module__}:{cls.__qualname__}"] = cls
    return cls


class DamagedEntry(ValueError):
    """A cache file that is truncated, altered, or not a visum cache entry."""


def _to_tree(value: Any, arrays: list[np.ndarray]) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if isinstance(value, np.generic):
        return _to_tree(value.item(), arrays)
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("an object array cannot be cached")
        arrays.append(value)
        return {"$array": len(arrays) - 1}
    if isinstance(value, list):
        return [_to_tree(v, arrays) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_to_tree(v, arrays) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _to_tree(v, arrays) for k, v in value.items()}
        return {"$dict": [[_to_tree(k, arrays), _to_tree(v, arrays)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if _REGISTRY.get(f"{cls.__module__}:{cls.__qualname__}") is not cls:
            raise TypeError(f"{cls.__qualname__} is not registered with visum.cacheable")
        fields = {f.name: _to_tree(getattr(value, f.name), arrays) for f in dataclasses.fields(value) if f.init}
        return {"$dataclass": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
    raise TypeError(f"a {type(value).__name__} cannot be cached")


def _from_tree(node: Any, arrays: dict[str, np.ndarray], depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise DamagedEntry("nested too deep")
    d = depth + 1
    if isinstance(node, list):
        return [_from_tree(v, arrays, d) for v in node]
    if not isinstance(node, dict):
        return node
    if "$array" in node:
        name = f"a{node['$array']}"
        if name not in arrays:
            raise DamagedEntry(f"array {name} missing")
        return arrays[name]
    if "$tuple" in node:
        return tuple(_from_tree(v, arrays, d) for v in node["$tuple"])
    if "$dict" in node:
        return {_hashable(_from_tree(k, arrays, d)): _from_tree(v, arrays, d) for k, v in node["$dict"]}
    if "$dataclass" in node:
        fields = node["fields"]
        if not isinstance(fields, dict):
            raise DamagedEntry("dataclass fields are not a mapping")
        return _dataclass(node["$dataclass"], {k: _from_tree(v, arrays, d) for k, v in fields.items()})
    return {k: _from_tree(v, arrays, d) for k, v in node.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        raise DamagedEntry("a list as a dict key")
    return key


def _dataclass(name: str, fields: dict[str, Any]) -> Any:
    cls = _REGISTRY.get(str(name))  # the registry only: no import, no attribute lookup
    if cls is None:
        raise DamagedEntry(f"{name} is not a registered cacheable dataclass")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    if set(fields) - names:
        raise DamagedEntry(f"{name}: unknown fields {sorted(set(fields) - names)}")
    return cls(**fields)


def _members(payload: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` payload, each checked: stored uncompressed, no object dtype, and a
    header whose shape and dtype account for exactly the member's bytes."""
    from numpy.lib import format as npy

    out = {}
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > len(payload):
                raise DamagedEntry(f"member {info.filename} is compressed or larger than the entry")
            raw = zf.read(info)
            fp = io.BytesIO(raw)
            version = npy.read_magic(fp)
            if version not in ((1, 0), (2, 0)):
                raise DamagedEntry(f"member {info.filename}: npy version {version}")
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, fortran, dtype = read_header(fp)
            if dtype.hasobject:
                raise DamagedEntry(f"member {info.filename} holds objects")
            count = int(np.prod(shape, dtype=np.int64)) if shape else 1
            body = raw[fp.tell():]
            if count < 0 or count * dtype.itemsize != len(body):
                raise DamagedEntry(f"member {info.filename}: header does not match its bytes")
            array = np.frombuffer(body, dtype=dtype, count=count).copy()
            out[info.filename.removesuffix(".npy")] = (
                array.reshape(shape[::-1]).T if fortran else array.reshape(shape))
    return out


def encode(value: Any, meta: dict[str, str] | None = None) -> bytes:
    """The bytes of an entry holding ``value`` (and ``meta``, checked by :func:`decode`)."""
    arrays: list[np.ndarray] = []
    tree = {"meta": meta or {}, "value": _to_tree(value, arrays)}
    buf = io.BytesIO()
    members = {f"a{i}": a for i, a in enumerate(arrays)}
    np.savez(buf, tree=np.frombuffer(json.dumps(tree).encode(), dtype=np.uint8), **members)
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def decode(data: bytes, meta: dict[str, str] | None = None) -> Any:
    """The value stored by :func:`encode`; :class:`DamagedEntry` unless the checksum and ``meta`` match."""
    head = len(MAGIC) + 65
    if not data.startswith(MAGIC) or len(data) < head or data[head - 1 : head] != b"\n":
        raise DamagedEntry("not a visum cache entry")
    payload = data[head:]
    if hashlib.sha256(payload).hexdigest().encode() != data[len(MAGIC) : head - 1]:
        raise DamagedEntry("checksum mismatch")
    try:
        members = _members(payload)
        tree = json.loads(members.pop("tree").tobytes().decode())
        if not isinstance(tree, dict) or (meta or {}) != tree.get("meta"):
            raise DamagedEntry(f"written for {tree.get('meta') if isinstance(tree, dict) else '?'}, read as {meta}")
        return _from_tree(tree["value"], members)
    except DamagedEntry:
        raise
    except Exception as exc:  # anything a forged entry can provoke (RecursionError, zlib.error, ...)
        raise DamagedEntry(f"{type(exc).__name__}: {exc}") from exc
