"""The ``bitagent`` task source: tool-calling questions generated afresh from a seed.

A catalog (``bitagent_catalog.json``) lists tools, each with a JSON-schema, question templates and a value
generator per parameter. Task ``index`` of ``seed`` draws one tool, one template and its values from its
own ``random.Random(f"bitagent:{seed}:{index}")``, so a task depends only on (seed, index): not on
``limit``, on the category filter or on other tasks. New seeds give new questions, so a miner cannot
memorise the set.

Categories:

- ``single_call``: the needed tool plus 0-4 distractors from *other* domains (same-domain tools could also
  answer some questions), shuffled so the needed tool is at a uniformly random position.
- ``irrelevance`` (about 1 task in 5): the question needs a catalog tool that is not offered; 1-5 tools from
  other domains are. The right answer is no call.

Expected arguments: a parameter the question states must be given with that value (omitting it is also
accepted when the value is the schema default, as in BFCL's ground truth); an optional parameter the
question does not state may be omitted or given its default.

``--tasks bitagent:<category>`` keeps only that category's tasks from the same stream, so a task id always
names the same task. ``limit=None`` means :data:`DEFAULT_LIMIT` tasks. Any change to what a (seed, index)
yields, in the catalog or in this code, must bump the catalog's ``version``.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import re
import string
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from bitagent_core import ExpectedCall, Message, RegisterTaskSource, Task, Tool, hookimpl

CATEGORIES = ("single_call", "irrelevance")
IRRELEVANCE_RATE = 0.2
DEFAULT_LIMIT = 100
MAX_DISTRACTORS = 4
MAX_IRRELEVANT_TOOLS = 5
CATALOG_FILE = "bitagent_catalog.json"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCALAR_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}
_GENERATOR_KINDS = ("choice", "int", "number", "date", "enum", "bool", "const", "list")
_FORMATTER = string.Formatter()

Draw = Callable[[random.Random], Any]


class CatalogError(ValueError):
    """The catalog is malformed; the message names the tool and the problem."""


@attrs.frozen
class TemplateSpec:
    """One question template, parsed once: the parameters it states and the arguments it leaves optional."""

    text: str
    fields: tuple[str, ...]
    #: expected values of the parameters the template does not state (all optional)
    unstated: dict[str, tuple[Any, ...]]


@attrs.frozen
class CatalogTool:
    tool: Tool  # built once and shared by every task: Tool is frozen
    domain: str
    templates: tuple[TemplateSpec, ...]
    draws: dict[str, Draw]
    renders: dict[str, Callable[[Any], str]]


@attrs.frozen
class Catalog:
    version: str
    tools: tuple[CatalogTool, ...]
    #: per domain, the tools of all other domains (where distractors come from)
    others: dict[str, tuple[CatalogTool, ...]]

    @property
    def domains(self) -> list[str]:
        return sorted(self.others)


# -- loading and validation --------------------------------------------------------------------------------


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate a catalog file (the shipped one when ``path`` is None). Not cached."""
    shipped = path is None
    if shipped:
        origin, text = CATALOG_FILE, _shipped_catalog_text()
    else:
        origin = str(path)
        try:
            text = Path(origin).read_text(encoding="utf-8")
        except OSError as exc:
            raise CatalogError(f"{origin}: cannot read the catalog: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{origin}: not valid JSON: {exc}") from exc
    # The shipped catalog's shape is checked against the schema by the tests, not on every load: jsonschema
    # takes ~45 ms on it where the rest of the parse takes ~2 ms (benchmarks/taskgen.py, catalog_load_s)
    return parse_catalog(data, origin, check_shape=not shipped)


def _shipped_catalog_text() -> str:
    try:
        return resources.files("bitagent_plugins.tasks").joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    except ModuleNotFoundError:  # imported from a source tree under another package name
        return Path(__file__).with_name(CATALOG_FILE).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=8)
def cached_catalog(path: str | None = None) -> Catalog:
    """:func:`load_catalog`, parsed once per process and path (a failed load is not cached)."""
    return load_catalog(path)


SCHEMA_FILE = "bitagent_catalog.schema.json"


