"""The ``competition:<name>`` task source and the sampling rules behind it.

Competitions: what a validator evaluates miners on, and how scores become weights.

A competition is a plugin object (registered with ``register_competitions(register)``) that names:

* ``mix(registry)`` -- its task sources and their shares of the sample, e.g. ``{"bitagent": 0.5,
  "bfcl-shuffle": 0.5}`` (a source spec may carry an argument, ``"bitagent:irrelevance"``);
* ``sample_size`` -- tasks per evaluation; ``scorer`` -- the scorer's name;
* ``weight_rule`` -- how scores become weights (``cubic``, ``linear`` or ``softmax``, see
  ``bitagent_plugins.subnet.weights``);
* ``version`` -- bump it to have every model re-evaluated ("regraded");
* ``licenses`` (optional) -- the model licences a validator accepts (default: upstream's policy, apache-2.0).

The validator keys its evaluations by :func:`bitagent_core.competition_version`: the competition's own version
plus the versions of the scorer and of every task source in the mix and the sample size, so changing any of them
regrades every model too.

Each round the validator draws one seed (kept private) and every model evaluated in that round answers
the same sample: :func:`sample_tasks`. The same sample is reachable as an ordinary task source,
``competition:<name>`` (:class:`CompetitionTaskSource`), which is how the validator hands it to the core
runner, and how a miner reproduces an evaluation locally::

    bitagent evaluate --tasks competition:bitagent --seed 42 --limit 100
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from bitagent_core import Competition, PluginRegistry, Task
from bitagent_core.toolkit import protocol_problems

WEIGHT_RULES = ("cubic", "linear", "softmax")


def check_competition(competition: Any) -> None:
    """A clear error for a competition plugin that does not hold together (every problem at once)."""
    problems = protocol_problems(competition, Competition)
    sample_size = getattr(competition, "sample_size", None)  # reported above when missing
    if sample_size is not None and (not isinstance(sample_size, int) or sample_size < 1):
        problems.append("sample_size must be a positive int")
    if getattr(competition, "weight_rule", WEIGHT_RULES[0]) not in WEIGHT_RULES:
        problems.append(f"weight_rule must be one of {', '.join(WEIGHT_RULES)}")
    if problems:
        name = getattr(competition, "name", repr(competition))
        raise ValueError(f"competition {name!r} does not hold together: " + "; ".join(problems))


def get_competition(registry: PluginRegistry, name: str) -> Competition:
    competition = registry.create("competitions", name)
    check_competition(competition)
    return competition


def allocate(mix: Mapping[str, float], total: int) -> dict[str, int]:
    """Split ``total`` tasks by the shares in ``mix`` (largest remainder; ties broken by spec order)."""
    shares = {spec: float(share) for spec, share in mix.items() if float(share) > 0}
    if not shares:
        raise ValueError("a competition's mix needs at least one source with a positive share")
    norm = sum(shares.values())
    exact = {spec: total * share / norm for spec, share in shares.items()}
    counts = {spec: int(value) for spec, value in exact.items()}
    leftover = total - sum(counts.values())
    order = sorted(exact, key=lambda spec: (-(exact[spec] - counts[spec]), list(shares).index(spec)))
    for spec in order[:leftover]:
        counts[spec] += 1
    return {spec: n for spec, n in counts.items() if n > 0}


def _sub_seed(seed: int, spec: str) -> int:
    digest = hashlib.sha256(f"{int(seed)}:{spec}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def sample_tasks(competition: Any, registry: PluginRegistry, seed: int, limit: int | None = None) -> list[Task]:
    """The competition's sample for ``seed``: ``limit`` (default ``sample_size``) tasks drawn from each source
    by its share, each source with its own seed derived from ``seed``, then shuffled by ``seed``.
    Deterministic: the same seed gives the same tasks in the same order. ``limit`` is the sample size, not a
    cap on it: a validator run with ``--sample-size 2000`` draws 2000 tasks."""
    from bitagent_core import make_task_source  # at use: loading plugins stays light (no runner)

    total = competition.sample_size if limit is None else int(limit)
    counts = allocate(competition.mix(registry), total)
    tasks: list[Task] = []
    seen: set[str] = set()
    for spec, n in counts.items():
        for task in make_task_source(registry, spec).tasks(seed=_sub_seed(seed, spec), limit=n):
            if task.id in seen:  # two sources may reuse an id: keep them apart
                task = attrs.evolve(task, id=f"{spec}/{task.id}")
            seen.add(task.id)
            tasks.append(task)
    random.Random(_sub_seed(seed, "order")).shuffle(tasks)
    return tasks


class CompetitionTaskSource:
    """Task source ``competition:<name>``: the named competition's sample for the run's seed."""

    name = "competition"
    description = "A competition's task sample for the seed: competition:<name> (e.g. competition:bitagent)."

    def __init__(self, arg: str | None = None, *, registry: PluginRegistry | None = None) -> None:
        if not arg:
            raise ValueError("the competition task source needs a name: --tasks competition:bitagent")
        self.competition_name = arg
        self._registry = registry

    @property
    def registry(self) -> PluginRegistry:
        if self._registry is None:
            from bitagent_core import get_registry

            self._registry = get_registry()
        return self._registry

    @property
    def competition(self) -> Any:
        return get_competition(self.registry, self.competition_name)

    @property
    def version(self) -> str:
        from bitagent_core import competition_version  # at use: loading plugins stays light (no runner)

        return competition_version(self.competition, self.registry)

    def categories(self) -> list[str]:
        from bitagent_core import make_task_source

        categories: list[str] = []
        for spec in self.competition.mix(self.registry):
            for category in make_task_source(self.registry, spec).categories():
                categories.append(f"{spec.partition(':')[0]}:{category}")
        return categories

    def tasks(self, seed: int, limit: int | None) -> Iterator[Task]:
        return iter(sample_tasks(self.competition, self.registry, seed, limit))
