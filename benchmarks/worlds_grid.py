"""Several pipeline configurations through ``visum benchmark``, side by side (issue 14, section 5).

Each ``--variant NAME='FLAGS'`` is one ``visum benchmark`` run with those pipeline flags on the
same worlds, models and images, into ``OUT/NAME``, through one cache (so swapping the
clusterer reuses the masks). The tables — means per variant, then one row per world × model ×
variant — are printed as Markdown and written to ``OUT/grid.md``. With ``--reuse`` a variant
whose folder holds a ``benchmark.json`` made by the same command, the same config files and the
same visum source is read, not rerun; ``--collect`` only reads the variants' finished tables
(whatever made them) and prints them side by side.

    python benchmarks/worlds_grid.py --worlds dev --models cnn --images 30 \\
        --variant default='' \\
        --variant ap='--clusterer ap' \\
        --variant paper='--saliency crisp --matcher proposal-flow --clusterer ap' \\
        --cache-dir .bench-cache --out visum-out/grid-dev

Choose on dev worlds only; run ``--worlds test`` once, with the configurations chosen.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path


def _source_digest() -> str:
    """A digest of visum's and its plugins' source: --reuse never reads tables an older visum made."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted([*root.glob("visum/**/*.py"), *root.glob("plugins/**/*.py")]):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _mean(rows: list[dict], key: str) -> float:
    values = []
    for r in rows:
        v = r.get(key)
        if v in ("", None):
            continue
        v = float(v)
        if not math.isnan(v):
            values.append(v)
    return sum(values) / len(values) if values else math.nan


def _f(v: float, digits: int = 2) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def means_row(name: str, flags: str, rows: list[dict], min_accuracy: float = 0.0) -> str:
    """One Markdown row of a variant's means over its runs (a run that kept nothing has no purity);
    runs whose model's held-out accuracy is below ``min_accuracy`` count as not run."""
    ok = [r for r in rows if not r.get("error") and float(r.get("val_accuracy") or 0) >= min_accuracy]
    s = run_stats(ok)
    seconds = sum(float(r.get("seconds") or 0) for r in ok)
    return (f"| {name} | `{flags or '(defaults)'}` | {len(ok)}/{len(rows)} | {_f(s['purity'])} | "
            f"{_f(s['recall'])} | {s['false']} | {s['kept']} | {s['worst']} | "
            f"{s['over_two']} | {_f(_mean(ok, 'saliency_on_relied'))} | {seconds:.0f} |")


def run_stats(rows: list[dict]) -> dict:
    """Over counted runs: mean purity (runs that kept a summary) and recall, false summaries and kept
    summaries summed, the most summaries of one part, and the runs with more than two of one part."""
    return {
        "runs": len(rows),
        "purity": _mean(rows, "purity"),
        "recall": _mean(rows, "recall"),
        "false": sum(int(r.get("false_summaries") or 0) for r in rows),
        "kept": sum(int(r.get("kept") or 0) for r in rows),
        "worst": max((int(r.get("redundancy") or 0) for r in rows), default=0),
        "over_two": sum(1 for r in rows if int(r.get("redundancy") or 0) > 2),
    }


MEANS_HEAD = ("| variant | flags | runs | mean purity | mean recall | false summaries | kept | most of one part "
              "| runs with > 2 of a part | saliency on relied-on parts | seconds |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")


def means_rows(name: str, flags: str, rows: list[dict], min_accuracy: float = 0.0) -> list[str]:
    """The variant's means over every run, then, when it ran several architectures, over each one's runs."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    out = [means_row(name, flags, rows, min_accuracy)]
    if len(models) > 1:
        out += [means_row(f"{name} ({m})", flags, [r for r in rows if r["model"] == m], min_accuracy) for m in models]
    return out
ROWS_HEAD = ("| world | model | acc. | variant | kept | purity | recall | false | most of one part | majorities |\n"
             "|---|---|---|---|---|---|---|---|---|---|")


def world_rows(name: str, rows: list[dict]) -> list[str]:
    out = []
    for r in rows:
        if r.get("error"):
            out.append(f"| {r['world']} | {r['model']} | {_f(float(r['val_accuracy']))} | {name} | error: "
                       f"{r['error'][:60]} | | | | | |")
            continue
        out.append(f"| {r['world']} | {r['model']} | {_f(float(r['val_accuracy']))} | {name} | {r['kept']} | "
                   f"{_f(float(r['purity']) if r['purity'] not in ('', None) else math.nan)} | "
                   f"{_f(float(r['recall']) if r['recall'] not in ('', None) else math.nan)} | "
                   f"{r['false_summaries']} | {r['redundancy']} | {r.get('majorities', '')} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worlds", default="dev")
    ap.add_argument("--models", default="cnn")
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                    help="a name and the pipeline flags of `visum benchmark` (repeatable)")
    ap.add_argument("--cache-dir", default=".bench-cache")
    ap.add_argument("--out", default="visum-out/grid")
    ap.add_argument("--min-accuracy", type=float, default=0.9,
                    help="leave runs whose model's held-out accuracy is below this out of the means (default: "
                         "the benchmark's bar, 0.9); the per-world rows list them all")
    ap.add_argument("--reuse", action="store_true", help="read a variant's finished tables instead of rerunning it")
    ap.add_argument("--collect", action="store_true", help="only read the variants' finished tables, run nothing")
    args = ap.parse_args(argv)
    if not args.variant:
        ap.error("give at least one --variant NAME=FLAGS")
    out = Path(args.out)
    results = []
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        if not name or "/" in name:
            ap.error(f"bad --variant {spec!r}: NAME=FLAGS, NAME without '/'")
        folder = out / name
        done = folder / "benchmark.json"
        cmd = [sys.executable, "-m", "visum.cli", "benchmark", "--worlds", args.worlds, "--models", args.models,
               "--images", str(args.images), "--cache-dir", args.cache_dir, "--out", str(folder), "-q",
               *shlex.split(flags)]
        stamp = folder / "grid-command.json"
        identity = {"command": cmd[1:], "visum": _source_digest(),
                    "configs": {a: hashlib.sha256(Path(a).read_bytes()).hexdigest() for a in cmd if a.endswith(".toml")
                                and Path(a).is_file()}}
        same = args.collect or args.reuse and done.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == identity
        if not same:
            print("$", shlex.join(cmd[1:]), file=sys.stderr, flush=True)
            rc = subprocess.call(cmd)
            if rc != 0 or not done.is_file():
                print(f"variant {name}: visum benchmark exited {rc}", file=sys.stderr)
                return 1
            stamp.write_text(json.dumps(identity))
        if not done.is_file():
            print(f"variant {name}: no {done}", file=sys.stderr)
            return 1
        rows = json.loads(done.read_text())["rows"]
        results.append((name, flags, rows))
    lines = [f"Means over runs whose model reaches {args.min_accuracy:g} held-out accuracy "
             "(runs: those counted / all).", "", MEANS_HEAD]
    lines += [line for n, f, r in results for line in means_rows(n, f, r, args.min_accuracy)] + ["", ROWS_HEAD]
    for n, _, r in results:
        lines += world_rows(n, r)
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.md").write_text(text, "utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
