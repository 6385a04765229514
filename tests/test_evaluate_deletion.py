"""The paper's Table 2 protocol: drops, equal-area thresholding, curves."""

import json

import numpy as np
import pytest
import torch

from visum.cli import main
from visum.evaluate.deletion import (
    curve_auc,
    deletion_insertion_curves,
    perturbed_probabilities,
    relative_drop,
    threshold_to_area,
)


def test_relative_drop_and_area_threshold():
    assert relative_drop(np.array([0.8, 0.5]), np.array([0.2, 0.5])).tolist() == pytest.approx([0.75, 0.0])
    s = np.array([[0.9, 0.1], [0.5, 0.5]])
    assert threshold_to_area(s, 0.25).tolist() == [[1, 0], [0, 0]]
    assert threshold_to_area(s, 0.75).sum() == 3  # ties broken by order, area met exactly
    assert threshold_to_area(s, 0.0).sum() == 0 and threshold_to_area(s, 1.0).sum() == 4


class PatchModel(torch.nn.Module):
    """Class 1's logit is the contrast of a 8x8 patch at the top-left; blurring it removes the evidence."""

    def forward(self, x):
        patch = x[:, :, 2:10, 2:10]
        contrast = (patch - patch.mean(dim=(2, 3), keepdim=True)).abs().mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(contrast), 20 * contrast], dim=1)


def test_blurring_the_evidence_drops_the_score_and_curves_rank_it():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(1, 3, 32, 32)
    x[:, :, 2:10, 2:10] = torch.rand(1, 3, 8, 8, generator=g) * 4 - 2
    model, target = PatchModel(), torch.tensor([1])
    on_patch = torch.zeros(1, 1, 32, 32)
    on_patch[..., 0:12, 0:12] = 1
    off_patch = torch.zeros(1, 1, 32, 32)
    off_patch[..., 20:32, 20:32] = 1
    p0 = torch.softmax(model(x), 1)[0, 1]
    p_on = perturbed_probabilities(model, x, on_patch, target)[0]
    p_off = perturbed_probabilities(model, x, off_patch, target)[0]
    assert p_on < 0.7 * p0 and abs(p_off - p0) < 1e-4
    good = on_patch[0, 0].numpy() + 0.01 * np.random.default_rng(0).random((32, 32))
    bad = off_patch[0, 0].numpy() + 0.01 * np.random.default_rng(0).random((32, 32))
    f, d_good, i_good = deletion_insertion_curves(model, x, good, 1, steps=10)
    _, d_bad, i_bad = deletion_insertion_curves(model, x, bad, 1, steps=10)
    assert f[0] == 0 and f[-1] == 1 and d_good[0] == pytest.approx(float(p0), abs=1e-5)
    assert curve_auc(f, d_good) < curve_auc(f, d_bad)
    assert curve_auc(f, i_good) > curve_auc(f, i_bad)


def test_evaluate_deletion_command_on_parts_images(parts_folder, tmp_path, capsys):
    code = main(["evaluate", "deletion", "--images", str(parts_folder), "--methods", "gradient,gradient-thresh",
                 "--reference", "gradient", "--steps", "4", "--out", str(tmp_path / "d"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads((tmp_path / "d" / "deletion.json").read_text())
    rows = {r["method"]: r for r in data["rows"]}
    assert rows["gradient"]["n"] == 8 and 0 < rows["gradient"]["drop_mean"] <= 1
    assert rows["gradient-thresh"]["area_mean"] == pytest.approx(rows["gradient"]["area_mean"], abs=1e-3)
    assert rows["gradient-thresh"]["binary_mean"] == 1.0
    assert (tmp_path / "d" / "curves.png").stat().st_size > 1000
    assert "| gradient-thresh |" in out


def test_shared_saliency_options_must_belong_to_some_method(parts_folder, tmp_path, capsys):
    code = main(["evaluate", "deletion", "--images", str(parts_folder), "--methods", "gradient",
                 "--opt", "saliency.nonsense=1", "--out", str(tmp_path / "d"), "--quiet"])
    assert code == 2 and "nonsense" in capsys.readouterr().err
