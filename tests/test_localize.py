"""Weakly supervised localisation (Simonyan et al. 2013, Sec. 3.2): seeds, GraphCut, components, CLI."""

import json

import numpy as np
import pytest

from conftest import run_cli
from visum.data.parts import load_ground_truth
from visum.geometry import box_iou_one
from visum.localize import (
    grabcut_localisation,
    grabcut_segmentation,
    largest_component,
    mask_box,
    mask_iou,
    saliency_seeds,
    threshold_localisation,
)



def scene(seed=0):
    """A red ellipse (the object, box (20, 24, 60, 48)) on a noisy green and blue background."""
    rng = np.random.default_rng(seed)
    h, w = 64, 80
    img = np.zeros((h, w, 3), np.float32)
    img[:, : w // 2] = (40, 140, 60)
    img[:, w // 2 :] = (50, 80, 170)
    yy, xx = np.mgrid[0:h, 0:w]
    obj = ((xx + 0.5 - 40) / 20) ** 2 + ((yy + 0.5 - 36) / 12) ** 2 <= 1
    img[obj] = (210, 40, 40)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), obj


def test_seeds_follow_the_quantiles():
    s = np.arange(100 * 100, dtype=np.float64).reshape(100, 100) / 9999.0
    fg, bg = saliency_seeds(s, 0.95, 0.30)
    assert abs(fg.mean() - 0.05) < 0.002 and abs(bg.mean() - 0.30) < 0.002
    assert s[fg].min() > s[~fg].max() and s[bg].max() < s[~bg].min()


def test_seeds_with_ties_and_constant_maps():
    plateau = np.zeros((50, 50))
    plateau[10:20, 10:20] = 1.0  # a crisp-like mask: 4 % of the pixels at the maximum, 0 elsewhere
    fg, bg = saliency_seeds(plateau)
    assert fg.sum() == 100 and bg.sum() == 750 and not (fg & bg).any()
    # the background is the 30 % of the tied zeros farthest from the salient square
    yy, xx = np.mgrid[0:50, 0:50]
    far = np.hypot(np.clip(xx, 10, 19) - xx, np.clip(yy, 10, 19) - yy)
    assert far[bg].min() >= far[~bg & ~fg].max() - 1
    fg, bg = saliency_seeds(np.full((8, 8), 0.3))
    assert fg.all() and not bg.any()
    with pytest.raises(ValueError):
        saliency_seeds(plateau, 0.2, 0.5)


def test_grabcut_grows_a_small_seed_to_the_coloured_object():
    img, obj = scene()
    fg = np.zeros(obj.shape, bool)
    fg[33:39, 36:44] = True  # a small patch inside the object
    bg = np.zeros(obj.shape, bool)
    bg[:6] = bg[-6:] = True
    seg = grabcut_segmentation(img, fg, bg)
    assert mask_iou(seg, obj) > 0.9
    assert seg[fg].all() and not seg[bg].any()  # the seeds keep their labels


def test_grabcut_localisation_beats_thresholding_a_peaked_map():
    img, obj = scene(1)
    yy, xx = np.mgrid[0:64, 0:80]
    s = np.exp(-(((xx - 40) / 6.0) ** 2 + ((yy - 36) / 4.0) ** 2))  # saliency only at the object's centre
    loc = grabcut_localisation(img, s)
    true_box = mask_box(obj)
    assert true_box == (20, 24, 60, 48)
    assert box_iou_one(loc.box, true_box) > 0.85
    assert loc.fallback == ""
    assert abs(loc.foreground_seeds.mean() - 0.05) < 0.01
    assert box_iou_one(threshold_localisation(s, 0.5).box, true_box) < 0.3
    again = grabcut_localisation(img, s)
    np.testing.assert_array_equal(loc.mask, again.mask)  # deterministic


def test_flat_map_falls_back_to_the_seeds():
    img, _ = scene()
    loc = grabcut_localisation(img, np.zeros((64, 80)))
    assert loc.fallback and loc.box == (0, 0, 80, 64)
    with pytest.raises(ValueError, match="differ in size"):
        grabcut_localisation(img, np.zeros((10, 10)))


def test_largest_component_is_eight_connected():
    m = np.zeros((10, 10), bool)
    m[0, 0] = m[1, 1] = m[2, 2] = True  # a diagonal of 3: one 8-connected component
    m[5:7, 5] = True  # 2 pixels
    out = largest_component(m)
    assert out.sum() == 3 and out[1, 1]
    assert not largest_component(np.zeros((4, 4), bool)).any()


def test_boxes_and_iou():
    assert mask_box(np.zeros((3, 3), bool)) is None
    m = np.zeros((6, 8), bool)
    m[2:4, 3:7] = True
    assert mask_box(m) == (3, 2, 7, 4)
    assert box_iou_one((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou_one((0, 0, 2, 2), (3, 3, 4, 4)) == 0.0
    assert box_iou_one(None, (0, 0, 1, 1)) == 0.0


def test_threshold_baseline_uses_a_fraction_of_the_maximum():
    s = np.zeros((20, 20))
    s[2:6, 2:6] = 0.5
    s[10:18, 10:18] = 0.12  # above 20 % of the maximum, and larger
    assert threshold_localisation(s, 0.2).box == (10, 10, 18, 18)
    assert threshold_localisation(s, 0.5).box == (2, 2, 6, 6)


def test_cli_localize_parts(parts_folder, tmp_path, capsys):
    out = tmp_path / "loc"
    code, _stdout, err = run_cli(capsys, "localize", "--saliency", "gradient", "--images", parts_folder, "--out", out)
    assert code == 0, err
    data = json.loads((out / "localization.json").read_text())
    assert data["method"] == "grabcut" and len(data["images"]) == 8
    truth = load_ground_truth(parts_folder)
    ious = []
    for row in data["images"]:
        assert (out / row["mask"]).is_file()
        name = row["image"].rsplit("/", 1)[-1]
        assert row["true_box"] == list(truth[name].object_box)
        assert row["iou"] == pytest.approx(box_iou_one(row["box"], row["true_box"]))
        ious.append(row["iou"])
    assert len(list((out / "overlays").glob("*.png"))) == 8
    assert np.mean(ious) > 0.5  # GraphCut on the parrot's colours recovers most of its box
    assert "localisation accuracy" in err

    code, _, err = run_cli(capsys, "localize", "--saliency", "gradient", "--images", parts_folder, "--out",
                           tmp_path / "thr", "--method", "threshold", "-q")
    assert code == 0, err
    thr = json.loads((tmp_path / "thr" / "localization.json").read_text())
    assert thr["settings"]["threshold"] == ["otsu", 2.0]
    assert [r["box"] for r in thr["images"]] != [r["box"] for r in data["images"]]


def test_cli_localize_efficientnet_maps_boxes_to_the_original(parts_folder, tmp_path, capsys):
    out = tmp_path / "effnet"
    code, _, err = run_cli(capsys, "localize", "--saliency", "gradient", "--model", "efficientnet-lite0",
                           "--target", "macaw", "--images", parts_folder, "--out", out, "-q")
    assert code == 0, err
    data = json.loads((out / "localization.json").read_text())
    for row in data["images"]:
        x0, y0, x1, y1 = row["box"]
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128  # original pixels, not the 224-pixel view
        # the view is the 128-pixel image resized to 256 and centre-cropped to 224: view = 2 * original - 16
        expected = [(v + 16) / 2 for v in row["view_box"]]
        assert np.abs(np.clip(expected, 0, 128) - np.asarray(row["box"])).max() <= 1
        assert row["target"] == 88


def test_cli_localize_errors(parts_folder, tmp_path, capsys):
    code, _, err = run_cli(capsys, "localize", "--saliency", "nope", "--images", parts_folder, "--out", tmp_path)
    assert code == 2 and "nope" in err
    code, _, err = run_cli(capsys, "localize", "--saliency", "gradient", "--method", "snake", "--out", tmp_path)
    assert code == 2 and "--method" in err
    code, _, err = run_cli(capsys, "localize", "--saliency", "gradient", "--fg-quantile", 0.2, "--out", tmp_path)
    assert code == 2 and "--bg-quantile" in err
