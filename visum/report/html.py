"""The self-contained HTML report of a run.

One file, ``report.html``: every image is embedded as a base64 ``data:`` URI and the CSS is
inline, so the page opens from disk with no server and no network. No JavaScript. Every
string taken from the manifest is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from visum.atomic import write_text_atomic
from visum.manifest import ImageRecord, Manifest, SummaryRecord
from visum.report.ground_truth import ground_truth_section, summary_ground_truth
from visum.report.summary_image import as_rgb_uint8

if TYPE_CHECKING:
    from visum.evaluate.summaries import GroundTruthScores

__all__ = ["write_report", "render_report"]

#: Longest side of the thumbnails made from the image files when none are given.
THUMBNAIL_SIDE = 112

_CSS = """
:root {
  --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --panel: #f6f8fa; --accent: #d1242f;
  --ok: #1a7f37; --off: #8c959f; --bar: #4c8bf5;
}
* { box-sizing: border-box; }
body {
  margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
main { max-width: 1180px; margin: 0 auto; padding: 28px 28px 48px; }
h1 { font-size: 28px; margin: 0 0 4px; letter-spacing: -0.01em; }
h2 { font-size: 20px; margin: 40px 0 14px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
h3 { font-size: 17px; margin: 0; }
.sub { color: var(--muted); margin: 0 0 18px; }
.sub b { color: var(--ink); font-weight: 600; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 0 0 10px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px 16px; min-width: 150px; }
.card .v { font-size: 24px; font-weight: 650; line-height: 1.2; }
.card .v small { font-size: 15px; color: var(--muted); font-weight: 500; }
.card .k { color: var(--muted); font-size: 13px; }
.toc { display: flex; flex-wrap: wrap; gap: 6px; margin: 12px 0 0; align-items: center; }
.toc span { color: var(--muted); font-size: 13px; margin-right: 4px; }
.chip { display: inline-block; padding: 1px 10px; border: 1px solid var(--line); border-radius: 999px;
  color: var(--ink); text-decoration: none; font-size: 13px; background: #fff; }
.chip:hover { border-color: var(--accent); color: var(--accent); }
.summary { border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px 10px; margin: 0 0 18px; background: #fff; }
.summary.discarded { border-style: dashed; }
.summary header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px 14px; margin-bottom: 10px; }
.badge { font-size: 12px; font-weight: 600; padding: 1px 8px; border-radius: 999px; border: 1px solid; }
.badge.kept { color: var(--ok); border-color: var(--ok); }
.badge.off { color: var(--off); border-color: var(--off); }
.stats { display: flex; flex-wrap: wrap; gap: 4px 18px; color: var(--muted); font-size: 14px; }
.stats b { color: var(--ink); font-weight: 600; }
figure { margin: 0; }
figure img { display: block; max-width: 100%; height: auto; border-radius: 4px; }
.noimg { color: var(--muted); font-style: italic; padding: 12px 0; }
details { margin: 8px 0 4px; }
details > summary { cursor: pointer; color: var(--muted); font-size: 14px; }
details.section > summary { font-size: 20px; font-weight: 600; color: var(--ink); margin: 40px 0 14px;
  padding-bottom: 6px; border-bottom: 1px solid var(--line); }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-weight: 600; color: var(--muted); font-size: 13px; background: var(--panel); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.unused td { color: var(--off); }
tr.unused img { opacity: 0.55; }
td.thumb { width: 1%; padding: 4px 10px 4px 4px; }
td.thumb img { display: block; max-width: 112px; max-height: 112px; width: auto; height: auto; border-radius: 3px; }
.path { max-width: 340px; overflow-wrap: anywhere; }
.yes { color: var(--ok); font-weight: 600; }
.no { color: var(--off); }
.meter { display: inline-block; width: 70px; height: 7px; background: #eaeef2; border-radius: 4px;
  vertical-align: middle; margin-left: 8px; overflow: hidden; }
.meter i { display: block; height: 100%; background: var(--bar); }
.bar { height: 12px; background: #eaeef2; border-radius: 3px; min-width: 200px; overflow: hidden; }
.bar i { display: block; height: 100%; background: var(--bar); }
tr.total td { font-weight: 600; border-bottom: none; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
  overflow-x: auto; margin: 0; line-height: 1.45; }
.members { font-size: 13px; }
.legend { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin-right: 4px;
  border: 2px solid var(--accent); background: rgba(235, 20, 20, 0.45); }
.legend.mask { border: 1px solid #ffd600; background: #777; }
.warn { border: 1px solid #d4a72c; background: #fff8c5; border-radius: 8px; padding: 10px 16px; margin: 14px 0; }
.warn b { color: #7d4e00; }
.inputs { display: flex; flex-wrap: wrap; gap: 18px; }
.inputs .pair { display: flex; gap: 6px; align-items: flex-end; }
.inputs figcaption { color: var(--muted); font-size: 13px; max-width: 330px; margin-top: 4px; }
.inputs .pair img { border-radius: 3px; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float) -> str:
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.3g}"
    return f"{v:.4g}"


def _seconds(v: float) -> str:
    v = float(v)
    if v >= 120:
        return f"{int(v // 60)} min {v % 60:04.1f} s"
    if v >= 10:
        return f"{v:.1f} s"
    if v >= 0.01:
        return f"{v:.2f} s"
    return f"{v * 1000:.1f} ms"


# ----------------------------------------------------------------------------- images


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class _Embedded:
    """An image ready for an ``<img>``: its data URI and its size."""

    def __init__(self, data: bytes, mime: str, width: int, height: int) -> None:
        self.uri = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
        self.width, self.height = width, height

    def tag(self, alt: str, cls: str | None = None) -> str:
        c = f' class="{_e(cls)}"' if cls else ""
        return (
            f'<img{c} src="{self.uri}" width="{self.width}" height="{self.height}" '
            f'alt="{_e(alt)}">'
        )


def _embed_array(array: np.ndarray) -> _Embedded:
    img = Image.fromarray(as_rgb_uint8(array))
    return _Embedded(_png_bytes(img), "image/png", img.width, img.height)


@contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Pillow's warnings about large or odd files are not the user's business here: the images
    were already loaded (and checked) by the run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _embed_file(path: Path) -> _Embedded | None:
    try:
        data = path.read_bytes()
        with _quiet_pillow(), Image.open(io.BytesIO(data)) as img:
            img.load()
            mime = _sniff(data)
            if mime is None:  # not a browser format: re-encode
                data, mime = _png_bytes(img.convert("RGBA" if "A" in img.getbands() else "RGB")), "image/png"
            return _Embedded(data, mime, img.width, img.height)
    except (OSError, ValueError):
        return None


def _resolve(path: str | os.PathLike, run_dir: Path) -> Path:
    p = Path(path)
    if p.is_absolute():
        return p
    in_run = run_dir / p
    return in_run if in_run.exists() else p


def _read_mask(path: Path) -> np.ndarray | None:
    try:
        with _quiet_pillow(), Image.open(path) as img:
            m = np.asarray(img.convert("L"))
    except (OSError, ValueError):
        return None
    return m > (127 if m.max(initial=0) > 1 else 0)


def _mask_of(source: np.ndarray | str | os.PathLike, run_dir: Path) -> np.ndarray | None:
    """A mask given in memory (float in ``[0, 1]``, as masks/NNNN.png stores it) or as a file -> bool."""
    if isinstance(source, np.ndarray):
        return np.round(np.asarray(source, dtype=np.float64) * 255) > 127
    return _read_mask(_resolve(source, run_dir))


def _picture_of(source: np.ndarray | str | os.PathLike, run_dir: Path) -> _Embedded | None:
    """A picture given in memory or as a file, ready to embed."""
    if isinstance(source, np.ndarray):
        return _embed_array(source)
    return _embed_file(_resolve(source, run_dir))


def _thumbnail_from_file(path: Path, side: int = THUMBNAIL_SIDE) -> np.ndarray | None:
    try:
        with _quiet_pillow(), Image.open(path) as img:
            img.draft("RGB", (side * 2, side * 2))
            img = img.convert("RGB")
            img.thumbnail((side, side), Image.Resampling.LANCZOS)
            return np.asarray(img)
    except (OSError, ValueError):
        return None


def _overlay(thumb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The thumbnail with what lies outside the mask darkened and the mask outlined."""
    t = as_rgb_uint8(thumb)
    h, w = t.shape[:2]
    m = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    out = t.astype(np.float32)
    out[m == 0] *= 0.35
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 214, 0), 1)
    return out


# ----------------------------------------------------------------------------- sections


def _header(manifest: Manifest, title: str) -> str:
    images = manifest.images
    used = sum(1 for im in images if im.used)
    kept = manifest.kept_summaries
    discarded = len(manifest.summaries) - len(kept)
    n_regions = sum(len(im.regions) for im in images if im.used)
    total_time = sum(manifest.timings.values())
    target = manifest.model.target_name
    target_html = (
        f"<b>{_e(target)}</b> (class {manifest.model.target_index})"
        if target
        else f"<b>class {manifest.model.target_index}</b>"
    )
    cards = [
        (f"{used} <small>/ {len(images)}</small>", "images used / total"),
        (f"{len(kept)}", "summaries kept"),
        (f"{discarded}", "clusters discarded"),
        (f"{n_regions}", "salient regions"),
    ]
    if manifest.timings:
        cards.append((_e(_seconds(total_time)), "total time"))
    cards_html = "".join(f'<div class="card"><div class="v">{v}</div><div class="k">{k}</div></div>' for v, k in cards)
    toc = ""
    if kept:
        chips = "".join(f'<a class="chip" href="#summary-{s.id}">{s.id}</a>' for s in kept)
        toc = f'<nav class="toc"><span>Summaries:</span>{chips}</nav>'
    return (
        f"<header>\n<h1>{_e(title)}</h1>\n"
        f'<p class="sub">What <b class="mono">{_e(manifest.model.spec)}</b> relies on for {target_html}'
        f" &middot; visum {_e(manifest.visum_version)}</p>\n"
        f'<div class="cards">{cards_html}</div>\n{toc}\n</header>'
    )


def _summary_card(
    summary: SummaryRecord,
    images: Mapping[int, ImageRecord],
    picture: _Embedded | None,
    ground_truth=None,
) -> str:
    members = summary.members
    n_images = len({m.image for m in members})
    mean_score = sum(m.score for m in members) / len(members) if members else float("nan")
    stats = [
        f"<span><b>{len(members)}</b> parts</span>",
        f"<span><b>{n_images}</b> images</span>",
        f"<span>mean part score <b>{_e(_fmt(mean_score))}</b></span>",
    ]
    if summary.reliance is not None:
        stats.insert(0, f'<span title="relative fall of the target\'s probability when the members\' parts are '
                        f'removed (summaries.reliance_removal)">reliance <b>{_e(_fmt(summary.reliance))}</b></span>')
    stats += [f"<span>{_e(k)} <b>{_e(_fmt(v))}</b></span>" for k, v in sorted(summary.quality.items())]
    stats += summary_ground_truth(ground_truth)
    badge = '<span class="badge kept">kept</span>' if summary.kept else '<span class="badge off">discarded</span>'
    alt = f"Summary {summary.id}: {len(members)} parts from {n_images} images, parts highlighted in red"
    fig = (
        f"<figure>{picture.tag(alt)}</figure>"
        if picture is not None
        else '<p class="noimg">No summary image.</p>'
    )
    rows = []
    for m in sorted(members, key=lambda m: (-m.score, m.image, m.region)):
        rec = images.get(m.image)
        name = Path(rec.path).name if rec is not None else "?"
        rows.append(
            f'<tr><td class="num">{m.image}</td><td class="path" title="{_e(rec.path if rec else "")}">{_e(name)}</td>'
            f'<td class="num">{m.region}</td><td class="mono">{_e(list(m.part_bbox))}</td>'
            f'<td class="num">{_e(_fmt(m.score))}</td>'
            f'<td class="num">{_e(_fmt(m.drop) if m.drop is not None else "")}</td></tr>'
        )
    table = (
        '<details class="members"><summary>Members</summary><table>'
        '<thead><tr><th class="num">image</th><th>file</th><th class="num">region</th>'
        '<th>part box [x0, y0, x1, y1]</th><th class="num">score</th><th class="num">drop</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></details>'
    )
    cls = "summary" if summary.kept else "summary discarded"
    return (
        f'<section class="{cls}" id="summary-{summary.id}">\n'
        f'<header><h3>Summary {summary.id}</h3>{badge}<div class="stats">{"".join(stats)}</div></header>\n'
        f"{fig}\n{table}\n</section>"
    )


def _images_table(
    manifest: Manifest,
    thumbs: Mapping[int, _Embedded],
) -> str:
    in_summaries: dict[int, list[int]] = {}
    for s in manifest.kept_summaries:
        for img_id in sorted({m.image for m in s.members}):
            in_summaries.setdefault(img_id, []).append(s.id)
    rows = []
    for im in manifest.images:
        thumb = thumbs.get(im.id)
        thumb_html = thumb.tag(f"image {im.id}") if thumb is not None else ""
        score = float(im.target_score)
        width = 0.0 if math.isnan(score) else min(max(score, 0.0), 1.0) * 100
        pred = (
            f'{_e(im.predicted_name)} <span class="no">({im.predicted_index})</span>'
            if im.predicted_name
            else f"class {im.predicted_index}"
        )
        used = '<span class="yes">yes</span>' if im.used else '<span class="no">no</span>'
        links = ", ".join(f'<a href="#summary-{sid}">{sid}</a>' for sid in in_summaries.get(im.id, [])) or "&mdash;"
        row_cls = "" if im.used else ' class="unused"'
        rows.append(
            f"<tr{row_cls}>"
            f'<td class="thumb">{thumb_html}</td>'
            f'<td class="num">{im.id}</td>'
            f'<td class="path" title="{_e(im.path)}">{_e(Path(im.path).name or im.path)}'
            f'<br><span class="no">{im.width}&times;{im.height}</span></td>'
            f'<td class="num">{_e(_fmt(score))}<span class="meter"><i style="width:{width:.1f}%"></i></span></td>'
            f"<td>{pred}</td><td>{used}</td>"
            f'<td class="num">{len(im.regions)}</td><td>{links}</td></tr>'
        )
    legend = (
        '<p class="sub"><span class="legend mask"></span>salient mask outlined, the rest darkened. '
        "Images the model did not assign to the target are greyed out and not used.</p>"
    )
    return (
        f'<h2 id="images">Images ({len(manifest.images)})</h2>\n{legend}\n<table>'
        "<thead><tr><th></th><th class=\"num\">#</th><th>file</th><th class=\"num\">target score</th>"
        "<th>predicted</th><th>used</th><th class=\"num\">regions</th><th>in summaries</th></tr></thead>"
        f'<tbody>{"".join(rows)}</tbody></table>'
    )


def _warnings(manifest: Manifest) -> str:
    """One box per warning of the run, at the top of the page."""
    return "\n".join(
        f'<div class="warn" role="alert"><b>Warning ({_e(w.code)}).</b> {_e(w.message)} '
        '<a href="#model-input">See the model input.</a></div>'
        for w in manifest.warnings
    )


def _model_input(
    manifest: Manifest,
    images: Mapping[int, ImageRecord],
    inputs: Mapping[int, tuple[np.ndarray, np.ndarray]] | None,
) -> str:
    """The preprocessing, and a few images beside the view the model was given."""
    pre = manifest.model.preprocessing
    if pre is None:
        return ""
    text = (f'<p class="sub">{_e(pre.description)}. <span class="no">Source: {_e(pre.source)}.</span> '
            "Left: the image, the part the model sees outlined in yellow; right: the model's input.</p>")
    figures = []
    for image_id, (original, view) in sorted((inputs or {}).items()):
        rec = images.get(image_id)
        name = Path(rec.path).name if rec is not None else str(image_id)
        pred = ""
        if rec is not None:
            label = rec.predicted_name if rec.predicted_name else f"class {rec.predicted_index}"
            pred = f" &middot; predicted {_e(label)}" + ("" if rec.used else " (not used)")
        a, b = _embed_array(original), _embed_array(view)
        figures.append(
            f'<figure><div class="pair">{a.tag(f"image {image_id} with the model input outlined")}'
            f'{b.tag(f"image {image_id} as the model sees it")}</div>'
            f"<figcaption>{image_id}: {_e(name)}{pred}</figcaption></figure>"
        )
    gallery = f'<div class="inputs">{"".join(figures)}</div>' if figures else ""
    return f'<h2 id="model-input">Model input</h2>\n{text}\n{gallery}'


def _timings(timings: Mapping[str, float]) -> str:
    if not timings:
        return '<h2 id="timings">Timings</h2>\n<p class="noimg">No timings recorded.</p>'
    total = sum(max(float(v), 0.0) for v in timings.values())
    longest = max(max(float(v), 0.0) for v in timings.values()) or 1.0
    rows = []
    for stage, secs in timings.items():
        secs = max(float(secs), 0.0)
        share = secs / total * 100 if total else 0.0
        rows.append(
            f"<tr><td>{_e(stage)}</td><td class=\"num\">{_e(_seconds(secs))}</td>"
            f'<td class="num">{share:.1f}%</td>'
            f'<td style="width:50%"><div class="bar"><i style="width:{secs / longest * 100:.1f}%"></i></div></td></tr>'
        )
    rows.append(f'<tr class="total"><td>total</td><td class="num">{_e(_seconds(total))}</td><td></td><td></td></tr>')
    return (
        '<h2 id="timings">Timings</h2>\n<table><thead><tr><th>stage</th><th class="num">wall clock</th>'
        f'<th class="num">share</th><th></th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _config(config: Mapping) -> str:
    text = json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return f'<h2 id="config">Configuration</h2>\n<pre>{_e(text)}</pre>'


# ----------------------------------------------------------------------------- page


def render_report(
    manifest: Manifest,
    run_dir: Path,
    *,
    summary_pictures: Mapping[int, np.ndarray | Path] | None = None,
    masks: Mapping[int, np.ndarray | Path] | None = None,
    thumbnails: Mapping[int, np.ndarray] | None = None,
    inputs: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None,
    ground_truth: GroundTruthScores | None = None,
    title: str = "visum report",
) -> str:
    """The report page as a string; see :func:`write_report`."""
    run_dir = Path(run_dir)
    images = {im.id: im for im in manifest.images}

    pictures: dict[int, _Embedded | None] = {}
    for s in manifest.summaries:
        src = summary_pictures.get(s.id) if summary_pictures else None
        if src is None and s.image:
            src = s.image
        pictures[s.id] = _picture_of(src, run_dir) if src is not None else None

    thumbs: dict[int, _Embedded] = {}
    for im in manifest.images:
        thumb = thumbnails.get(im.id) if thumbnails else None
        mask_src = masks.get(im.id) if masks else None
        if mask_src is None and im.mask and masks is None:
            mask_src = im.mask
        mask = _mask_of(mask_src, run_dir) if mask_src is not None else None
        if thumb is None:
            thumb = _thumbnail_from_file(_resolve(im.path, run_dir))
        if thumb is not None:
            thumbs[im.id] = _embed_array(_overlay(thumb, mask) if mask is not None else thumb)
        elif mask is not None:
            m = Image.fromarray(mask.astype(np.uint8) * 255)
            m.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.NEAREST)
            thumbs[im.id] = _embed_array(np.asarray(m))

    kept = [s for s in manifest.summaries if s.kept]
    discarded = [s for s in manifest.summaries if not s.kept]
    parts = [_header(manifest, title), _warnings(manifest)]
    truth = ground_truth  # scored by visum.evaluate.summaries when the images carry parts ground truth
    truth_of = {s.id: s for s in truth.summaries} if truth is not None else {}
    if truth is not None:
        parts.append(ground_truth_section(truth))

    parts.append(f'<h2 id="summaries">Summaries ({len(kept)})</h2>')
    parts.append(
        '<p class="sub"><span class="legend"></span>Each tile is a salient region of one image; '
        "the part shared across the summary is highlighted in red. Best-matching parts first.</p>"
    )
    if kept:
        parts.extend(_summary_card(s, images, pictures[s.id], truth_of.get(s.id)) for s in kept)
    else:
        parts.append('<p class="noimg">No cluster was reliable enough to become a summary.</p>')

    inner = "\n".join(_summary_card(s, images, pictures[s.id], truth_of.get(s.id)) for s in discarded)
    if not discarded:
        inner = '<p class="noimg">None.</p>'
    parts.append(
        f'<details class="section" id="discarded"><summary>Discarded clusters ({len(discarded)})</summary>\n'
        '<p class="sub">Clusters the scorer judged inconsistent, and summaries the model does not rely on '
        '(reliance below summaries.min_reliance), shown for inspection.</p>\n'
        f"{inner}\n</details>"
    )
    parts.append(_model_input(manifest, images, inputs))
    parts.append(_images_table(manifest, thumbs))
    parts.append(_config(manifest.config))
    parts.append(_timings(manifest.timings))
    parts.append(
        f"<footer>Generated by visum {_e(manifest.visum_version)}. "
        "This page is self-contained: every image is embedded; it needs no network.</footer>"
    )
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="visum">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def write_report(
    manifest: Manifest,
    run_dir: Path,
    *,
    summary_pictures: Mapping[int, np.ndarray | Path] | None = None,
    masks: Mapping[int, np.ndarray | Path] | None = None,
    thumbnails: Mapping[int, np.ndarray] | None = None,
    inputs: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None,
    ground_truth: GroundTruthScores | None = None,
    title: str = "visum report",
) -> Path:
    """Write ``run_dir/report.html``, one self-contained page, and return its path.

    ``summary_pictures`` maps ``SummaryRecord.id`` to its grid, an RGB array or a picture file
    (kept and discarded clusters alike; a missing entry falls back to the file
    ``SummaryRecord.image``, then to "no image"). ``masks`` maps ``ImageRecord.id`` to its
    saliency mask at the original size, an array in ``[0, 1]`` or a mask PNG (when ``None``,
    the file ``ImageRecord.mask`` is read). ``thumbnails`` maps ``ImageRecord.id`` to a small
    RGB array, embedded at its own size (the mask, resized to it, is overlaid); without one,
    a thumbnail is made from ``ImageRecord.path`` when that file can be read. ``inputs`` maps
    a few ``ImageRecord.id`` to (the image with the model's crop outlined, the model's view),
    shown beside the preprocessing. ``ground_truth``: the scores of
    :func:`visum.evaluate.summaries.scores_for_report`, shown when given. Relative paths are
    looked up in ``run_dir`` first. The file is written atomically.
    """
    run_dir = Path(run_dir)
    page = render_report(
        manifest, run_dir, summary_pictures=summary_pictures, masks=masks, thumbnails=thumbnails, inputs=inputs,
        ground_truth=ground_truth, title=title,
    )
    return write_text_atomic(run_dir / "report.html", page)
