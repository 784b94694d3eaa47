"""For plugins that add commands: click parameter types the built-in commands share."""

from __future__ import annotations

from typing import Any

import click


class TaskLimit(click.ParamType[int | None]):
    """A positive task count, or ``all``."""

    name = "N|all"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | None:
        if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a number of tasks nor 'all'", param, ctx)
        if number < 1:
            self.fail(f"{number} is not a positive number of tasks", param, ctx)
        return number
