"""End to end through the command line, as a user runs it."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from visum.cli import main
from visum.manifest import Manifest

from conftest import foolbox_images, manifest_without_timings, one_line_error, run_cli


def load_manifest(folder: Path) -> Manifest:
    return Manifest.model_validate_json((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def gradient_run(tmp_path_factory):
    """`visum run --saliency gradient`: the embedded default but for the saliency (crisp, chosen on the dev
    worlds, docs/benchmark.md), which costs 10-20x more; gradient was the default before."""
    out = tmp_path_factory.mktemp("gradient") / "run"
    code = main(["run", "--saliency", "gradient", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_gradient_run_produces_at_least_two_kept_summaries(gradient_run):
    m = load_manifest(gradient_run)
    assert m.model.spec == "parts" and m.model.target_index == 0
    assert len(m.kept_summaries) >= 2
    used = [im for im in m.images if im.used]
    assert len(used) >= 0.8 * len(m.images)
    for s in m.summaries:
        assert (gradient_run / s.image).is_file()
        images = {mem.image for mem in s.members}
        assert len(images) >= 3
        for mem in s.members:
            im = m.images[mem.image]
            region = im.regions[mem.region]
            x0, y0, x1, y1 = mem.part_bbox
            assert 0 <= x0 < x1 <= im.width and 0 <= y0 < y1 <= im.height
            # the part lies (mostly) inside its region
            rx0, ry0, rx1, ry1 = region.bbox
            inter = max(0, min(x1, rx1) - max(x0, rx0)) * max(0, min(y1, ry1) - max(y0, ry0))
            assert inter >= 0.7 * (x1 - x0) * (y1 - y0)
    for im in used:
        assert (gradient_run / im.mask).is_file()
    for name in ["run.toml", "report.html", "manifest.json"]:
        assert (gradient_run / name).is_file()
    assert set(m.timings) >= {"saliency", "proposals", "matching", "clustering", "scoring", "summaries"}


def test_kept_summaries_carry_the_models_reliance_and_come_most_relied_on_first(gradient_run):
    from visum.stages.reliance import ratio_of_sums

    m = load_manifest(gradient_run)
    kept = m.kept_summaries
    assert all(s.reliance is not None and all(mem.drop is not None for mem in s.members) for s in kept)
    assert [s.reliance for s in kept] == sorted((s.reliance for s in kept), reverse=True)
    assert m.summaries[: len(kept)] == kept
    # the reliance is the ratio of sums over its members, whose unblurred probability is the image's target score
    # (blurring the right box, not a wrong one, is tested in test_summary_reliance and by the discards below)
    for s in kept:
        p = np.array([m.images[mem.image].target_score for mem in s.members])
        drop = np.array([mem.drop for mem in s.members])
        assert ratio_of_sums(p, p * (1 - drop)) == pytest.approx(s.reliance, abs=1e-4)
    assert "reliance" in (gradient_run / "report.html").read_text()


def test_gradient_run_recovers_every_part_with_pure_summaries(gradient_run):
    """Gradient saliency with the default components recovers the parts world's four parts (docs/summaries.md);
    the crisp default finds the eye only there (docs/benchmark.md)."""
    from visum.evaluate.summaries import evaluate_run

    m = load_manifest(gradient_run)
    assert m.config["clusterer"] == "hdbscan" and m.config["matcher"] == "hog" and m.config["saliency"] == "gradient"
    s = evaluate_run(gradient_run, draws=200)
    assert s.parts_recovered == s.parts_present == ["eye", "beak", "tail", "wing"]
    assert s.mean_purity > 0.9  # affinity propagation, the previous default, gives 0.85 on these images
    assert s.mu_s < 0.5 * s.mu_r


@pytest.fixture(scope="module")
def unmerged_gradient_run(tmp_path_factory):
    """`gradient_run` with `summaries.merge = "none"` (the default until it was chosen on dev worlds)."""
    root = tmp_path_factory.mktemp("unmerged")
    (root / "unmerged.toml").write_text('[summaries]\nmerge = "none"\n')
    assert main(["run", "--saliency", "gradient", "--config", str(root / "unmerged.toml"), "--out", str(root / "run"),
                 "--quiet"]) == 0
    return root / "run"


def test_the_default_merges_the_summaries_the_model_sees_as_one_part(gradient_run, unmerged_gradient_run):
    """The default merge (after the reliance filter, features centred on random boxes): fewer summaries,
    the same parts, at most two summaries of one part; a merged summary's reliance is measured again."""
    from visum.evaluate.summaries import evaluate_run

    merged, unmerged = load_manifest(gradient_run), load_manifest(unmerged_gradient_run)
    assert merged.config["summaries"]["merge"] == "model" and unmerged.config["summaries"]["merge"] == "none"
    m, u = evaluate_run(gradient_run, draws=50), evaluate_run(unmerged_gradient_run, draws=50)
    assert m.n_kept < u.n_kept and m.parts_recovered == u.parts_recovered == ["eye", "beak", "tail", "wing"]
    majorities = [s.majority for s in m.summaries if s.kept]
    assert max(majorities.count(p) for p in set(majorities)) <= 2 < max(
        [s.majority for s in u.summaries if s.kept].count(p) for p in set(majorities))
    kept_before = {(x.image, x.region, tuple(x.part_bbox)) for s in unmerged.kept_summaries for x in s.members}
    joined = [s for s in merged.kept_summaries if s.quality.get("merged", 1) > 1]
    assert joined, "on these images some kept summaries show one part and merge"
    for s in joined:  # only summaries both filters kept are joined, and the union is measured again, member by member
        assert {(x.image, x.region, tuple(x.part_bbox)) for x in s.members} <= kept_before
        assert all(x.drop is not None for x in s.members) and s.reliance >= 0.2


