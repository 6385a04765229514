"""Worlds: families of classes built from parts with ground-truth masks (see :mod:`.spec`),
drawn deterministically (:mod:`.render`), fixed into dev and test splits (:mod:`.catalogue`)."""

from visum.data.worlds.catalogue import WORLDS, world, worlds
from visum.data.worlds.render import WorldSample, make_samples, render, sample_rng
from visum.data.worlds.spec import BodySpec, PartSpec, Pose, Rule, Scene, Tag, World

__all__ = [
    "World", "PartSpec", "BodySpec", "Rule", "Pose", "Scene", "Tag",
    "WorldSample", "render", "make_samples", "sample_rng",
    "WORLDS", "world", "worlds",
]
