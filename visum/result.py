"""What a run found, in memory: the manifest, the masks and the summary pictures.

The pipeline returns a :class:`Result` and writes nothing of it. Presentation takes a result:
:meth:`Result.save` (the files ``visum run`` writes, through :mod:`visum.output`),
:meth:`Result._repr_html_` (the summaries inline in Jupyter), and the ground-truth scores of
:mod:`visum.evaluate.summaries`, which the saved report shows when the images carry them.

The manifest's paths are relative to ``Result.out_dir``: the image files as the run found them,
and ``masks/NNNN.png`` and ``summaries/NNN.png``, the names :meth:`Result.save` gives the
pictures held here.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visum import __version__
from visum.config import RunConfig, config_to_dict
from visum.manifest import (
    ImageRecord,
    Manifest,
    MemberRecord,
    ModelRecord,
    RegionRecord,
    SummaryRecord,
    WarningRecord,
    preprocessing_record,
)

__all__ = ["INPUT_EXAMPLES", "Result", "build_result", "masks_result", "relative_to"]

#: how many images the report shows as the model saw them
INPUT_EXAMPLES = 4


@dataclass
class Result:
    """One run's findings. ``summaries`` and ``images`` are the manifest's records."""

    manifest: Manifest
    config: RunConfig
    out_dir: Path  # the folder the manifest's relative paths start from
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # image id -> [H, W] float32 in [0, 1], the image's size as loaded (a huge file's reduced size)
    view_masks: dict[int, np.ndarray] = field(default_factory=dict)  # image id -> [S, S], the model's input size
    summary_pictures: dict[int, np.ndarray] = field(default_factory=dict)  # summary id -> [h, w, 3] uint8 grid
    thumbnails: dict[int, np.ndarray] = field(default_factory=dict)  # image id -> small RGB uint8
    inputs: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # image id -> (crop outlined, view)
    complete: bool = True  # False for masks alone (``visum masks``): no summaries, no report
    cache_hits: int = 0
    cache_misses: int = 0
    report: Path | None = None  # report.html (or masks/) once saved
    workdir: Any = field(default=None, repr=False)  # a TemporaryDirectory holding out_dir, removed with the result
    save_to: Path | None = None  # where save() writes by default (summarize's out_dir)

    @property
    def summaries(self) -> list[SummaryRecord]:
        return self.manifest.summaries

    @property
    def kept(self) -> list[SummaryRecord]:
        return self.manifest.kept_summaries

    @property
    def images(self) -> list[ImageRecord]:
        return self.manifest.images

    def save(self, out_dir: str | Path | None = None, *, score: bool = True) -> Path:
        """Write the files ``visum run`` writes into ``out_dir`` (default :attr:`save_to`, else
        :attr:`out_dir`), whole: see :mod:`visum.output` (a folder holding anything else is refused;
        a finished run there is replaced).

        manifest.json, masks/, summaries/, run.toml and report.html (masks/ and manifest.json
        alone for a masks-only result). Images that live in :attr:`out_dir` (given in memory, or
        the generated parts benchmark) are copied along, so the folder stands on its own. ``score``: when the images carry parts ground truth,
        score the summaries against it and show the scores in the report. Returns the report
        (or masks/) path.
        """
        from visum.errors import ConfigError
        from visum.output import save_result

        if out_dir is None:
            out_dir = self.save_to
        if out_dir is None and self.workdir is not None:
            raise ConfigError("this result was computed in a temporary folder, removed with it: "
                              "give save() a folder, e.g. result.save('visum-out/run')")
        ground_truth = None
        if score and self.complete:
            from visum.evaluate.summaries import scores_for_report

            ground_truth = scores_for_report(self.manifest, self.out_dir)
        self.report = save_result(self, Path(out_dir) if out_dir is not None else self.out_dir,
                                  ground_truth=ground_truth)
        return self.report

    def __repr__(self) -> str:
        m = self.manifest
        return (f"<visum.Result: {len(self.kept)} summaries kept of {len(m.summaries)} clusters, "
                f"{sum(im.used for im in m.images)} of {len(m.images)} images used, target "
                f"{m.model.target_name or m.model.target_index!r}, model {m.model.spec}>")

    def _repr_html_(self, max_shown: int = 12) -> str:
        """The kept summaries (the first ``max_shown``), each its picture and reliance, for a notebook."""
        m = self.manifest
        head = (f"<p><b>visum</b>: {len(self.kept)} summaries kept of {len(m.summaries)} clusters, "
                f"{sum(im.used for im in m.images)} of {len(m.images)} images used, target "
                f"<code>{html.escape(str(m.model.target_name or m.model.target_index))}</code> of "
                f"<code>{html.escape(m.model.spec)}</code></p>")
        warnings = "".join(f"<p style='color:#a40'>&#9888; {html.escape(w.message)}</p>" for w in m.warnings)
        cards = []
        for s in self.kept[:max_shown]:
            picture = self.summary_pictures.get(s.id)
            img = ""
            if picture is not None:
                from visum.report.summary_image import as_rgb_uint8

                small = Image.fromarray(as_rgb_uint8(picture))
                small.thumbnail((640, 640), Image.Resampling.LANCZOS)  # a notebook shows it small and as JPEG;
                buf = io.BytesIO()                                      # save() keeps the whole PNG
                small.convert("RGB").save(buf, format="JPEG", quality=85)
                img = f"<img src='data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}' style='max-width:100%'>"
            reliance = "" if s.reliance is None else f", reliance {s.reliance:.2f}"
            cards.append(f"<div style='margin:8px 0'><b>summary {s.id}</b>: {len(s.members)} members, "
                         f"{len({mem.image for mem in s.members})} images{reliance}<br>{img}</div>")
        more = (f"<p>… and {len(self.kept) - max_shown} more: <code>result.kept</code>, or "
                f"<code>result.save(folder)</code> for the whole report.</p>") if len(self.kept) > max_shown else ""
        return (head + warnings + ("".join(cards) or "<p>No cluster was reliable enough to become a summary.</p>")
                + more)


# --------------------------------------------------------------------------- building a result


def relative_to(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else absolute (POSIX separators)."""
    path, root = Path(path).resolve(), Path(root).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def thumbnail(image: np.ndarray, side: int = 112) -> np.ndarray:
    im = Image.fromarray(image)
    im.thumbnail((side, side), Image.BILINEAR)
    return np.asarray(im)


