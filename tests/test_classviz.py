"""Class model visualisation (Simonyan et al. 2013, Sec. 2): maths, every model kind, the CLI."""

import json
import warnings

import numpy as np
import pytest
import torch

from visum.classviz import (
    class_model_visualisation,
    stretch_contrast,
    to_display,
)
from conftest import run_cli
from visum.models.loading import load_model


LINEAR_FACTORY = """
import torch

class Linear(torch.nn.Module):
    class_names = ["zero", "one", "two"]

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.fc = torch.nn.Linear(3 * 16 * 16, 3)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(3, 3 * 16 * 16, generator=g) * 0.05)
            self.fc.bias.copy_(torch.tensor([0.5, 0.0, -0.5]))

    def forward(self, x):
        return self.fc(x.flatten(1))

def make():
    return Linear()
"""


@pytest.fixture
def linear_spec(tmp_path, monkeypatch):
    (tmp_path / "visum_test_classviz_linear.py").write_text(LINEAR_FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "visum_test_classviz_linear:make"


def test_linear_model_reaches_the_closed_form_optimum(linear_spec):
    """For S_c(I) = w_c . (I / std) + b_c the maximiser of S_c - lambda ||I||^2 is I* = w_c / (2 lambda std)."""
    model = load_model(linear_spec, input_size=16, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    std = torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)
    l2 = 5.0
    result = class_model_visualisation(model.module, 1, size=16, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                                       iterations=300, lr=0.05, l2=l2, step="plain")
    w = model.module.fc.weight[1].detach().view(3, 16, 16)
    expected = (w / std / (2 * l2)).numpy()
    np.testing.assert_allclose(result.centred, expected, rtol=1e-3, atol=1e-6)
    assert np.all(np.diff(result.objective) >= -1e-5)  # plain ascent with a small step never goes down
    # the displayed picture is the optimum plus the training mean, clipped to pixels
    shown = np.clip(expected + np.array([0.4, 0.5, 0.6])[:, None, None], 0, 1) * 255
    assert np.abs(result.image.astype(float) - shown.transpose(1, 2, 0)).max() <= 0.51


def test_normalised_steps_climb_the_same_objective(linear_spec):
    model = load_model(linear_spec, input_size=16)
    pre = model.preprocessing
    a = class_model_visualisation(model.module, 2, size=16, mean=pre.mean, std=pre.std, iterations=60, lr=0.01, l2=1.0)
    assert a.scores[-1] > a.scores[0] + 1.0
    assert a.objective[-1] > a.objective[0]
    # no step size makes the plain and normalised rules agree in general, but both approach I* ∝ w_c
    w = model.module.fc.weight[2].detach().numpy().ravel()
    cos = float(a.centred.ravel() @ w / np.linalg.norm(a.centred) / np.linalg.norm(w))
    assert cos > 0.9


def test_parts_model_target_score_rises_and_wins():
    model = load_model("parts")
    pre = model.preprocessing
    for target in (1, 2):
        result = class_model_visualisation(model.module, target, size=pre.input_size, mean=pre.mean, std=pre.std,
                                           iterations=60)
        assert result.scores[-1] > result.scores[0] + 5.0
        assert result.rank == 0, f"class {target}: logits {np.round(result.logits, 2)}"
        assert result.image.shape == (128, 128, 3) and result.image.dtype == np.uint8
        assert result.scores.shape == (61,)


def test_regularisers_are_deterministic_and_change_the_result():
    model = load_model("parts")
    pre = model.preprocessing
    kwargs = {"size": pre.input_size, "mean": pre.mean, "std": pre.std, "iterations": 12, "jitter": 4, "blur_sigma": 1.0,
                  "blur_every": 3, "clip": True}
    a = class_model_visualisation(model.module, 2, seed=5, **kwargs)
    b = class_model_visualisation(model.module, 2, seed=5, **kwargs)
    c = class_model_visualisation(model.module, 2, seed=6, **kwargs)
    plain = class_model_visualisation(model.module, 2, size=pre.input_size, mean=pre.mean, std=pre.std, iterations=12)
    np.testing.assert_array_equal(a.centred, b.centred)
    assert not np.array_equal(a.centred, c.centred)
    assert not np.allclose(a.centred, plain.centred)
    shown = a.centred + np.asarray(pre.mean)[:, None, None]
    assert shown.min() >= -1e-6 and shown.max() <= 1 + 1e-6  # --clip keeps every pixel displayable


def test_display_adds_the_mean_and_stretch_keeps_the_sign():
    centred = np.zeros((3, 4, 4), np.float32)
    centred[0, 0, 0] = 0.1
    centred[1, 1, 1] = -0.1
    shown = to_display(torch.from_numpy(centred), (0.5, 0.5, 0.5))
    assert shown[2, 2].tolist() == [128, 128, 128]
    assert shown[0, 0, 0] == round(0.6 * 255)
    stretched = stretch_contrast(centred, (0.5, 0.5, 0.5), quantile=1.0)
    assert stretched[0, 0, 0] == round(0.95 * 255) and stretched[1, 1, 1] == round(0.05 * 255)


def test_cli_on_a_factory_and_torchscript_model(tmp_path, capsys, linear_spec):
    out = tmp_path / "factory"
    code, stdout, err = run_cli(capsys, "classviz", "--model", linear_spec, "--input-size", 16, "--target", "two",
                                "--target", 0, "--iterations", 30, "--out", out, "-q")
    assert code == 0, err
    data = json.loads((out / "classviz.json").read_text())
    assert [r["target"] for r in data["targets"]] == [2, 0]
    for row in data["targets"]:
        assert (out / row["png"]).is_file()
        assert row["score_end"] > row["score_start"]
        assert row["rank"] == 0
    assert "two (2)" in stdout

    scripted = tmp_path / "linear.pt"
    module = load_model(linear_spec, input_size=16).module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, but visum still loads its files
        torch.jit.trace(module, torch.zeros(1, 3, 16, 16)).save(str(scripted))
    code, _, err = run_cli(capsys, "classviz", "--model", scripted, "--input-size", 16, "--target", 1,
                           "--iterations", 30, "--out", tmp_path / "ts", "-q", "--display", "stretch")
    assert code == 0, err
    row = json.loads((tmp_path / "ts" / "classviz.json").read_text())["targets"][0]
    assert row["rank"] == 0 and row["score_end"] > row["score_start"]


def test_cli_parts_default_and_cache(tmp_path, capsys):
    args = ["classviz", "--target", "parrot-with-square-beak", "--iterations", 40, "-q",
            "--cache-dir", tmp_path / "cache"]
    code, _stdout, err = run_cli(capsys, *args, "--out", tmp_path / "a")
    assert code == 0, err
    a = json.loads((tmp_path / "a" / "classviz.json").read_text())["targets"][0]
    assert a["target"] == 2 and a["rank"] == 0 and a["score_end"] > a["score_start"] + 5
    code, _, err = run_cli(capsys, *args, "--out", tmp_path / "b")  # from the cache: the same picture
    assert code == 0, err
    assert (tmp_path / "a" / a["png"]).read_bytes() == (tmp_path / "b" / a["png"]).read_bytes()


def test_cli_efficientnet_lite0(tmp_path, capsys):
    out = tmp_path / "effnet"
    code, _stdout, err = run_cli(capsys, "classviz", "--model", "efficientnet-lite0", "--target", "goldfish",
                                "--iterations", 20, "--input-size", 96, "--out", out, "-q", "--no-cache")
    assert code == 0, err
    row = json.loads((out / "classviz.json").read_text())["targets"][0]
    assert row["target"] == 1 and row["top5_names"][0].startswith("goldfish")
    assert row["score_end"] > row["score_start"] + 5


def test_cli_errors(tmp_path, capsys):
    code, _, err = run_cli(capsys, "classviz", "--model", "efficientnet-lite0", "--out", tmp_path)
    assert code == 2 and "--target is required" in err
    code, _, err = run_cli(capsys, "classviz", "--target", "no-such-class", "--out", tmp_path)
    assert code == 2 and "no-such-class" in err
    code, _, err = run_cli(capsys, "classviz", "--step", "adam", "--out", tmp_path)
    assert code == 2 and "--step" in err
