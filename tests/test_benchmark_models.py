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


def test_benchmark_command_runs_worlds_by_models_and_writes_its_tables(tmp_path, capsys, monkeypatch):
    import csv
    import json

    from conftest import run_cli

    monkeypatch.setitem(world_train.DEFAULTS, "cnn", {"epochs": 2, "n_per_class": 40, "lr": 3e-3})
    config = tmp_path / "run.toml"
    config.write_text("keep_misclassified = true\n")  # a barely trained model: explain every image anyway
    out = tmp_path / "bench"
    code, stdout, err = run_cli(capsys, "benchmark", "--worlds", "owl", "--models", "cnn", "--images", "6",
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
    assert json.loads((out / "owl" / "cnn" / "manifest.json").read_text())["timings"]["model"] < 2.0
    assert len(list((tmp_path / "cache" / "worlds" / "owl").iterdir())) == 1
    code, _, err = run_cli(capsys, "benchmark", "--worlds", "owl,atlantis", "--out", out)
    assert code == 2 and "atlantis" not in err.split("names among")[1] and "bad --worlds" in err


def test_scores_name_a_part_only_for_a_box_that_holds_it_and_is_not_much_larger():
    from visum.benchmark.score import named_parts

    counts = np.array([[0, 40, 0], [900, 40, 0], [10, 15, 5]])  # columns: background, part 1, part 2
    boxes = np.array([50, 1000, 30])
    part_areas = np.array([[0, 50, 10], [0, 50, 10], [0, 50, 10]])
    named = named_parts(counts, boxes, part_areas)
    assert named.tolist() == [[True, False], [False, False], [False, False]]
    # row 2: the whole-object box holds the part but is 25x larger; row 3: holds too little of either part
