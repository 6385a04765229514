"""Ground-truth scores of summaries, and discarded clusters kept in the manifest and the report."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from visum.cli import main
from visum.errors import InputError
from visum.evaluate.summaries import (
    box_label_counts,
    evaluate_run,
    jaccard_distances,
    majority,
    mean_within,
    member_labels,
    normalized_mutual_information,
    random_images_mean,
    region_part_coverage,
    score_summaries,
    shown_parts,
)
from visum.manifest import Manifest

PARTS = ["eye", "beak", "tail", "wing"]


def label_map() -> np.ndarray:
    """40 x 40: eye 4x4 at (2..6, 2..6), beak 6x6 at (20..26, 2..8), tail 10x10 at (0..10, 20..30), wing 20x10 bottom right."""
    lm = np.zeros((40, 40), dtype=np.int64)
    lm[2:6, 2:6] = 1
    lm[2:8, 20:26] = 2
    lm[20:30, 0:10] = 3
    lm[30:40, 20:40] = 4
    return lm


EYE, BEAK, TAIL, WING = (0, 0, 12, 12), (16, 0, 30, 12), (0, 20, 10, 30), (20, 30, 40, 40)
BACKGROUND_BOX = (12, 12, 19, 29)  # no part pixel
SLIVER = (10, 26, 24, 40)  # 40 wing pixels in a 14 x 14 background box


# ----------------------------------------------------------------------------- labelling


def test_box_label_counts_count_pixels_inside_the_box_and_clip():
    lm = label_map()
    assert box_label_counts(lm, EYE, 5).tolist() == [144 - 16, 16, 0, 0, 0]
    assert box_label_counts(lm, (-5, -5, 100, 100), 5).sum() == 1600
    assert box_label_counts(lm, (50, 50, 60, 60), 5).sum() == 0


def test_a_box_shows_a_part_that_fills_it_or_that_it_mostly_holds():
    lm = label_map()
    boxes = [EYE, BEAK, WING, BACKGROUND_BOX, SLIVER, (20, 30, 30, 40)]
    counts = np.stack([box_label_counts(lm, b, 5) for b in boxes])
    areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for b in boxes])
    part_areas = np.tile(np.bincount(lm.ravel(), minlength=5), (len(boxes), 1))
    shown = shown_parts(counts, areas, part_areas, share=0.5)
    labels = member_labels(counts, shown)
    # eye: 16 of 144 pixels of the box but all of the eye; beak: 21 % of its box but all of it;
    # background box; sliver: 40 wing pixels = 20 % of the box and 20 % of the wing; half the wing fills its box
    assert [PARTS[k - 1] if k else "background" for k in labels] == ["eye", "beak", "wing", "background",
                                                                       "background", "wing"]
    assert shown[3].sum() == 0 and shown[4].sum() == 0


def test_the_label_is_the_shown_part_with_most_pixels():
    lm = label_map()
    box = (0, 0, 26, 8)  # the whole eye (16 px) and the whole beak (36 px)
    counts = box_label_counts(lm, box, 5)[None]
    shown = shown_parts(counts, np.array([26 * 8]), np.bincount(lm.ravel(), minlength=5)[None])
    assert shown[0].tolist() == [True, True, False, False]
    assert member_labels(counts, shown).tolist() == [2]


def test_majority_and_jaccard():
    assert majority(np.array([2, 2, 1, 0])) == (2, 0.5)
    assert majority(np.array([3, 1, 1, 3])) == (1, 0.5)  # ties: the smaller label
    tags = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]], dtype=bool)
    d = jaccard_distances(tags)
    assert d[0, 1] == pytest.approx(0.5) and d[0, 2] == 1.0 and d[3, 4] == 0.0 and d[0, 3] == 1.0
    assert np.allclose(d, d.T) and np.all(np.diag(d)[:3] == 0)


def test_nmi_is_one_for_a_relabelling_and_zero_for_independent_labels():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert normalized_mutual_information(a, np.array([5, 5, 3, 3, 4, 4])) == pytest.approx(1.0)
    assert normalized_mutual_information(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])) == pytest.approx(0.0)


def test_mu_r_estimates_the_mean_distance_of_the_pool():
    """With one region per image, a random set of images' mean pairwise distance is, in expectation, the mean over all pairs."""
    rng = np.random.default_rng(3)
    tags = rng.random((12, 4)) < 0.4
    d = jaccard_distances(tags)
    i, j = np.triu_indices(12, k=1)
    pool = [tags[k : k + 1] for k in range(12)]
    mu_r = random_images_mean(pool, [3, 5], draws=4000, rng=np.random.default_rng(0))
    assert mu_r == pytest.approx(d[i, j].mean(), abs=0.01)
    assert random_images_mean(pool, [3, 5], 50, np.random.default_rng(1)) == random_images_mean(
        pool, [3, 5], 50, np.random.default_rng(1))
    assert mean_within(d, [np.arange(12)]) == pytest.approx(d[i, j].mean())


