"""The plugin catalogue and the checked calls: every failure names the plugin."""

import importlib.metadata
import sys
import types

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from visum import ClusterQuality, Component, Options, checks, hookimpl
from visum.errors import ConfigError, PluginError
from visum.plugins import RegistryEntry, _selected, build_catalogue, read_registry


class Ones(Component):
    name = "ones"
    summary = "all ones"

    def explain(self, model, x, target):
        return torch.ones(x.shape[0], 1, *x.shape[2:])


class SaliencyPlugin:
    @hookimpl
    def register_saliency_methods(self):
        return [Ones]


def catalogue(*plugins, registry=(), entry_points=()):
    return build_catalogue(registry=list(registry), entry_points=list(entry_points),
                           extra_plugins=[(f"p{k}", p) for k, p in enumerate(plugins)])


def test_runtime_plugin_is_listed_and_created():
    cat = catalogue(SaliencyPlugin())
    info = cat.get("saliency", "ones")
    assert info.source == "registered at run time" and info.summary == "all ones"
    assert isinstance(cat.create("saliency", "ones"), Ones)
    assert [c.name for c in cat.list("saliency")] == ["ones"]


def test_name_clash_names_both_plugins():
    class Other:
        @hookimpl
        def register_saliency_methods(self):
            return [type("Ones2", (Ones,), {"name": "ones"})]

    with pytest.raises(PluginError, match=r"'ones' clashes: provided by p\d .* and by p\d"):
        catalogue(SaliencyPlugin(), Other())


@pytest.mark.parametrize(
    "returned, message",
    [
        (["not a class"], "not a class"),
        ([type("NoName", (), {"explain": lambda *a: None, "Options": Options})], "name must be"),
        ([type("NoOpts", (), {"name": "x", "explain": lambda *a: None, "Options": dict})], "Options must be a pydantic"),
        ([type("NoMethod", (Component,), {"name": "x"})], r"has no method explain\(\)"),
        ("a string", "must return a list"),
    ],
)
def test_malformed_components_are_rejected_by_plugin_name(returned, message):
    class Bad:
        @hookimpl
        def register_saliency_methods(self):
            return returned

    with pytest.raises(PluginError, match=message):
        catalogue(Bad())


def test_hook_that_raises_or_is_misspelt():
    class Raises:
        @hookimpl
        def register_proposers(self):
            raise RuntimeError("boom")

    with pytest.raises(PluginError, match=r"p0 .* raised in register_proposers\(\): RuntimeError: boom"):
        catalogue(Raises())

    class Misspelt:
        @hookimpl
        def register_saliency(self):
            return []

    with pytest.raises(PluginError, match="register_saliency"):
        catalogue(Misspelt())


def test_entry_point_that_fails_to_import_is_set_aside_and_named():
    ep = importlib.metadata.EntryPoint(name="broken", value="visum_no_such_module_xyz", group="visum")
    cat = catalogue(SaliencyPlugin(), entry_points=[ep])
    assert cat.names("saliency") == ["ones"]  # the others still load
    [b] = cat.broken
    assert b.name == "broken" and "failed to import: ModuleNotFoundError" in b.error
    with pytest.raises(PluginError, match=r"unknown proposer plugin 'x' .*not loaded: plugin 'broken' .*ModuleNotFound"):
        cat.get("proposer", "x")


def _entry_point_plugin(name, plugin, monkeypatch):
    """An entry point named ``name`` whose load() gives ``plugin``."""
    module = types.ModuleType(f"visum_test_ep_{name}")
    module.plugin = plugin
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return importlib.metadata.EntryPoint(name=name, value=f"{module.__name__}:plugin", group="visum")


