"""Unit-conversion tasks for bitagent: one module, one hook."""

from __future__ import annotations

import random
from collections.abc import Iterator

from bitagent_core import ExpectedCall, Message, RegisterTaskSource, Task, Tool, hookimpl

#: the bitagent plugin API this module was written for (a plugin for another major version is refused)
BITAGENT_PLUGIN_API = "1.0"

CONVERT = Tool(
    name="convert_units",
    description="Convert a quantity from one unit to another.",
    parameters={
        "type": "object",
        "properties": {
            "value": {"type": "number", "description": "The quantity to convert."},
            "from_unit": {"type": "string", "description": "Unit of the quantity, e.g. 'km'."},
            "to_unit": {"type": "string", "description": "Unit to convert to, e.g. 'mi'."},
        },
        "required": ["value", "from_unit", "to_unit"],
    },
)
DISTRACTOR = Tool(
    name="get_exchange_rate",
    description="Get the exchange rate between two currencies.",
    parameters={
        "type": "object",
        "properties": {"base": {"type": "string"}, "quote": {"type": "string"}},
        "required": ["base", "quote"],
    },
)
PAIRS = [
    ("km", "mi", "kilometers", "miles"),
    ("kg", "lb", "kilograms", "pounds"),
    ("c", "f", "degrees Celsius", "degrees Fahrenheit"),
    ("l", "gal", "liters", "gallons"),
]


class UnitConversionTasks:
    name = "unit-conversion"
    version = "1"
    description = "Convert quantities between units (example third-party plugin)"

    def __init__(self, arg: str | None = None) -> None:
        # `--tasks unit-conversion:single_call` selects the one category this source has
        if arg is not None and arg not in self.categories():
            raise ValueError(f"unknown unit-conversion category {arg!r} (known: {', '.join(self.categories())})")

    def categories(self) -> list[str]:
        return ["single_call"]

    def tasks(self, seed: int, limit: int | None) -> Iterator[Task]:
        for index in range(limit if limit is not None else 100):
            rng = random.Random(f"{seed}:{index}")  # one generator per task: deterministic per (seed, index)
            src, dst, src_words, dst_words = rng.choice(PAIRS)
            value = rng.randint(2, 500)
            tools = [CONVERT, DISTRACTOR]
            rng.shuffle(tools)
            yield Task(
                id=f"unit-conversion-{seed}-{index}",
                messages=(
                    Message(
                        "user", f"How many {dst_words} is {value} {src_words}? Use unit codes {src!r} and {dst!r}."
                    ),
                ),
                tools=tuple(tools),
                expected_calls=(
                    ExpectedCall("convert_units", {"value": (value,), "from_unit": (src,), "to_unit": (dst,)}),
                ),
                source=self.name,
                category="single_call",
                version=self.version,
            )


@hookimpl
def register_task_sources(register: RegisterTaskSource) -> None:
    register("unit-conversion", UnitConversionTasks, description=UnitConversionTasks.description)
