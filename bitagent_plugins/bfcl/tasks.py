"""Task sources ``bfcl`` and ``bfcl-shuffle``: the Berkeley Function Calling Leaderboard's single-turn data.

``bfcl`` serves BFCL's own entries, one category per subset (``--tasks bfcl:simple_python``; several with
commas; ``bfcl`` alone is every Python single-turn category; ``live``, ``non_live`` and ``all`` are groups, the last
two with ``simple_java`` and ``simple_javascript``, whose answers are Java/JavaScript source
read with tree-sitter: the ``bfcl-java`` extra). Task ids are BFCL's
ids, ``Task.category`` is BFCL's category and ``Task.version`` the data's version. Without a limit the tasks
come in data order; with one, as the first N of a seeded shuffle (a smaller limit is a prefix of a larger).

``bfcl-shuffle`` rebuilds what the upstream subnet's later dataset did from BFCL's single-call entries: each
entry becomes a call task (the needed tool among up to four distractors taken from other entries, in a
seeded order) and an irrelevance task (the same question with the needed tool removed: no call is right).

Where the data comes from, first found wins:

1. ``BITAGENT_BFCL_DATA=/a/directory`` holding ``BFCL_v4_<category>.json`` and ``possible_answer/``;
2. ``BITAGENT_BFCL_DATA=hub`` (or ``hub@<revision>``): the Hugging Face dataset
   ``gorilla-llm/Berkeley-Function-Calling-Leaderboard`` through ``huggingface_hub`` (v4 file names, then
   v3's), cached by the hub client;
3. the ``bfcl-eval`` wheel, installed without its dependencies (``make install`` does it): its data files
   are read where ``importlib.util.find_spec`` locates the package, which is never imported (importing it
   pulls vendor SDKs);
4. the hub, when the wheel is absent.

Entries whose ground truth contradicts their own function docs are loaded as they are, logged once per
category and listed by ``bitagent tasks validate bfcl:<category>``; they never stop a load.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import click

from bitagent_core import ExpectedCall, Message, RegisterEnvironment, RegisterTaskSource, Task, Tool, hookimpl
from bitagent_core.toolkit import read_jsonl
from bitagent_plugins.bfcl import format_sensitivity, memory, multi_turn, web_search

log = logging.getLogger("bitagent.bfcl")

BFCL_VERSION = "2026.3.23"  # the bfcl-eval release the project pins
HUB_REPO = "gorilla-llm/Berkeley-Function-Calling-Leaderboard"
DATA_ENV = "BITAGENT_BFCL_DATA"

CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "irrelevance",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "live_irrelevance",
    "live_relevance",
)
#: categories without ground truth: irrelevance (no call is right) and relevance (any call is right)
NO_GROUND_TRUTH = frozenset({"irrelevance", "live_irrelevance", "live_relevance"})
#: categories whose answers are Java or JavaScript source (read with tree-sitter: the ``bfcl-java`` extra); not
#: in ``bfcl`` alone (the Python categories), but in ``all`` and ``non_live``
LANGUAGE_CATEGORIES = {"simple_java": "java", "simple_javascript": "javascript"}
SINGLE_TURN = CATEGORIES[:1] + tuple(LANGUAGE_CATEGORIES) + CATEGORIES[1:]
GROUPS = {
    "all": SINGLE_TURN,
    "non_live": tuple(c for c in SINGLE_TURN if not c.startswith("live_")),
    "live": tuple(c for c in CATEGORIES if c.startswith("live_")),
    "multi_turn": multi_turn.CATEGORIES,  # played by the agent loop (bitagent_plugins/bfcl/multi_turn.py)
    "memory": memory.CATEGORIES,  # agentic, prerequisites first (bitagent_plugins/bfcl/memory.py)
    "web_search": web_search.CATEGORIES,  # agentic, from a recorded cache (bitagent_plugins/bfcl/web_search.py)
}
#: agentic categories (bitagent_plugins/bfcl/agentic.py scores them), then format sensitivity (not scored by BFCL)
AGENTIC_CATEGORIES = memory.CATEGORIES + web_search.CATEGORIES + (format_sensitivity.CATEGORY,)
#: the v3 file names on the hub for categories v4 renamed
_V3_NAMES = {"simple_python": "simple", "simple_java": "java", "simple_javascript": "javascript"}
_LANGUAGE_HINT = " Note that the provided function is in Python 3 syntax."  # BFCL adds it to every doc


@attrs.frozen
class DataProblem:
    """Something wrong in the data: ``error`` means no answer can pass the task, ``warning`` that the
    data is inconsistent but still answerable."""

    task_id: str
    severity: str
    message: str
    category: str = ""

    def to_json(self) -> dict[str, str]:
        return attrs.asdict(self)


@attrs.frozen
class Location:
    """Where BFCL data is read from: a directory, or the hub at a revision."""

    kind: str  # "dir" | "hub"
    path: Path | None = None
    revision: str | None = None
    version: str = BFCL_VERSION

    def describe(self) -> str:
        return str(self.path) if self.kind == "dir" else f"hf://datasets/{HUB_REPO}@{self.revision or 'main'}"


def wheel_data_dir() -> Path | None:
    """The ``data`` directory of the installed ``bfcl-eval`` wheel, found without importing it."""
    try:
        spec = importlib.util.find_spec("bfcl_eval")
    except (ImportError, ValueError):
        return None
    for base in (spec.submodule_search_locations or []) if spec else []:
        data = Path(base) / "data"
        if (data / "possible_answer").is_dir():
            return data
    return None


def locate_data() -> Location:
    """Decide where the data comes from (see the module docstring)."""
    setting = os.environ.get(DATA_ENV, "").strip()
    if setting.startswith("hub"):
        _, _, revision = setting.partition("@")
        return Location("hub", revision=revision or None, version=f"hub@{revision or 'main'}")
    if setting:
        path = Path(setting).expanduser()
        if not path.is_dir():
            raise ValueError(f"{DATA_ENV}={setting}: not a directory (give a BFCL data directory, or 'hub')")
        return Location("dir", path=path, version=f"dir:{path.name}")
    data = wheel_data_dir()
    if data is not None:
        try:
            version = importlib.metadata.version("bfcl-eval")
        except importlib.metadata.PackageNotFoundError:
            version = BFCL_VERSION
        return Location("dir", path=data, version=version)
    return Location("hub", version="hub@main")


class HubUnavailable(ValueError):
    """A BFCL file is neither in the local hub cache nor reachable."""


def _hub_file(location: Location, names: list[str]) -> Path | None:
    """The first of ``names`` the hub dataset has (downloaded or cached), None if it has none of them."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    offline_misses = []
    for name in names:
        try:
            return Path(hf_hub_download(HUB_REPO, name, repo_type="dataset", revision=location.revision))
        except LocalEntryNotFoundError:  # offline or unreachable, and not cached
            offline_misses.append(name)
            continue
        except EntryNotFoundError:  # the hub answered: no such file
            continue
        except Exception as exc:  # noqa: BLE001 - network, auth, offline: say which file and why
            raise ValueError(
                f"cannot fetch {name} from the hub dataset {HUB_REPO}: {type(exc).__name__}: {exc}. "
                f"Install the data with `pip install --no-deps bfcl-eval=={BFCL_VERSION}` "
                f"or point {DATA_ENV} at a BFCL data directory."
            ) from None
    if offline_misses:
        raise HubUnavailable(
            f"none of {', '.join(offline_misses)} is in the local hub cache, and the hub dataset {HUB_REPO} "
            f"cannot be reached (offline?). Install the data with `pip install --no-deps bfcl-eval=={BFCL_VERSION}` "
            f"or point {DATA_ENV} at a BFCL data directory."
        )
    return None


