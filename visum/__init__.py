"""visum: visual summaries of the parts an image classifier relies on.

Implements "Understanding Deep Architectures by Visual Summaries" (Godi, Carletti et al.,
BMVC 2018) as a pipeline of pluggable components.

From Python: ``visum.summarize(model, images, target=...)`` returns a :class:`visum.result.Result`
(its summaries, shown inline in Jupyter, ``result.save(folder)`` for the files); ``visum.explain
(model, image, target=..., method=...)`` returns one saliency mask. See :mod:`visum.api`.
"""

from visum.cache_codec import cacheable
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
    "summarize",
    "explain",
    "Result",
    "hookimpl",
    "cacheable",
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


def __getattr__(name: str):
    """``summarize``, ``explain`` and ``Result`` load on first use: ``import visum`` stays light for plugins."""
    if name in ("summarize", "explain"):
        from visum import api

        return getattr(api, name)
    if name == "Result":
        from visum.result import Result

        return Result
    raise AttributeError(f"module 'visum' has no attribute {name!r}")
