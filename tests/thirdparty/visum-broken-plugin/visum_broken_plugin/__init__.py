"""A plugin whose import fails, as one does when its own dependency is missing."""

import visum_dependency_that_is_not_installed  # noqa: F401
