"""Atomic writes: the destination is the old file or the whole new one, never a part."""

import os
import stat

import pytest

from visum.atomic import atomic_write, write_bytes_atomic, write_text_atomic


def test_writes_whole_file_readable_by_others(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "a.txt", "héllo\n")
    assert path.read_text("utf-8") == "héllo\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    write_bytes_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as fh:
            fh.write("half of the new")
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_the_destination_appears_only_when_complete(tmp_path):
    path = tmp_path / "x.bin"
    with atomic_write(path, "wb") as fh:
        fh.write(b"abc")
        fh.flush()
        assert not path.exists()  # the data so far sits in a hidden temporary file
        assert [p.name.startswith(".x.bin.") for p in tmp_path.iterdir()] == [True]
    assert path.read_bytes() == b"abc"


def test_csv_newlines(tmp_path):
    with atomic_write(tmp_path / "t.csv", "w", newline="") as fh:
        fh.write("a\r\n")
    assert (tmp_path / "t.csv").read_bytes() == b"a\r\n"


def test_rejects_other_modes(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "x", "a"):
            pass
