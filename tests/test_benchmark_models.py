"""Models trained on a world (deterministic, cached) and reliance measured by removing parts (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visum.benchmark import train as world_train
from visum.benchmark.models import ARCHITECTURES, build
from visum.benchmark.reliance import RELIED_ON, part_reliance
from visum.benchmark.train import Recipe, trained
from visum.data.worlds import world

TINY = Recipe("owl", "cnn", epochs=1, n_per_class=12, lr=3e-3)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_takes_every_world_size(architecture):
    for size in (96, 224):
        model = build(architecture, 3, size).eval()
        with torch.no_grad():
            assert model(torch.zeros(2, 3, size, size)).shape == (2, 3)


def test_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    a = world_train.train(TINY, tmp_path / "a", progress=False, n_val_per_class=4)
    b = world_train.train(TINY, tmp_path / "b", progress=False, n_val_per_class=4)
    sa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["history"] == b["history"] and a["val"]["n"] == 4 * 4

    model, metrics = trained(TINY, tmp_path / "cache", progress=False)  # trains once ...
    calls = []
    monkeypatch.setattr(world_train, "train", lambda *a, **k: calls.append(1))
    again, _ = trained(TINY, tmp_path / "cache", progress=False)  # ... then loads
    assert calls == [] and not again.training
    for (k, v), (_, w) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(v, w), k
    (world_train.recipe_dir(TINY, tmp_path / "cache") / "model.pt").write_bytes(b"damaged")
    monkeypatch.undo()
    retrained, _ = trained(TINY, tmp_path / "cache", progress=False)  # a damaged file is not trusted
    assert all(torch.equal(v, w) for v, w in zip(model.state_dict().values(), retrained.state_dict().values()))


def test_world_models_load_through_the_model_spec(tmp_path, monkeypatch):
    from visum.models.loading import load_model, resolve_target

    monkeypatch.setenv("VISUM_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(world_train.DEFAULTS, "cnn", {"epochs": 1, "n_per_class": 12, "lr": 3e-3})
    loaded = load_model("world:owl/cnn")
    w = world("owl")
    assert loaded.class_names == w.class_names and loaded.preprocessing.resize == "squash"
    assert loaded.preprocessing.input_size == w.size and loaded.preprocessing.crop_ratio == 1.0
    assert resolve_target("owl-without-eye", loaded.class_names, 4) == 1
    from visum.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown world"):
        load_model("world:nowhere/cnn")
    with pytest.raises(ConfigError, match="unknown architecture"):
        load_model("world:owl/mlp")


class _Counts(torch.nn.Module):
    """A stand-in model whose class-0 logit grows with how much of the eye (feature 0) it sees."""

    def forward(self, x):
        return torch.stack([300 * x[:, 0], torch.full_like(x[:, 0], 1.0)], dim=1)


def test_reliance_is_the_score_drop_when_a_part_is_removed():
    w = world("owl")

    def features(samples):  # what the stand-in model sees: the share of each part's pixels
        return torch.tensor([[s.part_masks[p].mean() for p in w.part_names] for s in samples], dtype=torch.float32)

    result = {r.part: r for r in part_reliance(_Counts(), w, n_images=6, tensor=features)}
    assert result["eye"].relied_on and result["eye"].mean_drop > 0.5 and result["eye"].images == 6
    for part in ("beak", "tail"):  # removing them changes nothing the model sees
        assert result[part].mean_drop == pytest.approx(0.0, abs=1e-6) and not result[part].relied_on
    assert RELIED_ON == 0.2


def test_reliance_is_a_ratio_of_sums_so_one_unsure_image_cannot_swing_it(monkeypatch):
    from visum.benchmark.reliance import part_reliance

    w = world("owl")
    calls = []

    class Unsure(torch.nn.Module):  # p(target) 0.001 -> 0.01 without the eye on the first image, 0.9 -> 0.72 on the rest
        def forward(self, x):
            calls.append(len(x))
            first, eye = x[:, 0], x[:, 1]
            p = torch.where(first > 0, torch.where(eye > 0, 0.001, 0.01), torch.where(eye > 0, 0.9, 0.72))
            return torch.stack([p.log(), (1 - p).log()], dim=1)

    def features(samples):
        return torch.tensor([[float(s is samples[0] and len(samples) == 6), float(s.part_masks["eye"].any())]
                             for s in samples])

    from visum.benchmark import reliance

    # the unsure image is not classified as the target: measured on the 5 others, as the pipeline explains those
    eye = {r.part: r for r in part_reliance(Unsure(), w, n_images=6, tensor=features)}["eye"]
    assert eye.images == 5 and eye.mean_drop == pytest.approx(0.2, rel=1e-5)
    # with every image: a mean of ratios would be (-9 + 5 * 0.2) / 6 = -1.3; the ratio of sums stays near 0.2
    monkeypatch.setattr(reliance, "MIN_IMAGES", 10)
    eye = {r.part: r for r in part_reliance(Unsure(), w, n_images=6, tensor=features)}["eye"]
    assert eye.images == 6 and eye.mean_drop == pytest.approx((5 * 0.18 - 0.009) / 4.501, rel=1e-5)


def test_reliance_in_a_k_of_n_world_is_measured_where_the_part_is_pivotal():
    from visum.benchmark.reliance import part_reliance

    w = world("crab")  # any 2 of 4 parts
    seen = []

    def features(samples):
        seen.extend(sum(1 for p in s.present if p in w.ruled_parts) for s in samples)
        return torch.zeros(len(samples), 2)

    part_reliance(_Counts(), w, n_images=8, tensor=features)
    assert seen[:8] == [2] * 8  # the originals: exactly k parts each


def test_the_cache_key_follows_the_world_declaration(monkeypatch):
    from dataclasses import replace

    from visum.data.worlds import catalogue

    before = TINY.key()
    owl = catalogue.WORLDS["owl"]
    monkeypatch.setitem(catalogue.WORLDS, "owl", replace(owl, size=96))
    assert TINY.key() != before


def test_benchmark_command_runs_worlds_by_models_and_writes_its_tables(tmp_path, capsys, monkeypatch):
    import csv
    import json

    from conftest import run_cli

    monkeypatch.setitem(world_train.DEFAULTS, "cnn", {"epochs": 2, "n_per_class": 40, "lr": 3e-3})
    monkeypatch.setenv("VISUM_CACHE_DIR", str(tmp_path / "default-cache"))
    config = tmp_path / "run.toml"
    config.write_text("keep_misclassified = true\n")  # a barely trained model: explain every image anyway
    out = tmp_path / "bench"
    code, stdout, err = run_cli(capsys, "benchmark", "--worlds", "owl", "--models", "cnn", "--images", "6", "--saliency", "gradient",
                                "--config", config, "--out", out, "--cache-dir", tmp_path / "cache", "--quiet")
    assert code == 0, err
    assert "1 of 1 runs" in stdout
    rows = list(csv.DictReader(open(out / "benchmark.csv")))
    assert len(rows) == 1 and rows[0]["world"] == "owl" and rows[0]["model"] == "cnn" and rows[0]["error"] == ""
    assert int(rows[0]["used"]) == 6 and rows[0]["reliance"].count(":") == 3  # a drop for each of the 3 parts
    data = json.loads((out / "benchmark.json").read_text())
    assert data["config"]["keep_misclassified"] is True and len(data["rows"]) == 1
    assert (out / "owl" / "cnn" / "manifest.json").is_file() and "<img" in (out / "benchmark.html").read_text()
    # the run loaded the model the benchmark had trained into --cache-dir: no second training
    assert len(list((tmp_path / "cache" / "worlds" / "owl").iterdir())) == 1
    assert not (tmp_path / "default-cache").exists()
    code, _, err = run_cli(capsys, "benchmark", "--worlds", "owl,atlantis", "--out", out)
    assert code == 2 and "atlantis" not in err.split("names among")[1] and "bad --worlds" in err
    code, _, err = run_cli(capsys, "benchmark", "--models", "cnn,mlp", "--out", out)
    assert code == 2 and err.count("\n") == 1 and "bad --models 'cnn,mlp'" in err


def test_scores_name_a_part_only_for_a_box_that_holds_it_and_is_not_much_larger():
    from visum.benchmark.score import named_parts

    counts = np.array([[0, 40, 0], [900, 40, 0], [10, 15, 4], [60, 40, 0]])  # columns: background, part 1, part 2
    boxes = np.array([50, 1000, 30, 100])
    part_areas = np.array([[0, 50, 10]] * 4)
    part_boxes = np.array([[0, 60, 12], [0, 60, 12], [0, 60, 12], [0, 30, 12]])  # a thin part: a 30 px box
    named = named_parts(counts, boxes, part_areas, part_boxes)
    assert named.tolist() == [[True, False], [False, False], [False, False], [True, False]]
    # row 2: the whole-object box holds the part but is 17x its box; row 3: holds too little of either part;
    # row 4: a thin part fills only 40 % of a tight box, which still names it (the box is 3.3x the part's box)


def test_score_run_counts_recall_false_and_impure_summaries(tmp_path):
    from visum.benchmark.score import score_run
    from visum.manifest import ImageRecord, Manifest, MemberRecord, ModelRecord, SummaryRecord

    w = world("owl")
    from visum.data.ground_truth import write_samples
    from visum.data.worlds import make_samples

    samples = make_samples(w, 5, labels=[0])
    paths = write_samples(samples, tmp_path / "images", w.class_names, w.part_names)

    def box(sample, part, pad=1):
        ys, xs = np.nonzero(sample.part_masks[part])
        return (int(xs.min()) - pad, int(ys.min()) - pad, int(xs.max()) + 1 + pad, int(ys.max()) + 1 + pad)

    images = [ImageRecord(id=k, path=str(p), width=w.size, height=w.size, target_score=0.9, predicted_index=0,
                          used=True) for k, p in enumerate(paths)]

    def summary(sid, parts):
        return SummaryRecord(id=sid, kept=True, members=[MemberRecord(image=k, region=0, part_bbox=box(samples[k], p),
                                                                      score=1.0) for k, p in enumerate(parts)])

    whole = (0, 0, w.size, w.size)
    summaries = [summary(0, ["eye"] * 4), summary(1, ["tail", "tail", "tail", "eye"]), summary(2, ["beak"] * 3),
                 SummaryRecord(id=3, kept=True, members=[MemberRecord(image=k, region=0, part_bbox=whole, score=1.0)
                                                         for k in range(3)]),
                 SummaryRecord(id=4, kept=True, members=summary(4, ["eye", "eye", "tail", "beak"]).members
                               + [MemberRecord(image=4, region=0, part_bbox=whole, score=1.0)])]
    manifest = Manifest(visum_version="x", config={}, model=ModelRecord(spec="m", target_index=0, target_name="owl"),
                        images=images, summaries=summaries, timings={})
    score = score_run(manifest, tmp_path, relied=["eye", "tail"])
    assert score.kept == 5 and score.relied == ["eye", "tail"] and score.recovered == ["eye", "tail"]
    assert score.recall == 1.0
    assert score.false_summaries == 2  # the beak (not relied on) and the whole-image boxes (no part)
    assert score.impure == 1 and score.redundancy == 1  # summary 4: majority eye at 0.4 purity
    assert score.majorities == ["eye", "tail", "beak", "none", "eye"]
    assert np.isnan(score_run(manifest, tmp_path, relied=[]).saliency_on_relied)
