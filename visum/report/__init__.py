"""What a person sees: summary images and the self-contained HTML report."""

from visum.report.html import render_report, write_report
from visum.report.summary_image import as_rgb_uint8, member_tile, save_png, summary_grid, summary_image

__all__ = [
    "member_tile",
    "summary_grid",
    "summary_image",
    "save_png",
    "as_rgb_uint8",
    "write_report",
    "render_report",
]
