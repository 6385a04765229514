"""The pipeline of the paper, stage by stage, calling whichever component the configuration names.

    images ─► classify ─► saliency ─► regions ─► proposals ─► describe & match all pairs
           ─► Corr (region proposals) ─► near-duplicates ─► Corr'' ─► cluster ─► score ─► summaries

The pipeline knows component *kinds*, never plugins: it asks the catalogue for
``(kind, name)`` and calls the kind's Protocol through :mod:`visum.checks`. Expensive
results (masks, proposals, descriptions, pair matches) are cached on disk under keys of
everything that determines them, so an interrupted run resumes where it stopped.
Printing belongs to the caller: progress and messages go through a :class:`Reporter`.
:meth:`Pipeline.run` returns a :class:`visum.result.Result` in memory; writing it
(:mod:`visum.output`), rendering it (:mod:`visum.report`) and scoring it against ground truth
(:mod:`visum.evaluate`) are steps that take the result.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from visum import checks
from visum.cache import Cache, content_hash, expect_array, make_key
from visum.components import KINDS, ClusterQuality
from visum.config import RunConfig
from visum.data import images as image_files
from visum.data.images import list_images, load_image_bounded
from visum.errors import ConfigError, InputError, VisumError, VisumWarning  # noqa: F401  (VisumWarning re-exported)
from visum.diagnostics import target_share
from visum.engines import check_engine
from visum.manifest import WarningRecord
from visum.stages.matching import MatchJob, match_all_pairs
from visum.stages.pairing import all_pairs, knn_pairs, resolve_pairs
from visum.stages.summaries import summary_members
from visum.models.base import LoadedModel, View
from visum.plugins import Catalogue, ComponentInfo, get_catalogue
from visum.result import Result, build_result, masks_result
from visum.stages.saliency import SaliencyJob, batch_masks, finish_batch, masks_on_ray, seed_everything
from visum.stages.regions import (
    Regions,
    assemble_corr,
    assign_to_region_pixels,
    assign_to_regions,
    binarize,
    connected_regions,
    near_duplicates,
)

CHECKPOINT_SECONDS = 5.0  # default seconds between two checkpoints of a saliency batch in flight


def checkpoint_seconds() -> float:
    """``$VISUM_CHECKPOINT_SECONDS`` (default :data:`CHECKPOINT_SECONDS`): seconds between two saved states of a
    saliency batch in flight; 0 saves none and picks none up. Where the states are saved never changes a mask."""
    text = os.environ.get("VISUM_CHECKPOINT_SECONDS", "").strip()
    if not text:
        return CHECKPOINT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value >= 0 and math.isfinite(value)):
        raise ConfigError(f"VISUM_CHECKPOINT_SECONDS={text!r}: expected a number of seconds >= 0")
    return value


BENCHMARK_SEED = 1_000_003  # parts-benchmark images of the default run: disjoint from training seeds


class Reporter:
    """Where the pipeline's progress goes. The default is silent; the CLI shows bars."""

    def progress(self, items: Iterable[Any], desc: str, total: int | None = None) -> Iterable[Any]:
        return items

    def bar(self, total: int, desc: str) -> "Bar":
        """A bar advanced by hand (``bar.update(n)``), for work done in batches."""
        return Bar()

    def info(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        """A result the run cannot vouch for. Never silent: the default raises a Python warning."""
        import warnings

        warnings.warn(message, VisumWarning, stacklevel=3)


class Bar:
    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int) -> None:
        pass