def _category_files(location: Location, category: str) -> tuple[Path, Path | None]:
    v3 = _V3_NAMES.get(category, category)
    if location.kind == "dir":
        assert location.path is not None
        questions = location.path / f"BFCL_v4_{category}.json"
        if not questions.is_file():
            raise ValueError(f"no BFCL data for {category!r} in {location.path} (expected {questions.name})")
        answers = location.path / "possible_answer" / f"BFCL_v4_{category}.json"
        return questions, answers if answers.is_file() else None
    names = [f"BFCL_v4_{category}.json", f"BFCL_v3_{v3}.json", f"BFCL_v3_{v3}.jsonl"]
    questions_file = _hub_file(location, names)
    if questions_file is None:
        raise ValueError(f"the hub dataset {HUB_REPO} has no file for {category!r} (tried {', '.join(names)})")
    answers_file = None
    if category not in NO_GROUND_TRUTH:
        answers_file = _hub_file(location, [f"possible_answer/{name}" for name in names])
    return questions_file, answers_file


def _read_json_lines(path: Path) -> list[dict[str, Any]]:
    rows = []
    for lineno, row in read_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise ValueError(f"{path}:{lineno}: a BFCL entry must be an object with a string 'id'")
        rows.append(row)
    return rows


@attrs.frozen
class CategoryData:
    category: str
    version: str
    tasks: tuple[Task, ...]
    problems: tuple[DataProblem, ...]
    #: the raw function docs of every entry, by id (bfcl-shuffle draws distractors from them)
    functions: dict[str, tuple[dict[str, Any], ...]] = attrs.field(factory=dict, eq=False)


