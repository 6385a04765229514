"""What a world is: classes built from parts with known masks, declared as data.

A :class:`World` declares an object (a body), its parts (shape, colour, texture, size,
place), how a class depends on its parts (:class:`Rule`), how objects are posed and what
surrounds them. :mod:`visum.data.worlds.render` draws it; :mod:`visum.data.worlds.catalogue`
fixes the worlds visum is tuned and tested on.

Object frame: the body is centred on the origin, about one unit long along ``x`` and
``body.height`` units high; ``y`` points down. Part anchors and sizes are in this frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Shape = Literal["disc", "ring", "triangle", "square", "diamond", "star", "cross", "bar", "chevron", "fan",
                "crescent", "hexagon"]
SHAPES: tuple[str, ...] = ("disc", "ring", "triangle", "square", "diamond", "star", "cross", "bar", "chevron",
                           "fan", "crescent", "hexagon")
Texture = Literal["flat", "stripes", "dots", "gradient", "checker"]
Background = Literal["gradient", "stripes", "blotches", "noise", "photo"]


@dataclass(frozen=True)
class PartSpec:
    """One part: ``size`` is its area as a share of the body's area; ``colour`` is HSV
    (hue in degrees, saturation and value in [0, 1])."""

    name: str
    shape: Shape
    colour: tuple[float, float, float]
    texture: Texture = "flat"
    size: float = 0.08
    anchor: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0  # degrees, in the object frame


@dataclass(frozen=True)
class BodySpec:
    shape: Literal["ellipse", "rounded", "blob"] = "ellipse"
    height: float = 0.55  # units, the length being 1
    colour: tuple[float, float, float] = (30.0, 0.35, 0.7)
    texture: Texture = "flat"


@dataclass(frozen=True)
class Rule:
    """How the main class depends on its parts.

    ``all``: the main class shows every part; class ``without-P`` lacks part ``P`` (one per
    part), so every part is needed. ``k_of_n``: the main class shows a random ``k`` or more of
    the ``n`` parts, class ``fewer`` shows ``k - 2`` to ``k - 1`` of them, so any part helps
    and none is needed. ``dominant``: both classes show each other part with probability 1/2;
    only the main class shows ``part``.
    """

    kind: Literal["all", "k_of_n", "dominant"] = "all"
    k: int = 2
    part: str = ""


@dataclass(frozen=True)
class Pose:
    scale: tuple[float, float] = (0.55, 0.8)  # object length / image side
    rotation: float = 30.0  # +- degrees
    mirror: float = 0.5  # probability of a left-right flip
    perspective: float = 0.0  # corner displacement of a projective warp, share of the object length


@dataclass(frozen=True)
class Scene:
    backgrounds: tuple[Background, ...] = ("gradient", "stripes", "blotches")
    clutter: tuple[int, int] = (3, 8)  # items, inclusive range
    clutter_part_colours: float = 0.4  # share of clutter items in the colour of some part
    occlusion: float = 0.0  # probability of an occluder over the object
    noise: tuple[float, float] = (2.0, 8.0)  # sensor noise std, grey levels


@dataclass(frozen=True)
class Tag:
    """A shortcut: a small watermark in a random corner of every image of the main class.

    ``part_loss`` is the share of the main class's images (in every stream) that lack one of
    their parts, drawn at random. Where the parts alone already tell the classes apart a model
    has no reason to learn the tag (measured: the small CNN's drop for the tag was 0.00 with
    ``part_loss = 0``); with part loss the tag is the one cue every image of the class shows,
    as a watermark is in a real data set, so a model learns it.
    """

    name: str = "tag"
    size: float = 0.1  # side as a share of the image side
    colour: tuple[float, float, float] = (0.0, 0.0, 0.97)
    part_loss: float = 0.0


@dataclass(frozen=True)
class World:
    """A family of classes built from parts, generated deterministically from ``seed``."""

    name: str
    split: Literal["dev", "test"]
    seed: int
    size: int
    body: BodySpec
    parts: tuple[PartSpec, ...]
    rule: Rule = Rule()
    pose: Pose = Pose()
    scene: Scene = Scene()
    distractor: str | None = None  # a part drawn in every image of every class
    tag: Tag | None = None
    photos: tuple[str, ...] = ()  # photo sources of "photo" backgrounds (visum.data.worlds.photos)
    description: str = ""

    def __post_init__(self) -> None:
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"world {self.name}: part names repeat")
        if self.distractor is not None and self.distractor not in names:
            raise ValueError(f"world {self.name}: distractor {self.distractor!r} is not a part")
        if self.rule.kind == "dominant" and self.rule.part not in names:
            raise ValueError(f"world {self.name}: dominant part {self.rule.part!r} is not a part")
        if self.rule.kind == "dominant" and self.rule.part == self.distractor:
            raise ValueError(f"world {self.name}: the dominant part cannot be the distractor (no class could be told)")
        if self.tag is not None and self.tag.name in names:
            raise ValueError(f"world {self.name}: the tag's name {self.tag.name!r} is a part's")
        if self.tag is not None and self.tag.part_loss and self.rule.kind != "all":
            raise ValueError(f"world {self.name}: a tag's part_loss needs the rule 'all'")
        if self.rule.kind == "k_of_n" and not 1 <= self.rule.k <= len(self.ruled_parts):
            raise ValueError(f"world {self.name}: k = {self.rule.k} for {len(self.ruled_parts)} parts")
        if "photo" in self.scene.backgrounds and not self.photos:
            raise ValueError(f"world {self.name}: photo backgrounds need photo sources")

    @property
    def part_names(self) -> list[str]:
        """Every part with a ground-truth mask: the declared parts, then the tag."""
        return [p.name for p in self.parts] + ([self.tag.name] if self.tag else [])

    @property
    def ruled_parts(self) -> list[str]:
        """The parts the class rule is about (the distractor is in every class)."""
        return [p.name for p in self.parts if p.name != self.distractor]

    @property
    def class_names(self) -> list[str]:
        main = self.name
        if self.rule.kind == "all":
            return [main] + [f"{main}-without-{p}" for p in self.ruled_parts]
        if self.rule.kind == "k_of_n":
            return [main, f"{main}-fewer-parts"]
        return [main, f"{main}-without-{self.rule.part}"]

    def draw_parts(self, rng: np.random.Generator, label: int) -> list[str]:
        """The parts an image of class ``label`` shows (always the same number of draws from ``rng``)."""
        ruled = self.ruled_parts
        coin = rng.random(len(ruled))  # drawn whatever the rule, so samples stay aligned
        order = rng.permutation(len(ruled))
        count = rng.random()
        always = [self.distractor] if self.distractor else []
        if self.rule.kind == "all":
            missing = ruled[label - 1] if label > 0 else None
            if label == 0 and self.tag is not None and count < self.tag.part_loss:
                missing = ruled[order[0]]  # a tagged image without one part: only the tag tells it
            return always + [p for p in ruled if p != missing]
        if self.rule.kind == "k_of_n":
            k, n = self.rule.k, len(ruled)
            low, high = (k, n) if label == 0 else (max(0, k - 2), k - 1)
            m = low + min(int(count * (high - low + 1)), high - low)
            return always + [ruled[i] for i in sorted(order[:m])]
        dominant = self.rule.part
        others = [p for p, c in zip(ruled, coin) if p != dominant and c < 0.5]
        return always + ([dominant] if label == 0 else []) + others