@dataclass
class InputImage:
    id: int
    path: Path
    original: np.ndarray  # [H, W, 3] uint8, the image as loaded (a huge file downscaled, see file_size)
    view: View
    digest: str  # sha256 of the view's pixels
    file_size: tuple[int, int] | None = None  # (W, H) of the file, when it was loaded downscaled

    @property
    def size_in_file(self) -> tuple[int, int]:
        """``(W, H)`` of the image file."""
        return self.file_size or (self.original.shape[1], self.original.shape[0])

    def to_file(self, b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A box ``[x0, y0, x1, y1]`` of the loaded image (``view.box_to_original``) in the file's
        pixels (exclusive ends); the same box unless the file was loaded reduced."""
        if self.file_size is None:
            return b
        (fw, fh), (h, w) = self.file_size, self.original.shape[:2]
        sx, sy = fw / w, fh / h
        return (int(b[0] * sx), int(b[1] * sy), min(fw, int(np.ceil(b[2] * sx))), min(fh, int(np.ceil(b[3] * sy))))


@dataclass
class ImageState:
    """What the stages learn about one used image."""

    mask: np.ndarray | None = None  # [S, S] float32 in [0, 1]
    regions: Regions | None = None
    boxes: np.ndarray | None = None  # [M, 4] view pixels
    region_of: np.ndarray | None = None  # [M] region index or -1
    description_key: str = ""
    description: Any = None


@dataclass
class Node:
    """One proposal in Corr: image, proposal index, region index."""

    image: int
    proposal: int
    region: int


class Pipeline:
    """One run: ``Pipeline(config, out_dir).run()``."""

    def __init__(
        self,
        config: RunConfig,
        out_dir: Path,
        *,
        catalogue: Catalogue | None = None,
        cache: Cache | None = None,
        reporter: Reporter | None = None,
        model: LoadedModel | None = None,
        image_paths: Sequence[Path] | None = None,
        engine: str = "local",
        address: str | None = None,
    ) -> None:
        """``model``: a model already loaded (:func:`visum.models.loading.load_module`), used in place of
        ``config.model``; ``image_paths``: these image files, in this order, in place of ``config.images``;
        ``engine`` ``"local"`` or ``"ray"`` (saliency batches and pair matching as Ray tasks, at ``address``
        or on a local Ray):
        where the work runs, never what it finds."""
        self.config = config
        check_engine(engine)
        self.engine, self.address = engine, address
        self._merge_asked = config.summaries.merge  # "auto" is resolved per run, on the model (_check_merge)
        self.model = model
        self.image_paths = [Path(p) for p in image_paths] if image_paths is not None else None
        self.out_dir = Path(out_dir).absolute()  # a later chdir (a notebook's %cd) must not move it
        self.catalogue = catalogue or get_catalogue()
        self.cache = cache if cache is not None else Cache()
        self.reporter = reporter or Reporter()
        if self.cache.warn is None:
            self.cache.warn = self.reporter.warn
        self.timings: dict[str, float] = {}
        self.warnings: list[WarningRecord] = []
        self.states: dict[int, ImageState] = {}
        self._used: dict[int, InputImage] = {}
        # Resolve every component first: an unknown name or a bad option fails before any work.
        self.components: dict[str, tuple[ComponentInfo, Any, dict[str, Any]]] = {}
        for kind in KINDS:
            info = self.catalogue.get(kind, config.component(kind))
            options = self.catalogue.options(kind, info.name, config.component_options(kind))
            self.components[kind] = (info, self.catalogue.instantiate(info, options), options.model_dump(mode="json"))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)

    def _engine_session(self) -> Any:
        """``--engine ray``: a Ray session (local, or ``address``'s) that the stages inside it share."""
        if self.engine != "ray":
            return nullcontext()
        from visum.engines import ray_session

        return ray_session(self.address)

    def _key(self, stage: str, kind: str, **parts: Any) -> str:
        info, _, options = self.components[kind]
        return make_key(stage, component=info.name, source=info.source, options=options, **parts)

    # ------------------------------------------------------------------ stages
    def load(self) -> tuple[LoadedModel, list[InputImage], np.ndarray]:
        """Load the model and the images and classify them: ``(model, images, probs [N, K])``."""
        from visum.models.loading import load_configured_model  # heavy imports at use

        cfg = self.config
        seed_everything(cfg.seed)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self.stage("model"):
            model = self.model or load_configured_model(cfg.model, cfg.device, cache_root=self.cache.root)
        with self.stage("load"):
            images = self._load_images(model)
        with self.stage("classify"):
            probs = self._classify(model, images)
        return model, images, probs

    def prepare(self) -> tuple[LoadedModel, int, list[InputImage], np.ndarray]:
        """:meth:`load` and resolve the target: ``(model, target, images, probs)``."""
        model, images, probs = self.load()
        return model, self.resolve_target(model), images, probs

    def masks(self) -> Result:
        """Saliency masks alone (``visum masks``): every image, whatever the model predicts. Writes nothing."""
        model, target, all_images, probs = self.prepare()
        states = self.states = {im.id: ImageState() for im in all_images}
        with self._engine_session(), self.stage("saliency"):
            self._saliency(model, all_images, target, states)
        result = masks_result(self.config, self.out_dir, model, target, all_images, probs, states, self.warnings,
                              dict(self.timings))
        result.cache_hits, result.cache_misses = self.cache.hits, self.cache.misses
        return result

    def run(self) -> Result:
        """The whole pipeline, in memory: a :class:`~visum.result.Result` (``result.save()`` writes it)."""
        cfg = self.config
        model, target, images, probs = self.prepare()
        no_merge = self._check_merge(model)  # fail before the work, not after it
        used, self.warnings = self.select_images(model, target, images, probs)
        if no_merge:
            self.reporter.warn(no_merge.message)
            self.warnings.append(no_merge)
        states = self.states = {im.id: ImageState() for im in used}
        self._used = {im.id: im for im in used}
        with self._engine_session():  # one local Ray for the stages it runs, not one each
            with self.stage("saliency"):
                self._saliency(model, used, target, states)
            with self.stage("regions"):
                self._regions(used, states)
            with self.stage("proposals"):
                self._proposals(used, states)
            with self.stage("matching"):
                nodes, corr = self._match(used, states, model)
        with self.stage("pruning"):
            nodes, corr = self._prune(nodes, corr)
        with self.stage("clustering"):
            clusters = self._cluster(nodes, corr, model)
        with self.stage("scoring"):
            verdicts = self._score(clusters, nodes, {im.id: im for im in used}, states)
            if cfg.summaries.merge_after == "scoring":
                clusters, verdicts, _ = self._merge_kept(clusters, verdicts, nodes, corr, model)
        with self.stage("reliance"):
            drops = self._reliance(model, target, clusters, verdicts, nodes, {im.id: im for im in used}, states)
            verdicts = self._drop_unrelied(verdicts, drops)
            if cfg.summaries.merge_after == "reliance":
                clusters, verdicts, drops = self._merge_relied(model, target, clusters, verdicts, drops, nodes, corr,
                                                               {im.id: im for im in used}, states)
        with self.stage("summaries"):
            result = build_result(self.config, self.out_dir, model, target, images, probs, states, clusters, verdicts,
                                  nodes, drops, self.warnings, {})
        result.manifest.timings = dict(self.timings)
        result.cache_hits, result.cache_misses = self.cache.hits, self.cache.misses
        return result

    def _check_merge(self, model: LoadedModel) -> WarningRecord | None:
        """Resolve ``summaries.merge``: ``"model"`` reads the input of the model's last ``nn.Linear``, so
        without one an explicit ``"model"`` is a ``ConfigError`` (before the work), and ``"auto"`` runs as
        ``"none"`` with a warning (returned); with one, ``"auto"`` runs as ``"model"``. The configuration
        the manifest records is the resolved one."""
        sc = self.config.summaries.model_copy(update={"merge": self._merge_asked})
        if sc.merge not in ("model", "auto"):
            return None
        from visum.model_features import default_layer

        try:
            default_layer(model.module)
            resolved, warning = "model", None
        except ValueError:
            if sc.merge == "model":
                raise ConfigError(f"summaries.merge = \"model\" reads the input of the model's last nn.Linear, and "
                                  f"{self.config.model.spec} has none: use merge = \"same-part\" or \"none\"") from None
            resolved = "none"
            warning = WarningRecord(code="not-merged", message=f"summaries not merged: {self.config.model.spec} has no "
                                                               f"nn.Linear whose input gives the features that "
                                                               f"summaries.merge = \"auto\" compares")
        self.config = self.config.model_copy(update={"summaries": sc.model_copy(update={"merge": resolved})})
        return warning

    def select_images(
        self, model: LoadedModel, target: int, images: list[InputImage], probs: np.ndarray
    ) -> tuple[list[InputImage], list[WarningRecord]]:
        """The images to explain (classified as the target, unless ``keep_misclassified``), and warnings.

        Fewer than ``min_target_share`` of the images classified as the target is said on
        the terminal and in the report, with the classes they went to and the preprocessing
        the model saw; too few left to make a summary is an error that says the same.
        """
        cfg = self.config
        share = target_share(probs.argmax(axis=1), target)
        names, pre = model.class_names, model.preprocessing
        provenance = f" [{pre.provenance()}]" if pre.provenance() else ""
        self.reporter.info(f"preprocessing: {pre.describe()}{provenance}")
        used = [im for im in images if cfg.keep_misclassified or int(probs[im.id].argmax()) == target]
        self.reporter.info(f"{share.classified} of {share.total} images are classified as the target; {len(used)} used")
        need = cfg.summaries.min_images
        low = share.share < cfg.min_target_share
        if len(used) < need:
            advice = f"; {share.advice(pre)}" if low else "; give more images of the class"
            keep = "; or keep the others with --keep-misclassified" if low and not cfg.keep_misclassified else ""
            raise InputError(
                f"{share.summary(names, model.spec)}: a visual summary needs parts from at least {need} images "
                f"(summaries.min_images){advice}{keep}"
            )
        warnings = []
        if low:
            kept = " (kept anyway: --keep-misclassified)" if cfg.keep_misclassified else " (left out)"
            message = (f"{share.summary(names, model.spec)}{kept}, below min_target_share = {cfg.min_target_share:g}; "
                       f"{share.advice(pre)}")
            self.reporter.warn(message)
            warnings.append(WarningRecord(code="target-share", message=message))
        return used, warnings

    def resolve_target(self, model: LoadedModel) -> int:
        from visum.models.loading import num_classes, resolve_target

        target = self.config.target
        if target is None:
            if model.spec == "parts":
                return 0  # the benchmark's main class
            raise ConfigError("--target is required for this model (a class index or name)")
        return resolve_target(target, model.class_names, num_classes(model))

    def _load_images(self, model: LoadedModel) -> list[InputImage]:
        cfg = self.config
        folder = cfg.images
        if self.image_paths is not None:
            paths = self.image_paths
        else:
            if folder is None:
                if cfg.model.spec != "parts":
                    raise ConfigError("--images is required for models other than the parts benchmark's ('parts')")
                folder = self._generate_benchmark()
            paths = list_images(Path(folder))
        images = []
        for k, path in enumerate(self.reporter.progress(paths, "load images", len(paths))):
            original, size = load_image_bounded(path, max_load_pixels=image_files.LOAD_PIXELS)
            view = model.preprocessing.view(original)
            loaded = (original.shape[1], original.shape[0])
            images.append(InputImage(k, path, original, view, content_hash(view.pixels),
                                     size if size != loaded else None))
        return images

    def _generate_benchmark(self) -> Path:
        from visum.data.parts import make_dataset, write_dataset

        folder = self.out_dir / "images"
        samples = make_dataset(self.config.benchmark_images, seed=BENCHMARK_SEED + self.config.seed, labels=[0])
        write_dataset(samples, folder)
        return folder

    def _classify(self, model: LoadedModel, images: list[InputImage]) -> np.ndarray:
        out = []
        bs = self.config.batch_size
        with torch.no_grad():
            for start in range(0, len(images), bs):
                batch = images[start : start + bs]
                x = model.preprocessing.to_tensor([im.view.pixels for im in batch]).to(self.config.device)
                out.append(torch.softmax(model.module(x).float(), dim=1).cpu().numpy())
        return np.concatenate(out)

    def _saliency(self, model: LoadedModel, used: list[InputImage], target: int, states: dict[int, ImageState]) -> None:
        masks = self.saliency_masks(model, used, {im.id: target for im in used})
        for im in used:
            states[im.id].mask = masks[im.id]

    def saliency_masks(
        self, model: LoadedModel, images: Sequence[InputImage], targets: dict[int, int], kind: str = "saliency"
    ) -> dict[int, np.ndarray]:
        """``{image id: mask [S, S]}`` for each image and its own target, batched, from the cache where possible."""
        info, component, _ = self.components[kind]
        pre = model.preprocessing
        keys = {
            im.id: self._key("saliency", kind, image=im.digest, model=model.fingerprint,
                             pre=pre.key(), target=targets[im.id])
            for im in images
        }
        masks: dict[int, np.ndarray] = {}
        a_mask = expect_array(2, "f", (pre.input_size, pre.input_size), 0.0, 1.0)
        for im in images:
            cached = self.cache.get("saliency", keys[im.id], a_mask)
            if cached is not None:
                masks[im.id] = cached
        todo = [im for im in images if im.id not in masks]
        bs = self.config.batch_size
        interval = checkpoint_seconds()
        checkpointed = self.cache.enabled and interval > 0 and checks.takes_checkpoint(component)
        job = SaliencyJob(info, component, model.module, pre, self.config.device, self.config.seed,
                          self.cache if checkpointed else None, interval)
        batches = [todo[start : start + bs] for start in range(0, len(todo), bs)]
        work = (([im.view.pixels for im in batch], [targets[im.id] for im in batch],
                 make_key("saliency-checkpoint", masks=[keys[im.id] for im in batch])) for batch in batches)
        if self.engine == "ray" and batches:
            stream = masks_on_ray(job, work, address=self.address, threads=torch.get_num_threads(),
                                  say=self.reporter.info)
        else:
            stream = enumerate(batch_masks(job, *one, say=self._say) for one in work)
        with self.reporter.bar(len(todo), f"saliency ({info.name})") as bar:
            for index, done in stream:
                batch = batches[index]
                for im, mask in zip(batch, done.masks):
                    masks[im.id] = mask
                    self.cache.put("saliency", keys[im.id], mask)
                for level, line in finish_batch(job, done):  # the masks are stored: done with the checkpoint
                    self._say(level, line)
                bar.update(len(batch))
        return masks

    def _say(self, level: str, line: str) -> None:
        (self.reporter.warn if level == "warn" else self.reporter.info)(line)

    def _regions(self, used: list[InputImage], states: dict[int, ImageState]) -> None:
        threshold, sigma = self.binarisation()
        for im in used:
            s = states[im.id]
            h, w = s.mask.shape
            s.regions = connected_regions(
                binarize(s.mask, threshold, sigma), min_area=max(1, int(self.config.regions.min_area * h * w))
            )

    def binarisation(self) -> tuple[float | str, float]:
        """``(threshold, smooth_sigma)`` for the regions stage: the config's, else the method's own.

        A saliency class may declare ``binarize_at`` (a float): its masks are nearly binary and are
        cut there unsmoothed (crisp: 0.5). Other masks are smoothed (sigma 2) and cut by Otsu.
        """
        rc = self.config.regions
        own = getattr(self.components["saliency"][0].cls, "binarize_at", None)
        threshold = rc.threshold if rc.threshold != "auto" else (float(own) if own is not None else "otsu")
        sigma = rc.smooth_sigma if rc.smooth_sigma is not None else (0.0 if own is not None else 2.0)
        return threshold, sigma

    def _proposals(self, used: list[InputImage], states: dict[int, ImageState]) -> None:
        info, component, _ = self.components["proposer"]
        a_box_list = expect_array(2, "i", (None, 4), 0)
        for im in self.reporter.progress(used, f"proposals ({info.name})", len(used)):
            key = self._key("proposals", "proposer", image=im.digest)
            boxes = self.cache.get("proposals", key, a_box_list)
            if boxes is None:
                boxes = checks.proposals(info, component, im.view.pixels)
                self.cache.put("proposals", key, boxes)
            s = states[im.id]
            s.boxes = boxes
            pc = self.config.pruning
            if pc.overlap == "pixels":
                s.region_of = assign_to_region_pixels(boxes, s.regions.labels, pc.min_overlap)
            else:
                s.region_of = assign_to_regions(boxes, s.regions.boxes, pc.min_overlap)

    def _match(self, used: list[InputImage], states: dict[int, ImageState],
               model: LoadedModel | None = None) -> tuple[list[Node], sp.csr_matrix]:
        info, component, _ = self.components["matcher"]
        active = [im for im in used if (states[im.id].region_of >= 0).any()]
        uses_model = bool(getattr(component, "uses_model", False))  # e.g. the activations matcher (ACE)
        if uses_model:
            if model is None:
                raise ConfigError(f"matcher '{info.name}' needs the model")
            checks.call(info, "bind_model", component.bind_model, model.module, model.preprocessing,
                        self.config.device)
        for im in self.reporter.progress(active, f"describe ({info.name})", len(active)):
            s = states[im.id]
            s.description_key = self._key("describe", "matcher", image=im.digest, boxes=content_hash(s.boxes),
                                          **({"model": model.fingerprint} if uses_model else {}))
            s.description = self.cache.get_or_compute(
                "describe", s.description_key, lambda: checks.description(info, component, im.view.pixels, s.boxes)
            )
        nodes: list[Node] = []
        offsets = [0]
        selected: dict[int, np.ndarray] = {}
        for k, im in enumerate(active):
            sel = np.flatnonzero(states[im.id].region_of >= 0)
            selected[im.id] = sel
            nodes += [Node(im.id, int(p), int(states[im.id].region_of[p])) for p in sel]
            offsets.append(offsets[-1] + len(sel))
        pairs = self._pairs(active, model)
        keys = {
            (a, b): self._key("match", "matcher", i=states[active[a].id].description_key,
                              j=states[active[b].id].description_key,
                              rows=content_hash(selected[active[a].id]), cols=content_hash(selected[active[b].id]))
            for a, b in pairs
        }
        blocks = {}
        for pair in pairs:
            q = self.cache.get("match", keys[pair], expect_array(
                2, "f", (len(selected[active[pair[0]].id]), len(selected[active[pair[1]].id])), 0.0))
            if q is not None:
                blocks[pair] = q
        todo = [pair for pair in pairs if pair not in blocks]
        job = MatchJob(info, component, [states[im.id].description for im in active],
                       [len(states[im.id].boxes) for im in active], [selected[im.id] for im in active])
        blocks.update(
            match_all_pairs(
                job, todo, workers=self.config.workers, engine=self.engine, address=self.address,
                done=lambda pair, q: self.cache.put("match", keys[pair], q),
                progress=lambda it, total: self.reporter.progress(it, f"match pairs ({info.name})", total),
            )
        )
        corr = assemble_corr(blocks, np.asarray(offsets), self.config.pruning.min_score)
        return nodes, corr

    def _pairs(self, active: list[InputImage], model: LoadedModel | None) -> list[tuple[int, int]]:
        """The pairs of ``active`` to match (``pruning.pairs``, :mod:`visum.stages.pairing`)."""
        k = resolve_pairs(self.config.pruning.pairs, len(active))
        if k is None:
            return all_pairs(len(active))
        if model is None:
            raise ConfigError(f"pruning.pairs = {self.config.pruning.pairs!r} needs the model (its features)")
        def whole_view(im: InputImage) -> np.ndarray:
            h, w = im.view.pixels.shape[:2]
            return self._box_features(im.id, np.array([[0, 0, w, h]]), model)[0]

        features = np.stack([whole_view(im) for im in self.reporter.progress(active, "pairs (features)", len(active))])
        pairs = knn_pairs(features, k)
        self.reporter.info(f"matching {len(pairs)} pairs of {len(active)} images: each with its {k} nearest "
                           f"(of {len(active) * (len(active) - 1) // 2} pairs in all)")
        return pairs

    def _prune(self, nodes: list[Node], corr: sp.csr_matrix) -> tuple[list[Node], sp.csr_matrix]:
        """Corr → Corr'': near-duplicate proposals of each image removed (the better matched stays)."""
        pc = self.config.pruning
        if not nodes:
            return nodes, corr
        best = corr.max(axis=1).toarray().ravel()
        keep: list[int] = []
        by_image: dict[int, list[int]] = {}
        for k, node in enumerate(nodes):
            by_image.setdefault(node.image, []).append(k)
        for image, idx in by_image.items():
            boxes = np.stack([self._boxes_of(image)[nodes[k].proposal] for k in idx])
            kept = near_duplicates(boxes, best[idx], pc.max_area_ratio, pc.duplicate_overlap)
            keep += [idx[k] for k in kept]
        keep.sort()
        return [nodes[k] for k in keep], corr[keep][:, keep].tocsr()

    def _boxes_of(self, image: int) -> np.ndarray:
        return self.states[image].boxes

    def _cluster(self, nodes: list[Node], corr: sp.csr_matrix,
                 model: LoadedModel | None = None) -> list[list[tuple[int, float]]]:
        """Clusters of Corr'' as lists of (node index, score), one member per (image, region) unless
        ``summaries.one_per_region`` is false; clusters from fewer than ``summaries.min_images`` images are dropped."""
        info, component, _ = self.components["clusterer"]
        if len(nodes) < 2:
            return []
        seed_everything(self.config.seed)
        labels = checks.clustering(info, component, corr)
        if getattr(component, "converged_", None) is False:  # say it: a silent "nothing kept" explains nothing
            iterations = getattr(component, "n_iter_", "?")
            message = (f"the clusterer {info.name} did not converge ({iterations} iterations): its clusters are not "
                       f"reliable; raise --opt clusterer.max_iter or clusterer.damping")
            self.reporter.warn(message)
            self.warnings.append(WarningRecord(code="clusterer-convergence", message=message))
        sc = self.config.summaries
        if sc.merge_after == "clustering":
            labels = self._merge_labels(labels, nodes, corr, model)
        return summary_members(labels, corr, np.array([n.image for n in nodes]), np.array([n.region for n in nodes]),
                               one_per_region=sc.one_per_region, min_images=sc.min_images)

    def _merge_labels(self, labels: np.ndarray, nodes: list[Node], corr: sp.csr_matrix,
                      model: LoadedModel | None) -> np.ndarray:
        """``labels [N]`` with clusters that show the same part relabelled as one (``summaries.merge``)."""
        sc = self.config.summaries
        if sc.merge == "none":
            return labels
        image_of = np.array([n.image for n in nodes])
        boxes = np.stack([self.states[n.image].boxes[n.proposal] for n in nodes])
        if sc.merge == "same-part":
            from visum.stages.merging import MergeRule, merge_same_part

            labels, merges = merge_same_part(labels, corr, image_of, boxes,
                                             MergeRule(link=sc.merge_link, colocated=sc.merge_colocated))
            self.reporter.info(f"merged {len(merges)} clusters that show the same part")
        elif sc.merge == "model":
            from visum.stages.merging import Apart, merge_by_features

            feats = self._node_features(nodes, labels, model)
            apart = None if sc.merge_apart == "off" else Apart(image_of, boxes, share=sc.merge_apart)
            centre = self._random_box_centre(nodes, labels, model) if sc.merge_centre == "random-boxes" else None
            labels, merges = merge_by_features(labels, feats, sc.merge_similarity, apart, centre)
            self.reporter.info(f"merged {len(merges)} clusters the model sees as one part")
        else:  # "auto" is resolved by _check_merge before any stage
            raise AssertionError(f"summaries.merge = {sc.merge!r} reached the merge unresolved")
        return labels

    def _merge_kept(self, clusters, verdicts, nodes: list[Node], corr: sp.csr_matrix,
                    model: LoadedModel | None) -> tuple[list, list]:
        """``summaries.merge_after = "scoring"``: the clusters the scorer kept, merged where they show the same
        part (each judged alone first, so a part seen in several poses is not discarded for its poses' low
        SSIM); clusters it did not keep stay as they are (:func:`visum.stages.merging.merge_kept`)."""
        from visum.stages.merging import merge_kept

        labels = np.full(len(nodes), -1, dtype=np.int64)
        for c, (members, verdict) in enumerate(zip(clusters, verdicts)):
            if verdict.kept:
                labels[[k for k, _ in members]] = c
        merged = self._merge_labels(labels, nodes, corr, model)
        groups = [int(merged[members[0][0]]) if verdict.kept else -1 for members, verdict in zip(clusters, verdicts)]
        return merge_kept(clusters, verdicts, groups, np.array([n.image for n in nodes]),
                          np.array([n.region for n in nodes]), self.config.summaries.one_per_region)

    def _merge_relied(self, model: LoadedModel, target: int, clusters, verdicts, drops, nodes: list[Node],
                      corr: sp.csr_matrix, by_id: dict[int, InputImage], states):
        """``summaries.merge_after = "reliance"``: the summaries kept by the scorer *and* the reliance filter,
        merged where they show the same part; a merged summary's reliance is measured again on its members
        (each joined summary passed the filter alone; a small, strongly relied-on summary is not diluted
        into a weak one before the filter). Returns ``(clusters, verdicts, drops)``."""
        merged, merged_verdicts, origins = self._merge_kept(clusters, verdicts, nodes, corr, model)
        if len(merged) == len(clusters):
            return clusters, verdicts, drops
        again = [ClusterQuality(len(o) > 1 and v.kept, v.quality) for o, v in zip(origins, merged_verdicts)]
        fresh = self._reliance(model, target, merged, again, nodes, by_id, states)
        new_drops = {c: fresh[c] if c in fresh else drops[o[0]] for c, o in enumerate(origins)
                     if c in fresh or o[0] in drops}
        return merged, self._drop_unrelied(merged_verdicts, new_drops), new_drops

    def _random_box_centre(self, nodes: list[Node], labels: np.ndarray, model: LoadedModel) -> np.ndarray:
        """``[C]``: the model's mean unit feature of one random box per clustered node, of the node's size, at a
        random place in the node's image (seeded by ``--seed``): what any crop of the class looks like."""
        from visum.stages.merging import random_boxes_like

        rng = np.random.default_rng(self.config.seed)
        rows = []
        for image, ks in sorted(self._clustered_by_image(nodes, labels).items()):
            h, w = self._used[image].view.pixels.shape[:2]
            boxes = random_boxes_like(np.stack([self.states[image].boxes[nodes[k].proposal] for k in ks]),
                                      np.tile([h, w], (len(ks), 1)), rng)
            rows.append(self._box_features(image, boxes, model))
        return np.concatenate(rows).mean(axis=0) if rows else np.zeros(1)

    def _box_features(self, image: int, boxes: np.ndarray, model: LoadedModel) -> np.ndarray:
        """``[len(boxes), C]`` the model's unit features of ``boxes`` in image ``image``, cached
        (:func:`visum.model_features.box_features`)."""
        from visum.model_features import box_features

        im = self._used[image]
        key = make_key("node-features", model=model.fingerprint, image=im.digest, boxes=content_hash(boxes))
        return self.cache.get_or_compute("features", key, lambda: box_features(
            model.module, model.preprocessing, im.view.pixels, boxes, device=self.config.device),
            expect_array(2, "f", (len(boxes), None)))

    def _clustered_by_image(self, nodes: list[Node], labels: np.ndarray) -> dict[int, list[int]]:
        by_image: dict[int, list[int]] = {}
        for k in np.flatnonzero(labels >= 0).tolist():
            by_image.setdefault(nodes[k].image, []).append(k)
        return by_image

    def _node_features(self, nodes: list[Node], labels: np.ndarray, model: LoadedModel) -> np.ndarray:
        """``[N, C]`` the model's unit features of every clustered node's box (zero rows for the others)."""
        by_image = self._clustered_by_image(nodes, labels)
        rows: dict[int, np.ndarray] = {}
        for image, ks in self.reporter.progress(list(by_image.items()), "model features", len(by_image)):
            boxes = np.stack([self.states[image].boxes[nodes[k].proposal] for k in ks])
            rows.update(zip(ks, self._box_features(image, boxes, model)))
        width = next(iter(rows.values())).shape[0] if rows else 1
        out = np.zeros((len(nodes), width), dtype=np.float32)
        for k, row in rows.items():
            out[k] = row
        return out

    def _reliance(self, model: LoadedModel, target: int, clusters, verdicts, nodes, by_id: dict[int, InputImage],
                  states) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``{cluster index: (p [M], p_removed [M])}`` for each kept cluster: the target's probability of each
        member's view, and with the member's part box removed by ``summaries.reliance_removal``
        (:mod:`visum.stages.reliance`)."""
        from visum.stages.reliance import member_drops

        pre = model.preprocessing
        entries = [(c, nodes[k].image, states[nodes[k].image].boxes[nodes[k].proposal])
                   for c, members in enumerate(clusters) if verdicts[c].kept for k, _ in members]
        images = sorted({image for _, image, _ in entries})
        p = np.zeros(len(entries))
        q = np.zeros(len(entries))
        chunk = max(1, self.config.batch_size)
        for start in range(0, len(images), chunk):  # the views of one chunk of images in memory at a time
            ids = images[start : start + chunk]
            where = {image: n for n, image in enumerate(ids)}
            rows = [r for r, (_, image, _) in enumerate(entries) if image in where]
            views = pre.to_tensor([by_id[i].view.pixels for i in ids]).to(self.config.device)
            p[rows], q[rows] = member_drops(model.module, views, [where[entries[r][1]] for r in rows],
                                            np.stack([entries[r][2] for r in rows]), target, chunk,
                                            self.config.summaries.reliance_removal)
        out = {}
        for r, (c, _, _) in enumerate(entries):
            out.setdefault(c, []).append(r)
        return {c: (p[rows], q[rows]) for c, rows in out.items()}

    def _drop_unrelied(self, verdicts: list, drops: dict[int, tuple[np.ndarray, np.ndarray]]) -> list:
        """Discard kept clusters the model does not rely on: reliance below ``summaries.min_reliance``."""
        from dataclasses import replace

        from visum.stages.reliance import ratio_of_sums

        least = self.config.summaries.min_reliance
        out = list(verdicts)
        reliances = []
        for c, (p, q) in drops.items():
            r = ratio_of_sums(p, q)
            reliances.append(r)
            if r == r and r < least:
                out[c] = replace(out[c], kept=False, quality={**out[c].quality, "not_relied_on": 1.0})
        if drops and not any(v.kept for v in out):  # say it: "0 kept" alone reads as "nothing found"
            message = (f"no summary kept: the SSIM check kept {len(drops)}, but removing any one of them "
                       f"({self.config.summaries.reliance_removal}) takes less "
                       f"than {least:g} of the target's probability (largest {max(reliances):.3f}); the model may "
                       f"spread its evidence over many parts. A --config file with [summaries] min_reliance = -inf "
                       f"keeps them, with their reliance in the report")
            self.reporter.warn(message)
            self.warnings.append(WarningRecord(code="nothing-relied-on", message=message))
        return out

    def _score(self, clusters, nodes, by_id: dict[int, InputImage], states) -> list:
        info, component, _ = self.components["scorer"]
        if not clusters:
            return []
        crops = []
        for members in clusters:
            parts = []
            for k, _ in members:
                x0, y0, x1, y1 = states[nodes[k].image].boxes[nodes[k].proposal]
                parts.append(by_id[nodes[k].image].view.pixels[y0:y1, x0:x1])
            crops.append(parts)
        return checks.scores(info, component, crops)
