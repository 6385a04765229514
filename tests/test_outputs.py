"""What a run writes: whole or not at all, never mixed with another run, and a write failure is one line (issue 17)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from visum.manifest import Manifest

from conftest import one_line_error, run_cli


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def manifest(folder: Path) -> Manifest:
    return Manifest.model_validate_json((folder / "manifest.json").read_text())


def test_a_reused_out_holds_the_second_run_alone(parts_folder, tmp_path, capsys):
    out = tmp_path / "d"
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--out", out, "-q")
    assert code == 0, err
    first = files(out)
    assert "report.html" in first and any(f.startswith("summaries/") for f in first)
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(parts_folder.glob("*.png"))[:3]:
        shutil.copy(p, few / p.name)
    code, _, err = run_cli(capsys, "masks", "--saliency", "gradient", "--images", few, "--out", out, "-q")
    assert code == 0, err
    second = files(out)
    m = manifest(out)
    assert len(m.images) == 3 and not m.summaries
    assert second == {"manifest.json"} | {f"masks/{i:04d}.{ext}" for i in range(3) for ext in ("png", "npy")}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".d.")]  # no staging or old folder left


def test_out_that_is_not_a_visum_run_is_refused_before_any_work(parts_folder, tmp_path, capsys):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("precious")
    msg = one_line_error(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--out", theirs,
                         "--cache-dir", tmp_path / "cache")
    assert str(theirs) in msg and "thesis.tex" in msg and "visum did not write" in msg
    assert files(theirs) == {"thesis.tex"} and not (tmp_path / "cache").exists()  # refused before any work
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "is a file" in one_line_error(capsys, "masks", "--saliency", "gradient", "--images", parts_folder,
                                         "--out", a_file)
    if Path("/proc/self").exists():
        msg = one_line_error(capsys, "run", "--images", parts_folder, "--out", "/proc/visum-out/x")
        assert "/proc/visum-out" in msg and "cannot write" in msg


def test_a_write_failing_half_way_keeps_the_manifest_and_names_the_path(parts_folder, tmp_path, capsys, monkeypatch):
    import visum.report

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x" / "report.html"))

    monkeypatch.setattr(visum.report, "write_report", full)
    out = tmp_path / "o"
    msg = one_line_error(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--out", out, "-q")
    assert "No space left on device" in msg and "report.html" in msg and "what was written is in" in msg
    staging = Path(msg.rsplit("what was written is in ", 1)[1].strip())
    assert manifest(staging).summaries and not out.exists()  # the findings are kept; no half-written --out


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def test_a_full_disk_ends_in_one_line_and_loses_no_manifest(parts_folder, tmp_path, capsys):
    disk = tmp_path / "disk"
    if os.geteuid() != 0 or not _mount_tmpfs(disk, "300k"):
        pytest.skip("mounting a small tmpfs needs root")
    try:
        msg = one_line_error(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--out", disk / "o",
                             "--cache-dir", tmp_path / "cache", "-q")
        assert "No space left on device" in msg, msg
        assert not (disk / "o").exists()
        if "what was written is in" in msg:
            assert manifest(Path(msg.rsplit("what was written is in ", 1)[1].strip())).images
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_cache_folder_that_cannot_be_used_warns_and_the_run_goes_on(parts_folder, tmp_path, capsys):
    a_file = tmp_path / "cache-file"
    a_file.write_text("x")
    code, _, err = run_cli(capsys, "masks", "--saliency", "gradient", "--images", parts_folder, "--out", tmp_path / "m",
                           "--cache-dir", a_file, "-q")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(a_file) in warnings[0] and "uncached" in warnings[0]
    assert len(manifest(tmp_path / "m").images) == 8


def test_config_that_is_a_folder_and_an_unbounded_seed_are_one_line(parts_folder, tmp_path, capsys):
    assert "a folder, not a configuration file" in one_line_error(capsys, "run", "--config", tmp_path,
                                                                  "--out", tmp_path / "o")
    msg = one_line_error(capsys, "run", "--seed", str(2**70), "--images", parts_folder, "--out", tmp_path / "o")
    assert "seed" in msg


def test_run_toml_works_from_another_folder(parts_folder, tmp_path, capsys, monkeypatch):
    local = tmp_path / "here" / "imgs"
    shutil.copytree(parts_folder, local)
    monkeypatch.chdir(tmp_path / "here")
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", "imgs", "--out", "o", "-q")
    assert code == 0, err
    first = manifest(tmp_path / "here" / "o")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, "run", "--config", "here/o/run.toml", "--out", "again", "-q")
    assert code == 0, err
    again = manifest(tmp_path / "again")
    assert [(Path(im.path).name, im.target_score) for im in again.images] == \
        [(Path(im.path).name, im.target_score) for im in first.images]
    assert Path(again.images[0].path).is_absolute()  # images outside the run folder are named absolutely


def test_a_run_folder_with_the_users_own_files_is_not_replaced(parts_folder, tmp_path, capsys):
    out = tmp_path / "d"
    code, _, err = run_cli(capsys, "masks", "--saliency", "gradient", "--images", parts_folder, "--out", out, "-q")
    assert code == 0, err
    (out / "notes.txt").write_text("my notes on this run")
    msg = one_line_error(capsys, "masks", "--saliency", "gradient", "--images", parts_folder, "--out", out)
    assert "notes.txt" in msg and (out / "notes.txt").read_text() == "my notes on this run"


def test_rerunning_on_the_images_kept_in_the_output_folder_keeps_them(tmp_path, capsys):
    out = tmp_path / "runA"
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--benchmark-images", "6", "--out", out, "-q")
    assert code == 0, err
    assert (out / "images" / "ground_truth").is_dir()  # the generated benchmark moved with the run, truth included
    before = sorted(p.name for p in (out / "images").glob("*.png"))
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", out / "images", "--out", out, "-q")
    assert code == 0, err
    m = manifest(out)
    assert sorted(p.name for p in (out / "images").glob("*.png")) == before
    assert all((out / im.path).is_file() and not Path(im.path).is_absolute() for im in m.images)
    assert (out / "images" / "ground_truth").is_dir()
    code, _, err = run_cli(capsys, "run", "--config", out / "run.toml", "--out", tmp_path / "runB", "-q")
    assert code == 0, err
