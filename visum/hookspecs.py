"""Every hook visum calls, in one place (the pytest/datasette convention).

A plugin is a module (or any object) with functions marked ``@visum.hookimpl`` whose
names match the hooks below. Each hook returns the component *classes* the plugin provides
for one kind; see :mod:`visum.components` for what each class must offer. A plugin
implements only the hooks of the kinds it provides.

Built-in plugins are listed in ``registry.toml``; third-party plugins declare an entry point
in the group ``visum``::

    [project.entry-points.visum]
    my_plugin = "my_package.visum_plugin"

The hooks are few and stable: adding a component never needs a new hook.
"""

from __future__ import annotations

import pluggy

from visum.components import KIND_TABLE

hookspec = pluggy.HookspecMarker("visum")
hookimpl = pluggy.HookimplMarker("visum")


@hookspec
def register_saliency_methods():
    """Return a list of saliency classes (:class:`visum.components.SaliencyMethod`).

    Each maps a batch ``x[B,3,H,W]`` and targets ``[B]`` to masks ``s[B,1,H,W]`` in [0, 1].
    """


@hookspec
def register_proposers():
    """Return a list of proposer classes (:class:`visum.components.Proposer`).

    Each maps an image ``[H,W,3]`` uint8 to boxes ``[M,4]`` ``[x0, y0, x1, y1]``.
    """


@hookspec
def register_matchers():
    """Return a list of matcher classes (:class:`visum.components.Matcher`).

    Each describes the proposals of an image once, then scores every pair of images'
    proposals as a matrix ``Q_ij[M_i, M_j] >= 0`` (the paper's Sec. 3.2).
    """


@hookspec
def register_clusterers():
    """Return a list of clusterer classes (:class:`visum.components.Clusterer`).

    Each clusters the sparse proposal similarity ``Corr''[N,N]`` into ``labels_[N]``.
    """


@hookspec
def register_scorers():
    """Return a list of scorer classes (:class:`visum.components.Scorer`).

    Each judges the clusters of a class and says which to keep as summaries.
    """


HOOK_OF_KIND = {k.kind: k.hook for k in KIND_TABLE}
assert all(callable(globals().get(hook)) for hook in HOOK_OF_KIND.values()), "every kind's hook is declared above"
