"""User-facing errors.

Every error a user can cause (bad input, bad configuration, a broken plugin) is a
:class:`VisumError`. The CLI prints its message as one line and exits with status 2;
anything else is a bug in visum and is shown with its traceback.
"""

from __future__ import annotations


class VisumError(Exception):
    """An error caused by the input, the configuration or a plugin, not by visum."""


class InputError(VisumError):
    """An image, folder or target that cannot be used. The message names the file."""


class ConfigError(VisumError):
    """A configuration value, option or model specification that is not valid."""


class PluginError(VisumError):
    """A plugin that fails to load, clashes with another, raises, or returns the wrong thing.

    The message always names the plugin (kind, name and the distribution that provides it).
    """


class VisumWarning(UserWarning):
    """A run's result that needs the user's attention (low target share, a damaged cache entry, ...)."""


class OutputError(VisumError):
    """An output folder or file that cannot be written, or that is not visum's to replace. The message names it."""


class EngineError(VisumError):
    """Work sent to an engine (a Ray cluster) that did not come back: its worker died more times than it is
    retried, or the cluster went away. Everything finished before is in the cache; a rerun resumes."""
