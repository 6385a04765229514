"""``visum sweep``: cells of classes x models x methods, run once each, resumable, with a report (visum.sweep)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import manifest_without_timings, one_line_error, run_cli
from visum.sweep import CellRecord, cells_of, correlation, load_sweep

SWEEP = """
models = ["parts"]
saliency = ["gradient", "gradcam"]
[[classes]]
name = "parts"
[run]
benchmark_images = 6
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_local_sweep_runs_each_cell_as_visum_run_and_a_rerun_skips_them(tmp_path, capsys):
    sweep = write(tmp_path, SWEEP)
    code, out, err = run_cli(capsys, "sweep", sweep, "--out", tmp_path / "s", "--cache-dir", tmp_path / "c")
    assert code == 0, err
    data = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert [c["saliency"] for c in data["cells"]] == ["gradient", "gradcam"]
    assert all(c["error"] is None and c["images"] == 6 for c in data["cells"])
    index = (tmp_path / "s" / "index.html").read_text()
    for c in data["cells"]:
        assert f"cells/{c['name']}/report.html" in index
        assert (tmp_path / "s" / "cells" / c["name"] / "report.html").is_file()
    (plot,) = (tmp_path / "s" / "plots").glob("parts-*.png")
    assert plot.stat().st_size > 1000 and f"plots/{plot.name}" in index

    # a cell is exactly `visum run` with its configuration (one matching process, as the cell has one CPU)
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--benchmark-images", 6, "--workers", 1,
                           "--out", tmp_path / "direct", "--cache-dir", tmp_path / "c2")
    assert code == 0, err
    cell = manifest_without_timings(tmp_path / "s" / "cells" / data["cells"][0]["name"])
    assert cell == manifest_without_timings(tmp_path / "direct")

    manifest = tmp_path / "s" / "cells" / data["cells"][1]["name"] / "manifest.json"
    before = manifest.stat().st_mtime_ns
    code, _, err = run_cli(capsys, "sweep", sweep, "--out", tmp_path / "s", "--cache-dir", tmp_path / "c")
    assert code == 0, err
    assert "2 of 2 cells already done" in err
    assert manifest.stat().st_mtime_ns == before


def test_a_changed_cell_is_run_again_and_a_damaged_cell_folder_is_not_trusted(tmp_path, capsys):
    sweep = write(tmp_path, SWEEP.replace('["gradient", "gradcam"]', '["gradient"]'))
    out = tmp_path / "s"
    assert run_cli(capsys, "sweep", sweep, "--out", out, "--cache-dir", tmp_path / "c")[0] == 0
    (name,) = [c["name"] for c in json.loads((out / "sweep.json").read_text())["cells"]]
    (out / "cells" / name / "manifest.json").write_text("{ damaged")
    code, _, err = run_cli(capsys, "sweep", sweep, "--out", out, "--cache-dir", tmp_path / "c")
    assert code == 0, err
    assert "already done" not in err
    assert json.loads((out / "cells" / name / "manifest.json").read_text())["images"]
    # another seed is another cell: a new key, a new folder
    write(tmp_path, SWEEP.replace('["gradient", "gradcam"]', '["gradient"]') + "seed = 3\n")
    assert run_cli(capsys, "sweep", sweep, "--out", out, "--cache-dir", tmp_path / "c")[0] == 0
    names = [c["name"] for c in json.loads((out / "sweep.json").read_text())["cells"]]
    assert names != [name] and len(names) == 1


def test_image_folder_layout_gives_a_class_per_folder(tmp_path, parts_folder):
    root = tmp_path / "train"
    for label in ("a", "b"):
        shutil.copytree(parts_folder, root / label)
    sweep = write(tmp_path, 'models = ["parts"]\nsaliency = ["gradient", "crisp"]\nimage_folder = "train"\n')
    cells = cells_of(*load_sweep(sweep))
    assert [(c.klass, c.saliency) for c in cells] == [("a", "gradient"), ("a", "crisp"), ("b", "gradient"),
                                                       ("b", "crisp")]
    assert cells[0].config.images == root / "a" and cells[0].config.target == "a"
    assert len({c.key for c in cells}) == 4
    (root / "b" / sorted(p.name for p in (root / "b").glob("*.png"))[0]).write_bytes(b"changed")
    assert cells_of(*load_sweep(sweep))[2].key != cells[2].key  # a changed image is a changed cell


@pytest.mark.parametrize("text, expected", [
    ("models = 3", "models"),
    ("what = 1\n[[classes]]\nname = 'x'", "what"),
    ("models = ['parts']", "names no class"),
    ("saliency = ['nope']\n[[classes]]\nname = 'x'", "unknown saliency plugin 'nope'"),
    ("[[classes]]\nname = 'x'\nimages = 'missing'", "is not a folder"),
    ("[[classes]]\nname = 'x'\n[[classes]]\nname = 'x'", "names a class twice"),
    ("[[classes]]\nname = 'x'\n[run]\nseed = -1", "seed"),
    ("[[classes]]\nname = 'x'\n[run]\ntarget = 'y'", "[run] sets target"),
    ("models = [", "sweep file"),
])
def test_a_bad_sweep_file_is_one_line_before_any_work(tmp_path, capsys, text, expected):
    sweep = write(tmp_path, text)
    line = one_line_error(capsys, "sweep", sweep, "--out", tmp_path / "s")
    assert expected in line and not (tmp_path / "s").exists()


def test_bad_sweep_out_and_engine_are_one_line(tmp_path, capsys):
    sweep = write(tmp_path, SWEEP)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert "notes.txt" in one_line_error(capsys, "sweep", sweep, "--out", tmp_path / "busy")
    assert "--engine" in one_line_error(capsys, "sweep", sweep, "--out", tmp_path / "s", "--engine", "slurm")
    assert "does not exist" in one_line_error(capsys, "sweep", tmp_path / "none.toml", "--out", tmp_path / "s")


def test_correlation_over_classes_per_model_and_method():
    def rec(klass, classified, kept, model="m"):
        return CellRecord(f"{model}-{klass}", model, klass, "crisp", "k", images=10, classified=classified, kept=kept)

    rs = [rec("a", 10, 2), rec("b", 8, 4), rec("c", 5, 9), rec("d", 9, 3)]
    (r,) = correlation(rs).values()
    assert r.rho == pytest.approx(-1.0) and r.n == 4  # better classes, fewer summaries: ranks exactly reversed
    assert correlation(rs[:2]) == {("m", "crisp"): None}  # fewer than 3 classes
    assert correlation([rec("a", 5, 2), rec("b", 5, 4), rec("c", 5, 9)]) == {("m", "crisp"): None}  # constant
