"""Summary images and the self-contained HTML report."""

from __future__ import annotations

import base64
import io
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visum.manifest import Manifest
from visum.report import member_tile, save_png, summary_grid, summary_image, write_report

# ----------------------------------------------------------------------------- fixtures


def _grey(h: int, w: int, v: int = 128) -> np.ndarray:
    return np.full((h, w, 3), v, dtype=np.uint8)


def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 90)], -1).astype(np.uint8)


def _red_mask(tile: np.ndarray, margin: int = 50) -> np.ndarray:
    t = tile.astype(int)
    return (t[..., 0] - t[..., 1] > margin) & (t[..., 0] - t[..., 2] > margin)


def _manifest(paths: list[str] | None = None) -> Manifest:
    paths = paths or ["imgs/a.png", "imgs/b <odd> & name.png"]
    return Manifest.model_validate(
        {
            "visum_version": "0.1.0",
            "config": {
                "saliency": {"name": "crisp", "options": {"note": "<script>alert('x')</script>"}},
                "seed": 0,
            },
            "model": {"spec": "efficientnet-lite0", "target_index": 3, "target_name": "<i>robin</i>"},
            "images": [
                {
                    "id": 0, "path": paths[0], "width": 80, "height": 60, "target_score": 0.93,
                    "predicted_index": 3, "predicted_name": "robin", "used": True, "mask": "masks/0000.png",
                    "regions": [
                        {"id": 0, "bbox": [10, 10, 50, 40], "area": 900},
                        {"id": 1, "bbox": [0, 40, 80, 60], "area": 300},
                    ],
                },
                {
                    "id": 1, "path": paths[1], "width": 90, "height": 50, "target_score": 0.41,
                    "predicted_index": 3, "predicted_name": "robin", "used": True, "mask": None,
                    "regions": [{"id": 0, "bbox": [60, 0, 90, 50], "area": 1200}],
                },
            ],
            "summaries": [
                {
                    "id": 0, "kept": True, "quality": {"ssim_median": 0.61, "threshold": 0.4},
                    "members": [
                        {"image": 0, "region": 0, "part_bbox": [20, 15, 35, 30], "score": 0.8},
                        {"image": 1, "region": 0, "part_bbox": [70, 0, 90, 20], "score": 0.7},
                    ],
                },
                {
                    "id": 1, "kept": False, "quality": {"ssim_median": 0.1, "threshold": 0.4},
                    "members": [
                        {"image": 0, "region": 1, "part_bbox": [0, 59, 1, 60], "score": 0.2},
                        {"image": 1, "region": 0, "part_bbox": [89, 49, 90, 50], "score": 0.1},
                    ],
                },
            ],
            "timings": {"saliency": 12.5, "matching": 30.0, "report": 0.2},
        }
    )


@pytest.fixture
def images() -> dict[int, np.ndarray]:
    return {0: _gradient(60, 80), 1: _grey(50, 90, 140)}


# ----------------------------------------------------------------------------- tiles


@pytest.mark.parametrize("tile", [128, 64, 37])
def test_member_tile_shape_and_dtype(tile: int) -> None:
    out = member_tile(_gradient(60, 80), [10, 10, 50, 40], [20, 15, 35, 30], tile=tile)
    assert out.shape == (tile, tile, 3)
    assert out.dtype == np.uint8


def test_part_is_tinted_red_on_grey() -> None:
    # Region = whole (square) image, so the crop is the image and the scale is 128/100.
    out = member_tile(_grey(100, 100), [0, 0, 100, 100], [25, 25, 75, 75], tile=128)
    inner = out[36:92, 36:92].astype(float)  # the part is at [32, 96) in the tile
    r, g, b = (inner[..., k].mean() for k in range(3))
    assert r > g + 60 and r > b + 60
    corner = out[2:20, 2:20].astype(float)  # outside the part: still grey
    assert np.ptp(corner.mean(axis=(0, 1))) < 2
    # The outline: pure-ish red on the part's edge.
    edge = out[33, 40:90].astype(int)
    assert (edge[:, 0] > 200).all() and (edge[:, 1] < 60).all()


def test_red_sits_on_the_part_not_elsewhere() -> None:
    out = member_tile(_grey(60, 120), [10, 10, 110, 50], [10, 10, 30, 50], tile=128)
    red = _red_mask(out)
    ys, xs = np.nonzero(red)
    assert red.sum() > 100
    assert xs.max() < 64  # the part is the left fifth of the region


@pytest.mark.parametrize(
    "region, part",
    [
        ([0, 0, 80, 30], [0, 0, 5, 5]),  # touches top-left
        ([40, 30, 80, 60], [75, 55, 80, 60]),  # touches bottom-right
        ([0, 0, 80, 60], [0, 0, 80, 60]),  # the whole image
        ([-20, -5, 200, 300], [-3, -3, 10, 10]),  # out of bounds: clipped
    ],
)
def test_boxes_touching_the_borders(region, part) -> None:
    out = member_tile(_grey(60, 80), region, part, tile=96)
    assert out.shape == (96, 96, 3)
    assert _red_mask(out).any()


