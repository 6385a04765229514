"""Assemble the real-photo pool of issue 15 from installed packages, and keep what the model gets right.

Reads ``benchmarks/photos/labels.tsv`` (visum's labels of photos that ship in Debian and PyPI
packages; :mod:`visum.data.photo_pool`), classifies every photo with ``--model`` through the
model's own preprocessing, and writes the photos it classifies correctly (top-1 = the label)
into ``OUT/dev/`` and ``OUT/test/`` (``NAME.png``, and ``NAME.mask.png`` for cut-outs with an
alpha mask), with ``OUT/pool.json`` listing every labelled photo, its split, the model's top-1
and the label's probability. The split is fixed by rule (:func:`visum.data.photo_pool.split_of`),
not by what the model does.

Get the packages (nothing is installed system-wide), then build the pool::

    mkdir -p .photo-debs && cd .photo-debs && apt-get download tuxpaint-stamps-default \\
        gcompris-qt-data palapeli-data opencv-doc tuxpaint-data mate-backgrounds && \\
        for f in *.deb; do dpkg-deb -x "$f" "${f%%_*}"; done && cd ..
    pip install --no-deps foolbox
    python benchmarks/photo_pool.py --debs .photo-debs --out visum-out/photos

Installed Debian packages are found too (``--debs`` is then not needed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from visum.data.photo_pool import decode_photo, read_labels, read_source, split_of
from visum.errors import InputError
from visum.models.loading import load_model

LABELS = Path(__file__).resolve().parent / "photos" / "labels.tsv"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--debs", type=Path, default=None, help="folder of unpacked .deb packages, one folder each")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--out", type=Path, default=Path("visum-out/photos"))
    args = ap.parse_args(argv)
    try:
        entries = read_labels(args.labels)
        model = load_model(args.model)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    categories = model.class_names if getattr(model, "class_names", None) else None
    pre = model.preprocessing
    for split in ("dev", "test"):  # photos of an earlier run must not outlive its pool.json
        for old in (args.out / split).glob("*.png"):
            old.unlink()
    bundles: dict = {}
    rows, missing = [], Counter()
    for entry in tqdm(entries, desc="classify", unit="photo"):
        try:
            rgb, mask = decode_photo(read_source(entry, args.debs, bundles))
        except InputError as e:
            missing[entry.source] += 1
            rows.append({"name": entry.name, "source": entry.source, "path": entry.path, "missing": f"{entry.name}: {e}"})
            continue
        x = pre.to_tensor([pre.view(rgb).pixels])
        with torch.no_grad():
            p = torch.softmax(model.module(x), 1)[0]
        top1 = int(p.argmax())
        split = split_of(entry)
        row = {"name": entry.name, "source": entry.source, "path": entry.path, "split": split,
               "label": entry.imagenet_index, "label_name": entry.imagenet_name, "sure": entry.sure,
               "top1": top1, "top1_name": categories[top1] if categories else str(top1),
               "p_label": round(float(p[entry.imagenet_index]), 4), "correct": top1 == entry.imagenet_index,
               "mask": mask is not None, "size": [int(rgb.shape[1]), int(rgb.shape[0])]}
        rows.append(row)
        if row["correct"]:
            folder = args.out / split
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(folder / f"{entry.name}.png")
            if mask is not None:
                Image.fromarray((mask * 255).astype(np.uint8)).save(folder / f"{entry.name}.mask.png")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pool.json").write_text(json.dumps({"model": args.model, "labels": str(args.labels.name),
                                                    "photos": rows}, indent=1))
    found = [r for r in rows if "missing" not in r]
    for r in rows:
        if "missing" in r:
            print(f"missing: {r['missing']}", file=sys.stderr)
    print(f"{len(entries)} labelled, {len(found)} found" + (f" ({dict(missing)} missing)" if missing else ""))
    for split in ("dev", "test"):
        s = [r for r in found if r["split"] == split]
        ok = [r for r in s if r["correct"]]
        sure = [r for r in s if r["sure"]]
        print(f"{split}: {len(ok)} of {len(s)} classified correctly by {args.model}, {len({r['label'] for r in ok})} "
              f"classes, {sum(r['mask'] for r in ok)} with an object mask; sure labels "
              f"{sum(r['correct'] for r in sure)}/{len(sure)}, likely labels "
              f"{sum(r['correct'] for r in s if not r['sure'])}/{len(s) - len(sure)}")
    return 0 if found else 1


if __name__ == "__main__":
    raise SystemExit(main())
