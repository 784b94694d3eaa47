"""Typed backend options.

Each backend declares its options as one pydantic model (a subclass of :class:`BackendOptions`, which forbids
unknown keys) and registers it with ``register(name, factory, options=TheModel)``. The core builds the model
from the raw ``key=value`` strings of ``-B``, ``BITAGENT_BACKEND_OPTIONS``, the config file and the server
flags, and hands the factory the validated instance: a typo is an error naming where it came from, before
anything starts.
"""

from __future__ import annotations

import shlex
from collections.abc import ItemsView, Iterable, KeysView, Mapping, ValuesView
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "BackendOptions",
    "MappingOptions",
    "NoOptions",
    "OptionError",
    "build_options",
    "parse_option_args",
    "parse_option_string",
]


class BackendOptions(BaseModel):
    """Base of every backend's options: unknown keys are errors; values given as strings are converted
    (``"4096"`` -> 4096, ``"true"`` -> True) by pydantic's lax mode."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def coerce(cls: type[OptionsT], value: BackendOptions | Mapping[str, Any] | None) -> OptionsT:
        """``value`` as this model: the core passes an instance; code that builds a backend directly (tests,
        embedding applications) may pass a plain mapping of strings."""
        if isinstance(value, cls):
            return value
        if isinstance(value, BackendOptions):
            value = value.model_dump(exclude_unset=True)
        return build_options(cls, value or {}, backend=cls.__name__)

    def given(self) -> dict[str, Any]:
        """The options that were set explicitly (not defaults), as a dict."""
        return self.model_dump(exclude_unset=True)

    # A read-only mapping view, the contract before 1.0 (a backend got its options as a dict of strings):
    # ``options.get("n_ctx")``, ``options["n_ctx"]``, ``"n_ctx" in options``, ``dict(options)``.

    def _values(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in type(self).model_fields}, **(self.model_extra or {})}

    def __getitem__(self, key: str) -> Any:
        values = self._values()
        if key not in values:
            raise KeyError(key)
        return values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._values().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._values()

    def keys(self) -> KeysView[str]:
        return self._values().keys()

    def items(self) -> ItemsView[str, Any]:
        return self._values().items()

    def values(self) -> ValuesView[Any]:
        return self._values().values()

    def __len__(self) -> int:
        return len(self._values())

    def __bool__(self) -> bool:  # an options object is always there, even with nothing in it (as before)
        return True


class NoOptions(BackendOptions):
    """A backend that takes no options: any ``-B`` is an error."""


class MappingOptions(BackendOptions):
    """The options of a backend from a plugin written before the 1.0 contract (no ``BITAGENT_PLUGIN_API``,
    no ``options=`` model): any ``key=value`` is kept as given, read as a mapping."""

    model_config = ConfigDict(extra="allow", frozen=True)


OptionsT = TypeVar("OptionsT", bound=BackendOptions)


class OptionError(ValueError):
    """A backend option that is unknown, malformed or of the wrong type; the message names its source."""


def parse_option_args(values: Iterable[str], source: str = "-B") -> dict[str, str]:
    """``["key=value", ...]`` -> ``{key: value}``. Each item splits at its first ``=`` only, so a value keeps
    its spaces, quotes and further ``=`` signs intact: ``answer=[f(a=1, b=2)]`` is one option."""
    options: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OptionError(f"{source}: expected key=value, got {item!r}")
        if key in options and options[key] != value:
            raise OptionError(f"{source}: option {key!r} given twice ({options[key]!r} and {value!r})")
        options[key] = value
    return options


def parse_option_string(text: str, source: str) -> dict[str, str]:
    """One string holding several ``key=value`` items (an environment variable): items are separated like a
    shell would, so ``extra_args='--a 1 --b 2' n_ctx=4096`` is two options."""
    try:
        items = shlex.split(text)
    except ValueError as exc:
        raise OptionError(f"{source}: {exc}") from None
    return parse_option_args(items, source)


def build_options(
    model: type[OptionsT], raw: Mapping[str, Any], *, backend: str, sources: Mapping[str, str] | None = None
) -> OptionsT:
    """Validate ``raw`` against ``model``; each error names the key's source (``sources[key]``, e.g.
    ``-B``, ``BITAGENT_BACKEND_OPTIONS`` or ``config.toml:7``) and the options the backend knows."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        sources = sources or {}
        known = ", ".join(sorted(model.model_fields)) or "none"
        lines = []
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else ""
            where = f"{sources[key]}: " if key in sources else ""
            if error["type"] == "extra_forbidden":
                lines.append(f"{where}the {backend} backend has no option {key!r} (known: {known})")
            else:
                lines.append(f"{where}backend option {key}={raw.get(key)!r}: {error['msg']}")
        raise OptionError("; ".join(lines)) from None