def test_region_coverage_says_which_parts_the_salient_regions_hold():
    lm = label_map()
    assert region_part_coverage(lm, [EYE, (0, 20, 4, 30)], 5).tolist() == [True, False, False, False]  # 40 % of the tail
    assert region_part_coverage(lm, [EYE, (0, 20, 4, 30)], 5, share=0.4).tolist() == [True, False, True, False]
    assert region_part_coverage(lm, [], 5).tolist() == [False] * 4
    s = score_summaries([(0, True, [(0, EYE), (1, EYE)])], _maps(2), PARTS, draws=5,
                        regions={0: [EYE, WING], 1: [EYE]})
    assert s.region_coverage == {"eye": 1.0, "beak": 0.0, "tail": 0.0, "wing": 0.5}


# ----------------------------------------------------------------------------- class scores


def _maps(n: int) -> dict[int, np.ndarray]:
    return {i: label_map() for i in range(n)}


def test_perfect_summaries_score_perfectly_and_beat_random_subsets():
    boxes = {"eye": EYE, "beak": BEAK, "tail": TAIL, "wing": WING}
    summaries = [(k, True, [(i, boxes[p]) for i in range(5)]) for k, p in enumerate(PARTS)]
    s = score_summaries(summaries, _maps(5), PARTS, draws=200, regions={i: list(boxes.values()) for i in range(5)})
    assert s.mean_purity == 1.0 and s.coverage == 1.0 and s.parts_recovered == PARTS
    assert s.nmi == pytest.approx(1.0)
    assert s.mu_s == 0.0 and s.mu_r > 0.5
    assert [x.majority for x in s.summaries] == PARTS


def test_mu_r_comes_from_random_images_so_one_part_summaries_still_beat_it():
    # every summary shows the eye: random members of the summaries would all be eyes too
    # (mu_R = mu_S = 0); random regions of random images of the class are not
    summaries = [(k, True, [(i, EYE) for i in range(k, k + 3)]) for k in range(3)]
    regions = {i: [EYE, BEAK, TAIL, WING] for i in range(6)}
    s = score_summaries(summaries, _maps(6), PARTS, draws=300, regions=regions)
    assert s.mu_s == 0.0 and s.mu_r == pytest.approx(0.75 * 1.0, abs=0.05)  # two draws differ w.p. 3/4
    only_eyes = score_summaries(summaries, _maps(6), PARTS, draws=50, regions={i: [EYE] for i in range(6)})
    assert only_eyes.mu_r == 0.0
    # an image without salient regions stands for itself (every part it shows)
    whole = score_summaries(summaries, _maps(6), PARTS, draws=50, regions={})
    assert whole.mu_r == 0.0