def model_record(model, target) -> ModelRecord:
    names = model.class_names
    return ModelRecord(spec=model.spec, target_index=target, target_name=names[target] if names else None,
                       preprocessing=preprocessing_record(model.preprocessing))


def input_examples(images, probs, target, n: int = INPUT_EXAMPLES) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{image id: (original thumbnail with the crop outlined, the view)}`` for a few images.

    The images classified as another class come first: when a run warns that few images
    went to the target, they are the ones whose input is worth a look.
    """
    from visum.report.summary_image import outline_box

    order = sorted(images, key=lambda im: (int(probs[im.id].argmax()) == target, im.id))[:n]
    out = {}
    for im in sorted(order, key=lambda im: im.id):
        small = thumbnail(im.original, 160)
        h, w = im.original.shape[:2]
        f = small.shape[1] / w, small.shape[0] / h
        x0, y0, x1, y1 = im.view.crop_box()
        box = (int(x0 * f[0]), int(y0 * f[1]), max(int(x0 * f[0]) + 1, round(x1 * f[0])), max(int(y0 * f[1]) + 1, round(y1 * f[1])))
        out[im.id] = (outline_box(small, box), thumbnail(im.view.pixels, 160))
    return out


def mask_name(image_id: int) -> str:
    return f"masks/{image_id:04d}.png"


def summary_name(summary_id: int) -> str:
    return f"summaries/{summary_id:03d}.png"


def image_records(out: Path, model, target, images, probs, states
                  ) -> tuple[list[ImageRecord], dict[int, np.ndarray], dict[int, np.ndarray]]:
    """One record per image, and each used image's mask at the original and at the view size."""
    names = model.class_names
    records, masks, view_masks = [], {}, {}
    for im in images:
        state = states.get(im.id)
        regions, mask_rel = [], None
        if state is not None and state.mask is not None:
            masks[im.id] = im.view.to_original(state.mask)
            view_masks[im.id] = state.mask
            mask_rel = mask_name(im.id)
            if state.regions is not None:
                for r, (box, area) in enumerate(zip(state.regions.boxes, state.regions.areas)):
                    regions.append(RegionRecord(id=r, bbox=im.to_file(im.view.box_to_original(box)), area=int(area)))
        pred = int(probs[im.id].argmax())
        w, h = im.size_in_file
        records.append(
            ImageRecord(
                id=im.id, path=relative_to(im.path, out), width=w, height=h,
                target_score=round(float(probs[im.id][target]), 6), predicted_index=pred,
                predicted_name=names[pred] if names else None, used=state is not None,
                mask=mask_rel, regions=regions,
            )
        )
    return records, masks, view_masks


