"""Image listing, decoding and validation."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from visum.data.images import IMAGE_SUFFIXES, list_images, load_image
from visum.errors import InputError


def _pattern(h: int = 40, w: int = 60) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 6 % 256, (x + y) * 2 % 256], axis=2).astype(np.uint8)


def test_rgb_png_is_exact(tmp_path):
    img = _pattern()
    Image.fromarray(img).save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3)
    np.testing.assert_array_equal(out, img)
    out[0, 0] = 0  # the array is ours to modify


def test_rgb_jpeg(tmp_path):
    img = np.full((32, 48, 3), (200, 40, 90), np.uint8)
    Image.fromarray(img).save(tmp_path / "a.jpg", quality=95)
    out = load_image(tmp_path / "a.jpg")
    assert out.shape == (32, 48, 3)
    assert np.abs(out.astype(int) - img).max() <= 3


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = _pattern()[:, :, 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (40, 60, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)
    Image.fromarray(gray > 100).save(tmp_path / "bw.png")  # mode "1"
    assert set(np.unique(load_image(tmp_path / "bw.png"))) <= {0, 255}


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = (255, 0, 0)
    rgba[:, :10, 3] = 255  # opaque red
    rgba[:, 10:15, 3] = 0  # fully transparent
    rgba[:, 15:, 3] = 128  # half transparent red
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "t.png")
    out = load_image(tmp_path / "t.png")
    assert tuple(out[5, 5]) == (255, 0, 0)
    assert tuple(out[5, 12]) == (255, 255, 255)
    assert out[5, 17, 0] == 255 and 120 <= out[5, 17, 1] <= 135 and out[5, 17, 1] == out[5, 17, 2]

    la = Image.fromarray(rgba[..., [1, 3]], mode="LA")  # black where opaque
    la.save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    assert tuple(out[5, 5]) == (0, 0, 0) and tuple(out[5, 12]) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path):
    im = Image.new("P", (20, 20), 0)
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.paste(1, (0, 0, 10, 20))
    im.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    assert tuple(out[0, 0]) == (200, 100, 50) and tuple(out[0, 15]) == (10, 20, 30)
    im.save(tmp_path / "p.gif", transparency=0)
    out = load_image(tmp_path / "p.gif")
    assert tuple(out[0, 0]) == (200, 100, 50) and tuple(out[0, 15]) == (255, 255, 255)


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)  # red
    out = load_image(tmp_path / "c.jpg")
    assert out.shape == (20, 20, 3)
    assert out[10, 10, 0] > 200 and out[10, 10, 1] < 60 and out[10, 10, 2] < 60


def test_16bit_grayscale_from_opencv_and_pillow(tmp_path):
    values = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    expected = np.round(values / 65535 * 255).astype(np.uint8)  # fixed full-range scale
    assert cv2.imwrite(str(tmp_path / "cv.png"), values)
    Image.fromarray(values).save(tmp_path / "pil.png")
    for name in ("cv.png", "pil.png"):
        out = load_image(tmp_path / name)
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[:, :, 0], expected)
        np.testing.assert_array_equal(out[:, :, 2], expected)

    dark = np.full((20, 20), 1000, np.uint16)  # a dark 16-bit image stays dark
    cv2.imwrite(str(tmp_path / "dark.png"), dark)
    assert load_image(tmp_path / "dark.png").max() == 4


def test_16bit_colour_png_from_opencv(tmp_path):
    bgr = np.zeros((20, 20, 3), np.uint16)
    bgr[..., 2] = 65535  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "c16.png"), bgr)
    out = load_image(tmp_path / "c16.png")
    assert tuple(out[3, 3]) == (255, 0, 0)


def test_float_images(tmp_path):
    Image.fromarray(np.full((20, 20), 0.5, np.float32)).save(tmp_path / "f.tif")
    assert load_image(tmp_path / "f.tif")[0, 0, 0] in (127, 128)
    ramp = np.linspace(-3, 5, 400, dtype=np.float32).reshape(20, 20)  # stretched by its own range
    Image.fromarray(ramp).save(tmp_path / "r.tif")
    out = load_image(tmp_path / "r.tif")
    assert out.min() == 0 and out.max() == 255


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = (255, 255, 255)  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be rotated 90 degrees clockwise for display
    Image.fromarray(img).save(tmp_path / "o.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "o.jpg")
    assert out.shape == (40, 20, 3)
    assert out[5, 10].mean() > 200 and out[35, 10].mean() < 50  # the left half is now on top


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_text("definitely not a JPEG\n")
    with pytest.raises(InputError, match=r"x\.jpg: not an image"):
        load_image(path)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png: not an image"):
        load_image(tmp_path / "empty.png")


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match=r"cut\.jpg: truncated or corrupt"):
        load_image(path)


def test_missing_file_and_folder_given_as_image(tmp_path):
    with pytest.raises(InputError, match="nope.png"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)


def test_too_small(tmp_path):
    Image.fromarray(np.zeros((8, 40, 3), np.uint8)).save(tmp_path / "thin.png")
    with pytest.raises(InputError, match=r"thin\.png: 40x8 pixels is too small"):
        load_image(tmp_path / "thin.png")
    assert load_image(tmp_path / "thin.png", min_side=8).shape == (8, 40, 3)


def test_too_many_pixels(tmp_path):
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match=r"big\.png: 100x100 pixels is more than the limit of 5000"):
        load_image(tmp_path / "big.png", max_pixels=5000)


def test_pillow_bomb_limit_follows_max_pixels(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse 10000 pixels
    assert load_image(tmp_path / "big.png").shape == (100, 100, 3)


def test_list_images_sorted_non_hidden_non_recursive(tmp_path):
    for name in ("b.png", "a.jpg", "C.png", "10.png", "2.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / ".DS_Store").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["10.png", "2.png", "C.png", "a.jpg", "b.png"]


def test_list_images_bad_folders(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        list_images(tmp_path / "missing")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(InputError, match="not a folder"):
        list_images(tmp_path / "file.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".hidden").write_bytes(b"x")
    with pytest.raises(InputError, match=str(empty)):
        list_images(empty)


def test_suffixes():
    assert {".jpg", ".jpeg", ".png"} <= IMAGE_SUFFIXES
    assert all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)


def test_a_huge_image_is_loaded_reduced_by_block_means_and_says_its_file_size(tmp_path):
    from visum.data.images import load_image_bounded

    rng = np.random.default_rng(0)
    sixteen = rng.integers(0, 65535, (90, 120), dtype=np.uint16)
    path = tmp_path / "big16.png"
    Image.fromarray(sixteen).save(path)
    full = load_image(path)
    small, size = load_image_bounded(path, max_load_pixels=120 * 90 // 9)  # k = 3
    assert size == (120, 90) and small.shape == (30, 40, 3)
    blocks = full[:, :, 0].astype(float).reshape(30, 3, 40, 3).mean(axis=(1, 3))
    assert np.abs(small[:, :, 0].astype(float) - blocks).max() <= 1.0  # the mean of each 3x3 block
    same, size = load_image_bounded(path, max_load_pixels=None)
    assert size == (120, 90) and np.array_equal(same, full)
    palette = Image.fromarray(rng.integers(0, 255, (60, 60, 3), dtype=np.uint8)).convert("P")
    palette.save(tmp_path / "p.png")
    small, size = load_image_bounded(tmp_path / "p.png", max_load_pixels=60 * 60 // 4)
    assert size == (60, 60) and small.shape == (30, 30, 3)


def test_a_run_on_downscaled_images_reports_boxes_in_the_files_pixels(parts_folder, tmp_path, capsys, monkeypatch):
    """Parts images written at twice their size and loaded reduced by 2 (block means of a nearest
    upscale: the original pixels): the model sees what it always sees, the manifest speaks in the
    big files' pixels."""
    import visum.data.images as images_module
    from visum.manifest import Manifest

    from conftest import run_cli

    big = tmp_path / "big"
    big.mkdir()
    for p in sorted(parts_folder.glob("*.png")):
        im = Image.open(p)
        w, h = im.size
        im.resize((2 * w, 2 * h), Image.NEAREST).save(big / p.name)
    monkeypatch.setattr(images_module, "LOAD_PIXELS", w * h)  # every file loaded at half its side
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", big, "--out", tmp_path / "o", "-q")
    assert code == 0, err
    m = Manifest.model_validate_json((tmp_path / "o" / "manifest.json").read_text())
    assert all((im.width, im.height) == (2 * w, 2 * h) for im in m.images)
    boxes = [r.bbox for im in m.images for r in im.regions] + [mb.part_bbox for s in m.summaries for mb in s.members]
    assert boxes and all(0 <= b[0] < b[2] <= 2 * w and 0 <= b[1] < b[3] <= 2 * h for b in boxes)
    assert max(b[2] for b in boxes) > w  # in the file's pixels, not the loaded half-size ones
    assert Image.open(tmp_path / "o" / m.images[0].mask).size == (w, h)  # masks stay at the loaded size
    code, _, err = run_cli(capsys, "run", "--saliency", "gradient", "--images", parts_folder, "--out",
                           tmp_path / "small", "-q")
    small = Manifest.model_validate_json((tmp_path / "small" / "manifest.json").read_text())
    twice = [[2 * v for v in r.bbox] for im in small.images for r in im.regions]
    assert [list(r.bbox) for im in m.images for r in im.regions] == twice  # the same regions, mapped to the big files
