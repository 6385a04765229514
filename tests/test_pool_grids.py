"""benchmarks/pool_grids.py: runs pooled by variant over several grids, and the dev rule applied."""

import json
from pathlib import Path

from conftest import benchmark_script


def _pool():
    return benchmark_script("pool_grids")


def _row(world, purity, recall, kept, redundancy, false=0, accuracy=1.0):
    return {"world": world, "model": "cnn", "val_accuracy": accuracy, "purity": purity, "recall": recall,
            "kept": kept, "false_summaries": false, "redundancy": redundancy, "used": 30, "error": ""}


def _grid(root: Path, images: int, variants: dict[str, list[dict]]) -> Path:
    for name, rows in variants.items():
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "benchmark.json").write_text(json.dumps({"config": {}, "rows": rows}))
        (folder / "grid-command.json").write_text(json.dumps({"command": ["--images", str(images)]}))
    return root


def test_the_rule_takes_the_least_redundant_variant_within_the_bars(tmp_path, capsys):
    pool = _pool()
    a = _grid(tmp_path / "a", 30, {
        "default": [_row("owl", 1.0, 1.0, 6, 4), _row("kite", 1.0, 0.5, 3, 3)],
        "merged": [_row("owl", 0.9, 1.0, 2, 1), _row("kite", 0.95, 0.5, 2, 1)],
        "impure": [_row("owl", 0.5, 1.0, 1, 1), _row("kite", 0.6, 0.5, 1, 1)],  # below the purity bar
        "lossy": [_row("owl", 1.0, 0.5, 1, 1), _row("kite", 1.0, 0.5, 1, 1)],  # recall < 0.833 - 0.05
        "partial": [_row("owl", 1.0, 1.0, 1, 1), _row("kite", 1.0, 1.0, 1, 1)],  # not run at 100 images
    })
    b = _grid(tmp_path / "b", 100, {
        "default": [_row("owl", 1.0, 1.0, 9, 5), _row("kite", 1.0, 1.0, 4, 2, accuracy=0.5)],  # kite: not counted
        "merged": [_row("owl", 0.92, 1.0, 3, 2)],
        "impure": [_row("owl", 0.5, 1.0, 1, 1)],
        "lossy": [_row("owl", 1.0, 1.0, 1, 1)],
    })
    assert pool.main(["--grid", str(a), "--grid", str(b)]) == 0
    out = capsys.readouterr().out
    assert "Pooled over 3 counted runs" in out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| variant")}
    assert rows["merged"][1:] == ["3", "0.923", "0.833", "0", "7", "2", "0", "yes"]
    assert rows["default"][-2:] == ["3", "yes"] and rows["impure"][-1] == "no" and rows["lossy"][-1] == "no"
    assert "incomplete (missing runs the baseline made): partial" in out
    assert out.rstrip().endswith("chosen by the rule: merged")


def test_variants_the_rule_cannot_tell_apart_are_said_so(tmp_path, capsys):
    pool = _pool()
    rows = [_row("owl", 1.0, 1.0, 2, 1)]
    grid = _grid(tmp_path / "g", 30, {"default": [_row("owl", 1.0, 1.0, 6, 4)], "x": rows, "y": rows})
    assert pool.main(["--grid", str(grid)]) == 0
    assert "the rule does not decide between: x, y" in capsys.readouterr().out