def masks_result(config: RunConfig, out: Path, model, target, images, probs, states,
                 warnings: list[WarningRecord], timings: dict[str, float]) -> Result:
    """``visum masks``: the masks and a manifest of the images, without summaries."""
    records, masks, view_masks = image_records(out, model, target, images, probs, states)
    manifest = Manifest(
        visum_version=__version__, config=config_to_dict(config), model=model_record(model, target),
        images=records, summaries=[], warnings=list(warnings), timings=timings,
    )
    return Result(manifest, config, Path(out), masks=masks, view_masks=view_masks, complete=False)


def build_result(config: RunConfig, out: Path, model, target, images, probs, states, clusters, verdicts, nodes,
                 drops: dict[int, tuple[np.ndarray, np.ndarray]] | None, warnings: list[WarningRecord],
                 timings: dict[str, float]) -> Result:
    """Records of every image and summary, and the summary pictures.

    Kept summaries come first, the one the model relies on most first (``drops``: ``{cluster:
    (p, p_removed)}``, :mod:`visum.stages.reliance`), then by size.
    """
    from visum.report.summary_image import member_tile, summary_grid
    from visum.stages.reliance import ratio_of_sums

    by_id = {im.id: im for im in images}
    records, masks, view_masks = image_records(out, model, target, images, probs, states)

    drops = drops or {}  # discarded-for-reliance clusters keep their measured reliance
    reliance = {c: ratio_of_sums(*pq) for c, pq in drops.items()}

    def rank(c: int) -> tuple:
        r = reliance.get(c, float("nan"))
        return (not verdicts[c].kept, -(r if r == r else -np.inf), -len(clusters[c]), clusters[c][0][0])

    order = sorted(range(len(clusters)), key=rank)
    summaries, pictures = [], {}
    for sid, c in enumerate(order):
        members, tiles = [], []
        p_clean, p_removed = drops.get(c, (None, None))
        for j, (k, score) in enumerate(clusters[c]):
            node = nodes[k]
            im = by_id[node.image]
            region_box = im.view.box_to_original(states[node.image].regions.boxes[node.region])
            part_box = im.view.box_to_original(states[node.image].boxes[node.proposal])
            drop = None
            if p_clean is not None:
                drop = round(float((p_clean[j] - p_removed[j]) / max(p_clean[j], 1e-12)), 6)
            members.append(MemberRecord(image=node.image, region=node.region,
                                        part_bbox=im.to_file(part_box), score=round(score, 6),
                                        drop=drop))
            tiles.append(member_tile(im.original, region_box, part_box, tile=config.summaries.tile,
                                     context=config.summaries.tile_context))
        verdict = verdicts[c]
        title = f"summary {sid} — {len(members)} parts" + ("" if verdict.kept else " (discarded)")
        pictures[sid] = summary_grid(tiles, title=title)
        summaries.append(
            SummaryRecord(id=sid, kept=verdict.kept, quality={k: round(v, 6) for k, v in verdict.quality.items()},
                          reliance=round(reliance[c], 6) if c in reliance and reliance[c] == reliance[c] else None,
                          image=summary_name(sid), members=members)
        )

    manifest = Manifest(
        visum_version=__version__, config=config_to_dict(config), model=model_record(model, target),
        images=records, summaries=summaries, warnings=list(warnings), timings=timings,
    )
    return Result(manifest, config, Path(out), masks=masks, view_masks=view_masks, summary_pictures=pictures,
                  thumbnails={im.id: thumbnail(im.original) for im in images},
                  inputs=input_examples(images, probs, target))
