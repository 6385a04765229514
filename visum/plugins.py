"""The plugin manager: finds every component, checks it, and hands it out by kind and name.

Components come from two places (the datasette/pytest arrangement):

* built-ins — the modules listed in ``registry.toml`` (shipped as ``visum_plugins``);
* third parties — any installed distribution with an entry point in the group ``visum``.

Both are registered with one :class:`pluggy.PluginManager` and asked for their components
through the hooks of :mod:`visum.hookspecs`. Every failure names the plugin: a module that
does not import, a misspelt hook, a component that lacks its kind's methods or options, two
components with the same kind and name.

A failing built-in (or a plugin registered at run time) is an error. A failing third-party
plugin is set aside as a :class:`BrokenPlugin`: the other plugins load, ``visum plugins`` lists
it with its error, and asking for a component that is missing names it. As pytest's
``-p``/``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` and datasette's ``DATASETTE_LOAD_PLUGINS`` do,
``VISUM_LOAD_PLUGINS`` restricts which third-party plugins load: a comma-separated list of
entry-point or distribution names (empty: none); unset, all of them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import inspect
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from typing import Any, Iterable

import pluggy
from pydantic import BaseModel, ValidationError

from visum import hookspecs
from visum.components import KIND, KINDS, Kind
from visum.errors import ConfigError, PluginError

ENTRY_POINT_GROUP = "visum"
BUILTIN = "built-in"
LOAD_PLUGINS_ENV = "VISUM_LOAD_PLUGINS"


@dataclass(frozen=True)
class BrokenPlugin:
    """A third-party plugin that was set aside, and why."""

    name: str  # its entry-point name
    source: str  # "<distribution> <version>"
    error: str  # one line

    @property
    def label(self) -> str:
        return f"plugin '{self.name}' ({self.source})"


@dataclass(frozen=True)
class RegistryEntry:
    """One row of ``registry.toml``."""

    name: str
    kind: Kind
    module: str
    summary: str


@dataclass(frozen=True)
class ComponentInfo:
    """A component class as found, with where it came from."""

    kind: Kind
    name: str
    cls: type
    plugin: str  # the plugin's registered name (module name or "dist:entry-point")
    source: str  # "built-in" or "<distribution> <version>"
    summary: str

    @property
    def label(self) -> str:
        """How errors name this component: ``saliency plugin 'gradient' (built-in)``."""
        return f"{self.kind} plugin '{self.name}' ({self.source})"

    def options_table(self) -> list[dict[str, Any]]:
        """Name, type, default and description of each option, for listings and docs."""
        return options_table(self.cls.Options)


def type_name(annotation: Any) -> str:
    """``Literal['a', 'b']`` → ``a|b``; ``float | None`` → ``float|None``; ``int`` → ``int``."""
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return "|".join(type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "None"
    if typing.get_origin(annotation) is not None:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", str(annotation))


def options_table(model: type[BaseModel]) -> list[dict[str, Any]]:
    rows = []
    for key, field in model.model_fields.items():
        annotation = field.annotation
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        rows.append(
            {
                "name": key,
                "type": type_name(annotation),
                "default": default,
                "required": field.is_required(),
                "description": field.description or "",
            }
        )
    return rows


def read_registry(text: str | None = None) -> list[RegistryEntry]:
    """Parse ``registry.toml`` (the packaged copy unless ``text`` is given)."""
    if text is None:
        text = (importlib.resources.files("visum_plugins") / "registry.toml").read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PluginError(f"registry.toml is not valid TOML: {exc}") from None
    entries = []
    for row in data.get("plugin", []):
        missing = {"name", "kind", "module", "summary"} - set(row)
        if missing or row.get("kind") not in KINDS:
            raise PluginError(f"registry.toml: bad entry {row!r} (needs name, kind in {KINDS}, module, summary)")
        entries.append(RegistryEntry(row["name"], row["kind"], row["module"], row["summary"]))
    return entries


class Catalogue:
    """Every component visum can use, by kind and name."""

    def __init__(self, manager: pluggy.PluginManager, components: Iterable[ComponentInfo],
                 broken: Iterable[BrokenPlugin] = (), skipped: Iterable[str] = (), unmatched: Iterable[str] = ()) -> None:
        self.manager = manager
        self.broken: list[BrokenPlugin] = list(broken)
        """Third-party plugins set aside, with their errors."""
        self.skipped: list[str] = list(skipped)
        """Installed third-party plugins that ``VISUM_LOAD_PLUGINS`` left out."""
        self.unmatched: list[str] = list(unmatched)
        """Names in ``VISUM_LOAD_PLUGINS`` that no installed plugin has (a misspelling, or not installed)."""
        self._components: dict[tuple[str, str], ComponentInfo] = {}
        for info in components:
            key = (info.kind, info.name)
            if key in self._components:
                other = self._components[key]
                raise PluginError(
                    f"{info.kind} plugin name '{info.name}' clashes: provided by {other.plugin} "
                    f"({other.source}) and by {info.plugin} ({info.source})"
                )
            self._components[key] = info

    def list(self, kind: str | None = None) -> list[ComponentInfo]:
        items = [c for c in self._components.values() if kind is None or c.kind == kind]
        return sorted(items, key=lambda c: (KINDS.index(c.kind), c.name))

    def names(self, kind: str) -> list[str]:
        return [c.name for c in self.list(kind)]

    def get(self, kind: str, name: str) -> ComponentInfo:
        if kind not in KINDS:
            raise ConfigError(f"unknown component kind '{kind}' (kinds: {', '.join(KINDS)})")
        try:
            return self._components[(kind, name)]
        except KeyError:
            available = ", ".join(self.names(kind)) or "none"
            aside = "".join(f"; not loaded: {b.label}: {b.error}" for b in self.broken)
            aside += "".join(f"; not loaded: plugin '{n}' (left out by {LOAD_PLUGINS_ENV})" for n in self.skipped)
            raise PluginError(f"unknown {kind} plugin '{name}' (available: {available}){aside}") from None

    def options(self, kind: str, name: str, raw: dict[str, Any] | None = None) -> BaseModel:
        """Validate ``raw`` against the component's options model; one-line error on failure."""
        info = self.get(kind, name)
        try:
            return info.cls.Options(**(raw or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
            )
            known = ", ".join(info.cls.Options.model_fields) or "none"
            raise ConfigError(f"bad option for {info.label}: {problems} (options: {known})") from None

    def create(self, kind: str, name: str, raw: dict[str, Any] | None = None) -> Any:
        """Instantiate a component with validated options."""
        return self.instantiate(self.get(kind, name), self.options(kind, name, raw))

    @staticmethod
    def instantiate(info: ComponentInfo, options: BaseModel) -> Any:
        try:
            return info.cls(options)
        except Exception as exc:  # a plugin's constructor is plugin code
            raise PluginError(f"{info.label} failed to initialise: {type(exc).__name__}: {exc}") from exc


def _check_component(kind: Kind, cls: Any, plugin: str, source: str) -> None:
    where = f"{kind} component from plugin {plugin} ({source})"
    if not inspect.isclass(cls):
        raise PluginError(f"{where} is {cls!r}, not a class")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise PluginError(f"{where}: {cls.__qualname__}.name must be a non-empty string, got {name!r}")
    options = getattr(cls, "Options", None)
    if not (inspect.isclass(options) and issubclass(options, BaseModel)):
        raise PluginError(f"{kind} plugin '{name}' from {plugin}: Options must be a pydantic model class")
    for method in KIND[kind].methods:
        if not callable(getattr(cls, method, None)):
            raise PluginError(f"{kind} plugin '{name}' from {plugin} has no method {method}()")


def _distribution_of(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    if dist is None:
        return "unknown distribution"
    return f"{dist.metadata['Name']} {dist.version}"


def _normalise(name: str) -> str:
    """Distribution and entry-point names compared as PEP 503 does: case and ``-_.`` runs ignored."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _selected(entry_points: Iterable[importlib.metadata.EntryPoint], allowed: str | None
              ) -> tuple[list[importlib.metadata.EntryPoint], list[str], list[str]]:
    """The entry points ``VISUM_LOAD_PLUGINS`` (``allowed``) lets load, the names it leaves out, and
    the names it gives that match no installed plugin."""
    entry_points = list(entry_points)
    if allowed is None:
        return entry_points, [], []
    wanted = {_normalise(w.strip()): w.strip() for w in allowed.split(",") if w.strip()}
    chosen, skipped, matched = [], [], set()
    for ep in entry_points:
        dist = getattr(ep, "dist", None)
        names = {_normalise(ep.name)} | ({_normalise(dist.metadata["Name"])} if dist is not None else set())
        (chosen if names & set(wanted) else skipped).append(ep)
        matched |= names & set(wanted)
    return chosen, [ep.name for ep in skipped], [w for k, w in wanted.items() if k not in matched]


def _unknown_hooks(manager: pluggy.PluginManager, plugin: Any) -> list[str]:
    """Names of the hooks ``plugin`` implements that visum does not declare (a misspelling)."""
    return sorted(c.name for c in manager.get_hookcallers(plugin) or []
                  if not c.has_spec() and any(not i.optionalhook for i in c.get_hookimpls()
                                              if i.plugin is plugin))


def build_catalogue(
    registry: list[RegistryEntry] | None = None,
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
    extra_plugins: Iterable[tuple[str, Any]] = (),
) -> Catalogue:
    """Load built-ins, third-party entry points and ``extra_plugins`` into one catalogue.

    ``entry_points`` defaults to the installed ones in the group ``visum``, restricted by
    ``VISUM_LOAD_PLUGINS``; ``extra_plugins`` are ``(name, module_or_object)`` pairs registered
    as given (tests, notebooks). A built-in or extra plugin that fails raises
    :class:`~visum.errors.PluginError`; an entry-point plugin that fails is set aside in
    ``catalogue.broken``.
    """
    registry = read_registry() if registry is None else registry
    skipped: list[str] = []
    unmatched: list[str] = []
    if entry_points is None:
        entry_points, skipped, unmatched = _selected(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP),
                                                     os.environ.get(LOAD_PLUGINS_ENV))

    manager = pluggy.PluginManager("visum")
    manager.add_hookspecs(hookspecs)
    sources: dict[str, str] = {}
    third_party: set[str] = set()
    broken: dict[str, BrokenPlugin] = {}

    def fail(name: str, message: str) -> None:
        """A third-party plugin is set aside; anything else is an error."""
        message = " ".join(message.split())  # one line, whatever the exception's text holds
        if name not in third_party:
            raise PluginError(message)
        if name not in broken:
            broken[name] = BrokenPlugin(name, sources.get(name, "unknown distribution"), message)
        if manager.has_plugin(name):
            manager.unregister(name=name)

    def register(plugin: Any, name: str, source: str) -> None:
        if manager.has_plugin(name) or manager.is_registered(plugin):
            return
        sources.setdefault(name, source)
        try:
            manager.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            fail(name, f"plugin {name} ({source}) has an invalid hook: {exc}")
            return
        unknown = _unknown_hooks(manager, plugin)
        if unknown and name in third_party:
            fail(name, f"plugin {name} ({source}) implements a hook visum does not have: {', '.join(unknown)}")

    for entry in registry:
        try:
            module = importlib.import_module(entry.module)
        except Exception as exc:
            raise PluginError(
                f"built-in {entry.kind} plugin '{entry.name}': module {entry.module} failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        register(module, entry.module, BUILTIN)

    for ep in entry_points:
        source = _distribution_of(ep)
        if ep.name in sources:  # a second distribution with the same entry-point name: the first one stays
            continue
        third_party.add(ep.name)
        sources[ep.name] = source
        try:
            plugin = ep.load()
        except Exception as exc:
            fail(ep.name, f"plugin '{ep.name}' ({source}, entry point {ep.value}) failed to import: "
                          f"{type(exc).__name__}: {exc}")
            continue
        register(plugin, f"{ep.name}", source)

    for name, plugin in extra_plugins:
        register(plugin, name, "registered at run time")

    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"a plugin implements a hook visum does not have: {exc}") from None

    summaries = {(e.kind, e.name): e.summary for e in registry}
    components: list[ComponentInfo] = []
    for kind in KINDS:
        hook = getattr(manager.hook, hookspecs.HOOK_OF_KIND[kind])
        for impl in hook.get_hookimpls():
            source = sources.get(impl.plugin_name, BUILTIN)
            try:
                provided = impl.function()
            except Exception as exc:
                fail(impl.plugin_name, f"plugin {impl.plugin_name} ({source}) raised in {hook.name}(): "
                                       f"{type(exc).__name__}: {exc}")
                continue
            if provided is None:
                continue
            try:
                if not isinstance(provided, (list, tuple)):
                    raise PluginError(f"plugin {impl.plugin_name} ({source}): {hook.name}() must return a list of classes")
                for cls in provided:
                    _check_component(kind, cls, impl.plugin_name, source)
            except PluginError as exc:
                fail(impl.plugin_name, str(exc))
                continue
            for cls in provided:
                summary = getattr(cls, "summary", "") or summaries.get((kind, cls.name), "")
                if not summary and cls.__doc__:
                    summary = cls.__doc__.strip().splitlines()[0]
                components.append(ComponentInfo(kind, cls.name, cls, impl.plugin_name, source, summary))

    # A third-party component whose kind and name are taken sets its plugin aside; other clashes are
    # errors (Catalogue raises them). First the names of built-ins and run-time plugins; then, among the
    # third parties still standing, the earlier in entry-point order keeps a name, repeated until nothing
    # changes so that a plugin set aside for one clash no longer blocks another's name.
    def clash(info: ComponentInfo, other: ComponentInfo) -> None:
        fail(info.plugin, f"{info.kind} plugin name '{info.name}' clashes: provided by {other.plugin} "
                          f"({other.source}) and by {info.plugin} ({info.source})")

    fixed = {(c.kind, c.name): c for c in components if c.plugin not in third_party}
    for info in components:
        if info.plugin in third_party and (info.kind, info.name) in fixed:
            clash(info, fixed[(info.kind, info.name)])
    changed = True
    while changed:
        changed, owner = False, {}
        for info in components:
            if info.plugin not in third_party or info.plugin in broken:
                continue
            other = owner.setdefault((info.kind, info.name), info)
            if other.plugin != info.plugin:
                clash(info, other)
                changed = True
                break
    components = [c for c in components if c.plugin not in broken]

    catalogue = Catalogue(manager, components, broken.values(), skipped, unmatched)
    for entry in registry:
        info = catalogue._components.get((entry.kind, entry.name))
        if info is None or info.plugin != entry.module:
            raise PluginError(
                f"registry.toml lists {entry.kind} plugin '{entry.name}' in {entry.module}, "
                f"but that module does not provide it"
            )
    return catalogue


_CATALOGUE: Catalogue | None = None


def get_catalogue() -> Catalogue:
    """The process-wide catalogue, built on first use."""
    global _CATALOGUE
    if _CATALOGUE is None:
        _CATALOGUE = build_catalogue()
    return _CATALOGUE


def reset_catalogue() -> None:
    """Forget the cached catalogue (after installing a plugin at run time, in tests)."""
    global _CATALOGUE
    _CATALOGUE = None