@functools.lru_cache(maxsize=1)
def catalog_validator() -> Any:
    """The JSON Schema of a catalog's shape (``bitagent_catalog.schema.json``), compiled once."""
    import jsonschema  # at first use: importing it takes ~80 ms, which `bitagent --help` need not pay

    schema = json.loads(Path(__file__).with_name(SCHEMA_FILE).read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def _tool_label(data: Any, index: int) -> str:
    tools = data.get("tools") if isinstance(data, dict) else None
    raw = tools[index] if isinstance(tools, list) and index < len(tools) else None
    return raw["name"] if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"#{index}"


def _check_shape(data: Any, origin: str) -> None:
    """The first place ``data`` departs from the catalog's JSON Schema, as ``origin: tool 'x': path: problem``."""
    import jsonschema

    error = jsonschema.exceptions.best_match(catalog_validator().iter_errors(data))
    if error is None:
        return
    path = list(error.absolute_path)
    where = origin
    if len(path) >= 2 and path[0] == "tools" and isinstance(path[1], int):
        where += f": tool {_tool_label(data, path[1])!r}"
        path = path[2:]
    if path:
        where += ": " + ".".join(str(p) for p in path)
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    raise CatalogError(f"{where}: {message}")


def parse_catalog(data: Any, origin: str = "catalog", *, check_shape: bool = True) -> Catalog:
    """Validate catalog JSON (its shape by the JSON Schema, then how its parts relate) and compile its
    templates and generators. ``check_shape=False`` only for data already known to fit the schema."""
    if check_shape:
        _check_shape(data, origin)
    version = data["version"]
    lists = data.get("lists", {})
    tools: list[CatalogTool] = []
    seen: set[str] = set()
    for i, raw in enumerate(data["tools"]):
        label = _tool_label(data, i)
        try:
            tool = _parse_tool(raw, lists)
        except CatalogError as exc:
            raise CatalogError(f"{origin}: tool {label!r}: {exc}") from None
        if tool.tool.name in seen:
            raise CatalogError(f"{origin}: tool {label!r}: duplicate tool name")
        seen.add(tool.tool.name)
        tools.append(tool)
    domains = {t.domain for t in tools}
    if len(domains) < 2:
        raise CatalogError(f"{origin}: needs tools from at least 2 domains (irrelevance tasks need others)")
    others = {d: tuple(t for t in tools if t.domain != d) for d in sorted(domains)}
    return Catalog(version=version, tools=tuple(tools), others=others)


def _parse_tool(raw: dict[str, Any], lists: dict[str, list[Any]]) -> CatalogTool:
    """One tool whose shape the schema has checked: how its parts relate, and its compiled generators."""
    name = raw["name"]
    params = raw["parameters"]
    props: dict[str, Any] = params["properties"]
    required = params.get("required", [])
    if any(r not in props for r in required):
        raise CatalogError(f"'required' must list parameters, got {required!r}")
    for pname, schema in props.items():
        _check_schema(pname, schema)

    generators = raw["generators"]
    draws: dict[str, Draw] = {}
    renders: dict[str, Callable[[Any], str]] = {}
    for pname, spec in generators.items():
        if pname not in props:
            raise CatalogError(f"generator for {pname!r}, which is not a parameter")
        draws[pname], renders[pname] = _compile_generator(spec, props[pname], lists, f"generator {pname!r}")

    raw_templates = raw["templates"]
    templates = []
    used: set[str] = set()
    for n, text in enumerate(raw_templates, 1):
        fields = _template_fields(text, n)
        for field in fields:
            if field not in props:
                raise CatalogError(f"template {n} mentions {{{field}}}, which is not a parameter")
            if field not in draws:
                raise CatalogError(f"template {n} mentions {{{field}}}, which has no generator")
        missing = [r for r in required if r not in fields]
        if missing:
            raise CatalogError(f"template {n} does not mention required parameter(s) {missing}")
        used.update(fields)
        unstated = {p: _omittable(props[p]) for p in props if p not in fields}
        templates.append(TemplateSpec(text=text, fields=fields, unstated=unstated))
    unused = sorted(set(draws) - used)
    if unused:
        raise CatalogError(f"generators {unused} are used by no template")
    tool = Tool(name=name, description=raw["description"], parameters=params)
    return CatalogTool(tool=tool, domain=raw["domain"], templates=tuple(templates), draws=draws, renders=renders)


def _check_schema(pname: str, schema: dict[str, Any]) -> None:
    """What the JSON Schema cannot say: enum values and the default of the parameter's own type."""
    ptype = schema["type"]
    if ptype == "array":
        _check_schema(f"{pname}[]", schema["items"])
    if "enum" in schema:
        enum = schema["enum"]
        if not all(_conforms(v, {"type": ptype}) for v in enum):
            raise CatalogError(f"parameter {pname!r}: 'enum' must be a non-empty list of {ptype} values")
    if "default" in schema and not _conforms(schema["default"], schema):
        raise CatalogError(f"parameter {pname!r}: default {schema['default']!r} does not fit the schema")


def _conforms(value: Any, schema: dict[str, Any]) -> bool:
    """Does ``value`` have the schema's type (bool is not a number here) and lie in its enum and bounds?"""
    ptype = schema.get("type")
    if ptype == "array":
        items = schema.get("items", {})
        return isinstance(value, list) and all(_conforms(v, items) for v in value)
    if isinstance(value, bool) and ptype != "boolean":
        return False
    if not isinstance(value, _SCALAR_TYPES.get(str(ptype), ())):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "minimum" in schema and value < schema["minimum"]:
        return False
    return not ("maximum" in schema and value > schema["maximum"])


def _template_fields(text: Any, n: int) -> tuple[str, ...]:
    if not isinstance(text, str) or not text.strip():
        raise CatalogError(f"template {n} must be a non-empty string")
    fields: list[str] = []
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise CatalogError(f"template {n}: {exc}") from None
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not _NAME.match(field) or spec or conversion:
            raise CatalogError(f"template {n}: placeholders must be plain {{parameter}} names, got {{{field}}}")
        if field not in fields:
            fields.append(field)
    return tuple(fields)


def _omittable(schema: dict[str, Any]) -> tuple[Any, ...]:
    """Acceptable values of an optional parameter the question does not state: omit it or give the default."""
    return ("", schema["default"]) if "default" in schema else ("",)


def _compile_generator(
    spec: Any, schema: dict[str, Any], lists: dict[str, list[Any]], where: str
) -> tuple[Draw, Callable[[Any], str]]:
    """A generator spec (its shape checked by the schema) -> (draw(rng) -> value, render(value) -> text for
    the question)."""
    (kind,) = [k for k in spec if k in _GENERATOR_KINDS]
    say = spec.get("say", {})
    if kind == "list":
        draw = _compile_list(spec, schema, lists, where)
        if say:
            raise CatalogError(f"{where}: 'say' is not supported for lists")
        return draw, _render_list
    if "size" in spec:
        raise CatalogError(f"{where}: 'size' only applies to 'list'")
    draw, pool = _compile_scalar(kind, spec[kind], schema, lists, where)
    if say:
        keys = {_say_key(v) for v in pool} if pool is not None else set()
        bad = sorted(k for k in say if k not in keys)
        if bad:
            raise CatalogError(f"{where}: 'say' has phrases for values it never draws: {bad}")
    decimals = spec[kind][2] if kind == "number" else None

    def render(value: Any) -> str:
        phrase = say.get(_say_key(value))
        if phrase is not None:
            return phrase
        return f"{value:.{decimals}f}" if decimals else _render_scalar(value)

    return draw, render


def _compile_scalar(
    kind: str, arg: Any, schema: dict[str, Any], lists: dict[str, list[Any]], where: str
) -> tuple[Draw, tuple[Any, ...] | None]:
    """A scalar generator -> (draw, the finite set of values it can draw, or None)."""
    ptype = schema.get("type")
    pool: tuple[Any, ...] | None = None
    if kind == "choice":
        values = lists.get(arg) if isinstance(arg, str) else arg
        if not isinstance(values, list) or not values:
            raise CatalogError(f"{where}: 'choice' needs a non-empty list or the name of one in 'lists'")
        pool = tuple(values)
    elif kind == "enum":
        if arg is not True or "enum" not in schema:
            raise CatalogError(f"{where}: 'enum': true needs an 'enum' in the parameter's schema")
        pool = tuple(schema["enum"])
    elif kind == "bool":
        if arg is not True or ptype != "boolean":
            raise CatalogError(f"{where}: 'bool': true needs a boolean parameter")
        pool = (True, False)
    elif kind == "const":
        pool = (arg,)
    elif kind == "int":
        if not (isinstance(arg, list) and len(arg) == 2 and all(type(v) is int for v in arg) and arg[0] <= arg[1]):
            raise CatalogError(f"{where}: 'int' needs [low, high] integers with low <= high")
        if ptype not in ("integer", "number"):
            raise CatalogError(f"{where}: 'int' needs an integer or number parameter, not {ptype!r}")
        lo, hi = arg
        _check_bounds(lo, hi, schema, where)
        return (lambda rng: rng.randint(lo, hi)), None
    elif kind == "number":
        if not (
            isinstance(arg, list)
            and len(arg) == 3
            and all(type(v) in (int, float) for v in arg[:2])
            and arg[0] <= arg[1]
            and type(arg[2]) is int
            and 1 <= arg[2] <= 6
        ):
            raise CatalogError(f"{where}: 'number' needs [low, high, decimals] with 1 <= decimals <= 6")
        if ptype != "number":
            raise CatalogError(f"{where}: 'number' needs a number parameter, not {ptype!r}")
        lo, hi, decimals = arg
        _check_bounds(lo, hi, schema, where)
        return (lambda rng: round(rng.uniform(lo, hi), decimals)), None
    elif kind == "date":
        try:
            first, last = (dt.date.fromisoformat(v).toordinal() for v in arg)
        except (TypeError, ValueError):
            raise CatalogError(f"{where}: 'date' needs [first, last] ISO dates (YYYY-MM-DD)") from None
        if first > last or ptype != "string" or "enum" in schema:
            raise CatalogError(f"{where}: 'date' needs first <= last and a string parameter without enum")
        return (lambda rng: dt.date.fromordinal(rng.randint(first, last)).isoformat()), None
    assert pool is not None  # every branch above that reaches here set it
    bad = [v for v in pool if not _conforms(v, schema)]
    if bad:
        raise CatalogError(f"{where}: values {bad!r} do not fit the parameter's schema")
    return (lambda rng: rng.choice(pool)), pool


def _compile_list(spec: dict[str, Any], schema: dict[str, Any], lists: dict[str, list[Any]], where: str) -> Draw:
    if schema.get("type") != "array":
        raise CatalogError(f"{where}: 'list' needs an array parameter")
    size = spec.get("size", [1, 3])
    if not (
        isinstance(size, list) and len(size) == 2 and all(type(v) is int for v in size) and 1 <= size[0] <= size[1]
    ):
        raise CatalogError(f"{where}: 'size' must be [min, max] with 1 <= min <= max")
    inner = spec["list"]
    if not isinstance(inner, dict) or sum(k in _GENERATOR_KINDS for k in inner) != 1 or len(inner) != 1:
        raise CatalogError(f"{where}: 'list' needs one inner generator, like {{\"choice\": [...]}}")
    ((kind, arg),) = inner.items()
    if kind == "list":
        raise CatalogError(f"{where}: lists of lists are not supported")
    draw_one, pool = _compile_scalar(kind, arg, schema["items"], lists, f"{where} (list item)")
    lo, hi = size
    if pool is not None:
        # distinct items: a question never names the same thing twice
        if len(set(pool)) < hi:
            raise CatalogError(f"{where}: 'size' up to {hi} needs at least {hi} distinct values")
        distinct = tuple(dict.fromkeys(pool))
        return lambda rng: rng.sample(distinct, rng.randint(lo, hi))
    return lambda rng: [draw_one(rng) for _ in range(rng.randint(lo, hi))]


def _check_bounds(lo: float, hi: float, schema: dict[str, Any], where: str) -> None:
    if not (_conforms(lo, {**schema, "type": "number"}) and _conforms(hi, {**schema, "type": "number"})):
        raise CatalogError(f"{where}: range [{lo}, {hi}] leaves the schema's minimum/maximum/enum")


def _say_key(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _render_scalar(value: Any) -> str:
    if isinstance(value, list):
        return _render_list(value)
    return json.dumps(value) if isinstance(value, bool) else str(value)


def _render_list(values: list[Any]) -> str:
    items = [_render_scalar(v) for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# -- generation --------------------------------------------------------------------------------------------


def generate_task(catalog: Catalog, seed: int, index: int, only: str | None = None) -> Task | None:
    """Task ``index`` of ``seed``; None when ``only`` names a category and this task is of the other one."""
    rng = random.Random(f"bitagent:{seed}:{index}")
    category = "irrelevance" if rng.random() < IRRELEVANCE_RATE else "single_call"
    if only is not None and category != only:
        return None
    needed = rng.choice(catalog.tools)
    template = rng.choice(needed.templates)
    values = {p: needed.draws[p](rng) for p in template.fields}
    question = template.text.format_map({p: needed.renders[p](v) for p, v in values.items()})
    pool = catalog.others[needed.domain]
    if category == "irrelevance":
        tools = [t.tool for t in rng.sample(pool, min(len(pool), rng.randint(1, MAX_IRRELEVANT_TOOLS)))]
        expected: tuple[ExpectedCall, ...] = ()
    else:
        tools = [t.tool for t in rng.sample(pool, min(len(pool), rng.randint(0, MAX_DISTRACTORS)))]
        tools.append(needed.tool)
        rng.shuffle(tools)  # uniform position for the needed tool
        arguments = _expected_arguments(needed, template, values)
        expected = (ExpectedCall(name=needed.tool.name, arguments=arguments),)
    return Task(
        id=f"bitagent-{seed}-{index}",
        messages=(Message(role="user", content=question),),
        tools=tuple(tools),
        expected_calls=expected,
        source="bitagent",
        category=category,
        version=catalog.version,
    )


def _expected_arguments(
    needed: CatalogTool, template: TemplateSpec, values: dict[str, Any]
) -> dict[str, tuple[Any, ...]]:
    args: dict[str, tuple[Any, ...]] = {}
    props = needed.tool.properties
    required = needed.tool.parameters.get("required", ())
    for pname, schema in props.items():
        if pname in values:
            value = values[pname]
            # stating the default of an optional parameter: leaving it out means the same
            omittable = pname not in required and "default" in schema and schema["default"] == value
            args[pname] = (value, "") if omittable else (value,)
        else:
            args[pname] = template.unstated[pname]
    return args


class BitagentTaskSource:
    """Seeded, procedurally generated single-call and irrelevance tasks (see the module docstring)."""

    name = "bitagent"
    description = "Procedurally generated tool-calling tasks (single_call, irrelevance), new for every seed."

    def __init__(self, arg: str | None = None, *, catalog_path: str | Path | None = None) -> None:
        if arg and arg not in CATEGORIES:
            raise ValueError(f"unknown bitagent category {arg!r}; valid: {', '.join(CATEGORIES)}")
        self.only = arg or None
        self.catalog_path = str(catalog_path) if catalog_path is not None else None

    @property
    def catalog(self) -> Catalog:
        return cached_catalog(self.catalog_path)  # loaded on first use, not at registration

    @property
    def version(self) -> str:
        return self.catalog.version

    def categories(self) -> list[str]:
        return [self.only] if self.only else list(CATEGORIES)

    def task_at(self, seed: int, index: int) -> Task:
        """Task ``index`` of ``seed``, whatever the category filter."""
        task = generate_task(self.catalog, seed, index)
        if task is None:  # cannot happen without a filter; keeps the return type honest
            raise RuntimeError(f"no task at {seed}:{index}")
        return task

    def tasks(self, seed: int, limit: int | None) -> Iterator[Task]:
        """The first ``limit`` tasks (``DEFAULT_LIMIT`` when None) of the upstream subnet's stream, in index order."""
        count = DEFAULT_LIMIT if limit is None else limit
        if count < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        return self._iter(self.catalog, seed, count)

    def _iter(self, catalog: Catalog, seed: int, count: int) -> Iterator[Task]:
        index = 0
        while count > 0:
            task = generate_task(catalog, seed, index, self.only)
            index += 1
            if task is not None:
                count -= 1
                yield task


@hookimpl
def register_task_sources(register: RegisterTaskSource) -> None:
    register(
        "bitagent",
        BitagentTaskSource,
        description="Procedurally generated tool-calling tasks, fresh per seed; "
        "bitagent:single_call or bitagent:irrelevance picks one category.",
    )