def test_merging_right_after_clustering_leaves_one_summary_per_part(unmerged_gradient_run, tmp_path, capsys):
    """summaries.merge = "model" right after clustering: the default pipeline's HOG clusters split parts
    by pose; the parts CNN's own features join them (10 summaries -> 5 on these images at 0.9)."""
    from visum.evaluate.summaries import evaluate_run

    cfg = tmp_path / "model.toml"
    cfg.write_text('[summaries]\nmerge = "model"\nmerge_after = "clustering"\nmerge_centre = "clusters"\n'
                   'merge_similarity = 0.9\n')
    code, _, err = run_cli(capsys, "run", "--config", cfg, "--saliency", "gradient", "--out", tmp_path / "merged")
    assert code == 0, err
    assert re.search(r"merged [1-9]\d* clusters the model sees as one part", err)
    merged, unmerged = evaluate_run(tmp_path / "merged", draws=50), evaluate_run(unmerged_gradient_run, draws=50)
    assert merged.n_kept < unmerged.n_kept
    assert merged.parts_recovered == ["eye", "beak", "tail", "wing"]
    assert merged.n_kept <= 2 * len(merged.parts_recovered) and merged.mean_purity >= 0.85


def test_same_config_and_seed_give_the_same_manifest_from_the_cache(gradient_run, tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", "--config", gradient_run / "run.toml", "--out", tmp_path / "again")
    assert code == 0, err
    assert out.strip().endswith("report.html")
    hits = int(re.search(r"cache: (\d+) hits", err).group(1))
    assert hits >= len([im for im in load_manifest(gradient_run).images if im.used])  # masks at least
    first, second = manifest_without_timings(gradient_run), manifest_without_timings(tmp_path / "again")
    # image paths differ only because each run writes its own benchmark images
    assert first == second


def count_explained_images(monkeypatch, plugin_cls) -> list[int]:
    """Wrap ``plugin_cls.explain``; the returned list collects each call's batch size."""
    calls: list[int] = []
    real_explain = plugin_cls.explain

    def counting(self, model, x, target):
        calls.append(x.shape[0])
        return real_explain(self, model, x, target)

    monkeypatch.setattr(plugin_cls, "explain", counting)
    return calls


def test_interrupted_run_resumes_without_recomputing_masks(parts_folder, tmp_path, capsys, monkeypatch):
    import visum.pipeline as pipeline
    import visum_plugins.saliency.gradient as gradient

    calls = count_explained_images(monkeypatch, gradient.Gradient)

    def crash(self, *args):
        raise KeyboardInterrupt

    cache = tmp_path / "cache"
    args = ["run", "--saliency", "gradient", "--images", parts_folder, "--out", tmp_path / "a", "--cache-dir", cache, "--quiet"]
    with monkeypatch.context() as m:
        m.setattr(pipeline.Pipeline, "_proposals", crash)
        code, _, err = run_cli(capsys, *args)
    assert code == 130 and "resume" in err
    computed = sum(calls)
    assert computed == 8
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    assert sum(calls) == computed  # masks came from the cache
    code, _, err = run_cli(capsys, *args, "--no-cache")
    assert code == 0 and sum(calls) == 2 * computed


def test_bad_inputs_give_one_line_errors_naming_the_culprit(parts_folder, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(parts_folder, bad)
    (bad / "notes.txt").write_text("not an image")
    assert "notes.txt" in one_line_error(capsys, "run", "--images", bad, "--out", tmp_path / "o1", "-q")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty" in one_line_error(capsys, "run", "--images", empty, "--out", tmp_path / "o2", "-q")

    msg = one_line_error(capsys, "run", "--images", parts_folder, "--saliency", "telepathy", "--out", tmp_path / "o3")
    assert "telepathy" in msg and "gradient" in msg

    msg = one_line_error(capsys, "run", "--images", parts_folder, "--target", "zebra", "--out", tmp_path / "o4")
    assert "zebra" in msg

    msg = one_line_error(capsys, "run", "--images", parts_folder, "--clusterer", "ap", "--opt", "clusterer.damping=7", "--out", tmp_path / "o5")
    assert "clusterer plugin 'ap'" in msg and "damping" in msg

    msg = one_line_error(capsys, "run", "--images", parts_folder, "--clusterer", "ap", "--opt", "clusterer.dampign=0.5", "--out", tmp_path / "o6")
    assert "dampign" in msg

    assert "--opt" in one_line_error(capsys, "run", "--opt", "nonsense", "--out", tmp_path / "o7")
    assert "--images is required" in one_line_error(capsys, "run", "--model", "efficientnet-lite0", "--target", "jeep",
                                                    "--out", tmp_path / "o8")
    assert "--target is required" in one_line_error(capsys, "run", "--model", "efficientnet-lite0", "--images",
                                                    parts_folder, "--out", tmp_path / "o9")


def test_plugins_lists_builtins_with_options(capsys):
    code, out, _ = run_cli(capsys, "plugins")
    assert code == 0
    for name in ["gradient", "selective-search", "hog", "ap", "ssim"]:
        assert f"  {name} " in out
    assert "--opt clusterer.preference=" in out and "--opt proposer.max_proposals=" in out
    code, out, _ = run_cli(capsys, "plugins", "--json", "--kind", "clusterer")
    rows = json.loads(out)
    by_name = {r["name"]: r for r in rows}
    assert {"ap", "agglomerative", "spectral", "hdbscan"} <= set(by_name)
    assert all(r["kind"] == "clusterer" and r["source"] == "built-in" for r in rows)
    assert any(o["name"] == "preference" for o in by_name["ap"]["options"])


def test_schema_command_matches_the_model(capsys):
    code, out, _ = run_cli(capsys, "schema")
    assert code == 0 and json.loads(out) == Manifest.model_json_schema()


@pytest.mark.skipif(foolbox_images() is None, reason="foolbox's bundled ImageNet images are not installed")
def test_real_photos_with_efficientnet(tmp_path, capsys):
    """Two real ImageNet-val jeeps (label 609) and scikit-image's tabby cat.

    efficientnet-lite0 calls the jeeps a beach wagon and a convertible, so by default (as in
    the paper) no image is used and the run stops with a one-line error; with
    --keep-misclassified every photo is explained.
    """
    from PIL import Image
    from skimage import data

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in sorted(foolbox_images().glob("imagenet_*_609.jpg")):
        shutil.copy(path, folder / path.name)
    Image.fromarray(data.chelsea()).save(folder / "chelsea.png")
    msg = one_line_error(capsys, "run", "--model", "efficientnet-lite0", "--images", folder, "--target", "tabby cat",
                         "--out", tmp_path / "dropped", "--quiet")
    assert "only 0 of 3 images (0 %) are classified as 'tabby' (281)" in msg and "--keep-misclassified" in msg
    # where they went and what to check first
    assert "the others went to" in msg and "first check the preprocessing" in msg and "--crop-ratio" in msg

    code, out, err = run_cli(capsys, "run", "--saliency", "gradient", "--model", "efficientnet-lite0", "--images", folder, "--target", "jeep",
                             "--keep-misclassified", "--out", tmp_path / "out", "--quiet")
    assert code == 0, err
    m = load_manifest(tmp_path / "out")
    assert m.model.target_name == "jeep" and m.model.target_index == 609
    by_name = {Path(im.path).name: im for im in m.images}
    assert by_name["chelsea.png"].predicted_name in {"tabby", "tiger cat", "Egyptian cat"}
    assert all(im.used and im.regions and im.mask for im in m.images)
    for name, im in by_name.items():
        assert (im.width, im.height) == Image.open(folder / name).size
        for region in im.regions:
            x0, y0, x1, y1 = region.bbox
            assert 0 <= x0 < x1 <= im.width and 0 <= y0 < y1 <= im.height
        mask = np.asarray(Image.open(tmp_path / "out" / im.mask))
        assert mask.shape == (im.height, im.width)


def test_masks_command_writes_png_and_npy_for_every_image(parts_folder, tmp_path, capsys):
    code, out, err = run_cli(capsys, "masks", "--saliency", "gradient", "--images", parts_folder,
                             "--out", tmp_path / "m", "--quiet")
    assert code == 0, err
    assert out.strip().endswith("masks")
    m = load_manifest(tmp_path / "m")
    assert len(m.images) == 8 and m.summaries == []
    for im in m.images:
        png = np.asarray(__import__("PIL.Image").Image.open(tmp_path / "m" / im.mask))
        npy = np.load((tmp_path / "m" / im.mask).with_suffix(".npy"))
        assert png.shape == (im.height, im.width) and npy.dtype == np.float32
        assert 0 <= npy.min() and npy.max() <= 1 and npy.max() > 0.5
    msg = one_line_error(capsys, "masks", "--saliency", "nope", "--images", parts_folder, "--out", tmp_path / "x")
    assert "unknown saliency plugin 'nope'" in msg


def test_killed_masks_command_recomputes_only_the_missing_masks(parts_folder, tmp_path, capsys, monkeypatch):
    """SIGKILL `visum masks` once a few masks are cached; the rerun computes only the others."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import visum_plugins.saliency.iebb as iebb

    cache, out = tmp_path / "cache", tmp_path / "m"
    # a short schedule: this checks what the cache keeps across a kill, not the masks
    args = ["masks", "--saliency", "iebb", "--opt", "saliency.iterations=100", "--images", str(parts_folder),
            "--out", str(out), "--cache-dir", str(cache), "--batch-size", "1", "--quiet"]

    def cached() -> int:
        # finished entries only: a write killed mid-way leaves a `.<key>.vcache.*.tmp` file, never a `<key>.vcache`
        return sum(not p.name.startswith(".") for p in (cache / "saliency").glob("*/*.vcache"))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = tmp_path / "killed.log"  # a file, not a pipe nobody drains while the child runs
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "visum.cli", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 300
    while cached() < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = cached()
    assert proc.returncode == -signal.SIGKILL, log.read_text()
    assert 3 <= done < 8, done  # killed half-way, with finished masks on disk
    assert not (out / "manifest.json").exists()

    calls = count_explained_images(monkeypatch, iebb.IEBB)
    code, _, err = run_cli(capsys, *args[:-1])
    assert code == 0, err
    assert sum(calls) == 8 - done  # only the missing masks
    assert f"cache: {done} hits, {8 - done} misses" in err  # the reporter writes to stderr
    assert len(load_manifest(out).images) == 8 and cached() == 8


@pytest.mark.parametrize("proposer", ["edge-boxes", "selective-search"])
def test_proposal_flow_end_to_end_on_parts_and_real_photos(proposer, parts_folder, tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--matcher", "proposal-flow",
                           "--proposer", proposer, "--out", tmp_path / "parts", "--quiet")
    assert code == 0, err
    m = load_manifest(tmp_path / "parts")
    assert m.config["matcher"] == "proposal-flow" and m.config["proposer"] == proposer
    assert m.kept_summaries
    if foolbox_images() is None:
        pytest.skip("foolbox's bundled ImageNet images are not installed")
    from PIL import Image
    from skimage import data

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted(foolbox_images().glob("imagenet_*_609.jpg")):
        shutil.copy(path, photos / path.name)
    Image.fromarray(data.chelsea()).save(photos / "chelsea.png")
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--model", "efficientnet-lite0", "--images", photos, "--target", "jeep",
                           "--keep-misclassified", "--matcher", "proposal-flow", "--proposer", proposer,
                           "--out", tmp_path / "photos-out", "--quiet")
    assert code == 0, err
    m = load_manifest(tmp_path / "photos-out")
    assert all(im.used and im.regions for im in m.images)
    assert m.timings["matching"] > 0


def test_regions_binarisation_follows_the_method_unless_configured():
    from visum.config import make_config
    from visum.pipeline import Pipeline

    assert Pipeline(make_config({"saliency": "crisp"}), "unused").binarisation() == (0.5, 0.0)
    assert Pipeline(make_config({"saliency": "gradient"}), "unused").binarisation() == ("otsu", 2.0)
    cfg = make_config({"saliency": "crisp", "regions": {"threshold": 0.3, "smooth_sigma": 1.0}})
    assert Pipeline(cfg, "unused").binarisation() == (0.3, 1.0)


def test_a_clusterer_that_does_not_converge_is_said_out_loud(parts_folder, tmp_path, capsys):
    """AP needs its exemplars stable for convergence_iter (15) iterations: 3 iterations cannot converge."""
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--clusterer", "ap", "--opt", "clusterer.max_iter=3",
                           "--out", out, "--quiet")
    assert code == 0, err
    assert "visum: warning: the clusterer ap did not converge (3 iterations)" in err
    manifest = load_manifest(out)
    assert [w.code for w in manifest.warnings] == ["clusterer-convergence"]
    assert "clusterer.max_iter" in (out / "report.html").read_text()


def test_a_run_whose_every_summary_fails_the_reliance_filter_says_why(parts_folder, tmp_path, capsys):
    """EfficientNet on real cat photos: no single part's blur moves the class, so min_reliance 0.2 keeps
    nothing (docs/benchmark.md). Here forced by a threshold no drop reaches (a ratio of drops is at most 1)."""
    cfg = tmp_path / "strict.toml"
    cfg.write_text("[summaries]\nmin_reliance = 1.5\n")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--config", cfg,
                           "--out", out, "--quiet")
    assert code == 0, err
    assert re.search(r"visum: warning: no summary kept: the SSIM check kept [1-9]\d*, but removing any one of them \(blur\)", err)
    manifest = load_manifest(out)
    assert [w.code for w in manifest.warnings] == ["nothing-relied-on"] and not any(s.kept for s in manifest.summaries)
    assert "min_reliance = -inf" in (out / "report.html").read_text()

    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--out", tmp_path / "ok",
                           "--quiet")
    assert code == 0 and "no summary kept" not in err and load_manifest(tmp_path / "ok").warnings == []


@pytest.fixture(scope="module")
def paper_runs(tmp_path_factory):
    """The paper's matching and clustering on 30 parts images: summaries as clustered, then merged."""
    root = tmp_path_factory.mktemp("paper")
    runs = {}
    for name, summaries in {"as-clustered": "min_reliance = -100\n", "reliance": "min_reliance = 0.2\n",
                            "merged": 'min_reliance = 0.2\nmerge = "same-part"\nmerge_after = "clustering"\n',
                            "all-members": "min_reliance = -100\none_per_region = false\n"}.items():
        cfg = root / f"{name}.toml"
        unmerged = "" if "merge =" in summaries else 'merge = "none"\n'
        cfg.write_text(f"[summaries]\n{summaries}{unmerged}")
        out = root / name
        assert main(["run", "--saliency", "gradient", "--matcher", "proposal-flow", "--clusterer", "ap", "--config", str(cfg), "--out", str(out),
                     "--quiet"]) == 0
        runs[name] = load_manifest(out)
    return runs


def test_summaries_the_model_does_not_rely_on_are_discarded(paper_runs):
    before, after = paper_runs["as-clustered"], paper_runs["reliance"]
    measured = lambda m: sorted(s.reliance for s in m.summaries if s.reliance is not None)  # noqa: E731
    assert measured(before) == measured(after)  # the same summaries, measured the same
    low = [s for s in before.kept_summaries if s.reliance < 0.2]
    assert low, "the parts CNN ignores some clustered regions (background); this run should show some"
    assert len(after.kept_summaries) == len(before.kept_summaries) - len(low)
    assert all(s.reliance >= 0.2 for s in after.kept_summaries)
    dropped = [s for s in after.summaries if s.quality.get("not_relied_on")]
    assert len(dropped) == len(low) and not any(s.kept for s in dropped)


def test_one_member_per_image_and_region_is_a_setting(paper_runs):
    one, every = paper_runs["as-clustered"], paper_runs["all-members"]
    per_region = lambda m: [(s.id, x.image, x.region) for s in m.summaries for x in s.members]  # noqa: E731
    assert len(set(per_region(one))) == len(per_region(one))
    assert len(set(per_region(every))) < len(per_region(every))  # several proposals of one region in a summary
    assert sum(len(s.members) for s in every.summaries) > sum(len(s.members) for s in one.summaries)


def test_merging_clusters_of_the_same_part_leaves_fewer_larger_summaries(paper_runs):
    merged, unmerged = paper_runs["merged"], paper_runs["reliance"]
    assert len(merged.kept_summaries) < 0.6 * len(unmerged.kept_summaries)
    members = lambda m: sum(len(s.members) for s in m.kept_summaries)  # noqa: E731
    assert members(merged) / len(merged.kept_summaries) > members(unmerged) / len(unmerged.kept_summaries)
