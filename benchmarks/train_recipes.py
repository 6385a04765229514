"""Held-out accuracy of the worlds' models under several training recipes, side by side.

A world's model is worth explaining only when it has learnt the world: the benchmark leaves out
models below 0.9 held-out accuracy (``worlds_grid.py --min-accuracy``). This trains each
architecture on each world with each ``--recipe NAME=key:value,...`` (overrides of
:data:`visum.benchmark.train.DEFAULTS`: ``epochs``, ``n_per_class``, ``lr``, ``batch_size``),
through the same cache as ``visum benchmark`` (a recipe already trained is loaded), and prints
one Markdown table: accuracy on the world's ``val`` stream (which neither training nor the
explained ``eval`` images use) and training seconds.

    python benchmarks/train_recipes.py --worlds dev --models cnn,vit \\
        --recipe default= --recipe long=epochs:24,n_per_class:600 --cache-dir .bench-cache

Recipes are chosen on dev worlds only (docs/worlds.md, "Training recipes").
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from visum.benchmark.train import Recipe, default_recipe, recipe_dir, trained  # noqa: E402
from visum.data.worlds import worlds  # noqa: E402

KEYS = {"epochs": int, "n_per_class": int, "lr": float, "batch_size": int}


def parse_recipe(text: str) -> tuple[str, dict]:
    """``NAME=key:value,...`` → ``(NAME, overrides)``; an empty right side is the default recipe."""
    name, sep, body = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--recipe {text!r}: write NAME=key:value,... (keys: {', '.join(KEYS)})")
    overrides = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition(":")
        if key not in KEYS:
            raise SystemExit(f"--recipe {text!r}: unknown key {key!r} (keys: {', '.join(KEYS)})")
        overrides[key] = KEYS[key](value)
    return name, overrides


def recipe_for(world_name: str, architecture: str, overrides: dict) -> Recipe:
    return replace(default_recipe(world_name, architecture), **overrides)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", default="dev", help="dev, test, all or a comma-separated list of worlds")
    ap.add_argument("--models", default="cnn", help="comma-separated architectures")
    ap.add_argument("--recipe", action="append", default=[], metavar="NAME=key:value,...")
    ap.add_argument("--cache-dir", default=".bench-cache")
    ap.add_argument("--bar", type=float, default=0.9, help="the accuracy a model needs to be explained")
    ap.add_argument("--out", default=None, help="also write the rows as JSON to this file")
    args = ap.parse_args(argv)

    if args.worlds in ("dev", "test", "all"):
        names = [w.name for w in worlds(args.worlds)]
    else:
        names = [n for n in args.worlds.split(",") if n]
    recipes = [parse_recipe(r) for r in (args.recipe or ["default="])]
    archs = [a for a in args.models.split(",") if a]
    rows = []
    for arch in archs:
        for rname, overrides in recipes:
            for name in names:
                recipe = recipe_for(name, arch, overrides)
                _, metrics = trained(recipe, Path(args.cache_dir), progress=False)
                # wall_time_s is the training run's own, also when the weights were loaded from the cache
                rows.append({"architecture": arch, "recipe": rname, "world": name,
                             "accuracy": metrics["val"]["accuracy"], "seconds": metrics["wall_time_s"],
                             "folder": recipe_dir(recipe, Path(args.cache_dir)).name,
                             "settings": {k: getattr(recipe, k) for k in KEYS}})
                print(f"{arch:7s} {rname:10s} {name:10s} acc {rows[-1]['accuracy']:.3f}  "
                      f"{rows[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)

    print(f"| architecture | recipe | settings | {' | '.join(names)} | models ≥ {args.bar:g} | mean acc. | train s |")
    print("|---|---|---|" + "---|" * len(names) + "---|---|---|")
    for arch in archs:
        for rname, _ in recipes:
            mine = [r for r in rows if r["architecture"] == arch and r["recipe"] == rname]
            s = mine[0]["settings"]
            settings = f"{s['epochs']} ep, {s['n_per_class']}/class, lr {s['lr']:g}"
            cells = " | ".join(f"{r['accuracy']:.2f}" for r in mine)
            passed = sum(r["accuracy"] >= args.bar for r in mine)
            mean = sum(r["accuracy"] for r in mine) / len(mine)
            print(f"| {arch} | {rname} | {settings} | {cells} | {passed}/{len(mine)} | {mean:.3f} | "
                  f"{sum(r['seconds'] for r in mine):.0f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
