"""Bring your own model: the preprocessing each source declares, the low-target-share warning,
and every model source through the default pipeline (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from byom import (
    MEAN,
    SIZE,
    cat_views,
    save_exported,
    save_torchscript,
    train_border_net,
    write_images,
)
from conftest import run_cli
from visum.diagnostics import target_share
from visum.manifest import Manifest

N_FLAGGED = 12
HALF = "0.5,0.5,0.5"


@pytest.fixture(scope="session")
def border(tmp_path_factory):
    """The border classifier trained on whole 96x96 images, its archives, and images of its class 0."""
    root = tmp_path_factory.mktemp("border")
    model, accuracy = train_border_net(seed=1)
    state = root / "border-state.pth"
    torch.save(model.state_dict(), state)
    images = root / "flagged"
    write_images(images, N_FLAGGED, label=0, seed=11)
    mixed = root / "mixed"
    write_images(mixed, 6, label=0, seed=12)
    write_images(mixed, 6, label=1, seed=13)
    return {
        "model": model, "accuracy": accuracy, "images": images, "mixed": mixed, "state": state,
        "torchscript": save_torchscript(model, root / "border.pt"),
        "export": save_exported(model, root / "border.pt2"),
    }


def manifest_of(out: Path) -> Manifest:
    return Manifest.model_validate_json((out / "manifest.json").read_text())


def _source_args(border, source: str) -> list:
    """The command line a user would write for each source (the issue's, for TorchScript)."""
    if source == "torchscript":
        return ["--model", border["torchscript"], "--input-size", SIZE, "--mean", HALF, "--std", HALF]
    if source == "export":  # the input size is read off the program
        return ["--model", border["export"], "--mean", HALF, "--std", HALF]
    return ["--model", "byom:BorderNet", "--weights", border["state"]]  # the module declares its preprocessing


def test_the_border_model_needs_the_whole_image(border):
    from visum.models.base import Preprocessing

    assert border["accuracy"] == 1.0
    whole = Preprocessing(SIZE, SIZE, MEAN, MEAN, "squash")
    imagenet_crop = Preprocessing(SIZE, 110, MEAN, MEAN)  # what visum used to feed every model
    paths = sorted(border["images"].glob("*.png"))
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    for pre, expected in ((whole, N_FLAGGED), (imagenet_crop, 0)):
        with torch.no_grad():
            predicted = border["model"](pre.to_tensor([pre.view(im).pixels for im in images])).argmax(1)
        assert int((predicted == 0).sum()) == expected, pre.describe()


@pytest.mark.parametrize("source", ["torchscript", "export", "factory"])
def test_a_custom_model_is_fed_the_whole_image_and_uses_every_image(border, source, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", *_source_args(border, source), "--images", border["images"],
                           "--target", "flagged", "--out", out, "--quiet")
    assert code == 0, err
    m = manifest_of(out)
    assert sum(im.used for im in m.images) == N_FLAGGED
    pre = m.model.preprocessing
    assert (pre.resize, pre.crop_ratio, pre.input_size, pre.mean) == ("squash", 1.0, SIZE, MEAN)
    if source == "factory":  # an nn.Module: the input of its last nn.Linear gives the features the merge compares
        assert m.warnings == [] and "warning" not in err and m.config["summaries"]["merge"] == "model"
    else:  # a compiled graph has no nn.Linear to read: the default merge is skipped, and said so
        assert [w.code for w in m.warnings] == ["not-merged"] and m.config["summaries"]["merge"] == "none"
        assert err.count("visum: warning") == 1 and "summaries not merged: " + m.model.spec in err
    report = (out / "report.html").read_text()
    assert 'id="model-input"' in report and "as the model sees it" in report


def test_merging_by_features_asked_of_a_compiled_model_is_refused_before_the_work(border, tmp_path, capsys):
    config = tmp_path / "model.toml"
    config.write_text('[summaries]\nmerge = "model"\n')
    code, out, err = run_cli(capsys, "run", "--saliency", "gradient", "--config", config,
                             *_source_args(border, "torchscript"), "--images", border["images"], "--target", "flagged",
                             "--out", tmp_path / "out", "--quiet")
    assert code == 2 and out == "" and not (tmp_path / "out" / "manifest.json").exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("visum: error: summaries.merge = \"model\" reads")
    assert "has none: use merge" in lines[0]


def test_the_imagenet_crop_fails_loudly_naming_the_preprocessing(border, tmp_path, capsys):
    code, out, err = run_cli(capsys, "run", "--saliency", "gradient", *_source_args(border, "torchscript"), "--resize", "short-side",
                             "--crop-ratio", "0.875", "--images", border["images"], "--target", "flagged",
                             "--out", tmp_path / "out", "--quiet")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("visum: error: "), err
    msg = lines[0]
    assert f"only 0 of {N_FLAGGED} images (0 %) are classified as 'flagged' (0)" in msg
    assert f"the others went to 'plain' (1) x {N_FLAGGED}" in msg
    assert "at least 3 images" in msg
    assert "first check the preprocessing" in msg and "centre 96x96 crop (88.1 % of the short side)" in msg
    assert "--crop-ratio" in msg and "--keep-misclassified" in msg


def test_too_few_images_of_a_well_classified_class_ask_for_more_not_for_preprocessing(border, tmp_path, capsys):
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(border["images"].glob("*.png"))[:2]:
        (few / path.name).write_bytes(path.read_bytes())
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", *_source_args(border, "factory"), "--images", few, "--target", "flagged",
                           "--out", tmp_path / "out", "--quiet")
    assert code == 2
    assert "2 of 2 images (100 %) are classified as 'flagged' (0)" in err and "at least 3 images" in err
    assert "give more images of the class" in err and "preprocessing" not in err


