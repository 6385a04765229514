"""Ablations: the pipeline run from one base configuration with one component (or setting) changed at a time.

``visum ablate --vary saliency=gradient,iebb,crisp --vary clusterer=ap,agglomerative`` runs
the base configuration, then one variant per value that differs from the base (or, with
``--grid``, every combination), each exactly as ``visum run --config VARIANT/run.toml``
would. Every variant reads and writes the same cache, so a stage whose inputs a variant
shares with an earlier one is not recomputed: changing the clusterer reuses the masks,
proposals and matches; changing the matcher reuses the masks and proposals.

Each variant is scored with :mod:`visum.evaluate.summaries` when its images carry
parts-benchmark ground truth; the table has the scores, the number of clusters and kept
summaries, the time of each variant and its cache hits and misses.

A change is ``KIND=NAME`` (a component; the base's options of that kind are dropped when
the name differs, since they belong to the base's component), ``KIND.KEY=VALUE`` (an option
of the component of that kind) or ``SECTION.KEY=VALUE`` / ``KEY=VALUE`` for any other
setting of the run configuration (``regions.threshold=0.5``, ``seed=1``).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visum.atomic import atomic_write, write_text_atomic
from visum.cache import Cache
from visum.components import KINDS
from visum.config import RunConfig, make_config, parse_value
from visum.errors import ConfigError, VisumError
from visum.evaluate.summaries import GroundTruthScores, evaluate_run

__all__ = [
    "AblationRow",
    "Change",
    "Variant",
    "apply_changes",
    "check_variants",
    "markdown_table",
    "parse_vary",
    "plan_variants",
    "run_ablation",
    "table_rows",
    "write_tables",
]

Change = tuple[str, Any]  # ("saliency", "crisp"), ("clusterer.preference_quantile", 0.3), ("seed", 1)


@dataclass(frozen=True)
class Variant:
    """One configuration of an ablation: its name, what differs from the base, the full configuration."""

    name: str
    changes: tuple[Change, ...]
    config: RunConfig


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """``"KEY=V1,V2,..."`` -> ``(KEY, [V1, V2, ...])``, values read as TOML scalars (``0.5``, ``true``) or strings."""
    key, sep, values = text.partition("=")
    key = key.strip()
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not key or not items:
        raise ConfigError(f"bad --vary '{text}': expected KEY=V1,V2,... e.g. saliency=gradient,crisp")
    return key, [parse_value(v) for v in items]


def _change_label(change: Change) -> str:
    return f"{change[0]}={change[1]}"


def apply_changes(base: RunConfig, changes: Sequence[Change]) -> RunConfig:
    """The base configuration with ``changes`` applied, validated (``ConfigError`` naming the change)."""
    data = base.model_dump(mode="python")
    for key, value in changes:
        head, dot, rest = key.partition(".")
        if head in KINDS and not dot:
            if str(value) != data[head]:
                data["options"].pop(head, None)  # the base component's options do not fit another one
            data[head] = str(value)
        elif head in KINDS:
            data["options"].setdefault(head, {})[rest] = value
        else:
            node = data
            path = key.split(".")
            for part in path[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"bad --vary key '{key}': '{part}' is not a section of the run configuration")
                node = node[part]
            if path[-1] not in node:
                raise ConfigError(f"bad --vary key '{key}': no such setting in the run configuration")
            node[path[-1]] = value
    try:
        return make_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{', '.join(map(_change_label, changes))}: {exc}") from None


def _current(base: RunConfig, key: str) -> Any:
    head, dot, rest = key.partition(".")
    if head in KINDS and not dot:
        return getattr(base, head)
    if head in KINDS:  # the option's effective value: the base's setting, else the component's default
        from visum.plugins import get_catalogue

        try:
            options = get_catalogue().options(head, base.component(head), base.component_options(head))
        except VisumError:
            return base.options.get(head, {}).get(rest)
        return getattr(options, rest, None)
    node: Any = base.model_dump(mode="python")
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def plan_variants(base: RunConfig, varies: Sequence[tuple[str, list[Any]]], grid: bool = False) -> list[Variant]:
    """The base first, then one variant per value that differs from the base (``grid``: every combination).

    A value equal to the base's is the base itself and is not run twice. Names are the
    changes, ``"saliency=crisp"``, or ``"saliency=crisp matcher=hog"`` in a grid.
    """
    variants = [Variant("base", (), base)]
    seen = {()}
    if grid:
        combos = itertools.product(*[[(key, v) for v in values] for key, values in varies])
    else:
        combos = ([(key, v)] for key, values in varies for v in values)
    for combo in combos:
        changes = tuple(c for c in combo if c[1] != _current(base, c[0]) and str(c[1]) != str(_current(base, c[0])))
        if changes in seen:
            continue
        seen.add(changes)
        variants.append(Variant(" ".join(map(_change_label, changes)), changes, apply_changes(base, changes)))
    return variants


@dataclass
class AblationRow:
    """What one variant gave."""

    variant: Variant
    out_dir: Path
    n_clusters: int = 0
    n_kept: int = 0
    scores: GroundTruthScores | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    error: str | None = None


def _dir_name(k: int, variant: Variant) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in variant.name.replace(" ", "_"))
    return f"{k:02d}-{safe}"[:120]


def check_variants(variants: Sequence[Variant]) -> None:
    """Resolve every variant's components and options before any work; the error names the variant."""
    from visum.plugins import get_catalogue

    catalogue = get_catalogue()
    for variant in variants:
        for kind in KINDS:
            try:
                info = catalogue.get(kind, variant.config.component(kind))
                catalogue.options(kind, info.name, variant.config.component_options(kind))
            except VisumError as exc:
                raise type(exc)(f"variant '{variant.name}': {exc}") from None


