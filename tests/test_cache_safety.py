"""The cache reads data, never code, and notices what it did not write (issue 17)."""

from __future__ import annotations

import dataclasses
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from visum.cache import Cache, expect_array, make_key
from visum.cache_codec import MAGIC, DamagedEntry, cacheable, decode, encode


@cacheable
@dataclasses.dataclass
class Described:
    features: np.ndarray
    boxes: np.ndarray
    name: str = "x"


def test_codec_round_trips_every_stored_shape_of_value():
    value = {
        "mask": np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4),
        "boxes": np.array([[0, 0, 5, 5]], dtype=np.int64),
        "flags": np.array([True, False]),
        "nested": [1, 2.5, float("nan"), None, "s", (3, np.float64(0.25))],
        "by_int": {1: "a", 2: np.zeros(2, np.uint8)},
        "$odd": 1,
        "described": Described(np.ones((2, 3), np.float32), np.zeros((2, 4), np.int64), "y"),
    }
    back = decode(encode(value))
    assert back["mask"].dtype == np.float32 and np.array_equal(back["mask"], value["mask"])
    assert back["boxes"].dtype == np.int64 and back["flags"].dtype == bool
    assert back["nested"][:2] == [1, 2.5] and np.isnan(back["nested"][2]) and back["nested"][3:5] == [None, "s"]
    assert back["nested"][5] == (3, 0.25) and isinstance(back["nested"][5], tuple)
    assert list(back["by_int"]) == [1, 2] and back["by_int"][2].dtype == np.uint8
    assert back["$odd"] == 1
    d = back["described"]
    assert isinstance(d, Described) and d.name == "y" and np.array_equal(d.features, np.ones((2, 3)))


@pytest.mark.parametrize("value", [object(), np.array([object()]), {"a": {1, 2}}, lambda: 1])
def test_codec_refuses_what_is_not_data(value):
    with pytest.raises(TypeError):
        encode(value)


