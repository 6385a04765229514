"""The report in a real browser: headless Chromium loads it without console errors and shows its images.

Without a Chromium these tests skip with one line saying so, so the README's test command passes
on a fresh machine. CI (.ci/run) installs Debian's ``chromium`` when it is missing and sets
``VISUM_REQUIRE_BROWSER=1``: there a missing browser fails the check.
"""

import base64
import os
import time
from pathlib import Path

import pytest

from visum.cli import main
from visum.manifest import Manifest
from visum.report.browser import BrowserError, check_report_in_browser, find_chromium

# A 2x1 PNG (made with PIL), so that a loaded image has a known natural size.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAIAAAB7QOjdAAAAD0lEQVR42mM8ISfHwMAAAAXMAQb88+WTAAAAAElFTkSuQmCC"


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("VISUM_REQUIRE_BROWSER") == "1":
            pytest.fail("no Chromium found for the browser check, and VISUM_REQUIRE_BROWSER=1 (.ci/run) requires "
                        "it: install it (Debian: apt-get install chromium) or point $VISUM_CHROMIUM at one",
                        pytrace=False)
        pytest.skip("no Chromium on this machine: the report's browser check is skipped "
                    "(apt-get install chromium, or $VISUM_CHROMIUM; .ci/run requires it)")
    return exe


def page(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "page.html"
    path.write_text(f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>t</title></head><body>{body}</body></html>')
    return path


def test_the_png_fixture_is_a_valid_image():
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(base64.b64decode(PNG))) as img:
        img.load()
        assert img.size == (2, 1)


def test_a_broken_page_is_detected(chromium, tmp_path):
    """A console.error, an uncaught exception and a missing image each make the check fail."""
    path = page(
        tmp_path,
        f'<section class="summary"><img src="missing.png" alt="gone"></section>'
        f'<img src="data:image/png;base64,{PNG}" alt="fine">'
        "<script>console.log('just information'); console.error('deliberate failure'); undefinedFunction();</script>",
    )
    result = check_report_in_browser(path, chromium=chromium, timeout=60)

    assert not result.ok
    errors = "\n".join(result.console_errors)
    assert "deliberate failure" in errors
    assert "undefinedFunction" in errors and "ReferenceError" in errors
    assert "missing.png" in errors  # the failed request is logged too
    assert "just information" not in errors
    assert [im.src for im in result.broken_images] == ["missing.png"]
    assert result.broken_images[0].summary
    fine = next(im for im in result.images if im.alt == "fine")
    assert fine.loaded and (fine.width, fine.height) == (2, 1)
    assert "deliberate failure" in result.describe() and "missing.png" in result.describe()


def test_a_clean_page_passes_and_a_corrupt_image_does_not(chromium, tmp_path):
    good = page(tmp_path, f'<img src="data:image/png;base64,{PNG}" alt="ok"><script>console.log("hello")</script>')
    result = check_report_in_browser(good, chromium=chromium, timeout=60)
    assert result.ok, result.describe()
    assert result.title == "t" and len(result.images) == 1

    corrupt = page(tmp_path, f'<img src="data:image/png;base64,{PNG[:24]}" alt="truncated">')
    result = check_report_in_browser(corrupt, chromium=chromium, timeout=60)
    assert not result.ok and [im.alt for im in result.broken_images] == ["truncated"]


def test_a_page_that_never_loads_times_out(chromium, tmp_path):
    path = page(tmp_path, "<script>while (true) {}</script>")
    start = time.monotonic()
    with pytest.raises(BrowserError, match="in time"):
        check_report_in_browser(path, chromium=chromium, timeout=3)
    assert time.monotonic() - start < 3 + 8  # plus at most the grace period before the kill


def test_default_run_report_renders_in_chromium(chromium, tmp_path):
    """`visum run --saliency gradient`'s report.html (the default but for the slower crisp masks): no console
    errors, every summary image and thumbnail loads."""
    out = tmp_path / "run"
    assert main(["run", "--saliency", "gradient", "--out", str(out), "--quiet"]) == 0
    manifest = Manifest.model_validate_json((out / "manifest.json").read_text())

    result = check_report_in_browser(out / "report.html", chromium=chromium, timeout=90)

    assert result.ok, result.describe()
    assert result.title == "visum report"
    summaries = result.summary_images
    assert len(manifest.kept_summaries) >= 1
    assert len(summaries) == len(manifest.summaries)  # kept and discarded, each with its picture
    assert all(im.loaded and im.width > 0 and im.height > 0 for im in summaries)
    inputs = [im for im in result.images if "model input outlined" in im.alt or "as the model sees it" in im.alt]
    assert len(inputs) == 2 * min(4, len(manifest.images))  # a few images beside the model's view of them
    assert all(im.loaded and im.width > 0 for im in inputs)
    # plus one thumbnail per image
    assert len(result.images) == len(summaries) + len(manifest.images) + len(inputs)
