"""``visum benchmark``: one pipeline configuration on every world x model, scored against reliance.

For each world: ``n_images`` held-out images of the main class (the world's ``eval`` stream,
written with their ground truth). For each architecture: the model trained on the world
(:mod:`visum.benchmark.train`, cached), what it relies on (:mod:`visum.benchmark.reliance`,
cached beside it), the pipeline run on the images (through the stage cache, so a rerun
resumes) and its summaries scored (:mod:`visum.benchmark.score`). Rows go to
``benchmark.csv`` and ``benchmark.json``, and an HTML page with a plot to ``benchmark.html``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from visum.atomic import atomic_write, write_text_atomic
from visum.benchmark.reliance import RELIED_ON, PartReliance, part_reliance
from visum.benchmark.score import score_run
from visum.benchmark.train import default_recipe, recipe_dir, trained
from visum.config import ModelConfig, RunConfig
from visum.data.ground_truth import write_samples
from visum.data.worlds import World, make_samples
from visum.errors import InputError

RELIANCE_IMAGES = 40
RELIANCE_FORMAT = 2  # bumped when visum.benchmark.reliance measures differently
#: below this held-out accuracy a model's row is flagged: what it relies on may be noise
ACCURACY_FLOOR = 0.9


def reliance_of(w: World, architecture: str, cache_root: Path, progress: bool = False) -> tuple[list[PartReliance], dict]:
    """``(reliance per part, training metrics)`` of the world's model, the reliance cached beside its weights."""
    from visum.models.files import hash_file

    recipe = default_recipe(w.name, architecture)
    model, metrics = trained(recipe, cache_root, progress=progress)
    folder = recipe_dir(recipe, cache_root)
    weights = hash_file(folder / "model.pt").split(":")[-1][:16]  # a retrained model gets its reliance anew
    path = folder / f"reliance-{RELIANCE_FORMAT}-{RELIANCE_IMAGES}-{RELIED_ON}-{weights}.json"
    try:
        rows = json.loads(path.read_text())
        found = [PartReliance(**r) for r in rows]
        if [r.part for r in found] != w.part_names:
            raise ValueError("parts differ")
    except (OSError, ValueError, TypeError):
        found = part_reliance(model, w, n_images=RELIANCE_IMAGES)
        write_text_atomic(path, json.dumps([asdict(r) for r in found], indent=1))
    return found, metrics


def run_benchmark(base: RunConfig, worlds: list[World], architectures: list[str], n_images: int, out: Path,
                  cache, reporter, cache_root: Path) -> list[dict]:
    """Run ``base`` (its model and images ignored) on every world x architecture; write the tables."""
    from visum.pipeline import Pipeline

    out = Path(out)
    rows = []
    for w in worlds:
        images = out / w.name / "images"
        write_samples(make_samples(w, n_images, purpose="eval", labels=[0]), images, w.class_names, w.part_names,
                      extra={"world": w.name, "purpose": "eval"})
        for arch in architectures:
            reporter.info(f"{w.name} / {arch}")
            reliance, metrics = reliance_of(w, arch, cache_root, progress=not getattr(reporter, "quiet", True))
            relied = [r.part for r in reliance if r.relied_on]
            config = base.model_copy(update={  # the world model's own preprocessing: no user override applies
                "model": ModelConfig(spec=f"world:{w.name}/{arch}"), "images": images, "target": "0",
            })
            run_dir = out / w.name / arch
            start = time.perf_counter()
            accuracy = metrics["val"]["accuracy"]
            row = {"world": w.name, "split": w.split, "model": arch, "val_accuracy": accuracy,
                   "undertrained": accuracy < ACCURACY_FLOOR,
                   "reliance": " ".join(f"{r.part}:{r.mean_drop:.2f}" for r in reliance)}
            try:
                result = Pipeline(config, run_dir, cache=cache, reporter=reporter).run()
                result.save()
            except InputError as e:
                row.update(error=str(e), seconds=round(time.perf_counter() - start, 1))
                rows.append(row)
                write_tables(rows, out, base)
                continue
            score = score_run(result.manifest, run_dir, relied)
            row.update(score.row(), seconds=round(time.perf_counter() - start, 1),
                       used=sum(im.used for im in result.manifest.images), error="")
            rows.append(row)
            write_tables(rows, out, base)  # after every row: an interrupted benchmark keeps what it measured
    write_tables(rows, out, base)
    return rows


COLUMNS = ["world", "split", "model", "val_accuracy", "undertrained", "used", "kept", "purity", "recall",
           "false_summaries", "impure", "redundancy", "member_coverage", "nmi", "saliency_on_relied", "relied_area",
           "relied", "recovered", "majorities", "reliance", "seconds", "error"]


def write_tables(rows: list[dict], out: Path, base: RunConfig) -> None:
    from visum.config import config_to_dict

    out.mkdir(parents=True, exist_ok=True)
    with atomic_write(out / "benchmark.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in COLUMNS})
    write_text_atomic(out / "benchmark.json", json.dumps({"config": config_to_dict(base), "rows": rows}, indent=1,
                                                          default=str))
    write_text_atomic(out / "benchmark.html", _html(rows, config_to_dict(base)))


def summary(rows: list[dict]) -> dict:
    """Means over the rows that ran: purity, recall, false summaries, kept."""
    ok = [r for r in rows if not r.get("error")]

    def mean(key):
        values = [float(r[key]) for r in ok if r.get(key) not in ("", None) and not math.isnan(float(r[key]))]
        return sum(values) / len(values) if values else math.nan

    return {"runs": len(rows), "ran": len(ok), "purity": mean("purity"), "recall": mean("recall"),
            "false_summaries": mean("false_summaries"), "kept": mean("kept"),
            "kept_nothing": sum(1 for r in ok if int(r.get("kept") or 0) == 0)}


def _html(rows: list[dict], config: dict) -> str:
    import base64
    import html
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r.get("error") and not math.isnan(float(r["recall"]))
          and not math.isnan(float(r["purity"]))]  # runs without relied-on parts or kept summaries have no point
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in ok:
        ax.scatter(float(r["recall"]), float(r["purity"]),
                   marker={"cnn": "o", "resnet": "s", "vit": "^"}.get(r["model"], "x"))
        ax.annotate(f"{r['world']}/{r['model']}", (float(r["recall"]), float(r["purity"])), fontsize=7)
    ax.set_xlabel("recall of relied-on parts")
    ax.set_ylabel("mean purity")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    img = base64.b64encode(buf.getvalue()).decode()

    def cell(v):
        if isinstance(v, float):
            return "n/a" if math.isnan(v) else f"{v:.3f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in COLUMNS) + "</tr>" for r in rows)
    means = summary(rows)
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>visum benchmark</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:24px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ddd;padding:3px 6px;font-size:12px}</style></head><body>"
        f"<h1>visum benchmark</h1><p>{len(rows)} runs ({means['kept_nothing']} kept no summary; "
        f"{sum(1 for r in rows if r.get('error'))} failed); mean purity {cell(means['purity'])} (over runs that "
        f"kept a summary), recall {cell(means['recall'])}, false summaries {cell(means['false_summaries'])} per "
        f"run. Rows marked undertrained have a held-out accuracy below {ACCURACY_FLOOR}.</p>"
        f"<img alt=\"purity against recall per world and model\" src=\"data:image/png;base64,{img}\">"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<h2>Configuration</h2><pre>{html.escape(json.dumps(config, indent=1))}</pre></body></html>\n"
    )