_cache: dict[tuple[Location, str], CategoryData] = {}
_cache_lock = threading.Lock()


def load_category(category: str, location: Location | None = None) -> CategoryData:
    """Read one category (cached per process). Entries without ground truth where one is needed are
    left out and reported; entries contradicting their docs are kept and reported."""
    if category not in SINGLE_TURN:
        raise ValueError(f"unknown BFCL category {category!r} (known: {', '.join(SINGLE_TURN)})")
    location = location or locate_data()
    key = (location, category)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    questions_file, answers_file = _category_files(location, category)
    entries = _read_json_lines(questions_file)
    answers: dict[str, Any] = {}
    problems: list[DataProblem] = []
    if category not in NO_GROUND_TRUTH:
        if answers_file is None:
            raise ValueError(f"no ground truth for {category!r} in {location.describe()}")
        for row in _read_json_lines(answers_file):
            answers[row["id"]] = row.get("ground_truth")
    tasks: list[Task] = []
    functions: dict[str, tuple[dict[str, Any], ...]] = {}
    seen: set[str] = set()
    for entry in entries:
        task_id = entry["id"]
        if task_id in seen:
            problems.append(DataProblem(task_id, "error", "duplicate id: later entry left out", category))
            continue
        seen.add(task_id)
        try:
            task, docs = _entry_task(entry, answers, category, location.version)
        except ValueError as exc:
            problems.append(DataProblem(task_id, "error", f"left out: {exc}", category))
            continue
        tasks.append(task)
        functions[task_id] = docs
    for task_id in sorted(set(answers) - seen):
        problems.append(DataProblem(task_id, "warning", "ground truth for an id with no question", category))

    from bitagent_core.toolkit import check_task

    for task in tasks if category not in LANGUAGE_CATEGORIES else ():  # Java/JS values are checked as source
        # BFCL's own checker passes some of its mistyped ground truth (False for a string): a warning here
        for severity, message in check_task(task, type_severity="warning"):
            problems.append(DataProblem(task.id, severity, message, category))
    errors = sorted({p.task_id for p in problems if p.severity == "error"})
    if errors:
        log.warning(
            "bfcl:%s: %d entr%s whose ground truth contradicts the function docs (%s); "
            "see `bitagent tasks validate bfcl:%s`",
            category,
            len(errors),
            "y" if len(errors) == 1 else "ies",
            ", ".join(errors[:5]) + (" ..." if len(errors) > 5 else ""),
            category,
        )
    data = CategoryData(category, location.version, tuple(tasks), tuple(problems), functions)
    with _cache_lock:
        _cache[key] = data
    return data


