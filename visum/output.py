"""Everything a run leaves on disk: manifest.json, masks/, summaries/, run.toml, report.html."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from visum import __version__
from visum.atomic import atomic_write, write_text_atomic
from visum.config import config_to_dict, dump_config
from visum.manifest import (
    ImageRecord,
    Manifest,
    MemberRecord,
    ModelRecord,
    RegionRecord,
    SummaryRecord,
    preprocessing_record,
)

if TYPE_CHECKING:
    from visum.pipeline import Pipeline


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


#: how many images the report shows as the model saw them
INPUT_EXAMPLES = 4


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


def image_records(out: Path, model, target, images, probs, states) -> tuple[list[ImageRecord], dict[int, Path]]:
    """One record per image; writes each used image's mask as PNG (original size) and .npy (view size)."""
    names = model.class_names
    (out / "masks").mkdir(parents=True, exist_ok=True)
    records, mask_pngs = [], {}
    for im in images:
        state = states.get(im.id)
        regions, mask_rel = [], None
        if state is not None and state.mask is not None:
            mask_path = out / "masks" / f"{im.id:04d}.png"
            mask = im.view.to_original(state.mask)
            with atomic_write(mask_path, "wb") as fh:
                Image.fromarray((mask * 255).round().astype(np.uint8)).save(fh, format="PNG")
            with atomic_write(mask_path.with_suffix(".npy"), "wb") as fh:
                np.save(fh, state.mask)
            mask_pngs[im.id] = mask_path
            mask_rel = relative_to(mask_path, out)
            if state.regions is not None:
                for r, (box, area) in enumerate(zip(state.regions.boxes, state.regions.areas)):
                    regions.append(RegionRecord(id=r, bbox=im.view.box_to_original(box), area=int(area)))
        pred = int(probs[im.id].argmax())
        h, w = im.original.shape[:2]
        records.append(
            ImageRecord(
                id=im.id, path=relative_to(im.path, out), width=w, height=h,
                target_score=round(float(probs[im.id][target]), 6), predicted_index=pred,
                predicted_name=names[pred] if names else None, used=state is not None,
                mask=mask_rel, regions=regions,
            )
        )
    return records, mask_pngs


def masks_manifest(p: "Pipeline", model, target, images, probs, states) -> Manifest:
    """``visum masks``: the masks and a manifest of the images, without summaries."""
    records, _ = image_records(p.out_dir, model, target, images, probs, states)
    manifest = Manifest(
        visum_version=__version__, config=config_to_dict(p.config), model=model_record(model, target),
        images=records, summaries=[], warnings=list(p.warnings), timings=p.timings,
    )
    write_manifest(manifest, p.out_dir)
    return manifest


def write_outputs(p: "Pipeline", model, target, images, probs, states, clusters, verdicts, nodes, drops=None):
    """Masks, summary images, run.toml; returns the manifest and the pictures for the report.

    Kept summaries come first, the one the model relies on most first (``drops``: ``{cluster:
    (p, p_removed)}``, :mod:`visum.summary_reliance`), then by size.
    """
    from visum.report import member_tile, save_png, summary_grid
    from visum.summary_reliance import ratio_of_sums

    out = p.out_dir
    (out / "summaries").mkdir(parents=True, exist_ok=True)
    by_id = {im.id: im for im in images}
    records, mask_pngs = image_records(out, model, target, images, probs, states)

    drops = drops or {}  # discarded-for-reliance clusters keep their measured reliance
    reliance = {c: ratio_of_sums(*pq) for c, pq in drops.items()}

    def rank(c: int) -> tuple:
        r = reliance.get(c, float("nan"))
        return (not verdicts[c].kept, -(r if r == r else -np.inf), -len(clusters[c]), clusters[c][0][0])

    order = sorted(range(len(clusters)), key=rank)
    summaries, summary_pngs = [], {}
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
            members.append(MemberRecord(image=node.image, region=node.region, part_bbox=part_box, score=round(score, 6),
                                        drop=drop))
            tiles.append(member_tile(im.original, region_box, part_box, tile=p.config.summaries.tile,
                                     context=p.config.summaries.tile_context))
        verdict = verdicts[c]
        title = f"summary {sid} — {len(members)} parts" + ("" if verdict.kept else " (discarded)")
        png = out / "summaries" / f"{sid:03d}.png"
        save_png(summary_grid(tiles, title=title), png)
        summary_pngs[sid] = png
        summaries.append(
            SummaryRecord(id=sid, kept=verdict.kept, quality={k: round(v, 6) for k, v in verdict.quality.items()},
                          reliance=round(reliance[c], 6) if c in reliance and reliance[c] == reliance[c] else None,
                          image=relative_to(png, out), members=members)
        )

    manifest = Manifest(
        visum_version=__version__,
        config=config_to_dict(p.config),
        model=model_record(model, target),
        images=records,
        summaries=summaries,
        warnings=list(p.warnings),
        timings=p.timings,
    )
    dump_config(p.config, out / "run.toml")
    pictures = {"summary_pngs": summary_pngs, "mask_pngs": mask_pngs,
                "thumbnails": {im.id: thumbnail(im.original) for im in images},
                "inputs": input_examples(images, probs, target)}
    return manifest, pictures


def finish(manifest: Manifest, out: Path, pictures: dict[str, Any], timings: dict[str, float]) -> Path:
    """Write report.html and manifest.json last, once every stage's time is known."""
    from visum.report import write_report

    manifest.timings = dict(timings)
    report = write_report(manifest, out, **pictures)
    write_manifest(manifest, out)
    return report


def write_manifest(manifest: Manifest, out: Path) -> Path:
    return write_text_atomic(Path(out) / "manifest.json", json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