@pytest.mark.parametrize(
    "region, part",
    [
        ([10, 10, 11, 11], [10, 10, 11, 11]),
        ([0, 0, 1, 1], [0, 0, 1, 1]),
        ([79, 59, 80, 60], [79, 59, 80, 60]),
        ([30, 20, 30, 20], [30, 20, 30, 20]),  # empty: grown to one pixel
        ([5, 5, 6, 50], [5, 5, 6, 6]),  # one pixel wide
    ],
)
def test_one_pixel_boxes(region, part) -> None:
    for tile in (128, 8, 1):
        out = member_tile(_grey(60, 80), region, part, tile=tile)
        assert out.shape == (tile, tile, 3) and out.dtype == np.uint8
    assert _red_mask(member_tile(_grey(60, 80), region, part, tile=64)).any()


def test_one_pixel_image() -> None:
    out = member_tile(_grey(1, 1), [0, 0, 1, 1], [0, 0, 1, 1], tile=16)
    assert out.shape == (16, 16, 3)


def test_region_mask_dims_outside() -> None:
    img = _grey(100, 100, 200)
    mask = np.zeros((100, 100), dtype=bool)
    mask[:, :50] = True
    out = member_tile(img, [0, 0, 100, 100], [10, 10, 20, 20], tile=100, region_mask=mask)
    assert out[50:90, 60:95].mean() < out[50:90, 10:45].mean() - 40
    # A mask of another size (model resolution) is resized to the image.
    small = np.zeros((10, 10), dtype=np.uint8)
    small[:, :5] = 255
    out2 = member_tile(img, [0, 0, 100, 100], [10, 10, 20, 20], tile=100, region_mask=small)
    np.testing.assert_array_equal(out, out2)


def test_other_image_layouts() -> None:
    for img in (np.full((30, 40), 128, np.uint8), np.full((30, 40, 4), 128, np.uint8), np.full((30, 40, 3), 0.5)):
        assert member_tile(img, [0, 0, 40, 30], [5, 5, 10, 10], tile=32).shape == (32, 32, 3)


# ----------------------------------------------------------------------------- grids


def test_summary_grid_layout() -> None:
    tiles = [np.zeros((32, 32, 3), np.uint8) for _ in range(10)]
    grid = summary_grid(tiles, columns=4, gap=2)
    assert grid.dtype == np.uint8
    assert grid.shape == (3 * 32 + 4 * 2, 4 * 32 + 5 * 2, 3)
    assert (grid[0, 0] == 255).all() and (grid[2, 2] == 0).all()
    # Fewer tiles than columns: only as wide as the tiles.
    assert summary_grid(tiles[:3], columns=8, gap=2).shape == (32 + 2 * 2, 3 * 32 + 4 * 2, 3)


def test_summary_grid_title() -> None:
    tiles = [np.zeros((32, 32, 3), np.uint8) for _ in range(5)]
    plain = summary_grid(tiles, columns=5, gap=4)
    titled = summary_grid(tiles, columns=5, gap=4, title="Summary 3 - 5 parts")
    assert titled.shape[0] > plain.shape[0] and titled.shape[1] >= plain.shape[1]
    strip = titled[: titled.shape[0] - plain.shape[0]]
    assert (strip < 128).any()  # some text was drawn
    long = summary_grid(tiles[:1], columns=2, gap=4, title="x" * 500)
    assert long.shape[1] <= 2 * 32 + 3 * 4 + 160  # cut, not as wide as the text


def test_summary_grid_mixed_sizes_and_empty() -> None:
    grid = summary_grid([np.zeros((20, 30, 3), np.uint8), np.zeros((40, 10), np.uint8)], columns=2, gap=1)
    assert grid.shape == (40 + 2, 2 * 30 + 3, 3)
    empty = summary_grid([], title="nothing")
    assert empty.ndim == 3 and empty.dtype == np.uint8


def test_summary_image_and_save_png(tmp_path: Path, images) -> None:
    m = _manifest()
    arr = summary_image(m, 0, images, tile=48, columns=8, gap=2)
    assert arr.dtype == np.uint8 and arr.shape[1] >= 2 * 48 + 3 * 2
    assert _red_mask(arr).sum() > 50
    path = save_png(arr, tmp_path / "deep" / "s.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (arr.shape[1], arr.shape[0])
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), arr)
    assert not list(path.parent.glob("*.tmp"))


# ----------------------------------------------------------------------------- report


class _Checker(HTMLParser):
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.imgs: list[dict[str, str | None]] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.tags: Counter[str] = Counter()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        self.attrs.extend((tag, k, v) for k, v in attrs)
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def _decode(uri: str) -> Image.Image:
    head, data = uri.split(",", 1)
    assert head == "data:image/png;base64"
    raw = base64.b64decode(data, validate=True)
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    im = Image.open(io.BytesIO(raw))
    im.load()
    return im