def _entry_task(
    entry: dict[str, Any], answers: dict[str, Any], category: str, version: str
) -> tuple[Task, tuple[dict[str, Any], ...]]:
    question = entry.get("question")
    if not isinstance(question, list) or not question or not isinstance(question[0], list):
        raise ValueError("'question' must be a list of turns of messages")
    if len(question) != 1:
        raise ValueError(f"{len(question)} turns: only single-turn entries are served")
    messages = tuple(Message.from_json(m) for m in question[0])
    if not messages:
        raise ValueError("no messages")
    docs = entry.get("function") or []
    if not isinstance(docs, list) or not all(isinstance(d, dict) for d in docs):
        raise ValueError("'function' must be a list of function docs")
    language = LANGUAGE_CATEGORIES.get(category)
    tools = [_tool(doc) for doc in docs] if language is None else _language_tools(docs, language)
    expected: tuple[ExpectedCall, ...] = ()
    if category not in NO_GROUND_TRUTH:
        if entry["id"] not in answers:
            raise ValueError("no ground truth")
        truth = answers[entry["id"]]
        if not isinstance(truth, list) or not truth:
            raise ValueError("empty ground truth")
        expected = tuple(ExpectedCall.from_json(call) for call in truth)
    metadata: dict[str, Any] = {}
    if language is not None:  # the scorer reads the docs' own Java/JS types and BFCL's ground truth as written
        metadata = {"language": language, "functions": docs, "ground_truth": answers[entry["id"]]}
    task = Task(
        id=entry["id"],
        messages=messages,
        tools=tuple(tools),
        expected_calls=expected,
        source="bfcl",
        category=category,
        version=version,
        metadata=metadata,
    )
    return task, tuple(docs)


def _language_tools(docs: list[dict[str, Any]], language: str) -> list[Tool]:
    """Java/JS docs as BFCL shows them to the model: every parameter a string holding source code."""
    from bitagent_plugins.bfcl.java_js import prompt_docs

    shown = prompt_docs(docs, language)
    for doc in shown:
        if not isinstance(doc.get("name"), str) or not isinstance(doc.get("parameters"), dict):
            raise ValueError("a function doc needs a string 'name' and an object 'parameters'")
    return [Tool(name=d["name"], description=d["description"], parameters=d["parameters"]) for d in shown]


def _tool(doc: dict[str, Any]) -> Tool:
    """A BFCL function doc as a tool, its description with the language hint. The parsed doc's parameters are
    shared, not copied: tasks are frozen and nothing modifies them or the docs (copying every doc twice was
    54 % of a category's load time)."""
    name, params = doc.get("name"), doc.get("parameters")
    if not isinstance(name, str) or not isinstance(params, dict):
        raise ValueError("a function doc needs a string 'name' and an object 'parameters'")
    return Tool(name=name, description=str(doc.get("description", "")) + _LANGUAGE_HINT, parameters=params)


def parse_categories(arg: str | None) -> tuple[str, ...]:
    """``None`` -> every category; ``"live,multiple"`` -> the named categories and groups, in order."""
    if not arg:
        return CATEGORIES
    chosen: list[str] = []
    for part in (p.strip() for p in arg.split(",")):
        if not part:
            continue
        names = GROUPS.get(part, (part,))
        for name in names:
            if name not in SINGLE_TURN and name not in multi_turn.CATEGORIES and name not in AGENTIC_CATEGORIES:
                known = ", ".join(SINGLE_TURN + multi_turn.CATEGORIES + AGENTIC_CATEGORIES + tuple(GROUPS))
                raise ValueError(f"unknown BFCL category {part!r} (known: {known})")
            if name not in chosen:
                chosen.append(name)
    if not chosen:
        raise ValueError("no BFCL category given")
    return tuple(chosen)


def _sample(tasks: list[Task], seed: int, limit: int | None) -> Iterator[Task]:
    """All tasks in data order; with ``limit``, the first ``limit`` of a seeded shuffle (so a smaller limit
    gives a prefix of a larger one, and every category can appear)."""
    if limit is None:
        yield from tasks
        return
    order = list(range(len(tasks)))
    random.Random(f"bitagent-bfcl:{seed}").shuffle(order)
    for index in order[:limit]:
        yield tasks[index]


