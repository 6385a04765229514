"""visum ablate: variants of a base configuration, run through one cache and scored against ground truth."""

import csv
import json

import pytest

from visum.ablate import (
    apply_changes,
    markdown_table,
    parse_vary,
    plan_variants,
    run_ablation,
    write_tables,
)
from visum.cli import main
from visum.config import make_config
from visum.errors import ConfigError


def test_parse_vary():
    assert parse_vary("saliency=gradient, crisp") == ("saliency", ["gradient", "crisp"])
    assert parse_vary("clusterer.preference_quantile=0.1,0.5") == ("clusterer.preference_quantile", [0.1, 0.5])
    assert parse_vary("seed=0,1") == ("seed", [0, 1])
    for bad in ["saliency", "=a,b", "saliency=", "saliency=,"]:
        with pytest.raises(ConfigError, match="--vary"):
            parse_vary(bad)


def test_one_change_at_a_time_and_the_base_once():
    base = make_config({"saliency": "crisp", "matcher": "proposal-flow", "clusterer": "ap"})  # the paper's pipeline
    variants = plan_variants(base, [("saliency", ["gradient", "iebb", "crisp"]), ("matcher", ["hog", "proposal-flow"]),
                                    ("clusterer", ["ap", "agglomerative"])])
    assert [v.name for v in variants] == ["base", "saliency=gradient", "saliency=iebb", "matcher=hog",
                                          "clusterer=agglomerative"]
    assert variants[0].config == base
    assert variants[1].config.saliency == "gradient" and variants[1].config.matcher == "proposal-flow"
    assert variants[4].config.clusterer == "agglomerative" and variants[4].config.saliency == "crisp"


def test_grid_has_every_combination():
    variants = plan_variants(make_config({"saliency": "gradient", "clusterer": "ap"}),
                             [("saliency", ["gradient", "crisp"]), ("clusterer", ["ap", "hdbscan", "spectral"])],
                             grid=True)
    combos = {(v.config.saliency, v.config.clusterer) for v in variants}
    assert len(variants) == 6 and len(combos) == 6 and variants[0].name == "base"
    assert "saliency=crisp clusterer=hdbscan" in {v.name for v in variants}


def test_an_option_equal_to_the_component_default_is_the_base():
    base = make_config({"clusterer": "hdbscan"})
    variants = plan_variants(base, [("clusterer.min_cluster_size", [3, 5])])
    assert [v.name for v in variants] == ["base", "clusterer.min_cluster_size=5"]
    assert variants[1].config.options["clusterer"] == {"min_cluster_size": 5}


def test_changing_a_component_drops_the_base_options_of_its_kind():
    base = make_config({"clusterer": "ap", "options": {"clusterer": {"preference_quantile": 0.3}, "scorer": {"ratio": 0.8}}})
    cfg = apply_changes(base, [("clusterer", "hdbscan")])
    assert cfg.clusterer == "hdbscan" and "clusterer" not in cfg.options and cfg.options["scorer"] == {"ratio": 0.8}
    assert apply_changes(base, [("clusterer", "ap")]).options["clusterer"] == {"preference_quantile": 0.3}
    assert apply_changes(base, [("regions.threshold", 0.4)]).regions.threshold == 0.4
    assert apply_changes(base, [("seed", 3)]).seed == 3
    with pytest.raises(ConfigError, match="no such setting"):
        apply_changes(base, [("regions.nope", 1)])
    with pytest.raises(ConfigError, match="not a section"):
        apply_changes(base, [("seed.x", 1)])
    with pytest.raises(ConfigError, match="batch_size=0"):
        apply_changes(base, [("batch_size", 0)])


def test_ablation_reuses_the_cache_and_scores_every_variant(parts_folder, tmp_path):
    # unmerged: the merge computes the model's features of each variant's own clusters' boxes, which no
    # earlier variant cached; what this test checks is the reuse of the per-image and per-pair stages
    base = make_config({"images": str(parts_folder), "workers": 1, "saliency": "gradient", "clusterer": "ap",
                        "summaries": {"merge": "none"}})
    variants = plan_variants(base, [("clusterer", ["ap", "hdbscan"]), ("matcher", ["proposal-flow"])])
    cache = tmp_path / "cache"
    rows = run_ablation(variants, tmp_path / "abl", cache_root=cache, score_settings={"draws": 50})
    assert [r.variant.name for r in rows] == ["base", "clusterer=hdbscan", "matcher=proposal-flow"]
    base_row, other_clusterer, other_matcher = rows
    n_used = sum(1 for _ in parts_folder.glob("*.png"))
    assert base_row.cache_misses >= n_used and base_row.error is None
    # a new clusterer reuses masks, proposals, descriptions and matches: nothing is recomputed
    assert other_clusterer.cache_misses == 0 and other_clusterer.cache_hits >= 2 * n_used
    # a new matcher recomputes descriptions and matches, never masks or proposals
    assert other_matcher.cache_misses > 0 and other_matcher.cache_hits >= 2 * n_used
    for r in rows:
        assert r.scores is not None and r.scores.parts_present == ["eye", "beak", "tail", "wing"]
        assert (r.out_dir / "manifest.json").is_file() and (r.out_dir / "run.toml").is_file()

    paths = write_tables(rows, tmp_path / "abl")
    table = list(csv.DictReader(paths["csv"].open()))
    assert [t["clusterer"] for t in table] == ["ap", "hdbscan", "ap"]
    assert [t["matcher"] for t in table] == ["hog", "hog", "proposal-flow"]
    assert float(table[0]["mean_purity"]) == pytest.approx(rows[0].scores.mean_purity)
    assert int(table[1]["kept"]) == rows[1].n_kept
    md = paths["md"].read_text()
    assert md == markdown_table(rows) and md.count("\n") == 2 + len(rows)
    data = json.loads(paths["json"].read_text())
    assert data[2]["config"]["matcher"] == "proposal-flow" and data[2]["changes"] == [["matcher", "proposal-flow"]]


def test_a_failing_variant_is_reported_and_the_others_still_run(parts_folder, tmp_path):
    base = make_config({"images": str(parts_folder), "workers": 1, "saliency": "gradient"})
    # a model whose prediction is never the target: no image is used
    variants = plan_variants(base, [("target", ["1"])])
    rows = run_ablation(variants, tmp_path / "abl")
    assert rows[0].error is None and rows[1].error and "classified" in rows[1].error
    assert "error:" in markdown_table(rows)


def test_ablate_command(parts_folder, tmp_path, capsys):
    code = main(["ablate", "--images", str(parts_folder), "--workers", "1", "--saliency", "gradient", "--clusterer", "ap", "--vary", "clusterer=ap,spectral",
                 "--out", str(tmp_path / "abl"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| base | gradient | hog | ap |" in out and "| clusterer=spectral | gradient | hog | spectral |" in out
    assert (tmp_path / "abl" / "ablation.csv").is_file()
    assert main(["ablate", "--vary", "clusterer"]) == 2
    assert main(["ablate", "--vary", "clusterer=nope", "--images", str(parts_folder), "--out", str(tmp_path / "x")]) == 2
    assert "nope" in capsys.readouterr().err
