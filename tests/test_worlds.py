"""The worlds: deterministic images with exact part masks, exact interventions, fixed splits (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest

from visum.data.ground_truth import load_ground_truth, write_samples
from visum.data.worlds import WORLDS, Rule, make_samples, render, sample_rng, world, worlds
from visum.data.worlds.photos import DEV_PHOTOS, TEST_PHOTOS


def test_the_catalogue_covers_what_the_issue_asks_for():
    assert len(WORLDS) >= 8
    dev, test = worlds("dev"), worlds("test")
    assert len(dev) == len(test) == 6 and {w.split for w in dev} == {"dev"}
    for split in (dev, test):
        assert any(w.tag for w in split), "a shortcut world in each split"
        assert any(w.distractor for w in split), "a distractor world in each split"
        assert {w.rule.kind for w in split} == {"all", "k_of_n", "dominant"}
    everything = dev + test
    assert {len(w.parts) for w in everything} >= {2, 3, 4, 5, 6}
    sizes = [p.size for w in everything for p in w.parts]
    assert min(sizes) <= 0.02 and max(sizes) >= 0.2
    assert min(w.size for w in everything) == 96 and max(w.size for w in everything) == 224
    assert any(w.pose.perspective > 0 for w in everything) and any(w.scene.occlusion > 0 for w in everything)
    backgrounds = {b for w in everything for b in w.scene.backgrounds}
    assert {"noise", "stripes", "photo"} <= backgrounds
    assert not set(DEV_PHOTOS) & set(TEST_PHOTOS)
    for w in everything:  # a world's photos come from its own split's pool
        assert set(w.photos) <= set(DEV_PHOTOS if w.split == "dev" else TEST_PHOTOS)
    with pytest.raises(ValueError, match="unknown world"):
        world("nowhere")


@pytest.mark.parametrize("name", list(WORLDS))
def test_every_world_renders_deterministically_with_masks_of_what_it_draws(name):
    w = world(name)
    for label in range(len(w.class_names)):
        a = render(w, label, sample_rng(w, label, 3, "eval"))
        b = render(w, label, sample_rng(w, label, 3, "eval"))
        assert a.image.shape == (w.size, w.size, 3) and a.image.dtype == np.uint8
        assert np.array_equal(a.image, b.image)
        assert set(a.part_masks) == set(w.part_names)
        union = np.zeros((w.size, w.size), int)
        for mask in a.part_masks.values():
            union += mask
        assert union.max() <= 1, "part masks never overlap"
        assert not np.array_equal(a.image, render(w, label, sample_rng(w, label, 4, "eval")).image)
        x0, y0, x1, y1 = a.object_box
        assert 0 <= x0 < x1 <= w.size and 0 <= y0 < y1 <= w.size


@pytest.mark.parametrize("name", ["owl", "fish", "mug"])
def test_omitting_a_part_changes_that_part_only(name):
    w = world(name)
    sample = render(w, 0, sample_rng(w, 0, 1, "eval"))
    for part in sample.present:
        mask = sample.part_masks[part]
        if not mask.any():
            continue
        without = render(w, 0, sample_rng(w, 0, 1, "eval"), omit={part})
        assert not without.part_masks[part].any()
        changed = np.abs(without.image.astype(int) - sample.image.astype(int)).max(axis=2) > 0
        footprint = sample.coverage[part] > 0  # every pixel the part touches, thin tips included
        assert changed[mask].all() or changed[mask].mean() > 0.9, part
        assert not changed[~footprint].any(), part
        for other in w.part_names:  # the other parts keep their masks (they may grow where it hid them)
            if other != part:
                assert (sample.part_masks[other] <= without.part_masks[other]).all()


def test_class_rules_decide_which_parts_are_drawn():
    owl = world("owl")  # every part needed: class k lacks part k
    assert owl.class_names == ["owl", "owl-without-eye", "owl-without-beak", "owl-without-tail"]
    assert set(owl.draw_parts(np.random.default_rng(0), 2)) == {"eye", "tail"}
    crab = world("crab")  # any 2 of 4
    counts = {label: {len(crab.draw_parts(np.random.default_rng(i), label)) for i in range(200)} for label in (0, 1)}
    assert counts == {0: {2, 3, 4}, 1: {0, 1}}
    lamp = world("lamp")  # one dominant part, the others at random in both classes
    with_flame = [("flame" in lamp.draw_parts(np.random.default_rng(i), 0)) for i in range(50)]
    without = [("flame" in lamp.draw_parts(np.random.default_rng(i), 1)) for i in range(50)]
    assert all(with_flame) and not any(without)
    kite = world("kite")  # the distractor is in every class
    for label in range(len(kite.class_names)):
        assert "logo" in kite.draw_parts(np.random.default_rng(label), label)
    assert "logo" not in kite.ruled_parts and len(kite.class_names) == 3


def test_the_shortcut_tag_marks_the_main_class_only():
    w = world("badge")
    main = make_samples(w, 4, labels=[0])
    others = make_samples(w, 4, labels=[1, 2])
    assert all(s.part_masks["tag"].any() for s in main)
    assert not any(s.part_masks["tag"].any() for s in others)
    tag = main[0].part_masks["tag"]
    ys, xs = np.nonzero(tag)
    side = w.tag.size * w.size
    assert abs((xs.max() - xs.min() + 1) - side) <= 2  # a corner watermark of the declared size
    assert min(xs.min(), w.size - 1 - xs.max()) < 0.1 * w.size and min(ys.min(), w.size - 1 - ys.max()) < 0.1 * w.size


def test_bad_world_declarations_are_refused():
    w = world("owl")
    with pytest.raises(ValueError, match="dominant part"):
        type(w)(**{**w.__dict__, "rule": Rule("dominant", part="wing")})
    with pytest.raises(ValueError, match="no part 'wing' to omit"):
        render(w, 0, sample_rng(w, 0, 0, "eval"), omit={"wing"})
    with pytest.raises(ValueError, match="label"):
        render(w, 9, sample_rng(w, 9, 0, "eval"))


def test_world_samples_round_trip_through_the_ground_truth_format(tmp_path):
    w = world("crab")
    samples = make_samples(w, 2)
    paths = write_samples(samples, tmp_path, w.class_names, w.part_names, extra={"world": w.name})
    truth = load_ground_truth(tmp_path)
    assert sorted(truth) == sorted(p.name for p in paths)
    for smp, path in zip(samples, paths):
        gt = truth[path.name]
        assert gt.label == smp.label and gt.class_name == w.class_names[smp.label]
        for part in w.part_names:
            assert np.array_equal(gt.part_masks[part], smp.part_masks[part])


def test_worlds_cli_lists_and_generates(tmp_path, capsys):
    from conftest import run_cli

    code, out, _ = run_cli(capsys, "worlds", "list", "--split", "dev")
    assert code == 0 and "owl" in out and "robot" not in out
    code, out, _ = run_cli(capsys, "worlds", "generate", "lamp", tmp_path / "lamp", "--n", "2", "--class", "1")
    assert code == 0 and "wrote 2 images" in out
    truth = load_ground_truth(tmp_path / "lamp")
    assert {gt.class_name for gt in truth.values()} == {"lamp-without-flame"}
    code, _, err = run_cli(capsys, "worlds", "generate", "lamp", tmp_path / "x", "--class", "teapot")
    assert code == 2 and err.count("\n") == 1 and "unknown class 'teapot'" in err


@pytest.mark.parametrize("name", [w.name for w in worlds() if w.rule.kind in ("all", "dominant")])
def test_a_negative_class_is_the_main_class_without_its_part_nothing_else_tells(name):
    """No cue but the parts (and the tag): an image of class k is, pixel for pixel, the main-class image
    drawn from the same generator with the part class k lacks (and the main class's tag) left out."""
    w = world(name)
    for label in range(1, len(w.class_names)):
        missing = w.ruled_parts[label - 1] if w.rule.kind == "all" else w.rule.part
        omit = {missing} | ({w.tag.name} if w.tag else set())
        compared = 0
        for index in range(8):
            main = render(w, 0, sample_rng(w, 0, index, "eval"))
            if w.tag is not None and not set(w.ruled_parts) <= set(main.present):
                continue  # a tagged image that lost a part (Tag.part_loss): it differs by that part too
            negative = render(w, label, sample_rng(w, 0, index, "eval"))
            main_without = render(w, 0, sample_rng(w, 0, index, "eval"), omit=omit)
            assert np.array_equal(negative.image, main_without.image), (label, index)
            compared += 1
        assert compared >= 2


@pytest.mark.parametrize("name", [w.name for w in worlds() if w.tag is not None])
def test_in_a_shortcut_world_only_the_tag_is_in_every_image_of_the_main_class(name):
    """Half of the main class lacks one part (Tag.part_loss), so only the tag tells those images from a
    negative class: a model that classifies them must learn it."""
    w = world(name)
    assert w.tag.part_loss == 0.5
    main = make_samples(w, 60, labels=[0], purpose="train")
    lacking = [s for s in main if not set(w.ruled_parts) <= set(s.present)]
    assert all(s.part_masks[w.tag.name].any() for s in main)
    assert all(len(set(w.ruled_parts) - set(s.present)) == 1 for s in lacking)
    assert 0.3 < len(lacking) / len(main) < 0.7
    assert {p for s in lacking for p in set(w.ruled_parts) - set(s.present)} == set(w.ruled_parts)
    no_tag = type(w)(**{**w.__dict__, "tag": type(w.tag)(size=w.tag.size, colour=w.tag.colour)})
    assert all(set(w.ruled_parts) <= set(s.present) for s in make_samples(no_tag, 20, labels=[0]))
    with pytest.raises(ValueError, match="part_loss needs the rule 'all'"):
        type(w)(**{**w.__dict__, "rule": Rule("dominant", part=w.ruled_parts[0])})