class BfclTaskSource:
    name = "bfcl"
    description = (
        "BFCL v4 categories (BFCL's ids and ground truth); multi-turn ones with bfcl:multi_turn "
        "or bfcl:multi_turn_base, ..."
    )

    def __init__(self, arg: str | None = None) -> None:
        self.selected = parse_categories(arg)

    @functools.cached_property
    def location(self) -> Location:
        return locate_data()  # found on first use, so registering and listing stay cheap

    @property
    def version(self) -> str:
        return self.location.version

    def categories(self) -> list[str]:
        return list(SINGLE_TURN + multi_turn.CATEGORIES + AGENTIC_CATEGORIES)

    def _data_dir(self) -> Path:
        location = self.location
        if location.kind != "dir" or location.path is None:
            raise ValueError(
                f"BFCL's multi-turn and agentic data is read from the bfcl-eval wheel or a data "
                f"directory ({DATA_ENV}), not from {location.describe()}"
            )
        return location.path

    def _load(self, category: str) -> CategoryData | multi_turn.MultiTurnData:
        if category in multi_turn.CATEGORIES:
            return multi_turn.load_category(category, self._data_dir(), self.location.version)
        return load_category(category, self.location)

    def _extra(self, category: str) -> tuple[Task, ...]:
        if category in web_search.CATEGORIES:
            return web_search.load_category(category, self._data_dir(), self.version)
        if category == format_sensitivity.CATEGORY:
            ids = format_sensitivity.id_file(self._data_dir())
            base = {cat: self._load(cat).tasks for cat in ids}
            return tuple(format_sensitivity.build_tasks(base, ids))
        return tuple(self._load(category).tasks)

    def tasks(self, seed: int = 0, limit: int | None = None) -> Iterator[Task]:
        # memory first: its prerequisites must precede the questions that read their snapshots
        chains = [
            memory.load_category(c, self._data_dir(), self.version) for c in self.selected if c in memory.CATEGORIES
        ]
        order = list(range(sum(len(d.questions) for d in chains)))
        random.Random(f"bitagent-bfcl:{seed}").shuffle(order)
        taken = memory.select(chains, order, limit) if chains else []
        yield from taken
        everything = [task for cat in self.selected if cat not in memory.CATEGORIES for task in self._extra(cat)]
        yield from _sample(everything, seed, None if limit is None else max(0, limit - len(taken)))

    def validate(self) -> list[DataProblem]:
        """What is wrong in the selected categories' data (``bitagent tasks validate``)."""
        problems: list[DataProblem] = []
        for cat in self.selected:
            if cat in AGENTIC_CATEGORIES:
                continue  # no ground truth to replay: a free-text answer
            data = self._load(cat)
            if isinstance(data, multi_turn.MultiTurnData):
                problems.extend(DataProblem(task_id, "error", message, cat) for task_id, message in data.problems)
                problems.extend(
                    DataProblem(task_id, "error", message, cat)
                    for task_id, message in multi_turn.replay_ground_truths(data.tasks)
                )
            else:
                problems.extend(data.problems)
        return problems


# --- bfcl-shuffle -------------------------------------------------------------------------------------

#: BFCL categories whose entries expect exactly one call: the pool bfcl-shuffle draws from
SHUFFLE_POOL = ("simple_python", "multiple", "live_simple", "live_multiple")
SHUFFLE_KINDS = ("call", "irrelevance")
MAX_TOOLS = 5  # the upstream subnet's limit