def test_kept_misclassified_images_still_warn_in_terminal_manifest_and_report(border, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", *_source_args(border, "export"), "--crop-ratio", "0.875",
                           "--images", border["images"], "--target", "0", "--keep-misclassified",
                           "--out", out, "--quiet")
    assert code == 0, err
    assert "visum: warning: only 0 of 12 images" in err and "first check the preprocessing" in err
    m = manifest_of(out)
    assert [w.code for w in m.warnings] == ["target-share", "not-merged"]  # an exported graph: no nn.Linear to read
    assert "kept anyway" in m.warnings[0].message and "--keep-misclassified" not in m.warnings[0].message.split(";")[-1]
    assert m.model.preprocessing.crop_ratio == pytest.approx(96 / 109)  # floor(96 / 0.875) = 109
    report = (out / "report.html").read_text()
    assert 'class="warn"' in report and "first check the preprocessing" in report


@pytest.mark.parametrize("threshold, warned", [(None, False), (0.6, True)])
def test_min_target_share_is_a_setting(border, threshold, warned, tmp_path, capsys):
    """Half the images are of the other class: below 0.6 but not below the default 0.5."""
    config = tmp_path / "run.toml"
    config.write_text("" if threshold is None else f"min_target_share = {threshold}\n")
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--config", config, *_source_args(border, "factory"),
                           "--images", border["mixed"], "--target", "flagged", "--out", out, "--quiet")
    assert code == 0, err
    m = manifest_of(out)
    assert sum(im.used for im in m.images) == 6
    assert bool(m.warnings) is warned and ("visum: warning" in err) is warned
    assert m.config.get("min_target_share", 0.5) == (threshold or 0.5)


def test_target_share_lists_where_the_images_went():
    share = target_share(np.array([3, 5, 5, 3, 5, 9, 3, 5]), target=3)
    assert (share.classified, share.total, share.share) == (3, 8, 0.375)
    assert share.others == ((5, 4), (9, 1))
    names = [f"c{k}" for k in range(10)]
    assert share.summary(names, "m") == (
        "only 3 of 8 images (38 %) are classified as 'c3' (3) by m; the others went to 'c5' (5) x 4, 'c9' (9) x 1"
    )
    assert target_share(np.array([1, 1]), 1).summary(None, "m") == "2 of 2 images (100 %) are classified as class 1 by m"


# --------------------------------------------------------------------------- every model source, end to end


@pytest.fixture(scope="session")
def cat_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cat-views")
    for k, view in enumerate(cat_views(8)):
        Image.fromarray(view).save(folder / f"chelsea_{k}.png")
    return folder


def test_efficientnet_lite0_end_to_end_and_the_silent_cat(cat_folder, tmp_path, capsys):
    """The issue's second case: views of one cat, target "tiger cat"; the model says Egyptian cat."""
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--model", "efficientnet-lite0", "--images", cat_folder,
                           "--target", "tiger cat", "--out", tmp_path / "tiger", "--quiet")
    assert code == 2 and "'Egyptian cat' (285) x 7" in err and "first check the preprocessing" in err

    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--model", "efficientnet-lite0", "--images", cat_folder,
                           "--target", "Egyptian cat", "--out", out, "--quiet")
    assert code == 0, err
    m = manifest_of(out)
    assert sum(im.used for im in m.images) == 7
    # every image is the target now; what is left to say is that no single part's blur moves an ImageNet
    # network's "cat" (docs/benchmark.md, the real-photo measurement)
    assert [w.code for w in m.warnings] == ["nothing-relied-on"]
    assert m.model.preprocessing.interpolation == "bicubic" and m.model.preprocessing.resize_to == 256


def _random_state(module: torch.nn.Module, path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    for p in module.parameters():  # torchvision zero-initialises some heads: every weight random
        if p.dim() >= 2:
            torch.nn.init.normal_(p, std=0.05)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    else:
        torch.save(module.state_dict(), path)
    return path


def _timm(name: str):
    timm = pytest.importorskip("timm")
    return timm.create_model(name, pretrained=False)


SOURCES = {
    # spec: a function making the weight file, the expected (resize, resize_to, interpolation, input size):
    # torchvision's transforms() of the default weights; timm's data config (resnet10t: 176 px, crop_pct
    # 0.875 -> floor(176 / 0.875) = 201; vit_tiny: 224 px, crop_pct 0.9 -> 248)
    "torchvision:resnet18": (lambda p: _random_state(__import__("torchvision").models.resnet18(), p / "r18.pth", 0),
                             ("short-side", 256, "bilinear", 224)),
    "timm:resnet10t": (lambda p: _random_state(_timm("resnet10t"), p / "r10t.safetensors", 1),
                       ("short-side", 201, "bicubic", 176)),
    "timm:vit_tiny_patch16_224": (lambda p: _random_state(_timm("vit_tiny_patch16_224"), p / "vit.pth", 2),
                                  ("short-side", 248, "bicubic", 224)),
}


@pytest.mark.parametrize("spec", list(SOURCES))
def test_model_sources_from_weight_files_run_the_default_pipeline(spec, cat_folder, tmp_path, capsys):
    make_weights, expected = SOURCES[spec]
    weights = make_weights(tmp_path)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--model", spec, "--weights", weights, "--images", cat_folder,
                           "--target", "0", "--keep-misclassified", "--out", out, "--quiet")
    assert code == 0, err
    m = manifest_of(out)
    assert m.model.spec == spec and all(im.used and im.mask for im in m.images)
    pre = m.model.preprocessing
    assert (pre.resize, pre.resize_to, pre.interpolation, pre.input_size) == expected
    assert json.loads((out / "manifest.json").read_text())["model"]["preprocessing"]["source"]
    assert sum(len(im.regions) for im in m.images) > 0