def test_random_images_mean_draws_distinct_images_and_is_seeded():
    a = np.array([[1, 0]], bool)
    b = np.array([[0, 1]], bool)
    # two images, groups of 2: always one row of each, distance 1
    assert random_images_mean([a, b], [2], 20, np.random.default_rng(0)) == 1.0
    assert np.isnan(random_images_mean([a], [2], 20, np.random.default_rng(0)))
    # a summary with more members than images (several regions of one image) draws (image, region) units
    two = [np.array([[1, 0], [1, 0]], bool), np.array([[0, 1], [0, 1]], bool)]
    assert random_images_mean(two, [4], 10, np.random.default_rng(0)) == pytest.approx(4 / 6)
    assert np.isnan(random_images_mean(two, [5], 10, np.random.default_rng(0)))
    pools = [np.array([[1, 0], [0, 1]], bool)] * 4
    x = random_images_mean(pools, [3, 4], 30, np.random.default_rng(5))
    assert x == random_images_mean(pools, [3, 4], 30, np.random.default_rng(5)) and 0 < x < 1


def test_mixed_summaries_score_lower_and_discarded_ones_do_not_count():
    boxes = [EYE, BEAK, TAIL, WING]
    # each summary takes one box of every part: purity 1/4, nothing recovered, tags as random as random subsets
    mixed = [(k, True, [(i, boxes[(i + k) % 4]) for i in range(4)]) for k in range(4)]
    pure_but_discarded = (9, False, [(i, EYE) for i in range(5)])
    s = score_summaries([*mixed, pure_but_discarded], _maps(5), PARTS, draws=500)
    assert s.mean_purity == 0.25 and s.coverage == 0.0 and s.n_kept == 4 and s.n_members == 16
    assert s.nmi == pytest.approx(0.0, abs=1e-9)
    assert s.mu_s == 1.0 and s.mu_s >= s.mu_r
    assert s.summaries[-1].kept is False and s.summaries[-1].purity == 1.0


def test_parts_absent_from_every_image_do_not_count_in_coverage():
    maps = {i: np.where(label_map() == 1, 0, label_map()) for i in range(3)}  # no eyes
    s = score_summaries([(0, True, [(i, BEAK) for i in range(3)])], maps, PARTS, draws=10)
    assert s.parts_present == ["beak", "tail", "wing"] and s.coverage == pytest.approx(1 / 3)


def test_background_summaries_do_not_recover_a_part_and_impure_ones_need_min_purity():
    summaries = [(0, True, [(i, BACKGROUND_BOX) for i in range(3)]),
                 (1, True, [(0, TAIL), (1, TAIL), (2, WING), (3, EYE)])]
    s = score_summaries(summaries, _maps(4), PARTS, draws=10)
    assert s.summaries[0].majority == "background" and s.summaries[0].purity == 1.0
    assert s.parts_recovered == ["tail"] and s.background_share == pytest.approx(3 / 7)
    assert score_summaries(summaries, _maps(4), PARTS, min_purity=0.6, draws=10).parts_recovered == []


def test_no_kept_summary():
    s = score_summaries([(0, False, [(0, EYE), (1, EYE)])], _maps(2), PARTS, draws=10)
    assert s.n_kept == 0 and s.coverage == 0.0 and np.isnan(s.mean_purity) and np.isnan(s.mu_s)


# ----------------------------------------------------------------------------- runs on disk


@pytest.fixture(scope="module")
def strict_run(parts_folder, tmp_path_factory):
    """A run on benchmark images whose SSIM ratio discards some clusters."""
    out = tmp_path_factory.mktemp("strict") / "run"
    code = main(["run", "--saliency", "gradient", "--images", str(parts_folder), "--out", str(out), "--quiet", "--workers", "1",
                 "--opt", "scorer.ratio=3.0"])
    assert code == 0
    return out


