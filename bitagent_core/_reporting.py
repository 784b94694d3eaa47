"""Calling the reporter hooks without letting a reporter end a run.

pluggy stops at the first implementation that raises; here each implementation is called on its own, and
one that raises is disabled for the rest of the run with one warning line on stderr. The run, its samples
and ``results.json`` never depend on a reporter.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bitagent_core._plugins import PluginRegistry

log = logging.getLogger("bitagent")


class Reporters:
    """The ``on_run_start`` / ``on_sample_scored`` / ``on_run_end`` implementations of a registry."""

    def __init__(self, registry: PluginRegistry) -> None:
        self.registry = registry
        #: plugin name -> why it was disabled
        self.disabled: dict[str, str] = {}

    def call(self, hook_name: str, **kwargs: Any) -> None:
        hook = getattr(self.registry.pm.hook, hook_name)
        # pluggy calls the last registered implementation first; keep that order
        for impl in reversed(hook.get_hookimpls()):
            if impl.plugin_name in self.disabled:
                continue
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception as exc:  # noqa: BLE001 - a reporter must never end a run or lose a sample
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                self.disabled[impl.plugin_name] = f"{hook_name}: {reason}"
                log.warning(
                    "reporter %s disabled for the rest of the run: %s raised %s", impl.plugin_name, hook_name, reason
                )
