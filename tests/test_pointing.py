"""Per-image saliency scores on the parts benchmark: pointing game, IoU with the parts, localisation table."""

import json

import numpy as np
import pytest

from conftest import run_cli
from visum.config import RunConfig
from visum.data.parts import load_ground_truth
from visum.evaluate.localisation import evaluate_localisation
from visum.evaluate.pointing import box_mask, evaluate_pointing, grow, pointing_hit
from visum.pipeline import Pipeline



def test_pointing_hit_counts_ties():
    s = np.zeros((10, 10))
    target = np.zeros((10, 10), bool)
    target[:5] = True
    s[2, 3] = 1.0
    assert pointing_hit(s, target) == 1.0
    s[7, 3] = 1.0  # a second, tied maximum outside
    assert pointing_hit(s, target) == 0.5
    s[7, 3] = 0.99
    assert pointing_hit(s, target) == 1.0
    with pytest.raises(ValueError):
        pointing_hit(s, target[:5])


def test_grow_and_box_mask():
    m = box_mask((2, 3, 5, 4), (8, 8))
    assert m.sum() == 3 and m[3, 2:5].all()
    assert np.array_equal(grow(m, 0), m)
    grown = grow(m, 2)
    assert grown[1, 3] and grown[3, 0] and not grown[0, 0]  # a disc, not a square


def oracle(parts_folder, what):
    """Patch the pipeline's masks with the ground truth itself: the union of parts, or the object box."""
    truth = load_ground_truth(parts_folder)

    def saliency_masks(self, model, images, targets, kind="saliency"):
        out = {}
        for im in images:
            gt = truth[im.path.name]
            if what == "parts":
                m = np.zeros(gt.part_masks["eye"].shape, bool)
                for p in gt.part_masks.values():
                    m |= p
            else:
                m = box_mask(gt.object_box, gt.part_masks["eye"].shape)
            out[im.id] = m.astype(np.float32)
        return out

    return saliency_masks


def test_oracle_maps_score_perfectly(parts_folder, tmp_path, monkeypatch):
    cfg = RunConfig(images=parts_folder, keep_misclassified=True)
    monkeypatch.setattr(Pipeline, "saliency_masks", oracle(parts_folder, "parts"))
    report = evaluate_pointing(cfg, ["gradient"], tmp_path)
    row = report.rows()[0]
    assert row["n"] == 8
    assert row["pointing_box"] == 1.0 and row["pointing_parts"] == 1.0
    assert row["iou_true_area"] == pytest.approx(1.0)
    assert row["iou_threshold"] == pytest.approx(1.0, abs=0.2)  # Otsu after a sigma-2 blur of a binary map

    monkeypatch.setattr(Pipeline, "saliency_masks", oracle(parts_folder, "box"))
    loc = evaluate_localisation(cfg, ["gradient", "crisp"], tmp_path)
    for r, m in zip(loc.rows(), loc.methods):
        assert r["cam_iou"] == pytest.approx(1.0)
        # the true box is all foreground seed, so GraphCut keeps it (the box is never smaller) and may add
        # background of the colours inside it (a box-shaped map seeds the background colours as foreground too)
        assert min(m.grabcut) > 0.3 and r["grabcut_iou"] > 0.5, m.grabcut
    assert loc.rows()[1]["threshold_iou"] == pytest.approx(1.0)  # crisp's regions cut at 0.5, unsmoothed
    assert np.mean(np.asarray(loc.whole_image) >= 0.5) < 1.0  # the whole image is not a free answer


def test_cli_pointing_and_localization(parts_folder, tmp_path, capsys):
    cache = tmp_path / "cache"
    out = tmp_path / "pointing"
    code, stdout, err = run_cli(capsys, "evaluate", "pointing", "--images", parts_folder, "--methods",
                                "gradient,gradcam", "--out", out, "--cache-dir", cache, "-q")
    assert code == 0, err
    data = json.loads((out / "pointing.json").read_text())
    assert [r["method"] for r in data["rows"]] == ["gradient", "gradcam"]
    assert len(data["per_image"]["gradient"]["pointing_box"]) == 8
    box_area = np.mean([np.prod(np.subtract(gt.object_box[2:], gt.object_box[:2])) / 128**2
                        for gt in load_ground_truth(parts_folder).values()])
    gradient = data["rows"][0]
    assert gradient["pointing_box"] > box_area  # better than a random point
    assert "| gradient |" in (out / "pointing.md").read_text()

    out = tmp_path / "localization"
    code, stdout, err = run_cli(capsys, "evaluate", "localization", "--images", parts_folder, "--methods", "gradient",
                                "--out", out, "--cache-dir", cache, "-q")
    assert code == 0, err
    data = json.loads((out / "localization.json").read_text())
    row = data["rows"][0]
    assert row["n"] == 8 and 0 <= row["grabcut_accuracy"] <= 1
    assert row["grabcut_iou"] > np.mean(data["whole_image_iou"])
    assert "whole image" in stdout


def test_cli_evaluate_errors(parts_folder, tmp_path, capsys):
    folder = tmp_path / "plain"
    folder.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a.png")
    code, _, err = run_cli(capsys, "evaluate", "pointing", "--images", folder, "--methods", "gradient",
                           "--out", tmp_path / "o", "-q")
    assert code == 2 and "ground truth" in err
    code, _, err = run_cli(capsys, "evaluate", "localization", "--images", parts_folder, "--methods", "nope",
                           "--out", tmp_path / "o", "-q")
    assert code == 2 and "nope" in err