def test_third_party_failures_are_set_aside_one_by_one(monkeypatch):
    class Raises:
        @hookimpl
        def register_proposers(self):
            raise RuntimeError("boom")

    class Misspelt:
        @hookimpl
        def register_saliency(self):
            return []

    class Clashes:
        @hookimpl
        def register_saliency_methods(self):
            return [type("Ones2", (Ones,), {"name": "ones"})]

    class Malformed:
        @hookimpl
        def register_saliency_methods(self):
            return ["not a class"]

    class Fine:
        @hookimpl
        def register_saliency_methods(self):
            return [type("Twos", (Ones,), {"name": "twos"})]

    eps = [_entry_point_plugin(n, p, monkeypatch) for n, p in
           [("raises", Raises()), ("misspelt", Misspelt()), ("clashes", Clashes()), ("malformed", Malformed()),
            ("fine", Fine())]]
    cat = catalogue(SaliencyPlugin(), entry_points=eps)
    assert cat.names("saliency") == ["ones", "twos"]
    assert cat.get("saliency", "ones").plugin == "p0"  # the run-time plugin keeps its name
    errors = {b.name: b.error for b in cat.broken}
    assert sorted(errors) == ["clashes", "malformed", "misspelt", "raises"]
    assert "RuntimeError: boom" in errors["raises"]
    assert "register_saliency" in errors["misspelt"]
    assert "'ones' clashes" in errors["clashes"]
    assert "not a class" in errors["malformed"]
    assert not any(c.plugin in errors for c in cat.list())


def test_load_plugins_variable_selects_by_entry_point_or_distribution_name():
    eps = [importlib.metadata.EntryPoint(name=n, value="x", group="visum") for n in ("grid", "other")]
    assert _selected(eps, None) == (eps, [], [])
    assert _selected(eps, "") == ([], ["grid", "other"], [])
    assert _selected(eps, " Grid ,nope") == ([eps[0]], ["other"], ["nope"])


def test_a_clash_sets_aside_only_the_plugin_that_must_give_way(monkeypatch):
    def provider(saliency=(), proposers=()):
        class P:
            @hookimpl
            def register_saliency_methods(self):
                return [type(n, (Ones,), {"name": n}) for n in saliency]

            @hookimpl
            def register_proposers(self):
                return [type(n, (Component,), {"name": n, "propose": lambda s, i: None}) for n in proposers]
        return P()

    # A clashes with the run-time plugin on "p"; C and D both offer "x", which A offered too
    eps = [_entry_point_plugin(n, p, monkeypatch) for n, p in
           [("A", provider(["x"], ["p"])), ("C", provider(["x"])), ("D", provider(["x"], ["q"]))]]
    cat = catalogue(provider(proposers=["p"]), entry_points=eps)
    assert cat.get("saliency", "x").plugin == "C"  # A's clash with p0 does not cost C the name x
    assert sorted(b.name for b in cat.broken) == ["A", "D"] and cat.names("proposer") == ["p"]
    assert all("\n" not in b.error for b in cat.broken)


def test_registry_entry_must_match_its_module():
    entry = RegistryEntry("gradient", "saliency", "visum_plugins.proposers.selective_search", "x")
    with pytest.raises(PluginError, match="registry.toml lists saliency plugin 'gradient'"):
        catalogue(registry=[entry])
    with pytest.raises(PluginError, match="failed to import"):
        catalogue(registry=[RegistryEntry("x", "saliency", "visum_plugins.nope", "x")])
    with pytest.raises(PluginError, match="bad entry"):
        read_registry('[[plugin]]\nname = "x"\nkind = "colour"\nmodule = "m"\nsummary = "s"\n')


def test_unknown_name_and_bad_options_are_one_line_errors():
    from pydantic import Field

    class WithOptions(Component):
        name = "opts"

        class Options(Options):
            sigma: float = Field(1.0, gt=0)

        def explain(self, model, x, target):
            return x

    class P:
        @hookimpl
        def register_saliency_methods(self):
            return [WithOptions]

    cat = catalogue(P())
    with pytest.raises(PluginError, match=r"unknown saliency plugin 'nope' \(available: opts\)"):
        cat.get("saliency", "nope")
    with pytest.raises(ConfigError, match=r"saliency plugin 'opts' .*sigma.*greater than 0"):
        cat.create("saliency", "opts", {"sigma": -1})
    with pytest.raises(ConfigError, match=r"sigmaa.*\(options: sigma\)"):
        cat.create("saliency", "opts", {"sigmaa": 1})
    with pytest.raises(ConfigError, match="unknown component kind"):
        cat.get("colour", "x")


