"""The experiments of Sec. 4.3 and 4.4, orchestrated: models, images, pipeline runs, results.

The maths lives in :mod:`.accuracy` and :mod:`.specialise`; this module loads (or trains)
the models, picks the images, runs visum's pipeline once per (model, class) with the
configured components, and collects the numbers. Every pipeline run writes its usual
output folder (manifest, summaries, report) under ``out/runs/<model>/<class>/`` and uses
the stage cache, so a rerun only repeats what changed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from visum.cache import Cache, make_key
from visum.components import KINDS
from visum.config import RunConfig
from visum.errors import ConfigError
from visum.experiments.accuracy import (
    Correlation,
    first_correct,
    mean_kept,
    spearman,
    top1_accuracy,
)
from visum.experiments.data import (
    LabelledImages,
    class_folders,
    parts_split,
    split_folders,
    stage,
)
from visum.experiments.features import features_and_probs
from visum.experiments.models import ModelRef, resolve_weights
from visum.experiments.specialise import (
    Summary,
    SummarySVMs,
    choose_weight,
    combine,
    mcnemar_p,
    normalise_scores,
)
from visum.models.base import LoadedModel
from visum.pipeline import Reporter

# ----------------------------------------------------------------------------- shared


@dataclass
class ClassRun:
    """One pipeline run: the class explained, on how many images, and what came out."""

    label: int
    name: str
    images: int
    clusters: int = 0
    kept: int = 0
    run_dir: str | None = None
    note: str = ""
    regions_per_image: float = float("nan")  # salient regions (connected components) per used image
    salient_area: float = float("nan")  # their total area per used image, as a fraction of the view


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_") or "model"


def load_ref(ref: ModelRef, base: RunConfig, cache_root: Path, threads: int, progress: bool) -> tuple[LoadedModel, str | None]:
    """Load ``ref`` (training its recipe first when it is not cached) as ``base.model`` says, ``(model, weights)``."""
    from visum.models.loading import load_configured_model

    weights = resolve_weights(ref, cache_root, threads=threads, progress=progress)
    model = load_configured_model(base.model.model_copy(update={"spec": ref.spec, "weights": weights}), base.device)
    return model, weights


@torch.no_grad()
def predict(model: LoadedModel, data: LabelledImages, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Top-1 class ``[N]`` of every image, with the model's own preprocessing."""
    views = data.views(model)
    out = []
    for start in range(0, len(views), batch_size):
        x = model.preprocessing.to_tensor(views[start : start + batch_size]).to(device)
        out.append(model.module(x).argmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def explain_class(
    model: LoadedModel, ref: ModelRef, weights: str | None, data: LabelledImages, label: int,
    base: RunConfig, run_dir: Path, cache: Cache, reporter: Reporter,
) -> tuple[ClassRun, list[Summary]]:
    """Run the pipeline on ``data`` (images of class ``label``) and return its kept summaries as indices into ``data``.

    The pipeline drops the images the model misclassifies, as the paper does; with fewer
    than two left there is nothing to summarise and the class gets no summaries.
    """
    from visum.pipeline import Pipeline

    name = data.class_names.get(label) or (model.class_names[label] if model.class_names else str(label))
    correct = int((predict(model, data, device=base.device) == label).sum()) if len(data) else 0
    if correct < 2:
        return ClassRun(label, name, correct, note=f"{correct} of {len(data)} images classified as the class"), []
    names = stage(data, run_dir / "images")
    cfg = base.model_copy(update={
        "model": base.model.model_copy(update={"spec": ref.spec, "weights": weights}),
        "images": run_dir / "images", "target": str(label), "keep_misclassified": False,
    })
    result = Pipeline(cfg, run_dir, cache=cache, reporter=reporter).run()
    result.save()
    manifest = result.manifest
    index = {n: i for i, n in enumerate(names)}
    path_of = {im.id: Path(im.path).name for im in manifest.images}
    summaries = [
        Summary(label, tuple(sorted({index[path_of[m.image]] for m in s.members})))
        for s in manifest.kept_summaries
    ]
    used = [im for im in manifest.images if im.used]
    side = model.preprocessing.input_size
    run = ClassRun(label, name, len(used), len(manifest.summaries), len(summaries), str(run_dir),
                   regions_per_image=float(np.mean([len(im.regions) for im in used])),
                   salient_area=float(np.mean([sum(r.area for r in im.regions) for im in used])) / side**2)
    return run, summaries


# ----------------------------------------------------------------------------- Sec. 4.3


@dataclass
class ModelRow:
    label: str
    spec: str
    weights: str | None
    parameters: int
    recipe: dict | None
    accuracy: float
    held_out_images: int
    classes: list[ClassRun] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mean_kept(self) -> float:
        return mean_kept([c.kept for c in self.classes])

    @property
    def mean_clusters(self) -> float:
        return mean_kept([c.clusters for c in self.classes])

    @property
    def salient_area(self) -> float:
        """Mean salient area per image (fraction of the view) over the explained classes."""
        return mean_kept([c.salient_area for c in self.classes if c.images >= 2])

    @property
    def mean_kept_explained(self) -> float:
        """Mean kept summaries over the classes the model could be explained on (at least 2 correct images)."""
        return mean_kept([c.kept for c in self.classes if c.images >= 2])


@dataclass
class AccuracyReport:
    rows: list[ModelRow]
    kept_vs_accuracy: Correlation
    clusters_vs_accuracy: Correlation
    explained_vs_accuracy: Correlation
    explained_vs_salient_area: Correlation
    components: dict[str, str]
    settings: dict

    def to_json(self) -> dict:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d.update(mean_kept=r.mean_kept, mean_clusters=r.mean_clusters, mean_kept_explained=r.mean_kept_explained,
                     salient_area=r.salient_area)
            rows.append(d)
        return {"rows": rows, "kept_vs_accuracy": asdict(self.kept_vs_accuracy),
                "clusters_vs_accuracy": asdict(self.clusters_vs_accuracy),
                "explained_vs_accuracy": asdict(self.explained_vs_accuracy),
                "explained_vs_salient_area": asdict(self.explained_vs_salient_area),
                "components": self.components, "settings": self.settings}


def held_out_accuracy(model: LoadedModel, data: LabelledImages, cache: Cache, device: str = "cpu") -> float:
    """Top-1 accuracy of ``model`` on ``data``, cached under the model's fingerprint and the images' hash."""
    from visum.cache import content_hash

    key = make_key("experiment-accuracy", model=model.fingerprint,
                   images=content_hash(*data.images, data.labels))
    return cache.get_or_compute(
        "experiments", key, lambda: top1_accuracy(predict(model, data, device=device), data.labels)
    )


def summaries_vs_accuracy(
    refs: Sequence[ModelRef],
    base: RunConfig,
    out: Path,
    *,
    images_per_class: int = 30,
    pool_per_class: int = 240,
    held_out_per_class: int = 200,
    classes: Sequence[int] | None = None,
    images: Path | None = None,
    held_out: Path | None = None,
    cache: Cache | None = None,
    reporter: Reporter | None = None,
    threads: int = 2,
    progress: bool = False,
    models_root: Path | None = None,
) -> AccuracyReport:
    """Sec. 4.3: per model, held-out accuracy and the mean number of kept summaries per class.

    Parts models (``refs`` with ``spec == "parts"``): each class is explained on the first
    ``images_per_class`` of ``pool_per_class`` fresh images of it that the model classifies
    correctly; accuracy is measured on the benchmark's held-out set (seed 999,
    ``held_out_per_class`` images per class, the set of ``parts-cnn.json``). Other models:
    ``images`` and ``held_out`` are folders of class subfolders; the explained classes are
    the subfolders of ``images``. Trained recipes are kept under ``models_root`` (default:
    the cache's root).
    """
    from visum.data.parts import CLASS_NAMES
    from visum.models.train_parts import HELD_OUT_SEED

    cache = cache if cache is not None else Cache()
    reporter = reporter or Reporter()
    if not refs:
        raise ConfigError("summaries-vs-accuracy needs at least one model")
    out = Path(out)
    pools: dict[int, LabelledImages] = {}
    rows = []
    for ref in refs:
        start = time.perf_counter()
        reporter.info(f"model {ref.label}: loading{' (training on first use)' if ref.recipe else ''}")
        model, weights = load_ref(ref, base, models_root or cache.root, threads, progress=progress)
        if ref.is_parts:
            from visum.data.parts import make_dataset
            from visum.experiments.data import parts_images

            test = parts_images(make_dataset(held_out_per_class, seed=HELD_OUT_SEED), CLASS_NAMES)
            wanted = list(classes) if classes is not None else list(range(len(CLASS_NAMES)))
            for c in wanted:
                if c not in pools:
                    pools[c] = parts_split("summaries", pool_per_class, seed=base.seed, labels=[c])
            per_class = {c: pools[c] for c in wanted}
            select = images_per_class
        else:
            if images is None or held_out is None:
                raise ConfigError(f"model {ref.spec!r}: give --images and --held-out (folders of class subfolders)")
            test = class_folders(held_out, model)
            data = class_folders(images, model)
            per_class = {int(c): data.of_class(int(c)) for c in np.unique(data.labels)}
            select = images_per_class
        accuracy = held_out_accuracy(model, test, cache, base.device)
        reporter.info(f"model {ref.label}: held-out accuracy {accuracy:.4f} on {len(test)} images")
        runs = []
        for c, pool in per_class.items():
            pred = predict(model, pool, device=base.device)
            chosen = pool.subset(first_correct(pred, c, select))
            run_dir = out / "runs" / _slug(ref.label) / _slug(pool.class_names.get(c, str(c)))
            run, _ = explain_class(model, ref, weights, chosen, c, base, run_dir, cache, reporter)
            runs.append(run)
            reporter.info(f"  {run.name}: {run.kept} kept of {run.clusters} clusters on {run.images} images {run.note}")
        rows.append(ModelRow(
            ref.label, ref.spec, weights, sum(p.numel() for p in model.module.parameters()),
            asdict(ref.recipe) if ref.recipe else None, accuracy, len(test), runs,
            round(time.perf_counter() - start, 1),
        ))
    acc = [r.accuracy for r in rows]
    report = AccuracyReport(
        rows, spearman(acc, [r.mean_kept for r in rows]), spearman(acc, [r.mean_clusters for r in rows]),
        spearman(acc, [r.mean_kept_explained for r in rows]),
        spearman([r.salient_area for r in rows], [r.mean_kept_explained for r in rows]),
        {kind: base.component(kind) for kind in KINDS},
        {"images_per_class": images_per_class, "pool_per_class": pool_per_class,
         "held_out_per_class": held_out_per_class, "seed": base.seed, "options": base.options,
         "threads": threads},
    )
    return report


# ----------------------------------------------------------------------------- Sec. 4.4


@dataclass
class SpecialiseResult:
    label: str
    spec: str
    feature_layer: str
    feature_dim: int
    split_sizes: dict[str, int]
    summaries_per_class: dict[str, int]
    positives_per_summary: float
    weight: float
    validation: dict[str, float]  # network, chosen, svm_only
    test: dict[str, float]  # network, specialised, svm_only
    fixed: int  # test images wrong before, right after
    broken: int  # right before, wrong after
    mcnemar_p: float  # exact McNemar p-value of fixed vs broken
    weight_grid: list[float]
    validation_curve: list[float]
    class_svms: dict[str, float] = field(default_factory=dict)  # control: one SVM per class on the pooled positives
    classes: list[ClassRun] = field(default_factory=list)
    seconds: float = 0.0


def specialise(
    ref: ModelRef,
    base: RunConfig,
    out: Path,
    *,
    train_per_class: int = 40,
    validation_per_class: int = 200,
    test_per_class: int = 400,
    images: Path | None = None,
    fractions: tuple[float, float, float] = (0.4, 0.2, 0.4),
    C: float = 1.0,
    steps: int = 21,
    cache: Cache | None = None,
    reporter: Reporter | None = None,
    threads: int = 2,
    progress: bool = False,
    models_root: Path | None = None,
) -> SpecialiseResult:
    """Sec. 4.4 on one model: summaries from the train split, SVMs, ``lambda`` on validation, accuracy on test.

    Parts models draw the three splits from their own seeds; other models split the class
    subfolders of ``images`` by ``fractions`` (seeded).
    """
    from visum.data.parts import CLASS_NAMES

    cache = cache if cache is not None else Cache()
    reporter = reporter or Reporter()
    start = time.perf_counter()
    model, weights = load_ref(ref, base, models_root or cache.root, threads, progress=progress)
    if ref.is_parts:
        splits = {
            "train": parts_split("train", train_per_class, base.seed),
            "validation": parts_split("validation", validation_per_class, base.seed),
            "test": parts_split("test", test_per_class, base.seed),
        }
        n_classes = len(CLASS_NAMES)
    else:
        if images is None:
            raise ConfigError(f"model {ref.spec!r}: give --images (a folder of class subfolders)")
        from visum.models.loading import num_classes

        splits = split_folders(class_folders(images, model), fractions, base.seed)
        n_classes = num_classes(model)
    for name, data in splits.items():
        if len(np.unique(data.labels)) < 2:
            raise ConfigError(f"the {name} split has fewer than two classes; give more images per class")
    feats, probs = {}, {}
    for name, data in splits.items():
        feats[name], probs[name], layer = features_and_probs(model, data.views(model), device=base.device)
    train = splits["train"]
    summaries: list[Summary] = []
    runs = []
    for c in np.unique(train.labels).tolist():
        members = np.flatnonzero(train.labels == c)
        run_dir = Path(out) / "runs" / _slug(ref.label) / _slug(train.class_names.get(c, str(c)))
        run, found = explain_class(model, ref, weights, train.subset(members), c, base, run_dir, cache, reporter)
        runs.append(run)
        summaries += [Summary(c, tuple(int(members[i]) for i in s.images)) for s in found]
        reporter.info(f"  {run.name}: {run.kept} kept of {run.clusters} clusters on {run.images} images {run.note}")
    yv, yt = splits["validation"].labels, splits["test"].labels

    def specialised(groups: list[Summary]):
        svms = SummarySVMs(n_classes, C=C, seed=base.seed).fit(feats["train"], train.labels, groups)
        q = {name: normalise_scores(svms.class_scores(feats[name])) for name in ("validation", "test")}
        choice = choose_weight(probs["validation"], q["validation"], yv, steps=steps)
        return choice, combine(probs["test"], q["test"], choice.weight).argmax(1), q["test"].argmax(1)

    choice, after, svm_only = specialised(summaries)
    # control: the same positives pooled into one SVM per class, i.e. without the split into summaries
    pooled = [Summary(c, tuple(sorted({i for s in summaries if s.label == c for i in s.images})))
              for c in sorted({s.label for s in summaries})]
    c_choice, c_after, c_svm_only = specialised(pooled)
    before = probs["test"].argmax(1)
    fixed = int(((before != yt) & (after == yt)).sum())
    broken = int(((before == yt) & (after != yt)).sum())
    return SpecialiseResult(
        label=ref.label, spec=ref.spec, feature_layer=f"{layer.name} ({layer.side})",
        feature_dim=int(feats["train"].shape[1]),
        split_sizes={k: len(v) for k, v in splits.items()},
        summaries_per_class={r.name: r.kept for r in runs},
        positives_per_summary=float(np.mean([len(s.images) for s in summaries])) if summaries else 0.0,
        weight=choice.weight,
        validation={"network": choice.accuracies[0], "chosen": choice.accuracy, "svm_only": choice.accuracies[-1]},
        test={"network": top1_accuracy(before, yt), "specialised": top1_accuracy(after, yt),
              "svm_only": top1_accuracy(svm_only, yt)},
        fixed=fixed, broken=broken, mcnemar_p=mcnemar_p(fixed, broken),
        weight_grid=list(choice.grid), validation_curve=list(choice.accuracies),
        class_svms={"weight": c_choice.weight, "validation_chosen": c_choice.accuracy,
                    "test_specialised": top1_accuracy(c_after, yt), "test_svm_only": top1_accuracy(c_svm_only, yt)},
        classes=runs, seconds=round(time.perf_counter() - start, 1),
    )
