"""The run manifest: everything a run found, as one JSON document.

Boxes are ``[x0, y0, x1, y1]`` in the *original* image's pixel coordinates, ``x1`` and
``y1`` exclusive. ``image`` and ``region`` in a summary member refer to ``ImageRecord.id``
and ``RegionRecord.id``. Paths are relative to the run's output folder when they lie inside
it. Two runs with the same inputs and seed give the same manifest except ``timings``.
The JSON schema is written to ``docs/manifest.schema.json`` by ``visum schema``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Box = tuple[int, int, int, int]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PreprocessingRecord(_Record):
    """How each image became the model's input (see visum.models.base.Preprocessing)."""

    resize: Literal["short-side", "squash"] = Field(description="short-side: the short side scaled to resize_to, aspect kept; squash: the whole image scaled to resize_to x resize_to.")
    resize_to: int = Field(description="Side after resizing, before the centre crop, pixels.")
    crop_ratio: float = Field(description="input_size / resize_to: the share of the resized (short) side the centre crop keeps; 1 with squash = the whole image.")
    input_size: int = Field(description="Side of the square the model sees, pixels.")
    interpolation: str
    mean: tuple[float, float, float] = Field(description="Normalisation mean, 0..1 units: x = (v / 255 - mean) / std.")
    std: tuple[float, float, float]
    source: str = Field(description="Where the recipe came from, in words: the model source's declaration or a default, the parts assumed, the user's overrides.")
    assumed: list[str] = Field(default_factory=list, description="Parts no declaration gave: visum's guesses, the first to check.")
    overridden: list[str] = Field(default_factory=list, description="Parts set by the user's flags or run.toml.")
    description: str = Field(description="The recipe in words.")


class ModelRecord(_Record):
    spec: str = Field(description="The --model specification the run used.")
    target_index: int = Field(description="Index of the explained class in the model's output.")
    target_name: str | None = Field(description="Name of the explained class, when the model has names.")
    preprocessing: PreprocessingRecord | None = Field(default=None, description="How the images were prepared for the model.")


class WarningRecord(_Record):
    code: str = Field(description="Stable identifier, e.g. 'target-share'.")
    message: str


class RegionRecord(_Record):
    id: int = Field(description="Index of the region within its image.")
    bbox: Box = Field(description="Box of the connected component, original image pixels.")
    area: int = Field(description="Pixel count of the connected component, at model input resolution.")


class ImageRecord(_Record):
    id: int = Field(description="Index of the image in the run, in sorted path order.")
    path: str
    width: int
    height: int
    target_score: float = Field(description="Softmax probability of the target class.")
    predicted_index: int = Field(description="Arg-max class of the model.")
    predicted_name: str | None = None
    used: bool = Field(description="False when the model did not predict the target (see config.keep_misclassified).")
    mask: str | None = Field(default=None, description="Saliency mask PNG, relative to the run folder.")
    regions: list[RegionRecord] = Field(default_factory=list)


class MemberRecord(_Record):
    image: int = Field(description="ImageRecord.id")
    region: int = Field(description="RegionRecord.id within that image")
    part_bbox: Box = Field(description="The matched part (an object proposal), original image pixels.")
    score: float = Field(description="Mean similarity of this part to the other members of its cluster.")
    drop: float | None = Field(default=None, description="Relative fall of the target's probability when this part's box is removed (summaries.reliance_removal; summaries that passed the scorer).")


class SummaryRecord(_Record):
    id: int
    kept: bool = Field(description="False when the scorer discarded the cluster as unreliable.")
    quality: dict[str, float] = Field(default_factory=dict)
    reliance: float | None = Field(
        default=None,
        description="How much the model relies on this summary: sum over members of (p - p_removed) / sum of p, "
                    "p the target's probability and p_removed with the member's part box removed, by "
                    "summaries.reliance_removal (blur or fill) (summaries that passed "
                    "the scorer; summaries are ordered by it; below summaries.min_reliance a summary is discarded).")
    image: str | None = Field(default=None, description="Summary PNG, relative to the run folder.")
    members: list[MemberRecord]


class Manifest(_Record):
    visum_version: str
    config: dict[str, Any]
    model: ModelRecord
    images: list[ImageRecord]
    summaries: list[SummaryRecord]
    warnings: list[WarningRecord] = Field(default_factory=list, description="Results the run cannot vouch for, said out loud.")
    timings: dict[str, float] = Field(description="Wall-clock seconds per stage.")

    @property
    def kept_summaries(self) -> list[SummaryRecord]:
        return [s for s in self.summaries if s.kept]


def preprocessing_record(pre) -> PreprocessingRecord:
    """The manifest's record of a :class:`visum.models.base.Preprocessing`."""
    return PreprocessingRecord(
        resize=pre.resize, resize_to=pre.resize_to, crop_ratio=round(pre.crop_ratio, 6), input_size=pre.input_size,
        interpolation=pre.interpolation, mean=pre.mean, std=pre.std, source=pre.provenance(),
        assumed=list(pre.assumed), overridden=list(pre.overridden), description=pre.describe(),
    )


def manifest_schema() -> dict[str, Any]:
    """The JSON schema of :class:`Manifest`."""
    return Manifest.model_json_schema()
