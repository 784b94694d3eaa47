"""Loads plugins from the ``bitagent`` entry-point group and keeps what they register.

Each entry point is loaded on its own: one that fails to import, declares another major plugin API version,
or marks a function ``@hookimpl`` that is not a bitagent hook is recorded with its error (shown by
``bitagent plugins``), is not registered at all, and the others still load. ``BITAGENT_PLUGINS=a,b`` limits
loading to those entry points (a name no installed plugin has is an error); ``BITAGENT_PLUGINS=`` (empty)
loads none.

A plugin declares the API it was built for with a module (or object) attribute ``BITAGENT_PLUGIN_API =
"1"`` (or ``"1.0"``): a different major version, or a newer minor one, than :data:`PLUGIN_API_VERSION` is
refused. A plugin without it is taken to be built for major version 1.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import traceback
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from bitagent_core import hookspecs
from bitagent_core.options import BackendOptions, MappingOptions, NoOptions, build_options

ENTRY_POINT_GROUP = "bitagent"
#: the distribution of the built-in plugins: a name one of them registers is theirs, whatever the load order
BUILTIN_DISTRIBUTION = "bitagent"
#: the plugin contract's version: MAJOR changes break plugins, MINOR ones only add
PLUGIN_API_VERSION = "1.0"
#: the attribute a plugin module sets to the API version it was built for
PLUGIN_API_ATTRIBUTE = "BITAGENT_PLUGIN_API"
HOOK_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith(("register_", "on_")))


@attrs.define
class Registration:
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str
    #: backends only: the options model the factory receives an instance of
    options: type[BackendOptions] = NoOptions

    def wants_registry(self) -> bool:
        """Whether the factory takes a ``registry`` keyword: it then gets the registry that builds the object
        (the one the run resolves its plugins through), not the process-wide one."""
        try:
            parameters = inspect.signature(self.factory).parameters
        except (TypeError, ValueError):  # a builtin without a signature
            return False
        parameter = parameters.get("registry")
        return parameter is not None and parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)


@attrs.define
class PluginInfo:
    name: str
    module: str
    distribution: str | None
    version: str | None
    error: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    traceback: str | None = None
    api_version: str | None = None


class UnknownPluginObject(LookupError):
    """Raised when asking for a task source, backend or scorer nobody registered."""


class PluginLoadError(ValueError):
    """A plugin that cannot be registered: wrong API version, a ``@hookimpl`` that is no bitagent hook."""


class PluginSelectionError(ValueError):
    """``BITAGENT_PLUGINS`` names a plugin that is not installed."""


def _parse_version(text: str) -> tuple[int, int]:
    major, _, minor = str(text).strip().partition(".")
    return int(major), int(minor or 0)


def check_api_version(declared: object) -> str | None:
    """Why a plugin built for API ``declared`` cannot load here, or ``None`` when it can."""
    if declared is None:
        return None
    try:
        major, minor = _parse_version(str(declared))
    except ValueError:
        return f"{PLUGIN_API_ATTRIBUTE} = {declared!r} is not a version like '1' or '1.0'"
    ours = _parse_version(PLUGIN_API_VERSION)
    if major != ours[0] or minor > ours[1]:
        return (
            f"built for bitagent plugin API {declared}, this bitagent provides {PLUGIN_API_VERSION} "
            f"(upgrade the plugin or bitagent)"
        )
    return None


def check_hooks(plugin: object) -> str | None:
    """Why ``plugin``'s hook functions are wrong, or ``None``: a ``@hookimpl`` whose name is no bitagent hook
    (pluggy's ``check_pending``, per plugin), or a hook-named function without ``@hookimpl``."""
    unknown, unmarked = [], []
    for attr in dir(plugin):
        if attr.startswith("__"):
            continue
        try:
            value = getattr(plugin, attr)
        except Exception:  # noqa: BLE001 - a property that raises is not a hook
            continue
        if not callable(value):
            continue
        marked = hasattr(value, "bitagent_impl")
        if marked and attr not in HOOK_NAMES:
            unknown.append(attr)
        elif not marked and attr in HOOK_NAMES:
            unmarked.append(attr)
    problems = []
    if unknown:
        problems.append(
            f"@hookimpl on {', '.join(sorted(unknown))}, which is not a bitagent hook "
            f"(hooks: {', '.join(sorted(HOOK_NAMES))})"
        )
    if unmarked:
        problems.append(f"{', '.join(sorted(unmarked))} is not marked @hookimpl")
    return "; ".join(problems) or None


class PluginRegistry:
    """The plugin manager plus the registered task sources, backends, scorers and competitions."""

    KINDS = ("task_sources", "backends", "scorers", "competitions", "environments")

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("bitagent")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self._registered: dict[str, dict[str, Registration]] | None = None

    def load_entry_points(self, only: set[str] | None = None, *, only_source: str = "BITAGENT_PLUGINS") -> None:
        entry_points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        if only is not None:
            missing = sorted(only - {ep.name for ep in entry_points})
            if missing:
                installed = ", ".join(sorted({ep.name for ep in entry_points})) or "none"
                raise PluginSelectionError(
                    f"{only_source}: no installed plugin is named "
                    f"{', '.join(map(repr, missing))} (installed: {installed})"
                )
        for ep in entry_points:
            if only is not None and ep.name not in only:
                continue
            dist = ep.dist
            info = PluginInfo(
                name=ep.name,
                module=ep.value,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            )
            self.plugins.append(info)
            try:
                module = ep.load()
                self._register(module, ep.name, info)
            except Exception as exc:  # noqa: BLE001 - any import failure must not break the other plugins
                info.error = f"{type(exc).__name__}: {exc}"
                info.traceback = traceback.format_exc()
        self._registered = None

    def _register(self, plugin: object, name: str, info: PluginInfo) -> None:
        """Check, then register; a plugin that fails a check is not registered at all (never half-loaded)."""
        declared = getattr(plugin, PLUGIN_API_ATTRIBUTE, None)  # the documented, optional declaration
        info.api_version = None if declared is None else str(declared)
        problem = check_api_version(declared) or check_hooks(plugin)
        if problem:
            raise PluginLoadError(problem)
        self.pm.register(plugin, name=name)
        info.hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])

    def register_module(self, module: object, name: str) -> None:
        """Register a plugin object directly (tests, embedding applications); raises if it fails a check."""
        info = PluginInfo(
            name=name, module=getattr(module, "__name__", type(module).__name__), distribution=None, version=None
        )
        self._register(module, name, info)
        self.plugins.append(info)
        self._registered = None

    def failed_plugins(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error is not None]

    def _info(self, name: str) -> PluginInfo | None:
        return next((p for p in self.plugins if p.name == name), None)

    def _fail(self, name: str, message: str) -> None:
        """Record one failing hook of plugin ``name`` (every one is kept, in order) and take the plugin out:
        a plugin that failed anywhere registers nothing and none of its hooks runs."""
        info = self._info(name)
        if info is not None:
            info.error = message if info.error is None else f"{info.error}; {message}"
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self._registered = None

    def _plugin_order(self) -> list[str]:
        """The registered plugins, bitagent's own first (a name a built-in registers is the built-in's,
        whatever the load order), then the others in the order they were loaded."""
        loaded = [p.name for p in self.plugins if self.pm.get_plugin(p.name) is not None]
        return sorted(
            loaded,
            key=lambda name: (self._info(name) or PluginInfo("", "", None, None)).distribution != BUILTIN_DISTRIBUTION,
        )

    def _collect(self) -> dict[str, dict[str, Registration]]:
        if self._registered is not None:
            return self._registered
        registered: dict[str, dict[str, Registration]] = {kind: {} for kind in self.KINDS}
        for plugin in self._plugin_order():
            pending: dict[str, dict[str, Registration]] = {kind: {} for kind in self.KINDS}
            errors: list[str] = []
            for kind in self.KINDS:
                impls = [
                    i for i in getattr(self.pm.hook, f"register_{kind}").get_hookimpls() if i.plugin_name == plugin
                ]
                for impl in impls:
                    try:
                        register = self._register_function(
                            kind, plugin, registered, pending[kind], self._written_before_1_0(plugin)
                        )
                        impl.function(register=register)
                    except Exception as exc:  # noqa: BLE001 - a plugin that fails to register adds nothing
                        errors.append(f"register_{kind} failed: {type(exc).__name__}: {exc}")
            if errors:  # nothing of it is kept: never half a plugin
                self._fail(plugin, "; ".join(errors))
                continue
            for kind in self.KINDS:
                registered[kind].update(pending[kind])
        self._registered = registered
        return registered

    def _written_before_1_0(self, plugin: str) -> bool:
        """An installed plugin of another distribution that declares no API version: built for the contract
        before 1.0, where a backend read its options as a mapping of strings."""
        info = self._info(plugin)
        return (
            info is not None
            and info.api_version is None
            and info.distribution is not None
            and info.distribution != BUILTIN_DISTRIBUTION
        )

    @staticmethod
    def _register_function(
        kind: str,
        plugin: str,
        registered: dict[str, dict[str, Registration]],
        pending: dict[str, Registration],
        before_1_0: bool = False,
    ) -> Callable[..., None]:
        """The ``register`` a ``register_<kind>`` hook of ``plugin`` receives: it checks each registration and
        keeps it aside until the plugin's every hook has run."""
        label = kind[:-1].replace("_", " ")

        def register(
            name: str,
            factory: Callable[..., Any],
            description: str = "",
            *,
            options: type[BackendOptions] | None = None,
        ) -> None:
            if not isinstance(name, str) or not name:
                raise ValueError(f"a {label} needs a non-empty string name, got {name!r}")
            if not callable(factory):
                raise ValueError(f"{label} {name!r}: the factory {factory!r} is not callable")
            if options is not None and (
                kind != "backends" or not isinstance(options, type) or not issubclass(options, BackendOptions)
            ):
                raise ValueError(f"{label} {name!r}: options= takes a BackendOptions subclass, and only for backends")
            if name in registered[kind] or name in pending:
                other = registered[kind][name].plugin if name in registered[kind] else plugin
                raise ValueError(f"{label} {name!r} registered twice (by {other} and {plugin})")
            default: type[BackendOptions] = MappingOptions if before_1_0 else NoOptions
            pending[name] = Registration(name, factory, description, plugin, options or default)

        return register

    def register_commands(self, cli: Any) -> None:
        """Each plugin's ``register_commands(cli)``, isolated: one that raises is recorded (``bitagent
        plugins`` shows it), its commands are taken back, and the CLI (``--help`` included) still works."""
        for impl in list(self.pm.hook.register_commands.get_hookimpls()):
            snapshot = _commands_of(cli)
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001 - a plugin's bug must not take the whole CLI down
                _restore_commands(cli, snapshot)
                self._fail(impl.plugin_name, f"register_commands failed: {type(exc).__name__}: {exc}")

    def registrations(self, kind: str) -> dict[str, Registration]:
        return dict(sorted(self._collect()[kind].items()))

    def get(self, kind: str, name: str) -> Registration:
        found = self._collect()[kind]
        if name not in found:
            known = ", ".join(sorted(found)) or "none"
            label = kind[:-1].replace("_", " ")
            message = f"unknown {label} {name!r} (known: {known})"
            failed = self.failed_plugins()
            if failed:
                message += "; plugins that failed to load (see `bitagent plugins`): " + "; ".join(
                    f"{p.name}: {p.error}" for p in failed
                )
            raise UnknownPluginObject(message)
        return found[name]

    def create(self, kind: str, name: str, *args: Any) -> Any:
        """A new object from the factory registered as ``name``: ``factory(*args)``, plus ``registry=self``
        when the factory takes it (a task source that reads other plugins, as ``competition:<name>`` does)."""
        registration = self.get(kind, name)
        try:
            if registration.wants_registry():
                return registration.factory(*args, registry=self)
            return registration.factory(*args)
        except (ValueError, TypeError, OSError, UnknownPluginObject):
            raise  # the plugin's own word on a bad argument or a missing file: said as it is
        except Exception as exc:  # a plugin's bug: one line naming the plugin, not a traceback mid-run
            raise RuntimeError(
                f"{kind[:-1].replace('_', ' ')} {name!r} of plugin {registration.plugin} could not "
                f"be built: {type(exc).__name__}: {exc}"
            ) from exc

    def backend_options(
        self, backend: str, raw: dict[str, Any], sources: dict[str, str] | None = None
    ) -> BackendOptions:
        """``raw`` (strings from the command line, the environment or a config file) as ``backend``'s typed
        options; an unknown key or a bad value is an :class:`~bitagent_core.options.OptionError` naming its
        source."""
        return build_options(self.get("backends", backend).options, raw, backend=backend, sources=sources)

    def make_backend(
        self, backend: str, model: str | None, raw_options: dict[str, Any], sources: dict[str, str] | None = None
    ) -> Any:
        """Build ``backend`` with validated options (nothing is loaded or started yet)."""
        options = self.backend_options(backend, raw_options, sources)
        return self.create("backends", backend, model, options)

    def plugin_versions(self) -> dict[str, str | None]:
        return {p.name: p.version for p in self.plugins if p.error is None}


def _commands_of(cli: Any) -> dict[Any, dict[str, Any]]:
    """The commands of ``cli`` and of each of its groups, to restore after a failed ``register_commands``."""
    groups = [cli, *(c for c in getattr(cli, "commands", {}).values() if hasattr(c, "commands"))]
    return {group: dict(group.commands) for group in groups}


def _restore_commands(cli: Any, snapshot: dict[Any, dict[str, Any]]) -> None:
    for group, commands in snapshot.items():
        group.commands.clear()
        group.commands.update(commands)


def _only_from_env() -> set[str] | None:
    value = os.environ.get("BITAGENT_PLUGINS")
    if value is None:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


_registry: PluginRegistry | None = None


def get_registry() -> PluginRegistry:
    """The process-wide registry, loaded once from entry points."""
    global _registry
    if _registry is None:
        registry = PluginRegistry()
        registry.load_entry_points(_only_from_env())
        _registry = registry
    return _registry


def reset_registry() -> None:
    """Forget the loaded plugins (tests; after installing a plugin package in-process)."""
    global _registry
    _registry = None