def test_any_altered_byte_is_noticed():
    data = bytearray(encode({"m": np.random.default_rng(0).random((40, 40))}))
    for at in (0, 20, 80, len(data) // 2, len(data) - 1):
        bad = bytearray(data)
        bad[at] ^= 0xFF
        with pytest.raises(DamagedEntry):
            decode(bytes(bad))
    with pytest.raises(DamagedEntry):
        decode(bytes(data[: len(data) // 2]))


def test_only_registered_dataclasses_are_stored():
    Thing = dataclasses.make_dataclass("Thing", [("a", int)])
    with pytest.raises(TypeError, match="cacheable"):
        encode(Thing(1))


@dataclasses.dataclass
class Raw:
    raw: str  # JSON text, for a value json.dumps would refuse to write


def forged(tree, members: dict[str, bytes] | None = None, compress: bool = False) -> bytes:
    """An entry with a *valid* checksum around whatever an attacker chose to put in it."""
    import hashlib
    import io
    import json
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        value = tree.raw if isinstance(tree, Raw) else json.dumps(tree)
        tree_bytes = ('{"meta": {}, "value": ' + value + "}").encode()
        npy = io.BytesIO()
        np.save(npy, np.frombuffer(tree_bytes, np.uint8))
        zf.writestr("tree.npy", npy.getvalue())
        for name, data in (members or {}).items():
            zf.writestr(name, data)
    payload = buf.getvalue()
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def test_forged_entries_with_a_valid_checksum_are_refused_without_running_or_importing_anything():
    import io

    assert decode(forged([1, 2])) == [1, 2]  # the forger's format is right
    deep = Raw("[" * 5000 + "1" + "]" * 5000)
    huge_header = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge_header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    attempts = {
        "deep nesting": forged(deep),
        "a module's attribute": forged({"$dataclass": "scipy:io", "fields": {}}),
        "os.system": forged({"$dataclass": "os:system", "fields": {}}),
        "fields not a mapping": forged({"$dataclass": f"{__name__}:Described", "fields": []}),
        "unknown field": forged({"$dataclass": f"{__name__}:Described", "fields": {"evil": 1}}),
        "compressed member": forged([1], compress=True),
        "a terabyte header": forged({"$array": 0}, {"a0.npy": b"\x93NUMPY\x01\x00" + huge_header.getvalue()[8:]}),
        "object array": forged({"$array": 0}, {"a0.npy": b"\x93NUMPY\x01\x00" + _header("|O", (1,))}),
    }
    before = set(sys.modules)
    for what, data in attempts.items():
        with pytest.raises(DamagedEntry):
            decode(data)
    assert "scipy.io" in before or "scipy.io" not in sys.modules  # never imported to read an entry


def _header(descr: str, shape: tuple) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()[8:]


def test_a_pickle_in_the_cache_folder_is_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    said = []
    cache = Cache(tmp_path / "c", warn=said.append)
    key = make_key("saliency", x=1)
    cache.put("saliency", key, np.zeros((2, 2), np.float32))
    path = next((tmp_path / "c").rglob("*.vcache"))
    path.write_bytes(pickle.dumps(Payload()))
    assert cache.get("saliency", key) is None
    assert not marker.exists() and not path.exists() and "damaged" in said[0]


def test_damaged_bytes_and_wrong_types_are_recomputed_once_with_one_warning(tmp_path):
    said = []
    cache = Cache(tmp_path, warn=said.append)
    key = make_key("saliency", x=2)
    mask = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    cache.put("saliency", key, mask)
    path = next(tmp_path.rglob("*.vcache"))
    raw = bytearray(path.read_bytes())
    raw[2000:4000] = b"\xff" * 2000  # the reproduction, scaled to the entry
    path.write_bytes(bytes(raw))
    check = expect_array(2, "f", (64, 64), 0.0, 1.0)
    calls = []
    value = cache.get_or_compute("saliency", key, lambda: calls.append(1) or mask, check)
    assert np.array_equal(value, mask) and calls == [1] and len(said) == 1 and "checksum" in said[0]
    assert np.array_equal(cache.get("saliency", key, check), mask) and len(said) == 1  # replaced, then a hit
    # a well-formed entry of the wrong type or shape fails the caller's check
    cache.put("saliency", key, np.zeros((3, 3), np.float32))
    assert cache.get("saliency", key, check) is None and "shape" in said[-1]
    cache.put("saliency", key, np.full((64, 64), np.nan, np.float32))
    assert cache.get("saliency", key, check) is None and "non-finite" in said[-1]
    cache.put("saliency", key, "a string")
    assert cache.get("saliency", key, check) is None and "expected a 2-d array" in said[-1]
    # an entry copied under another key or stage is not that key's
    other = make_key("saliency", x=3)
    cache.put("saliency", key, mask)
    src = next(tmp_path.rglob(f"{key}.vcache"))
    dst = tmp_path / "saliency" / other[:2] / f"{other}.vcache"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    assert cache.get("saliency", other) is None and "written for" in said[-1]
    assert cache.damaged == 5


@pytest.mark.parametrize("where", ["file", "unwritable"])
def test_a_cache_that_cannot_be_written_warns_once_and_the_run_goes_on(tmp_path, where):
    if where == "file":
        root = tmp_path / "a-file"
        root.write_text("x")
    else:  # not even root can create a folder in /proc
        if not Path("/proc/self").exists():
            pytest.skip("no /proc on this system")
        root = Path("/proc/visum-cache-test")
    said = []
    cache = Cache(root, warn=said.append)
    for k in range(3):
        key = make_key("s", k=k)
        assert cache.get_or_compute("s", key, lambda: k) == k
    assert len(said) == 1 and str(root) in said[0] and "uncached" in said[0]


def test_a_value_that_cannot_be_stored_is_computed_and_said_once(tmp_path):
    said = []
    cache = Cache(tmp_path, warn=said.append)
    for k in range(2):
        assert cache.get_or_compute("describe", make_key("d", k=k), lambda: {1, 2}) == {1, 2}
    assert len(said) == 1 and "'describe'" in said[0] and "not cached" in said[0]