def test_builtin_catalogue_has_a_component_of_every_kind():
    from visum.plugins import build_catalogue as build

    cat = build(entry_points=[])
    names = {(c.kind, c.name) for c in cat.list()}
    for expected in [("saliency", "gradient"), ("proposer", "selective-search"), ("matcher", "hog"),
                     ("clusterer", "ap"), ("scorer", "ssim")]:
        assert expected in names
    assert all(c.source == "built-in" and c.summary for c in cat.list())


# ---- checked calls ------------------------------------------------------------------------

def info_for(kind, cls):
    from visum.plugins import ComponentInfo

    return ComponentInfo(kind, cls.name, cls, "p0", "test-dist 1.0", "")


def test_saliency_wrong_shape_range_or_exception_names_the_plugin():
    x = torch.zeros(2, 3, 8, 8)
    t = torch.zeros(2, dtype=torch.long)

    class Bad(Component):
        name = "bad"

        def __init__(self, out):
            self.out = out

        def explain(self, model, x, target):
            if isinstance(self.out, Exception):
                raise self.out
            return self.out

    info = info_for("saliency", Bad)
    for out, msg in [
        (torch.zeros(2, 8, 8), r"shape \(2, 8, 8\), expected \(2, 1, 8, 8\)"),
        (torch.full((2, 1, 8, 8), 2.0), r"values in \[2, 2\]"),
        (np.zeros((2, 1, 8, 8)), "not a torch.Tensor"),
        (torch.full((2, 1, 8, 8), float("nan")), "non-finite"),
        (ValueError("nope"), r"raised in explain\(\): ValueError: nope"),
    ]:
        with pytest.raises(PluginError, match=r"saliency plugin 'bad' \(test-dist 1.0\)") as e:
            checks.saliency(info, Bad(out), None, x, t)
        assert e.match(msg)
    good = checks.saliency(info, Bad(torch.rand(2, 1, 8, 8)), None, x, t)
    assert good.shape == (2, 8, 8) and good.dtype == np.float32


def test_proposals_are_clipped_and_validated():
    class P(Component):
        name = "p"

        def __init__(self, out):
            self.out = out

        def propose(self, image):
            return self.out

    info = info_for("proposer", P)
    img = np.zeros((10, 20, 3), np.uint8)
    boxes = checks.proposals(info, P(np.array([[-3, 0, 25, 5], [4, 4, 4, 9], [1.2, 2, 5.7, 6]])), img)
    assert boxes.tolist() == [[0, 0, 20, 5], [1, 2, 6, 6]] and boxes.dtype == np.int64
    with pytest.raises(PluginError, match=r"shape \(2, 3\)"):
        checks.proposals(info, P(np.zeros((2, 3))), img)
    assert checks.proposals(info, P(np.zeros((0,))), img).shape == (0, 4)


def test_match_cluster_and_score_results_are_checked():
    class M(Component):
        name = "m"

        def describe(self, image, boxes):
            return boxes

        def match(self, a, b):
            return -np.ones((len(a), len(b)))

    with pytest.raises(PluginError, match="negative"):
        checks.match(info_for("matcher", M), M(), np.zeros((2, 4)), np.zeros((3, 4)), 2, 3)
    with pytest.raises(PluginError, match=r"shape \(2, 3\), expected \(2, 2\)"):
        checks.match(info_for("matcher", M), M(), np.zeros((2, 4)), np.zeros((3, 4)), 2, 2)

    class C(Component):
        name = "c"

        def fit(self, s):
            self.labels_ = np.zeros(s.shape[0] + 1, dtype=int)
            return self

    with pytest.raises(PluginError, match=r"labels_ of shape \(4,\)"):
        checks.clustering(info_for("clusterer", C), C(), sp.eye(3, format="csr"))

    class S(Component):
        name = "s"

        def score(self, clusters):
            return [ClusterQuality(True)]

    with pytest.raises(PluginError, match="1 verdicts for 2 clusters"):
        checks.scores(info_for("scorer", S), S(), [[], []])