def _write_inputs(tmp_path: Path, m: Manifest, images) -> tuple[dict[int, Path], dict[int, Path]]:
    pngs = {s.id: save_png(summary_image(m, s, images, tile=40), tmp_path / f"summaries/{s.id}.png") for s in m.summaries}
    masks = {}
    for i, img in images.items():
        mask = np.zeros(img.shape[:2], np.uint8)
        mask[10:40, 10:50] = 255
        masks[i] = save_png(mask, tmp_path / f"masks/{i:04d}.png")
    return pngs, masks


def test_write_report_is_self_contained(tmp_path: Path, images) -> None:
    m = _manifest()
    pngs, masks = _write_inputs(tmp_path, m, images)
    thumbs = {0: images[0][::2, ::2], 1: images[1][::2, ::2]}
    out = write_report(m, tmp_path, summary_pictures=pngs, masks=masks, thumbnails=thumbs, title="robin & <co>")
    assert out == tmp_path / "report.html" and out.exists()
    page = out.read_text(encoding="utf-8")

    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert not checker.errors and not checker.stack
    assert checker.tags["html"] == checker.tags["head"] == checker.tags["body"] == checker.tags["title"] == 1
    assert checker.tags["script"] == 0 and checker.tags["link"] == 0
    # Every resource attribute points at an embedded image or inside the page.
    for tag, name, value in checker.attrs:
        if name in ("src", "srcset", "poster", "data", "action"):
            assert value and value.startswith("data:"), (tag, name, value[:40] if value else value)
        if name == "href":
            assert value and value.startswith("#"), (tag, value)
    assert len(re.findall(r"\bsrc\s*=", page)) == len(checker.imgs)

    # Every <img> decodes to a PNG of the size of its source.
    expected = Counter()
    for p in pngs.values():
        with Image.open(p) as im:
            expected[im.size] += 1
    for t in thumbs.values():
        expected[(t.shape[1], t.shape[0])] += 1
    got = Counter()
    for attrs in checker.imgs:
        im = _decode(attrs["src"])
        assert (int(attrs["width"]), int(attrs["height"])) == im.size
        assert attrs.get("alt")
        got[im.size] += 1
    assert got == expected

    # Strings from the manifest are escaped.
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<i>robin</i>" not in page and "&lt;i&gt;robin&lt;/i&gt;" in page
    assert "b &lt;odd&gt; &amp; name.png" in page
    assert "<title>robin &amp; &lt;co&gt;</title>" in page

    # Sections.
    assert re.search(r"<details[^>]*>\s*<summary>Discarded clusters \(1\)</summary>", page)
    assert 'id="summary-0"' in page and 'id="summary-1"' in page
    assert page.index('id="summary-0"') < page.index("Discarded clusters") < page.index('id="summary-1"')
    assert "ssim_median" in page and "efficientnet-lite0" in page and "0.1.0" in page
    assert "2 <small>/ 2</small>" in page  # images used / total
    assert 'id="config"' in page and "<pre>" in page
    assert "matching" in page and 'class="bar"' in page


def test_report_fallbacks(tmp_path: Path, images) -> None:
    # No thumbnails given: made from the image files; masks from the manifest; a summary
    # without a PNG gets a placeholder.
    paths = []
    for i, img in images.items():
        paths.append(str(save_png(img, tmp_path / "in" / f"{i}.png")))
    m = _manifest(paths)
    pngs, masks = _write_inputs(tmp_path / "run", m, images)
    out = write_report(m, tmp_path / "run", summary_pictures={0: pngs[0]})
    page = out.read_text(encoding="utf-8")
    checker = _Checker()
    checker.feed(page)
    sizes = Counter(_decode(a["src"]).size for a in checker.imgs)
    assert sum(sizes.values()) == 3  # one summary, two thumbnails
    assert "No summary image." in page


def test_report_with_nothing(tmp_path: Path) -> None:
    m = _manifest()
    m = m.model_copy(update={"summaries": [], "timings": {}, "images": []})
    page = write_report(m, tmp_path / "new", summary_pictures={}).read_text(encoding="utf-8")
    assert "Discarded clusters (0)" in page and "<img" not in page


def test_a_tiny_part_is_shown_in_its_surroundings():
    # a 4 px part in a 200 px image: with context 0.4 the crop covers at least 80 px of the image
    img = _grey(200, 200)
    tight = member_tile(img, [100, 100, 104, 104], [100, 100, 104, 104], tile=128)
    wide = member_tile(img, [100, 100, 104, 104], [100, 100, 104, 104], tile=128, context=0.4)
    red_tight, red_wide = _red_mask(tight).sum(), _red_mask(wide).sum()
    assert red_wide < red_tight / 50  # the part is a small red spot in a wide tile
    # at the border the crop shifts inside the image instead of shrinking
    corner = member_tile(img, [0, 0, 4, 4], [0, 0, 4, 4], tile=128, context=0.4)
    assert _red_mask(corner).sum() == pytest.approx(red_wide, rel=0.35)
    # a region whose margin already reaches the border still gets the whole context (80 px, not 76)
    edge = member_tile(img, [0, 0, 70, 70], [0, 0, 70, 70], tile=160, context=0.4)
    assert _red_mask(edge).sum() == pytest.approx((70 / 80 * 160) ** 2, rel=0.1)
