"""The synthetic parts benchmark (visum.data.parts) and its CNN (visum.models.parts_cnn)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from visum.data import parts as P
from visum.data.parts import (
    CLASS_CHANGES,
    CLASS_NAMES,
    MAIN_CLASS,
    PART_NAMES,
    load_ground_truth,
    make_dataset,
    render_sample,
    write_dataset,
)
from visum.errors import ConfigError, InputError

TEST_SEED = 4242  # not a training seed (those are >= 1_000_000_000) nor the held-out 999 / 998


@pytest.fixture(scope="module")
def samples():
    return make_dataset(6, seed=TEST_SEED)


def test_api_constants():
    assert MAIN_CLASS == CLASS_NAMES[0]
    assert len(set(CLASS_NAMES)) == len(CLASS_NAMES) >= 2
    assert 3 <= len(PART_NAMES) <= 4
    # every distractor differs from the main class in exactly one declared part
    assert sorted(CLASS_CHANGES) == list(range(1, len(CLASS_NAMES)))
    assert all(part in PART_NAMES for part, _ in CLASS_CHANGES.values())


def test_generator_is_deterministic():
    a = render_sample(np.random.default_rng(7), 0)
    b = render_sample(np.random.default_rng(7), 0)
    c = render_sample(np.random.default_rng(8), 0)
    assert np.array_equal(a.image, b.image)
    assert a.object_box == b.object_box
    assert all(np.array_equal(a.part_masks[p], b.part_masks[p]) for p in PART_NAMES)
    assert not np.array_equal(a.image, c.image)

    d1 = make_dataset(2, seed=5, size=64)
    d2 = make_dataset(2, seed=5, size=64)
    d3 = make_dataset(2, seed=6, size=64)
    assert [s.label for s in d1] == [k for k in range(len(CLASS_NAMES)) for _ in range(2)]
    assert all(np.array_equal(x.image, y.image) for x, y in zip(d1, d2))
    assert not any(np.array_equal(x.image, y.image) for x, y in zip(d1, d3))
    # a sample does not depend on which other samples were asked for
    only_main = make_dataset(2, seed=5, size=64, labels=[0])
    assert all(np.array_equal(x.image, y.image) for x, y in zip(only_main, d1[:2]))


def test_sample_shapes(samples):
    for s in samples:
        assert s.image.shape == (128, 128, 3) and s.image.dtype == np.uint8
        assert set(s.part_masks) == set(PART_NAMES)
        for m in s.part_masks.values():
            assert m.shape == (128, 128) and m.dtype == bool
        x0, y0, x1, y1 = s.object_box
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
    # parts never overlap (the label map is lossless)
    for s in samples:
        assert sum(m.astype(int) for m in s.part_masks.values()).max() <= 1


def test_main_class_has_every_part_inside_the_box(samples):
    main = [s for s in samples if s.label == 0]
    assert main
    for s in main:
        x0, y0, x1, y1 = s.object_box
        for p in PART_NAMES:
            m = s.part_masks[p]
            assert m.sum() >= 6, p  # visible, not a speck
            ys, xs = np.nonzero(m)
            assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1, p


def test_distractors_lack_or_alter_their_part(samples):
    for s in samples:
        if s.label == 0:
            continue
        changed, _ = CLASS_CHANGES[s.label]
        assert not s.part_masks[changed].any(), (CLASS_NAMES[s.label], changed)
        for p in PART_NAMES:
            if p != changed:
                assert s.part_masks[p].sum() >= 6, (CLASS_NAMES[s.label], p)
    # the altered beak is drawn as a blue square where the triangle would be
    g = P._parrot_geometry(np.random.default_rng(0), 2)
    assert "square" in g and "beak" not in g
    g0 = P._parrot_geometry(np.random.default_rng(0), 0)
    assert "beak" in g0 and "square" not in g0


def test_square_beak_is_blue_and_on_the_object():
    s = render_sample(np.random.default_rng(3), 2)
    x0, y0, x1, y1 = s.object_box
    box = s.image[y0:y1, x0:x1].astype(int)
    not_tail = ~s.part_masks["tail"][y0:y1, x0:x1]
    blue = (box[..., 2] > 130) & (box[..., 2] > box[..., 0] + 60) & (box[..., 2] > box[..., 1] + 30)
    assert (blue & not_tail).sum() >= 20


def test_write_and_load_round_trip(tmp_path, samples):
    folder = tmp_path / "bench"
    paths = write_dataset(samples, folder)
    assert len(paths) == len(samples)
    direct = sorted(p for p in folder.iterdir() if p.is_file())
    assert direct == sorted(paths)
    assert all(p.suffix == ".png" for p in direct)
    assert {p.name for p in folder.iterdir() if p.is_dir()} == {"ground_truth"}
    assert paths[0].name == f"{MAIN_CLASS}_0000.png"
    assert np.array_equal(np.asarray(Image.open(paths[0])), samples[0].image)

    gt = load_ground_truth(folder)
    assert set(gt) == {p.name for p in paths}
    for s, p in zip(samples, paths):
        g = gt[p.name]
        assert g.label == s.label and g.class_name == CLASS_NAMES[s.label]
        assert g.object_box == s.object_box
        for part in PART_NAMES:
            assert np.array_equal(g.part_masks[part], s.part_masks[part])
    index = json.loads((folder / "ground_truth" / "ground_truth.json").read_text())
    entry = index["images"][paths[0].name]
    assert entry["class"] == MAIN_CLASS and all(entry["parts"][p] is not None for p in PART_NAMES)

    # writing again replaces the earlier benchmark images, stale ones included
    fewer = write_dataset(samples[:3], folder)
    assert sorted(p for p in folder.iterdir() if p.is_file()) == sorted(fewer)
    assert sorted(p.name for p in (folder / "ground_truth").glob("*.png")) == sorted(p.name for p in fewer)
    assert set(load_ground_truth(folder)) == {p.name for p in fewer}
    # any other file in the folder is refused, and left alone
    (folder / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="notes.txt"):
        write_dataset(samples, folder)
    assert (folder / "notes.txt").read_text() == "x"
    with pytest.raises(InputError, match="ground_truth"):
        load_ground_truth(tmp_path)


def test_committed_model_classifies_fresh_images():
    from visum.models.parts_cnn import DEFAULT_WEIGHTS, PartsCNN, load_parts_model

    lm = load_parts_model()
    assert lm.spec == "parts" and lm.class_names == CLASS_NAMES
    assert lm.fingerprint == hashlib.sha256(DEFAULT_WEIGHTS.read_bytes()).hexdigest()
    assert DEFAULT_WEIGHTS.stat().st_size < 5 * 2**20
    assert isinstance(lm.module, PartsCNN) and not lm.module.training
    assert lm.preprocessing.input_size == 128
    assert dict(lm.module.named_modules())[lm.extras["grad_cam_layer"]] is lm.module.last_conv

    data = make_dataset(10, seed=TEST_SEED + 1)
    views = [lm.preprocessing.view(s.image).pixels for s in data]
    assert all(np.array_equal(v, s.image) for v, s in zip(views, data))  # 128 px: the view is the image
    with torch.no_grad():
        pred = lm.module(lm.preprocessing.to_tensor(views)).argmax(1).numpy()
    acc = float((pred == np.array([s.label for s in data])).mean())
    assert acc >= 0.9, acc


def test_load_parts_model_errors(tmp_path):
    from visum.models.parts_cnn import load_parts_model

    missing = tmp_path / "nope.pt"
    with pytest.raises(ConfigError, match="nope.pt"):
        load_parts_model(missing)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="bad.pt"):
        load_parts_model(bad)
    wrong = tmp_path / "wrong.pt"
    torch.save({"weight": torch.zeros(3)}, wrong)
    with pytest.raises(ConfigError, match="wrong.pt"):
        load_parts_model(wrong)


def test_tiny_training_is_reproducible(tmp_path):
    from visum.models.train_parts import train_parts_cnn

    kw = dict(seed=3, epochs=1, n_per_class=6, threads=2, progress=False, batch_size=8,
              n_test_per_class=2, n_saliency=2)
    m1 = train_parts_cnn(tmp_path / "a" / "parts-cnn.pt", **kw)
    m2 = train_parts_cnn(tmp_path / "b" / "parts-cnn.pt", **kw)
    s1 = torch.load(tmp_path / "a" / "parts-cnn.pt", weights_only=True)
    s2 = torch.load(tmp_path / "b" / "parts-cnn.pt", weights_only=True)
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert m1["held_out"]["confusion"] == m2["held_out"]["confusion"]
    meta = json.loads((tmp_path / "a" / "parts-cnn.json").read_text())
    assert meta["training"]["epochs"] == 1 and meta["training"]["seed"] == 3
    assert set(meta["held_out"]["per_class"]) == set(CLASS_NAMES)
    assert meta["saliency_mass"]["n"] == 2
    # a different seed gives different weights
    train_parts_cnn(tmp_path / "c" / "parts-cnn.pt", **{**kw, "seed": 4})
    s3 = torch.load(tmp_path / "c" / "parts-cnn.pt", weights_only=True)
    assert not all(torch.equal(s1[k], s3[k]) for k in s1)


def test_generation_is_fast():
    import time

    t = time.perf_counter()
    make_dataset(20, seed=TEST_SEED + 2)  # 100 images
    assert time.perf_counter() - t < 5.0
