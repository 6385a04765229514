"""Pool the runs of several ``worlds_grid.py`` outputs by variant and apply a choice rule (issue 14).

Each ``--grid DIR`` is a folder that ``benchmarks/worlds_grid.py`` wrote: one sub-folder per
variant holding a ``benchmark.json``. The runs of a variant (one per world × model × image
count) are pooled over every grid given; a variant missing a run the baseline made (same world, model
and image count) is listed as incomplete and never chosen; a run found in several grids is
taken from the last one given. Runs whose model is below ``--min-accuracy``
held-out accuracy do not count, as in ``worlds_grid.py``.

The rule (docs/benchmark.md, written before the runs): among variants with pooled mean purity
≥ ``--min-purity`` (over runs that kept a summary, as in ``worlds_grid.py``) and mean recall at
most ``--recall-slack`` below the baseline's, the fewest runs with more than two summaries of one
part; ties go to the higher recall, then fewer false summaries, then the baseline. Variants the
rule cannot tell apart are printed as such.

    python benchmarks/pool_grids.py --grid visum-out/grid-dev-merge-30 --grid visum-out/grid-dev-merge-30c \\
        --grid visum-out/grid-dev-merge-100a --baseline default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worlds_grid import run_stats  # noqa: E402  (a sibling script, not a package)


def _images_asked(variant: Path) -> str | None:
    """The ``--images`` of the command that made a variant's table (``grid-command.json``), if recorded."""
    try:
        command = json.loads((variant / "grid-command.json").read_text("utf-8"))["command"]
        return str(command[command.index("--images") + 1])
    except (OSError, ValueError, KeyError, IndexError):
        return None


def read_grids(grids: list[Path], min_accuracy: float) -> dict[str, dict[tuple, dict]]:
    """``{variant: {(world, model, images asked): row}}`` over every grid folder given, counted runs
    only; a run found in several grids is taken from the last one given."""
    out: dict[str, dict[tuple, dict]] = {}
    for grid in grids:
        if not grid.is_dir():
            raise SystemExit(f"--grid {grid}: no such folder")
        for table in sorted(grid.glob("*/benchmark.json")):
            try:
                rows = json.loads(table.read_text("utf-8"))["rows"]
            except (OSError, ValueError, KeyError) as exc:
                raise SystemExit(f"{table}: not a benchmark table ({exc})") from None
            images = _images_asked(table.parent)
            for r in rows:
                if not r.get("error") and float(r.get("val_accuracy") or 0) >= min_accuracy:
                    out.setdefault(table.parent.name, {})[(r["world"], r["model"], images or r.get("used"))] = r
    return out


def choose(stats: dict[str, dict], baseline: str, min_purity: float, recall_slack: float) -> list[str]:
    """The variants that pass the bars, best first by the rule; ``[]`` when none passes."""
    floor = stats[baseline]["recall"] - recall_slack
    passing = [v for v, s in stats.items() if s["purity"] >= min_purity and s["recall"] >= floor - 1e-9]
    return sorted(passing, key=lambda v: (rule_key(stats, v, baseline), v))


def rule_key(stats: dict[str, dict], variant: str, baseline: str) -> tuple:
    """What the rule ranks by: runs with > 2 of a part, then recall, then false summaries, then the baseline."""
    s = stats[variant]
    return (s["over_two"], -round(s["recall"], 9), s["false"], variant != baseline)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", action="append", type=Path, default=[], help="a worlds_grid.py output folder (repeatable)")
    ap.add_argument("--baseline", default="default", help="the variant the others are held against")
    ap.add_argument("--min-accuracy", type=float, default=0.9)
    ap.add_argument("--min-purity", type=float, default=0.9)
    ap.add_argument("--recall-slack", type=float, default=0.05)
    args = ap.parse_args(argv)
    if not args.grid:
        ap.error("give at least one --grid DIR")
    by_variant = read_grids(args.grid, args.min_accuracy)
    if args.baseline not in by_variant:
        print(f"--baseline {args.baseline}: no such variant in the grids", file=sys.stderr)
        return 2
    # The baseline's runs are the yardstick: a variant counts only where it ran every one of them.
    needed = set(by_variant[args.baseline])
    complete, incomplete = {}, []
    for variant, runs in by_variant.items():
        if needed <= set(runs):
            complete[variant] = run_stats([runs[k] for k in sorted(needed)])
        else:
            incomplete.append(variant)
    order = choose(complete, args.baseline, args.min_purity, args.recall_slack)
    print(f"Pooled over {complete[args.baseline]['runs']} counted runs ({len(args.grid)} grids); bars: purity ≥ "
          f"{args.min_purity:g}, recall ≥ {complete[args.baseline]['recall'] - args.recall_slack:.3f}.\n")
    print("| variant | runs | mean purity | mean recall | false | kept | most of one part | runs with > 2 of a part | passes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for v in sorted(complete, key=lambda v: (v not in order, order.index(v) if v in order else 0, v)):
        s = complete[v]
        print(f"| {v} | {s['runs']} | {s['purity']:.3f} | {s['recall']:.3f} | {s['false']} | {s['kept']} | "
              f"{s['worst']} | {s['over_two']} | {'yes' if v in order else 'no'} |")
    if incomplete:
        print(f"\nincomplete (missing runs the baseline made): {', '.join(sorted(incomplete))}")
    tied = [v for v in order if rule_key(complete, v, args.baseline) == rule_key(complete, order[0], args.baseline)]
    if len(tied) > 1:
        print(f"\nthe rule does not decide between: {', '.join(tied)}")
    else:
        print(f"\nchosen by the rule: {order[0] if order else 'none passes'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