class BfclShuffleTaskSource:
    name = "bfcl-shuffle"
    description = (
        "BFCL single-call entries among distractor tools from other entries, plus irrelevance "
        "variants without the needed tool (seeded)"
    )

    def __init__(self, arg: str | None = None) -> None:
        kinds: list[str] = []
        pool: list[str] = []
        for part in (p.strip() for p in (arg or "").split(",")):
            if not part:
                continue
            if part in SHUFFLE_KINDS:
                kinds.append(part)
            elif part in SHUFFLE_POOL:
                pool.append(part)
            else:
                raise ValueError(
                    f"unknown bfcl-shuffle argument {part!r} (known: {', '.join(SHUFFLE_KINDS + SHUFFLE_POOL)})"
                )
        self.kinds = tuple(kinds) or SHUFFLE_KINDS
        self.pool = tuple(pool) or SHUFFLE_POOL

    @functools.cached_property
    def location(self) -> Location:
        return locate_data()  # found on first use, so registering and listing stay cheap

    @property
    def version(self) -> str:
        return f"{self.location.version}+shuffle1"

    def categories(self) -> list[str]:
        return list(SHUFFLE_KINDS)

    def validate(self) -> list[DataProblem]:
        return [p for cat in self.pool for p in load_category(cat, self.location).problems]

    def tasks(self, seed: int = 0, limit: int | None = None) -> Iterator[Task]:
        sources = [load_category(cat, self.location) for cat in self.pool]
        broken = {p.task_id for data in sources for p in data.problems if p.severity == "error"}
        entries = [
            (task, data.functions[task.id])
            for data in sources
            for task in data.tasks
            if len(task.expected_calls) == 1 and task.id not in broken
        ]
        # every function doc of the pool, by name, for distractors: the first doc seen of each name
        docs_by_name: dict[str, dict[str, Any]] = {}
        for _, docs in entries:
            for doc in docs:
                docs_by_name.setdefault(doc["name"], doc)
        names = sorted(docs_by_name)
        out: list[Task] = []
        for task, docs in entries:
            rng = random.Random(f"bitagent-bfcl-shuffle:{seed}:{task.id}")
            needed = task.expected_calls[0].name
            own = [d for d in docs if d["name"] != needed]
            if "call" in self.kinds:
                out.append(self._variant(task, docs, needed, own, names, docs_by_name, rng, seed, irrelevant=False))
            if "irrelevance" in self.kinds:
                out.append(self._variant(task, docs, needed, own, names, docs_by_name, rng, seed, irrelevant=True))
        yield from _sample(out, seed, limit)

    def _variant(
        self,
        task: Task,
        docs: tuple[dict[str, Any], ...],
        needed: str,
        own: list[dict[str, Any]],
        names: list[str],
        docs_by_name: dict[str, dict[str, Any]],
        rng: random.Random,
        seed: int,
        *,
        irrelevant: bool,
    ) -> Task:
        room = MAX_TOOLS - (0 if irrelevant else 1)
        want = rng.randint(1, room)  # distractors in this task
        chosen = rng.sample(own, min(len(own), want))
        taken = {needed} | {d["name"] for d in chosen}
        while len(chosen) < want and len(taken) < len(names):
            name = names[rng.randrange(len(names))]
            if name not in taken:
                taken.add(name)
                chosen.append(docs_by_name[name])
        tools = [d for d in chosen]
        if not irrelevant:
            tools.append(next(d for d in docs if d["name"] == needed))
        rng.shuffle(tools)  # once, with this task's own generator: the needed tool lands anywhere
        built = [_tool(doc) for doc in tools]
        kind = "irrelevance" if irrelevant else "call"
        return Task(
            id=f"{task.id}:{kind}:s{seed}",
            messages=task.messages,
            tools=tuple(built),
            expected_calls=() if irrelevant else task.expected_calls,
            source="bfcl-shuffle",
            category=kind,
            version=self.version,
        )


@hookimpl
def register_environments(register: RegisterEnvironment) -> None:
    register(
        multi_turn.ENVIRONMENT,
        multi_turn.BfclEnvironment,
        description="BFCL's simulated APIs (GorillaFileSystem, MathAPI, ...) from the bfcl-eval wheel",
    )
    register(
        memory.ENVIRONMENT,
        memory.MemoryEnvironment,
        description="BFCL's memory backends (kv, vector, rec_sum), snapshots kept in the run directory",
    )
    register(
        web_search.ENVIRONMENT,
        web_search.WebSearchEnvironment,
        description="BFCL's web search answered from a recorded cache ($BITAGENT_BFCL_WEB_CACHE)",
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    from bitagent_plugins.bfcl.summary import bfcl_summary

    cli.add_command(bfcl_summary)


@hookimpl
def register_task_sources(register: RegisterTaskSource) -> None:
    register("bfcl", BfclTaskSource, description=BfclTaskSource.description)
    register("bfcl-shuffle", BfclShuffleTaskSource, description=BfclShuffleTaskSource.description)