def run_ablation(
    variants: Sequence[Variant],
    out_dir: Path,
    *,
    cache_root: Path | None = None,
    cache_enabled: bool = True,
    reporter=None,
    score_settings: dict[str, Any] | None = None,
) -> list[AblationRow]:
    """Run every variant into ``out_dir/NN-<name>`` through one cache and score it.

    A variant that fails with a user error (e.g. too few images classified as the target)
    gets its message in ``error`` and the others still run.
    """
    from visum.pipeline import Pipeline

    check_variants(variants)
    out_dir = Path(out_dir)
    rows = []
    for k, variant in enumerate(variants):
        run_dir = out_dir / _dir_name(k, variant)
        if reporter is not None:
            reporter.info(f"[{k + 1}/{len(variants)}] {variant.name}")
        cache = Cache(cache_root, enabled=cache_enabled)
        row = AblationRow(variant, run_dir)
        try:
            result = Pipeline(variant.config, run_dir, cache=cache, reporter=reporter).run()
            result.save()
        except VisumError as exc:
            row.error = str(exc)
            row.cache_hits, row.cache_misses = cache.hits, cache.misses
            rows.append(row)
            continue
        m = result.manifest
        row.n_clusters, row.n_kept = len(m.summaries), len(m.kept_summaries)
        row.timings = dict(m.timings)
        row.cache_hits, row.cache_misses = result.cache_hits, result.cache_misses
        try:
            row.scores = evaluate_run(run_dir, **(score_settings or {}))
        except VisumError:
            row.scores = None  # no ground truth: the table shows counts and timings only
        rows.append(row)
    return rows


def table_rows(rows: Sequence[AblationRow]) -> list[dict[str, Any]]:
    """One flat dictionary per variant (the CSV's rows)."""
    out = []
    for r in rows:
        cfg = r.variant.config
        d: dict[str, Any] = {"variant": r.variant.name}
        d.update({kind: cfg.component(kind) for kind in KINDS})
        d.update({"clusters": r.n_clusters, "kept": r.n_kept})
        s = r.scores
        nan = float("nan")
        d.update({
            "mean_purity": s.mean_purity if s else nan,
            "coverage": s.coverage if s else nan,
            "purity_x_coverage": s.mean_purity * s.coverage if s else nan,
            "parts_recovered": " ".join(s.parts_recovered) if s else "",
            "nmi": s.nmi if s else nan,
            "mu_s": s.mu_s if s else nan,
            "mu_r": s.mu_r if s else nan,
            "background_share": s.background_share if s else nan,
            "region_coverage": " ".join(f"{k}={v:.2f}" for k, v in s.region_coverage.items()) if s else "",
            "members": s.n_members if s else 0,
        })
        d.update({
            "time_s": round(sum(r.timings.values()), 2),
            "saliency_s": round(r.timings.get("saliency", nan), 2),
            "matching_s": round(r.timings.get("matching", nan), 2),
            "clustering_s": round(r.timings.get("clustering", nan), 3),
            "cache_hits": r.cache_hits,
            "cache_misses": r.cache_misses,
            "error": r.error or "",
            "run_dir": r.out_dir.as_posix(),
        })
        out.append(d)
    return out


def _fmt(v: Any, digits: int = 2) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def markdown_table(rows: Sequence[AblationRow]) -> str:
    """The ablation as a Markdown table; component columns shown for saliency, matcher, clusterer
    and any other kind that differs between variants."""
    data = table_rows(rows)
    kinds = [k for k in KINDS if k in ("saliency", "matcher", "clusterer") or len({d[k] for d in data}) > 1]
    head = ["variant", *kinds, "clusters", "kept", "members", "purity", "coverage", "purity×cov.", "NMI", "μ_S",
            "μ_R", "time s", "misses"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * (1 + len(kinds)) + ["---:"] * 11) + "|"]
    for d in data:
        if d["error"]:
            cells = [d["variant"], *[d[k] for k in kinds], "error: " + d["error"], *[""] * 10]
        else:
            cov = f"{_fmt(d['coverage'])} ({d['parts_recovered'].count(' ') + 1 if d['parts_recovered'] else 0})" \
                if not math.isnan(d["coverage"]) else "–"
            cells = [d["variant"], *[d[k] for k in kinds], d["clusters"], d["kept"], d["members"],
                     _fmt(d["mean_purity"]), cov,
                     _fmt(d["purity_x_coverage"]), _fmt(d["nmi"]), _fmt(d["mu_s"]), _fmt(d["mu_r"]),
                     _fmt(d["time_s"], 1), d["cache_misses"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(rows: Sequence[AblationRow], out_dir: Path) -> dict[str, Path]:
    """``ablation.md``, ``ablation.csv`` and ``ablation.json`` (with each variant's configuration) in ``out_dir``."""
    from visum.config import config_to_dict

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = table_rows(rows)
    paths = {"md": out_dir / "ablation.md", "csv": out_dir / "ablation.csv", "json": out_dir / "ablation.json"}
    write_text_atomic(paths["md"], markdown_table(rows))
    with atomic_write(paths["csv"], "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(data[0]) if data else ["variant"])
        writer.writeheader()
        writer.writerows(data)
    full = [
        {**d, "changes": [list(c) for c in r.variant.changes], "config": config_to_dict(r.variant.config),
         "scores": r.scores.as_dict() if r.scores else None}
        for d, r in zip(data, rows)
    ]
    write_text_atomic(paths["json"], json.dumps(full, indent=1, default=str, allow_nan=True))
    return paths
