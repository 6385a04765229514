"""The run manifest: everything a run found, as one JSON document.

Boxes are ``[x0, y0, x1, y1]`` in the *original* image's pixel coordinates, ``x1`` and
``y1`` exclusive. ``image`` and ``region`` in a summary member refer to ``ImageRecord.id``
and ``RegionRecord.id``. Paths are relative to the run's output folder when they lie inside
it. Two runs with the same inputs and seed give the same manifest except ``timings``.
The JSON schema is written to ``docs/manifest.schema.json`` by ``visum schema``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Box = tuple[int, int, int, int]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRecord(_Record):
    spec: str = Field(description="The --model specification the run used.")
    target_index: int = Field(description="Index of the explained class in the model's output.")
    target_name: str | None = Field(description="Name of the explained class, when the model has names.")


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


class SummaryRecord(_Record):
    id: int
    kept: bool = Field(description="False when the scorer discarded the cluster as unreliable.")
    quality: dict[str, float] = Field(default_factory=dict)
    image: str | None = Field(default=None, description="Summary PNG, relative to the run folder.")
    members: list[MemberRecord]


class Manifest(_Record):
    visum_version: str
    config: dict[str, Any]
    model: ModelRecord
    images: list[ImageRecord]
    summaries: list[SummaryRecord]
    timings: dict[str, float] = Field(description="Wall-clock seconds per stage.")

    @property
    def kept_summaries(self) -> list[SummaryRecord]:
        return [s for s in self.summaries if s.kept]


def manifest_schema() -> dict[str, Any]:
    """The JSON schema of :class:`Manifest`."""
    return Manifest.model_json_schema()
