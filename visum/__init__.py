"""visum: visual summaries of the parts an image classifier relies on.

Implements "Understanding Deep Architectures by Visual Summaries" (Godi, Carletti et al.,
BMVC 2018) as a pipeline of pluggable components.
"""

from visum.components import (
    ClusterQuality,
    Clusterer,
    Component,
    Matcher,
    Options,
    Proposer,
    SaliencyMethod,
    Scorer,
)
from visum.errors import ConfigError, InputError, PluginError, VisumError
from visum.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "hookimpl",
    "Component",
    "Options",
    "SaliencyMethod",
    "Proposer",
    "Matcher",
    "Clusterer",
    "Scorer",
    "ClusterQuality",
    "VisumError",
    "InputError",
    "ConfigError",
    "PluginError",
]