def test_discarded_clusters_stay_in_the_manifest_and_the_report(strict_run):
    m = Manifest.model_validate_json((strict_run / "manifest.json").read_text())
    discarded = [s for s in m.summaries if not s.kept]
    assert discarded and m.kept_summaries, "ratio 3 keeps some clusters and discards others"
    data = json.loads((strict_run / "manifest.json").read_text())
    assert sum(1 for s in data["summaries"] if s["kept"] is False) == len(discarded)
    page = (strict_run / "report.html").read_text()
    assert re.search(rf"<summary>Discarded clusters \({len(discarded)}\)</summary>", page)
    for s in discarded:
        assert (strict_run / s.image).is_file() and s.members
        assert s.quality["median_ssim"] < s.quality["threshold"]
        assert page.index("Discarded clusters") < page.index(f'id="summary-{s.id}"')
    for s in m.kept_summaries:
        assert s.quality["median_ssim"] >= s.quality["threshold"]


def test_evaluate_summaries_scores_kept_summaries_of_a_run(strict_run, capsys):
    m = Manifest.model_validate_json((strict_run / "manifest.json").read_text())
    scores = evaluate_run(strict_run, draws=50)
    assert scores.n_kept == len(m.kept_summaries)
    assert [s.id for s in scores.summaries] == [s.id for s in m.summaries]
    assert [s.kept for s in scores.summaries] == [s.kept for s in m.summaries]
    assert scores.n_members == sum(len(s.members) for s in m.kept_summaries)
    assert scores.parts_present == PARTS
    code = main(["evaluate", "summaries", str(strict_run), "--json", "--draws", "50"])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["n_kept"] == scores.n_kept
    page = (strict_run / "report.html").read_text()
    assert 'id="ground-truth"' in page and "parts recovered" in page and "Salient regions hold" in page
    assert set(scores.region_coverage) == set(PARTS)


def test_default_style_run_is_coherent(parts_folder, tmp_path):
    """On benchmark images the kept summaries group like parts: mu_S < mu_R, and they are mostly pure."""
    out = tmp_path / "run"
    assert main(["run", "--saliency", "gradient", "--images", str(parts_folder), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    s = evaluate_run(out, draws=200)
    assert s.n_kept >= 2
    assert s.mu_s < s.mu_r
    assert s.mean_purity > 0.6


def test_runs_without_ground_truth_are_refused_in_one_line(tmp_path, capsys, parts_folder):
    import shutil

    images = tmp_path / "plain"
    images.mkdir()
    for p in sorted(parts_folder.glob("*.png"))[:4]:
        shutil.copy(p, images / p.name)
    out = tmp_path / "run"
    assert main(["run", "--saliency", "gradient", "--images", str(images), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    assert 'id="ground-truth"' not in (out / "report.html").read_text()
    with pytest.raises(InputError, match="no parts-benchmark ground truth"):
        evaluate_run(out)
    capsys.readouterr()
    assert main(["evaluate", "summaries", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("visum: error:") and len(err.strip().splitlines()) == 1
    assert main(["evaluate", "summaries", str(tmp_path / "nowhere")]) == 2
    assert "manifest.json" in capsys.readouterr().err


def test_ground_truth_of_generated_benchmark_is_found_in_the_run_folder(tmp_path):
    """`visum run` without --images writes the benchmark into RUN_DIR/images with its ground truth."""
    out = tmp_path / "run"
    # a short crisp schedule: the test is about where the ground truth goes, not the masks
    short = ["--opt", "saliency.rounds=1", "--opt", "saliency.rough_iterations=60", "--opt", "saliency.crisp_iterations=30"]
    assert main(["run", "--out", str(out), "--quiet", "--benchmark-images", "4", "--workers", "1", *short]) == 0
    assert (out / "images" / "ground_truth" / "ground_truth.json").is_file()
    s = evaluate_run(out, draws=10)
    assert s.parts_present == PARTS
    m = Manifest.model_validate_json((out / "manifest.json").read_text())
    assert Path(m.images[0].path).parts[0] == "images"
    # the embedded default, chosen on the dev worlds (docs/benchmark.md)
    assert (m.config["saliency"], m.config["proposer"], m.config["matcher"], m.config["clusterer"]) == (
        "crisp", "selective-search", "hog", "hdbscan")
