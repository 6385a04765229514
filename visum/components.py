"""The five component kinds of the pipeline, as typed interfaces.

A *component* is a class that a plugin hands to visum through one of the hooks in
:mod:`visum.hookspecs`. Each class carries

* ``name`` — the name users select it by (``visum run --saliency NAME``), unique per kind;
* ``summary`` — one line for ``visum plugins``;
* ``Options`` — a pydantic model of its parameters (scikit-learn style: parameters go in
  ``__init__``, work happens in methods, learned results end in ``_``).

visum instantiates a component as ``cls(options)`` with a validated ``cls.Options``
instance, then calls the method of its kind. Components are pure: arrays in, arrays out.
Files, caching, progress bars and logging belong to the pipeline.

Conventions shared by every kind
--------------------------------
* images are ``np.ndarray`` of shape ``[H, W, 3]``, dtype ``uint8``, RGB;
* boxes are ``np.ndarray`` of shape ``[M, 4]``, integer ``[x0, y0, x1, y1]`` in pixels
  of that image, ``x1`` and ``y1`` exclusive, ``0 <= x0 < x1 <= W``;
* saliency ``s`` lies in ``[0, 1]`` with ``s = 1`` where the image matters most (where the
  perturbation of Fong & Vedaldi deletes evidence; their mask is ``m = 1 - s``).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

Kind = Literal["saliency", "proposer", "matcher", "clusterer", "scorer"]


class Options(BaseModel):
    """Base class of every component's options: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """Convenience base class: stores validated options as ``self.options``.

    Plugins need not inherit from it; the Protocols below are structural.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Options | None = None) -> None:
        self.options = options if options is not None else type(self).Options()


@runtime_checkable
class SaliencyMethod(Protocol):
    """Kind ``saliency``: one mask per image saying where the classifier looks.

    ``explain(model, x, target) -> s``

    * ``model`` — ``torch.nn.Module`` in eval mode mapping ``x`` to logits ``[B, K]``;
    * ``x`` — ``torch.Tensor`` ``[B, 3, H, W]`` float32, already normalised for the model;
    * ``target`` — ``torch.Tensor`` ``[B]`` int64, the class to explain for each image;
    * returns ``s`` — ``torch.Tensor`` ``[B, 1, H, W]`` float32 in ``[0, 1]``, detached,
      on any device. Images of a batch must not influence each other's masks.

    ``explain`` may also take a keyword ``checkpoint`` (:class:`visum.saliency_opt.Checkpoint`):
    the pipeline then hands it one per batch, kept in the cache, so that a killed run picks the
    batch up where it stopped; the masks must not depend on it (``crisp`` and ``iebb`` take one).

    Optional class attribute ``binarize_at: float`` — for methods whose masks are nearly binary
    (the paper's crisp mask): the regions stage then cuts the mask there, unsmoothed, instead of
    smoothing it and applying Otsu's threshold (see ``[regions]`` in the run configuration).
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]]

    def explain(self, model: Any, x: Any, target: Any) -> Any: ...


@runtime_checkable
class Proposer(Protocol):
    """Kind ``proposer``: object proposals of one image.

    ``propose(image) -> boxes``: ``image`` ``[H, W, 3]`` uint8 RGB; ``boxes`` ``[M, 4]``
    int64 ``[x0, y0, x1, y1]`` (exclusive ends) inside the image, best first, ``M >= 0``.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]]

    def propose(self, image: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class Matcher(Protocol):
    """Kind ``matcher``: compatibility of the proposals of two images (the paper's Q_ij).

    Two steps, so that per-image work is done once for all the pairs it takes part in:

    * ``describe(image, boxes) -> description`` — anything picklable (features of each
      proposal, its geometry, ...); ``image`` ``[H, W, 3]`` uint8, ``boxes`` ``[M, 4]``;
    * ``match(description_i, description_j) -> Q`` — ``np.ndarray`` ``[M_i, M_j]`` float32,
      finite and ``>= 0``; higher means a better match. ``Q`` need not be symmetric in the
      pair: visum calls ``match`` once per unordered pair ``i < j``.

    A matcher that describes proposals by the explained model itself (ACE's activations)
    declares ``uses_model: ClassVar[bool] = True`` and a method
    ``bind_model(module, preprocessing, device)``: the pipeline calls it once before
    ``describe`` (``image`` is then the model's view, ``preprocessing`` a
    :class:`visum.models.base.Preprocessing`) and keys the cached descriptions by the model too.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]]

    def describe(self, image: np.ndarray, boxes: np.ndarray) -> Any: ...

    def match(self, description_i: Any, description_j: Any) -> np.ndarray: ...


@runtime_checkable
class Clusterer(Protocol):
    """Kind ``clusterer``: groups proposals from the compatibility matrix (the paper's Corr'').

    ``fit(similarity) -> self`` then ``labels_``:

    * ``similarity`` — ``scipy.sparse.csr_matrix`` ``[N, N]`` float, symmetric, ``>= 0``,
      zero diagonal; an absent entry means "no evidence that these match";
    * ``labels_`` — ``np.ndarray`` ``[N]`` int, cluster ids ``0..C-1``, ``-1`` = unassigned.
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]]
    labels_: np.ndarray

    def fit(self, similarity: Any) -> "Clusterer": ...


