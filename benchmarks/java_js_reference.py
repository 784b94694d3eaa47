"""Java and JavaScript answers for BFCL's ``simple_java`` (100) and ``simple_javascript`` (50) entries: each
ground truth written as source code, then many variants of it (wrong values, types and names, missing and
extra parameters, other literal spellings, fences, prose, duplicated and positional arguments, non-ASCII
text). ``tests/test_bfcl_java_js.py`` and ``benchmarks/java_js.py`` score them with ours and, through
``benchmarks/java_js_side.py``, with BFCL's own reader and checker.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

CATEGORIES = ("simple_java", "simple_javascript")
_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$.]*$")


def load(data_dir: Path, category: str) -> list[dict[str, Any]]:
    """BFCL's entries of a category, each with its ``ground_truth``."""

    def rows(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    truths = {r["id"]: r["ground_truth"] for r in rows(data_dir / "possible_answer" / f"BFCL_v4_{category}.json")}
    entries = rows(data_dir / f"BFCL_v4_{category}.json")
    for entry in entries:
        entry["ground_truth"] = truths[entry["id"]]
    return entries


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def java_source(value: Any, declared: str, items: str | None = None) -> str:
    """A Java literal for ``value`` of the declared BFCL type (a string where the type is not String is a
    variable name, written bare)."""
    if isinstance(value, str) and declared not in ("String", "char"):
        return value if _IDENT.match(value) or value.startswith("new ") else _quote(value)
    if declared == "String":
        return _quote(str(value))
    if declared == "char":
        return f"'{value}'"
    if declared == "boolean":
        return "true" if value else "false"
    if declared == "long":
        return f"{value}L"
    if declared == "float":
        return f"{value}f"
    if declared in ("integer", "short", "byte", "double"):
        return str(value)
    if declared == "Array":
        item_type = items or "String"
        java_item = {
            "integer": "int",
            "boolean": "boolean",
            "double": "double",
            "float": "float",
            "long": "long",
            "char": "char",
        }.get(item_type, item_type)
        return f"new {java_item}[]{{{', '.join(_java_item(v, item_type) for v in value)}}}"
    if declared == "ArrayList":
        return f"new ArrayList<>(Arrays.asList({', '.join(_java_item(v, items or 'String') for v in value)}))"
    if declared == "HashMap":
        puts = " ".join(f"put({_quote(str(k))}, {_java_any(v)});" for k, v in _chosen(value).items())
        return f"new HashMap<String, String>() {{{{ {puts} }}}}"
    return _java_any(value)


def _chosen(value: dict[str, Any]) -> dict[str, Any]:
    """A ground-truth dict as an answer gives it: each key's first acceptable value, optional keys left out."""
    out = {}
    for key, options in value.items():
        pick = _first(options) if isinstance(options, list) else options
        if pick != "" or not isinstance(options, list) or "" not in options:
            out[key] = pick
    return out


def _java_item(value: Any, item_type: str) -> str:
    if isinstance(value, str) and item_type not in ("String", "char"):
        return _quote(value)
    return java_source(value, item_type) if item_type in ("String", "char", "long", "float") else _java_any(value)


def _scalar(value: Any) -> str | None:
    """A boolean, number or string as Java and JavaScript both write it; None for anything else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    return None


def _java_any(value: Any) -> str:
    text = _scalar(value)
    return text if text is not None else _quote(json.dumps(value))


def js_source(value: Any, declared: str, items: str | None = None) -> str:
    if isinstance(value, str) and declared != "String":
        return value if _IDENT.match(value) else _quote(value)
    if declared == "String":
        return _quote(str(value))
    if declared == "Boolean":
        return "true" if value else "false"
    if declared == "Bigint":
        return f"{value}n"
    if declared in ("integer", "float"):
        return str(value)
    if declared == "array":
        return "[" + ", ".join(js_source(v, items or "String") for v in value) + "]"
    if declared == "dict" and isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_js_any(v)}" for k, v in _chosen(value).items()) + "}"
    return _js_any(value)


def _js_any(value: Any) -> str:
    text = _scalar(value)
    if text is not None:
        return text
    if isinstance(value, list):
        return "[" + ", ".join(_js_any(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_js_any(v)}" for k, v in value.items()) + "}"
    return str(value)


def _first(options: list[Any]) -> Any:
    return next((o for o in options if o != ""), "")


def answer(
    entry: dict[str, Any],
    language: str,
    pick: dict[str, Any] | None = None,
    omit: tuple[str, ...] = (),
    extra: dict[str, str] | None = None,
    name: str | None = None,
) -> str:
    """The ground truth as one call in source code: each parameter's first acceptable value (or ``pick``)."""
    ((func, params),) = entry["ground_truth"][0].items()
    doc = next(d for d in entry["function"] if d["name"] == func)
    props = doc["parameters"]["properties"]
    render = java_source if language == "java" else js_source
    parts = []
    for param, options in params.items():
        if param in omit:
            continue
        if pick and param in pick:
            parts.append(f"{param}={pick[param]}")
            continue
        value = _first(options)
        if value == "" and "" in options:
            continue  # optional: left out
        spec = props.get(param, {"type": "any"})
        parts.append(f"{param}={render(value, spec['type'], (spec.get('items') or {}).get('type'))}")
    for param, text in (extra or {}).items():
        parts.append(f"{param}={text}")
    return f"{name or func}({', '.join(parts)})"


def variants(entry: dict[str, Any], language: str, rng: random.Random) -> list[tuple[str, str]]:
    """(label, answer) pairs for one entry: its ground truth and perturbations of it."""
    ((func, params),) = entry["ground_truth"][0].items()
    doc = next(d for d in entry["function"] if d["name"] == func)
    props = doc["parameters"]["properties"]
    truth = answer(entry, language)
    out = [
        ("ground_truth", truth),
        ("bracketed", f"[{truth}]"),
        ("fence_bare", f"```\n{truth}\n```"),
        ("fence_tagged", f"```{language}\n{truth}\n```"),
        ("backticks", f"`{truth}`"),
        ("semicolon", f"{truth};"),
        ("prose", f"Sure, here is the call: {truth}"),
        ("wrong_name", answer(entry, language, name=func + "X")),
        ("two_calls", f"{truth}; {truth}" if language == "javascript" else f"{truth}, {truth}"),
        ("extra_param", answer(entry, language, extra={"unexpectedParam": '"x"'})),
        ("empty", ""),
        ("no_call", "I cannot help with that."),
    ]
    if language == "javascript":
        out.append(("js_semicolons", f"{truth};\n"))
    for param, options in params.items():
        spec = props.get(param, {"type": "any"})
        declared, items = spec["type"], (spec.get("items") or {}).get("type")
        value = _first(options)
        out.append((f"omit:{declared}", answer(entry, language, omit=(param,))))
        again = answer_value(value, declared, items, language)
        out.append((f"duplicate:{declared}", answer(entry, language, extra={param: again})))
        for label, text in spellings(value, declared, items, language, rng):
            out.append((f"{label}:{declared}", answer(entry, language, pick={param: text})))
    return out


def answer_value(value: Any, declared: str, items: str | None, language: str) -> str:
    return (java_source if language == "java" else js_source)(value, declared, items)


def spellings(value: Any, declared: str, items: str | None, language: str, rng: random.Random) -> list[tuple[str, str]]:
    """Other ways to write a parameter's value: equivalent spellings BFCL may or may not accept, and wrong values."""
    out: list[tuple[str, str]] = []
    if isinstance(value, bool):
        out += [
            ("bool_flip", "false" if value else "true"),
            ("bool_string", f'"{str(value).lower()}"'),
            ("bool_python", str(value)),
        ]
    elif isinstance(value, int):
        out += [
            ("int_plus_one", str(value + 1)),
            ("int_string", f'"{value}"'),
            ("int_float", f"{value}.0"),
            ("int_long", f"{value}L"),
            ("int_bare", str(value)),
            ("int_float_suffix", f"{value}f"),
            ("int_bigint", f"{value}n"),
        ]
    elif isinstance(value, float):
        out += [
            ("float_bare", str(value)),
            ("float_suffix", f"{value}f"),
            ("float_double_suffix", f"{value}d"),
            ("float_changed", str(value + 0.5)),
            ("float_string", f'"{value}"'),
            ("float_int", str(int(value))),
        ]
    elif isinstance(value, str):
        out += [
            ("str_quoted", _quote(value)),
            ("str_bare", value if _IDENT.match(value) else value.replace(" ", "_")),
            ("str_single", "'" + value.replace("'", "\\'") + "'"),
            ("str_upper", _quote(value.upper())),
            ("str_spaced", _quote(value.replace("_", " "))),
            ("str_wrong", _quote(value + "zz")),
            ("str_unicode", _quote(value + "é")),
            ("str_empty", '""'),
        ]
        if language == "java":
            out.append(("str_char", f"'{value[:1]}'"))
    elif isinstance(value, list):
        flat = [v for v in value]
        out += [
            ("list_reversed", answer_value(flat[::-1], declared, items, language)),
            ("list_shorter", answer_value(flat[:-1], declared, items, language)),
            ("list_empty", answer_value([], declared, items, language)),
        ]
        if language == "java":
            inner = ", ".join(_java_any(v) for v in flat)
            out += [
                ("list_asarray", f"new String[]{{{inner}}}"),
                (
                    "list_arraylist_add",
                    "new ArrayList<String>() {{ " + " ".join(f"add({_java_any(v)});" for v in flat) + " }}",
                ),
                ("list_aslist", f"Arrays.asList({inner})"),
                ("list_brackets", f"[{inner}]"),
            ]
        else:
            out += [
                ("list_new_array", f"new Array({', '.join(_js_any(v) for v in flat)})"),
                ("list_quoted", _quote(json.dumps(flat))),
            ]
    elif isinstance(value, dict):
        keys = list(value)
        out += [
            ("dict_missing_key", answer_value({k: value[k] for k in keys[1:]}, declared, items, language)),
            ("dict_extra_key", answer_value({**value, "zzExtra": 1}, declared, items, language)),
            ("dict_empty", answer_value({}, declared, items, language)),
        ]
        if language == "java":
            out.append(
                (
                    "dict_hashmap_single_brace",
                    "new HashMap<String, Object>() { "
                    + " ".join(f"put({_quote(str(k))}, {_java_any(v)});" for k, v in value.items())
                    + " }",
                )
            )
        else:
            out += [
                ("dict_quoted_keys", "{" + ", ".join(f"'{k}': {_js_any(v)}" for k, v in value.items()) + "}"),
                ("dict_json", json.dumps(value)),
            ]
    if rng.random() < 0.5:
        out.append(("null", "null"))
    return out


def corpus(data_dir: Path, seed: int = 0) -> list[dict[str, Any]]:
    """Every variant of every Java/JS entry: ``{task_id, category, label, response, entry}``."""
    rng = random.Random(seed)
    rows = []
    for category in CATEGORIES:
        language = "java" if category == "simple_java" else "javascript"
        for entry in load(data_dir, category):
            for label, text in variants(entry, language, rng):
                rows.append(
                    {"task_id": entry["id"], "category": category, "label": label, "response": text, "entry": entry}
                )
    return rows
