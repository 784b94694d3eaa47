"""Loads plugins from the ``bitagent`` entry-point group and keeps what they register.

Each entry point is loaded on its own: one that fails to import is recorded with its error (shown by
``bitagent plugins``) and the others still load. ``BITAGENT_PLUGINS=a,b`` limits loading to those entry
points; ``BITAGENT_PLUGINS=`` (empty) loads none.
"""

from __future__ import annotations

import importlib.metadata
import os
import traceback
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from bitagent_core import hookspecs

ENTRY_POINT_GROUP = "bitagent"


@attrs.define
class Registration:
    name: str
    factory: Callable[..., Any]
    description: str
    plugin: str


@attrs.define
class PluginInfo:
    name: str
    module: str
    distribution: str | None
    version: str | None
    error: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    traceback: str | None = None


class UnknownPluginObject(LookupError):
    """Raised when asking for a task source, backend or scorer nobody registered."""


class PluginRegistry:
    """The plugin manager plus the registered task sources, backends, scorers and competitions."""

    KINDS = ("task_sources", "backends", "scorers", "competitions", "environments")

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("bitagent")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self._registered: dict[str, dict[str, Registration]] | None = None

    def load_entry_points(self, only: set[str] | None = None) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if only is not None and ep.name not in only:
                continue
            dist = getattr(ep, "dist", None)
            info = PluginInfo(name=ep.name, module=ep.value, distribution=dist.name if dist else None,
                              version=dist.version if dist else None)
            self.plugins.append(info)
            try:
                module = ep.load()
                self.pm.register(module, name=ep.name)
            except Exception as exc:  # noqa: BLE001 - any import failure must not break the other plugins
                info.error = f"{type(exc).__name__}: {exc}"
                info.traceback = traceback.format_exc()
                continue
            info.hooks = sorted(h.name for h in self.pm.get_hookcallers(module) or [])
        self._registered = None

    def register_module(self, module: Any, name: str) -> None:
        """Register a plugin object directly (tests, embedding applications)."""
        self.pm.register(module, name=name)
        self.plugins.append(PluginInfo(name=name, module=getattr(module, "__name__", repr(module)),
                                       distribution=None, version=None,
                                       hooks=sorted(h.name for h in self.pm.get_hookcallers(module) or [])))
        self._registered = None

    def _collect(self) -> dict[str, dict[str, Registration]]:
        if self._registered is not None:
            return self._registered
        registered: dict[str, dict[str, Registration]] = {kind: {} for kind in self.KINDS}
        for kind in self.KINDS:
            hook = getattr(self.pm.hook, f"register_{kind}")
            for impl in hook.get_hookimpls():
                def register(name: str, factory: Callable[..., Any], description: str = "",
                             _kind: str = kind, _plugin: str = impl.plugin_name) -> None:
                    if name in registered[_kind]:
                        other = registered[_kind][name].plugin
                        raise ValueError(f"{_kind[:-1].replace('_', ' ')} {name!r} registered twice "
                                         f"(by {other} and {_plugin})")
                    registered[_kind][name] = Registration(name, factory, description, _plugin)
                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001
                    for info in self.plugins:
                        if info.name == impl.plugin_name:
                            info.error = f"register_{kind} failed: {type(exc).__name__}: {exc}"
        self._registered = registered
        return registered

    def registrations(self, kind: str) -> dict[str, Registration]:
        return dict(sorted(self._collect()[kind].items()))

    def get(self, kind: str, name: str) -> Registration:
        found = self._collect()[kind]
        if name not in found:
            known = ", ".join(sorted(found)) or "none"
            label = kind[:-1].replace("_", " ")
            raise UnknownPluginObject(f"unknown {label} {name!r} (known: {known})")
        return found[name]

    def plugin_versions(self) -> dict[str, str | None]:
        return {p.name: p.version for p in self.plugins if p.error is None}


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
        _registry = PluginRegistry()
        _registry.load_entry_points(_only_from_env())
    return _registry


def reset_registry() -> None:
    """Forget the loaded plugins (tests; after installing a plugin package in-process)."""
    global _registry
    _registry = None
