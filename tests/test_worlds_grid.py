"""benchmarks/worlds_grid.py's tables: the means per variant and per architecture."""

import math

from conftest import benchmark_script


def _grid():
    return benchmark_script("worlds_grid")


def _row(model, purity, recall, kept, false=0, redundancy=1, saliency=0.5, error=""):
    return {"world": "w", "model": model, "val_accuracy": 1.0, "purity": purity, "recall": recall, "kept": kept,
            "false_summaries": false, "redundancy": redundancy, "saliency_on_relied": saliency, "seconds": 1.0,
            "error": error}


def _cells(line):
    return [c.strip() for c in line.strip("|").split("|")]


def test_means_are_split_by_architecture_when_several_ran():
    grid = _grid()
    rows = [_row("cnn", 1.0, 0.5, 2, saliency=0.2), _row("cnn", "", 0.0, 0),  # kept nothing: no purity
            _row("vit", 0.5, 1.0, 4, false=1, redundancy=3, saliency=0.6),
            _row("vit", 0.0, 0.0, 0, error="too few images")]
    lines = grid.means_rows("v", "--saliency crisp", rows)
    assert [_cells(x)[0] for x in lines] == ["v", "v (cnn)", "v (vit)"]
    both, cnn, vit = (_cells(x) for x in lines)
    # columns: variant, flags, runs, purity, recall, false, kept, most of one part, runs > 2, saliency, seconds
    assert both[2:10] == ["3/4", "0.75", "0.50", "1", "6", "3", "1", "0.43"]
    assert cnn[2:10] == ["2/2", "1.00", "0.25", "0", "2", "1", "0", "0.35"]
    assert vit[2:5] == ["1/2", "0.50", "1.00"]
    assert len(both) == len(_cells(grid.MEANS_HEAD.splitlines()[0]))


def test_one_architecture_gives_one_means_row():
    grid = _grid()
    assert len(grid.means_rows("v", "", [_row("cnn", 1.0, 1.0, 1)])) == 1
    assert math.isnan(grid._mean([_row("cnn", "", 0.0, 0)], "purity"))


def test_models_below_the_accuracy_bar_are_left_out_of_the_means():
    grid = _grid()
    rows = [_row("cnn", 1.0, 1.0, 1), _row("cnn", 0.0, 0.0, 0)]
    rows[1]["val_accuracy"] = 0.6
    assert _cells(grid.means_row("v", "", rows))[2:5] == ["2/2", "0.50", "0.50"]
    assert _cells(grid.means_row("v", "", rows, min_accuracy=0.9))[2:5] == ["1/2", "1.00", "1.00"]
