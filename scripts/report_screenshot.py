"""Make docs/img/report-screenshot.png: the top of a run's report.html as headless Chromium shows it.

    python scripts/report_screenshot.py [RUN_DIR]

Without RUN_DIR it first runs the embedded default, `visum run` (the run whose report CI opens
in tests/test_browser.py), into a temporary folder. The page must pass the browser check (no
console errors, every image loaded) or no screenshot is written.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image

from visum.report.browser import check_report_in_browser

ROOT = Path(__file__).resolve().parents[1]
WINDOW = (1100, 1250)  # CSS pixels: the header and the first summaries


def main() -> None:
    if len(sys.argv) > 1:
        run = Path(sys.argv[1])
    else:
        from visum.cli import main as visum

        run = Path(tempfile.mkdtemp()) / "run"
        assert visum(["run", "--out", str(run), "--quiet"]) == 0
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        result = check_report_in_browser(run / "report.html", window=WINDOW, screenshot=shot)
        if not result.ok:
            sys.exit(result.describe())
        print(result.describe())
        out = ROOT / "docs" / "img" / "report-screenshot.png"
        with Image.open(shot) as img:
            img.convert("RGB").quantize(256).save(out, optimize=True)  # palette PNG: well under 400 KiB
    print(out, f"{out.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
