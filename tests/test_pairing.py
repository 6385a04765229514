"""Which pairs are matched: all pairs, or each image with its K nearest (visum.stages.pairing)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import manifest_without_timings, one_line_error, run_cli
from visum.stages.pairing import AUTO_ALL_UP_TO, AUTO_K, all_pairs, knn_pairs, parse_pairs, resolve_pairs


def naive_knn(f: np.ndarray, k: int) -> set[tuple[int, int]]:
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    out = set()
    for i in range(len(f)):
        sims = [(-float(f[i] @ f[j]), j) for j in range(len(f)) if j != i]
        for _, j in sorted(sims)[:k]:
            out.add((min(i, j), max(i, j)))
    return out


def test_all_pairs_is_every_unordered_pair_once():
    assert all_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert all_pairs(1) == [] and len(all_pairs(50)) == 50 * 49 // 2


def test_knn_pairs_keep_each_image_with_its_nearest_and_at_most_n_k_pairs():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 5
    f = np.concatenate([c + rng.normal(size=(10, 16)) for c in centres])  # three groups of ten
    pairs = knn_pairs(f, 4)
    assert pairs == sorted(naive_knn(f, 4))
    assert len(pairs) <= 30 * 4
    partners = np.zeros(30, dtype=int)
    for a, b in pairs:
        assert a // 10 == b // 10  # neighbours of a tight group stay in the group
        partners[a] += 1
        partners[b] += 1
    assert partners.min() >= 4


def test_knn_pairs_in_row_blocks_equal_the_naive_ones_and_ties_go_to_the_smaller_index():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(1100, 4))  # more rows than one block of 1024
    assert knn_pairs(f, 3) == sorted(naive_knn(f, 3))
    same = np.ones((5, 3))  # every similarity ties: each image picks the smallest other indices
    assert knn_pairs(same, 1) == [(0, 1), (0, 2), (0, 3), (0, 4)]
    assert knn_pairs(same, 4) == all_pairs(5)  # K >= N - 1 is every pair


def test_pairing_names():
    assert parse_pairs("all") is None and parse_pairs("knn:7") == 7
    for bad in ("knn:0", "knn:", "knn:-1", "some", "auto"):
        with pytest.raises(ValueError):
            parse_pairs(bad)
    assert resolve_pairs("auto", AUTO_ALL_UP_TO) is None
    assert resolve_pairs("auto", AUTO_ALL_UP_TO + 1) == AUTO_K
    assert resolve_pairs("knn:3", 5) == 3


def test_run_with_knn_pairs_matches_fewer_pairs_and_knn_of_n_minus_1_is_the_all_pairs_run(parts_folder, tmp_path,
                                                                                         capsys):
    common = ["run", "--images", parts_folder, "--saliency", "gradient", "--seed", "1", "--cache-dir", tmp_path / "c"]
    code, _, err = run_cli(capsys, *common, "--out", tmp_path / "all", "--pairs", "all")
    assert code == 0, err
    code, _, err = run_cli(capsys, *common, "--out", tmp_path / "k7", "--pairs", "knn:7")
    assert code == 0, err
    code, _, err = run_cli(capsys, *common, "--out", tmp_path / "k2", "--pairs", "knn:2")
    assert code == 0, err
    assert "matching " in err and "each with its 2 nearest (of 28 pairs in all)" in err, err
    n_pairs = int(err.split("matching ")[1].split(" pairs")[0])
    assert 8 <= n_pairs <= 16  # every image keeps >= 2 partners; at most N K

    def without_pairs(folder):
        m = manifest_without_timings(folder)
        m["config"]["pruning"].pop("pairs")
        return m

    assert without_pairs(tmp_path / "k7") == without_pairs(tmp_path / "all")  # K = N - 1: every pair
    k2 = json.loads((tmp_path / "k2" / "manifest.json").read_text())
    assert k2["config"]["pruning"]["pairs"] == "knn:2"


def test_a_bad_pairs_value_is_one_line(capsys, tmp_path):
    line = one_line_error(capsys, "run", "--pairs", "knn:zero", "--out", tmp_path / "o")
    assert "pruning.pairs" in line
