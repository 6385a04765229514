"""Run configuration: one pydantic model, read from and written to TOML.

``visum run`` resolves its flags into a :class:`RunConfig` and writes it to ``run.toml`` in
the output folder, so ``visum run --config run.toml`` repeats the run. Component options
are kept as plain dictionaries here and validated against each component's own options
model by the plugin catalogue.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from visum.atomic import write_text_atomic
from visum.components import KIND, KINDS
from visum.errors import ConfigError
from visum.stages.pairing import AUTO_ALL_UP_TO, AUTO_K, PAIRS_PATTERN

#: how a summary member's box is removed to measure reliance (visum.stages.reliance)
Removal = Literal["blur", "fill"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    """The classifier and, part by part, overrides of the preprocessing its source declares."""

    spec: str = Field("parts", description="efficientnet-lite0|1|2, torchvision:NAME, timm:NAME, a TorchScript "
                      "*.pt or torch.export *.pt2 file, package.module:factory, or 'parts'.")
    weights: str | None = Field(None, description="torchvision weights enum name, a state-dict or .safetensors file, or 'random'.")
    classes: Path | None = Field(None, description="A file of class names, one a line, for any model.")
    input_size: int | None = Field(None, gt=0, description="Override the model's input size (side of the square view).")
    crop_ratio: float | None = Field(None, gt=0, le=1, description="Override the centre crop: the share of the resized "
                                     "(short) side the model sees; 1 with resize = 'squash' is the whole image, 0.875 "
                                     "is ImageNet's.")
    resize: Literal["short-side", "squash"] | None = Field(None, description="Override how the image is resized: "
                                                           "short side (aspect kept) or squashed to a square.")
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = Field(None, description="Override the resize interpolation.")
    mean: tuple[float, float, float] | None = Field(None, description="Override the normalisation mean (0..1 units).")
    std: tuple[float, float, float] | None = Field(None, description="Override the normalisation std (0..1 units).")


class RegionsConfig(_Section):
    """How a saliency mask becomes regions (the paper's connected components, Sec. 3.2)."""

    threshold: float | Literal["otsu", "auto"] = Field(
        "auto",
        description="Binarisation threshold on the (smoothed) mask in [0,1]; 'otsu' for Otsu's threshold per image "
        "(suits soft maps such as gradients); 'auto' uses the saliency method's own `binarize_at` when it declares "
        "one (crisp: 0.5, unsmoothed) and Otsu otherwise.",
    )
    smooth_sigma: float | None = Field(
        None, ge=0, description="Gaussian smoothing (pixels) of the mask before thresholding; none = 0 for methods "
        "that declare `binarize_at`, 2 for the others."
    )
    min_area: float = Field(
        0.002, ge=0, description="Smallest region kept, as a fraction of the image area."
    )


class PruningConfig(_Section):
    """Which proposals enter the compatibility matrix Corr'' (Sec. 3.2)."""

    min_overlap: float = Field(0.75, ge=0, le=1, description="A proposal is kept when more than this share of its area lies inside a region (see overlap).")
    overlap: Literal["box", "pixels"] = Field("box", description="Measure min_overlap on the region's bounding box or on its pixels (stricter).")
    max_area_ratio: float = Field(2.0, ge=1, description="Two overlapping proposals of one image whose area ratio is below this are near-duplicates; the better matched one is kept.")
    duplicate_overlap: float = Field(0.5, ge=0, le=1, description="Two proposals overlap when their intersection covers more than this share of the smaller one.")
    min_score: float = Field(0.0, ge=0, description="Matching scores at or below this are dropped from Corr (sparsification).")
    pairs: str = Field("auto", pattern=PAIRS_PATTERN, description="Which pairs of images are matched: 'all' (the "
                       "paper's), 'knn:K' (each image with its K nearest by the model's features of the whole view, "
                       f"~N K pairs) or 'auto' (all up to {AUTO_ALL_UP_TO} images, knn:{AUTO_K} above; "
                       "visum.stages.pairing, docs/scale.md).")


class SummariesConfig(_Section):
    merge: Literal["auto", "none", "same-part", "model"] = Field(
        "auto", description="Merge clusters that show the same part: 'same-part' when co-located in shared images, or "
                            "linked as strongly as their own members; 'model' when the explained model's features of "
                            "their members agree (cosine of centroids >= merge_similarity); 'auto' is 'model' when "
                            "the model ends in an nn.Linear (its input gives the features), else 'none' with a "
                            "warning. Summaries then follow parts, not the number of images. The default was "
                            "chosen on the dev worlds (docs/benchmark.md).")
    merge_similarity: float = Field(0.7, ge=-1, le=1, description="'model' merging: smallest cosine between two "
                                                                  "clusters' mean features that merges them.")
    merge_after: Literal["clustering", "scoring", "reliance"] = Field(
        "reliance", description="When clusters are merged: right after clustering (the merged cluster is then "
                                "judged by the scorer); after the scorer's check, among the clusters it kept "
                                "(each judged alone: a part seen in several poses is not discarded for them); or "
                                "after the reliance filter too, among the summaries both kept (the merged "
                                "summary's reliance is measured again).")
    merge_centre: Literal["clusters", "random-boxes"] = Field(
        "random-boxes", description="'model' merging: features are centred on the mean over the clustered members, "
                                    "or on the mean of random boxes of the same sizes in the same images (a "
                                    "reference that does not depend on which clusters there are).")
    merge_apart: Annotated[float, Field(ge=0, le=1)] | Literal["off"] = Field(
        0.5, description="'model' merging: two clusters with members in 2 or more common images, sitting in "
                         "different places in at least this share of them, are two parts and never merge "
                         "('off' = no such test).")
    merge_link: float = Field(0.5, ge=0, description="Linkage test: mean similarity between two clusters' members at "
                                                      "least this times the smaller mean inner similarity.")
    merge_colocated: float = Field(0.5, ge=0, le=1, description="Co-location test: share of shared images where "
                                                                "members of both clusters overlap.")
    min_reliance: float = Field(
        0.2, description="A summary is discarded when removing its members' parts takes less than this share of the "
                         "target's probability (visum.stages.reliance): the model does not rely on it. 0.2 follows "
                         "the worlds benchmark's fixed 'relied on' convention; -inf keeps every scored summary.")
    reliance_removal: Removal = Field(
        "blur", description="How a member's part box is removed to measure reliance: 'blur' (the paper's Phi, sigma 10 "
                            "px; keeps the box's mean colour) or 'fill' (the box painted with the mean colour of the "
                            "pixels around it).")
    min_images: int = Field(3, ge=2, description="A cluster becomes a summary candidate only when its parts come from at least this many images.")
    one_per_region: bool = Field(True, description="Keep one member per image and salient region (the best matched "
                                                   "proposal); false keeps every proposal of the cluster.")
    tile: int = Field(128, ge=32, description="Side of one member tile in the summary images, pixels.")
    tile_context: float = Field(
        0.4, ge=0.0, le=1.0,
        description="Each member tile shows at least this share of the image's shorter side around the part, so a "
                    "tiny part is seen in its surroundings (0 = the region and a thin margin only).")


def _component_field(kind: str):
    spec = KIND[kind]
    why = f": {spec.why_default}" if spec.why_default else ""
    return Field(spec.default, description=f"{spec.stage[0].upper()}{spec.stage[1:]}: a {kind} plugin, `visum plugins --kind {kind}`; "
                                           f"default {spec.default}{why}.")


class RunConfig(_Section):
    """Everything that determines a run's result (``out`` and caching aside)."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    images: Path | None = Field(None, description="Folder of images of the target class; none = the parts benchmark.")
    benchmark_images: int = Field(30, ge=2, description="How many parts-benchmark images the default run generates.")
    target: str | None = Field(None, description="Class index or name; default: the parts benchmark's main class.")
    # one field per kind of visum.components.KIND_TABLE, its default and description taken from there
    saliency: str = _component_field("saliency")
    proposer: str = _component_field("proposer")
    matcher: str = _component_field("matcher")
    clusterer: str = _component_field("clusterer")
    scorer: str = _component_field("scorer")
    options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Component options by kind.")
    regions: RegionsConfig = Field(default_factory=RegionsConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    summaries: SummariesConfig = Field(default_factory=SummariesConfig)
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Random seed, 0 to 2**31 - 1: the same inputs and seed "
                                                          "give the same manifest.")
    batch_size: int = Field(16, ge=1, description="Images per batch (classification, saliency, reliance). Part of the "
                                                  "result: a real network's batched arithmetic rounds by batch size "
                                                  "(docs/reliability.md).")
    workers: int = Field(0, ge=0, description="Processes for all-pairs matching; 0 = one per core.")
    device: str = "cpu"
    keep_misclassified: bool = False
    min_target_share: float = Field(
        0.5, ge=0, le=1, description="Warn, and name the preprocessing as the first suspect, when fewer than this "
        "share of the images are classified as the target."
    )

    @field_validator("options")
    @classmethod
    def _known_kinds(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for kind in value:
            if kind not in KINDS:
                raise ValueError(f"unknown component kind '{kind}' (kinds: {', '.join(KINDS)})")
        return value

    def component(self, kind: str) -> str:
        return getattr(self, kind)

    def component_options(self, kind: str) -> dict[str, Any]:
        return dict(self.options.get(kind, {}))


def _one_line(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


assert all(RunConfig.model_fields[k].default == KIND[k].default for k in KINDS), "a field per kind, from KIND_TABLE"


def make_config(data: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"bad configuration: {_one_line(exc)}") from None


def load_config(path: Path) -> RunConfig:
    """A run.toml. A relative ``images`` folder is relative to the file's own folder (as visum
    writes it for the images a run keeps beside its manifest), so the file works from anywhere."""
    try:
        data = tomllib.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: a folder, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML file ({exc})") from None
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_one_line(exc)}") from None
    if config.images is not None and not config.images.is_absolute():
        config = config.model_copy(update={"images": Path(path).absolute().parent / config.images})
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """JSON/TOML-ready dictionary; ``None`` values are left out (TOML has no null)."""

    def drop_none(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop_none(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [drop_none(v) for v in value]
        return value

    return drop_none(config.model_dump(mode="json"))


def dump_config(config: RunConfig, path: Path) -> None:
    write_text_atomic(path, tomli_w.dumps(config_to_dict(config)))


def parse_value(text: str) -> Any:
    """A command-line value as TOML would read it (``3``, ``0.5``, ``true``, ``[1, 2]``), else a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_opt(text: str) -> tuple[str, str, Any]:
    """``KIND.KEY=VALUE`` → ``(kind, key, value)``; one-line error naming the flag otherwise."""
    head, sep, value = text.partition("=")
    kind, dot, key = head.strip().partition(".")
    if not sep or not dot or not key:
        raise ConfigError(f"bad --opt '{text}': expected KIND.KEY=VALUE, e.g. saliency.smooth_sigma=2")
    if kind not in KINDS:
        raise ConfigError(f"bad --opt '{text}': unknown kind '{kind}' (kinds: {', '.join(KINDS)})")
    return kind, key.strip(), parse_value(value.strip())
