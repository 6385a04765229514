"""The worlds visum is tuned on (``dev``) and reported on (``test``), fixed here.

Twelve worlds, six a split. Across them vary how the class depends on its parts (every part
needed, any k of n, one dominant part), the number of parts (2 to 6), part size (2 % to 20 %
of the body), part look (shape, colour, texture, clutter in the parts' colours), pose
(scale, rotation, mirror, perspective), occlusion, backgrounds (gradients, stripes, blotches,
colour noise, crops of photographs shipped in packages: dev and test use disjoint photos)
and image size (96 to 224 px). Each split has a **shortcut** world (a watermark in every
image of the main class) and a **distractor** world (a part in every image of every class,
which tells nothing about the class).

The split is fixed in code: a world never moves between splits. Every choice of a default
or a parameter is made on the dev worlds; figures are reported on the test worlds
(docs/benchmark.md).
"""

from __future__ import annotations

from visum.data.worlds.photos import DEV_PHOTOS, TEST_PHOTOS
from visum.data.worlds.spec import BodySpec, PartSpec, Pose, Rule, Scene, Tag, World

__all__ = ["WORLDS", "world", "worlds"]

_WORLDS = [
    # ------------------------------------------------------------------ dev
    World(
        name="owl", split="dev", seed=101, size=128,
        body=BodySpec("ellipse", 0.6, (30, 0.45, 0.65), "flat"),
        parts=(
            PartSpec("eye", "disc", (55, 0.9, 0.95), "flat", 0.06, (0.25, -0.1)),
            PartSpec("beak", "triangle", (20, 0.9, 0.9), "gradient", 0.05, (0.47, 0.02)),
            PartSpec("tail", "fan", (210, 0.8, 0.8), "stripes", 0.14, (-0.55, 0.0), 180),
        ),
        rule=Rule("all"),
        description="every part needed; three parts of medium size; gradient, stripe and blotch backgrounds",
    ),
    World(
        name="crab", split="dev", seed=102, size=160,
        body=BodySpec("rounded", 0.5, (5, 0.7, 0.75), "dots"),
        parts=(
            PartSpec("claw", "crescent", (200, 0.8, 0.85), "flat", 0.04, (0.45, -0.2)),
            PartSpec("shell-spot", "hexagon", (120, 0.7, 0.8), "checker", 0.05, (0.0, 0.0)),
            PartSpec("leg", "bar", (280, 0.6, 0.8), "flat", 0.03, (-0.2, 0.32), 20),
            PartSpec("eyestalk", "ring", (60, 0.9, 0.95), "flat", 0.025, (0.3, -0.3)),
        ),
        rule=Rule("k_of_n", k=2),
        pose=Pose(scale=(0.5, 0.75), rotation=45, mirror=0.5),
        scene=Scene(backgrounds=("stripes",), clutter=(3, 7)),
        description="any two of four small parts; stripes only; wide rotations",
    ),
    World(
        name="lamp", split="dev", seed=103, size=96,
        body=BodySpec("rounded", 0.8, (220, 0.2, 0.55), "flat"),
        parts=(
            PartSpec("flame", "star", (45, 0.95, 1.0), "flat", 0.1, (0.0, -0.2)),
            PartSpec("handle", "ring", (30, 0.6, 0.7), "flat", 0.06, (-0.45, 0.0)),
            PartSpec("base", "bar", (0, 0.0, 0.3), "stripes", 0.08, (0.0, 0.38)),
            PartSpec("knob", "disc", (0, 0.8, 0.8), "flat", 0.03, (0.3, 0.25)),
            PartSpec("window", "square", (190, 0.5, 0.9), "checker", 0.07, (0.15, 0.05)),
        ),
        rule=Rule("dominant", part="flame"),
        scene=Scene(clutter=(5, 10), clutter_part_colours=0.7, occlusion=0.3),
        description="one dominant part among five; clutter mostly in the parts' colours; occluders",
    ),
    World(
        name="fish", split="dev", seed=104, size=224,
        body=BodySpec("blob", 0.45, (180, 0.5, 0.7), "stripes"),
        parts=(
            PartSpec("eye", "disc", (0, 0.0, 0.98), "flat", 0.02, (0.33, -0.05)),
            PartSpec("fin", "triangle", (30, 0.9, 0.9), "flat", 0.08, (0.0, -0.3), -90),
            PartSpec("tail", "chevron", (300, 0.6, 0.8), "gradient", 0.2, (-0.6, 0.0), 180),
            PartSpec("gill", "crescent", (350, 0.8, 0.7), "flat", 0.04, (0.18, 0.02)),
            PartSpec("belly-fin", "diamond", (90, 0.7, 0.8), "dots", 0.05, (0.05, 0.28)),
            PartSpec("mouth", "bar", (0, 0.9, 0.5), "flat", 0.02, (0.5, 0.06)),
        ),
        rule=Rule("all"),
        pose=Pose(scale=(0.45, 0.7), rotation=25, perspective=0.08),
        scene=Scene(backgrounds=("photo",), clutter=(0, 3)),
        photos=DEV_PHOTOS,
        description="every part needed; six parts from 2 % to 20 %; photo backgrounds; perspective",
    ),
    World(
        name="badge", split="dev", seed=105, size=128,
        body=BodySpec("ellipse", 0.6, (130, 0.4, 0.6), "flat"),
        parts=(
            PartSpec("emblem", "star", (50, 0.9, 0.95), "flat", 0.08, (0.15, 0.0)),
            PartSpec("stripe", "bar", (0, 0.8, 0.8), "flat", 0.07, (-0.2, 0.0), 90),
        ),
        rule=Rule("all"),
        tag=Tag(size=0.1, part_loss=0.5),
        description="shortcut: a watermark in every image of the main class, half of which lack a part",
    ),
    World(
        name="kite", split="dev", seed=106, size=128,
        body=BodySpec("rounded", 0.7, (260, 0.35, 0.7), "flat"),
        parts=(
            PartSpec("bow", "chevron", (330, 0.8, 0.85), "flat", 0.07, (-0.3, -0.15)),
            PartSpec("ribbon", "fan", (100, 0.8, 0.8), "stripes", 0.1, (-0.55, 0.15), 160),
            PartSpec("logo", "ring", (40, 0.9, 0.95), "flat", 0.06, (0.2, 0.0)),
        ),
        rule=Rule("all"),
        distractor="logo",
        description="distractor: the logo is on every kite and on every other class too",
    ),
    # ------------------------------------------------------------------ test
    World(
        name="robot", split="test", seed=201, size=144,
        body=BodySpec("rounded", 0.75, (210, 0.15, 0.6), "flat"),
        parts=(
            PartSpec("antenna", "cross", (0, 0.85, 0.9), "flat", 0.05, (0.0, -0.42)),
            PartSpec("screen", "square", (170, 0.7, 0.8), "dots", 0.12, (0.1, -0.05)),
            PartSpec("button", "ring", (50, 0.9, 0.95), "flat", 0.04, (-0.3, 0.2)),
            PartSpec("arm", "chevron", (280, 0.6, 0.75), "stripes", 0.07, (0.52, 0.1)),
        ),
        rule=Rule("all"),
        description="every part needed; four parts; gradient, stripe and blotch backgrounds",
    ),
    World(
        name="moth", split="test", seed=202, size=112,
        body=BodySpec("ellipse", 0.5, (35, 0.5, 0.45), "stripes"),
        parts=(
            PartSpec("wing-spot", "disc", (200, 0.8, 0.9), "flat", 0.08, (0.05, -0.32)),
            PartSpec("antenna", "bar", (0, 0.0, 0.15), "flat", 0.04, (0.5, -0.2), 30),
            PartSpec("pattern", "diamond", (330, 0.7, 0.85), "checker", 0.1, (-0.15, 0.3)),
            PartSpec("hind-wing", "crescent", (90, 0.6, 0.7), "dots", 0.12, (-0.45, 0.0)),
            PartSpec("eye", "hexagon", (60, 0.9, 0.95), "flat", 0.04, (0.35, 0.05)),
        ),
        rule=Rule("k_of_n", k=3),
        pose=Pose(rotation=60),
        scene=Scene(backgrounds=("noise",), occlusion=0.2),
        description="any three of five parts; colour-noise backgrounds; occluders",
    ),
    World(
        name="turtle", split="test", seed=203, size=192,
        body=BodySpec("blob", 0.6, (100, 0.5, 0.5), "checker"),
        parts=(
            PartSpec("shell-ring", "ring", (40, 0.9, 0.9), "flat", 0.15, (0.0, 0.0)),
            PartSpec("head", "disc", (80, 0.6, 0.75), "flat", 0.05, (0.55, 0.0)),
            PartSpec("flipper", "triangle", (160, 0.7, 0.6), "flat", 0.05, (0.25, 0.35), 60),
        ),
        rule=Rule("dominant", part="shell-ring"),
        pose=Pose(perspective=0.06),
        scene=Scene(backgrounds=("photo",), clutter=(0, 3)),
        photos=TEST_PHOTOS,
        description="one dominant part among three; photo backgrounds; perspective",
    ),
    World(
        name="starfish", split="test", seed=204, size=96,
        body=BodySpec("ellipse", 0.9, (15, 0.6, 0.8), "dots"),
        parts=(
            PartSpec("arm-tip", "triangle", (270, 0.8, 0.85), "flat", 0.18, (0.45, 0.0)),
            PartSpec("centre", "star", (55, 0.9, 0.95), "gradient", 0.2, (0.0, 0.0)),
        ),
        rule=Rule("all"),
        pose=Pose(rotation=90),
        scene=Scene(backgrounds=("stripes", "blotches"), clutter=(6, 12), clutter_part_colours=0.8),
        description="every part needed; two large parts; heavy clutter in the parts' colours; any rotation",
    ),
    World(
        name="mug", split="test", seed=205, size=128,
        body=BodySpec("rounded", 0.85, (0, 0.0, 0.85), "flat"),
        parts=(
            PartSpec("handle", "crescent", (0, 0.0, 0.5), "flat", 0.1, (-0.5, 0.0), 180),
            PartSpec("print", "hexagon", (220, 0.8, 0.8), "checker", 0.08, (0.1, 0.0)),
        ),
        rule=Rule("all"),
        tag=Tag(size=0.09, colour=(60.0, 0.5, 0.95), part_loss=0.5),
        description="shortcut: a watermark in every image of the main class, half of which lack a part",
    ),
    World(
        name="boat", split="test", seed=206, size=160,
        body=BodySpec("ellipse", 0.4, (25, 0.6, 0.55), "stripes"),
        parts=(
            PartSpec("sail", "triangle", (0, 0.0, 0.95), "flat", 0.14, (0.0, -0.45), -90),
            PartSpec("flag", "square", (0, 0.9, 0.85), "flat", 0.03, (0.05, -0.75)),
            PartSpec("porthole", "disc", (200, 0.5, 0.9), "flat", 0.04, (0.25, 0.0)),
        ),
        rule=Rule("all"),
        distractor="porthole",
        scene=Scene(backgrounds=("photo", "gradient"), clutter=(2, 6)),
        photos=TEST_PHOTOS,
        description="distractor: the porthole is on every boat and on every other class too",
    ),
]

WORLDS: dict[str, World] = {w.name: w for w in _WORLDS}


def world(name: str) -> World:
    """The world called ``name``; a ``ValueError`` lists the names otherwise."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; worlds: {', '.join(WORLDS)}")
    return WORLDS[name]


def worlds(split: str = "all") -> list[World]:
    """The worlds of ``split``: ``dev``, ``test`` or ``all``."""
    if split not in ("dev", "test", "all"):
        raise ValueError(f"unknown split {split!r}; use dev, test or all")
    return [w for w in _WORLDS if split == "all" or w.split == split]