@dataclass(frozen=True)
class ClusterQuality:
    """A scorer's verdict on one cluster: keep it as a summary or not, and why."""

    kept: bool
    quality: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Scorer(Protocol):
    """Kind ``scorer``: decides which clusters are reliable enough to become summaries.

    ``score(clusters) -> list[ClusterQuality]``, one per cluster, in order. ``clusters`` is a
    sequence of clusters of one class; each cluster is a sequence of at least two part
    crops (``[h, w, 3]`` uint8, sizes differ). The scorer sees every cluster of the class at
    once, so it may judge each against the class as a whole (the paper's SSIM rule).
    """

    name: ClassVar[str]
    Options: ClassVar[type[Options]]

    def score(self, clusters: Sequence[Sequence[np.ndarray]]) -> list[ClusterQuality]: ...


@dataclass(frozen=True)
class KindSpec:
    """One component kind: everything that differs between kinds, declared once (:data:`KIND_TABLE`)."""

    kind: Kind
    stage: str  # what it does in the pipeline (CLI help, docs)
    protocol: type  # the interface a component must offer
    methods: tuple[str, ...]  # the protocol's methods the catalogue checks for
    hook: str  # the hook of visum.hookspecs that hands out its components
    default: str  # the component the default pipeline uses
    why_default: str = ""  # where the default was chosen


#: The five kinds in pipeline order. The hook specs (:mod:`visum.hookspecs`), the run
#: configuration's component fields (:mod:`visum.config`), the catalogue's checks
#: (:mod:`visum.plugins`) and the component flags of every command (:mod:`visum.cli`) derive from it.
KIND_TABLE: tuple[KindSpec, ...] = (
    KindSpec("saliency", "saliency mask per image", SaliencyMethod, ("explain",), "register_saliency_methods",
             "crisp", "the paper's eq. 2, chosen over gradient on the dev worlds, docs/benchmark.md"),
    KindSpec("proposer", "object proposals per image", Proposer, ("propose",), "register_proposers",
             "selective-search", "the paper's"),
    KindSpec("matcher", "matching every pair of images (Q_ij)", Matcher, ("describe", "match"), "register_matchers",
             "hog", "chosen on the parts world, docs/summaries.md"),
    KindSpec("clusterer", "clustering Corr''", Clusterer, ("fit",), "register_clusterers",
             "hdbscan", "chosen by measured purity on the parts world, docs/summaries.md"),
    KindSpec("scorer", "discarding unreliable clusters", Scorer, ("score",), "register_scorers",
             "ssim", "the paper's SSIM rule"),
)
KINDS: tuple[Kind, ...] = tuple(k.kind for k in KIND_TABLE)
KIND: dict[str, KindSpec] = {k.kind: k for k in KIND_TABLE}
assert KINDS == typing.get_args(Kind), "Kind and KIND_TABLE name the same kinds, in the same order"
