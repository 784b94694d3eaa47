"""Template task source ``template-tasks``: copy this package, rename it, replace the questions.

``--tasks template-tasks`` gives every category, ``--tasks template-tasks:irrelevance`` one of them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import bitagent_core as ba

BITAGENT_PLUGIN_API = "1.0"

STOCK = ba.Tool(
    "get_stock_price",
    "Latest price of a stock.",
    {
        "type": "object",
        "properties": {"symbol": {"type": "string", "description": "Ticker, e.g. AAPL"}},
        "required": ["symbol"],
    },
)
NEWS = ba.Tool(
    "get_news",
    "Headlines about a topic.",
    {
        "type": "object",
        "properties": {"topic": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["topic"],
    },
)
SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA"]
CHAT = ["Tell me a joke about stocks.", "What is a dividend, in one sentence?"]


class TemplateTasks:
    name = "template-tasks"
    #: change it whenever the tasks for a seed change: it is recorded in every run and every sample
    version = "1"
    description = "Template: stock prices (single_call) and small talk (irrelevance)"

    def __init__(self, arg: str | None = None) -> None:
        if arg is not None and arg not in self.categories():
            raise ValueError(f"unknown template-tasks category {arg!r} (known: {', '.join(self.categories())})")
        self.only = arg

    def categories(self) -> list[str]:
        return ["single_call", "irrelevance"]

    def tasks(self, seed: int, limit: int | None) -> Iterator[ba.Task]:
        # limit=None means "all": a generated source picks a finite default
        count = 50 if limit is None else limit
        index = 0
        produced = 0
        while produced < count:
            rng = random.Random(f"{seed}:{index}")  # one generator per task: deterministic per (seed, index)
            category = self.only or ("irrelevance" if index % 4 == 3 else "single_call")
            index += 1
            task = self._make(rng, category, index - 1, seed)
            if task is not None:
                produced += 1
                yield task

    def _make(self, rng: random.Random, category: str, index: int, seed: int) -> ba.Task | None:
        tools = (STOCK, NEWS) if rng.random() < 0.5 else (NEWS, STOCK)
        if category == "irrelevance":
            question = rng.choice(CHAT)
            expected: tuple[ba.ExpectedCall, ...] = ()  # the right answer is no call at all
        else:
            symbol = rng.choice(SYMBOLS)
            question = f"How much is {symbol} trading at?"
            expected = (ba.ExpectedCall("get_stock_price", {"symbol": (symbol,)}),)
        return ba.Task(
            id=f"template-tasks-{seed}-{index}",
            messages=(ba.Message("user", question),),
            tools=tools,
            expected_calls=expected,
            source=self.name,
            category=category,
            version=self.version,
        )


@ba.hookimpl
def register_task_sources(register: ba.RegisterTaskSource) -> None:
    register("template-tasks", TemplateTasks, description=TemplateTasks.description)
