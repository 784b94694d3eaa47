"""BFCL v4's format sensitivity (``bfcl:format_sensitivity``): 200 single-turn entries asked under each of
BFCL's 26 system-prompt configurations, and the two figures BFCL reports over them.

A configuration is BFCL's ``ret_fmt=...&tool_call_tag=...&func_doc_fmt=...&prompt_fmt=...&style=...``: the
answer format asked for (python, json, verbose_xml, concise_xml) x with or without ``<TOOLCALL>`` tags x the
function docs shown as python, xml or json (24), plus markdown and the experimental wording on the default
(:data:`CONFIGS`, in BFCL's order). The 200 ids are BFCL's ``BFCL_v4_format_sensitivity.json`` (read from the
wheel's data), taken in BFCL's order (by category in the file's order, then in the category's data order);
each task's id is BFCL's, ``format_sensitivity_<n>:<config>:<original id>``, so BFCL's result files re-score,
its ground truth the original entry's, its system prompt BFCL's ``formulate_system_prompt`` for that
configuration (built here: :func:`system_prompt`). Only prompt-format models take part, as in BFCL.

:func:`format_sensitivity_stats` is what BFCL's ``format_sensitivity_runner`` computes from the accuracy of
each configuration: the max delta and the standard deviation, in percentage points rounded to 2 decimals.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from bitagent_core import Task

if TYPE_CHECKING:  # the decoder is imported when an answer is read, not by `bitagent --help`
    from bitagent_core.toolkit import Decoded

CATEGORY = "format_sensitivity"
RETURN_FORMATS = ("python", "json", "verbose_xml", "concise_xml")
DOC_FORMATS = ("python", "xml", "json")
DEFAULT_CONFIG = "ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=plaintext&style=classic"
#: BFCL's 26 configurations, in its order (``get_all_format_sensitivity_configs``)
CONFIGS = tuple(
    f"ret_fmt={ret}&tool_call_tag={tag}&func_doc_fmt={doc}&prompt_fmt=plaintext&style=classic"
    for ret in RETURN_FORMATS
    for tag in ("True", "False")
    for doc in DOC_FORMATS
) + (
    "ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=markdown&style=classic",
    "ret_fmt=python&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=plaintext&style=experimental",
)
_LANGUAGE_HINT = " Note that the provided function is in Python 3 syntax."


@attrs.frozen
class Config:
    return_format: str
    tool_call_tag: bool
    doc_format: str
    prompt_format: str
    style: str

    @classmethod
    def parse(cls, text: str) -> Config:
        fields = dict(part.partition("=")[::2] for part in text.split("&"))
        if (
            set(fields) != {"ret_fmt", "tool_call_tag", "func_doc_fmt", "prompt_fmt", "style"}
            or fields["ret_fmt"] not in RETURN_FORMATS
            or fields["func_doc_fmt"] not in DOC_FORMATS
            or fields["tool_call_tag"] not in ("True", "False")
            or fields["prompt_fmt"] not in ("plaintext", "markdown")
            or fields["style"] not in ("classic", "experimental")
        ):
            raise ValueError(f"not a BFCL prompt configuration: {text!r}")
        return cls(
            fields["ret_fmt"],
            fields["tool_call_tag"] == "True",
            fields["func_doc_fmt"],
            fields["prompt_fmt"],
            fields["style"],
        )


def format_sensitivity_stats(per_config_accuracy: Mapping[str, float]) -> tuple[float, float]:
    """``(max_delta, std)`` over the configurations' accuracies (each in [0, 1]), in percentage points
    rounded to 2 decimals, as BFCL reports them (sample standard deviation); ``(0.0, 0.0)`` for fewer than two
    configurations. BFCL's ``data_format_sensitivity.csv`` shows both beside each configuration's accuracy."""
    values = [float(v) for v in per_config_accuracy.values()]
    if len(values) < 2:
        return 0.0, 0.0
    return round((max(values) - min(values)) * 100, 2), round(statistics.stdev(values) * 100, 2)


def per_config_accuracy(verdicts: Iterable[tuple[str, bool]]) -> dict[str, float]:
    """``{config: accuracy}`` from ``(task id, passed)`` pairs of format-sensitivity tasks (other ids are
    skipped), configurations in BFCL's order."""
    counts: dict[str, list[int]] = {}
    for task_id, passed in verdicts:
        parts = task_id.split(":")
        if len(parts) != 3 or not parts[0].startswith(CATEGORY + "_"):
            continue
        tally = counts.setdefault(parts[1], [0, 0])
        tally[0] += bool(passed)
        tally[1] += 1
    order = {config: i for i, config in enumerate(CONFIGS)}
    return {config: c / n for config, (c, n) in sorted(counts.items(), key=lambda kv: order.get(kv[0], 99))}


# --- BFCL's system prompt for a configuration ------------------------------------------------------------


def _python_type(meta: dict[str, Any]) -> str:
    kind = meta.get("type", "string")
    primitive = {"string": "str", "number": "float", "integer": "int", "boolean": "bool"}
    if kind in primitive:
        return primitive[kind]
    if kind in ("array", "list", "tuple") and "items" in meta:
        return f"list[{_python_type(meta['items'])}]"
    if kind in ("object", "dict"):
        if "additionalProperties" in meta:
            return f"dict[str, {_python_type(meta['additionalProperties'])}]"
        return "dict"
    return str(kind)


def _python_param(name: str, meta: dict[str, Any], depth: int) -> list[str]:
    description = meta.get("description", "")
    if "enum" in meta:
        description += f" Enum values: {meta['enum']}."
    default = f", default={meta['default']!r}" if "default" in meta else ""
    lines = [f"{' ' * (8 + 4 * depth)}{name} ({_python_type(meta)}{default}): {description}\n"]
    for child, child_meta in meta.get("properties", {}).items():
        lines.extend(_python_param(child, child_meta, depth + 1))
    return lines


def _docs_python(functions: list[dict[str, Any]]) -> str:
    blocks: list[str] = []
    for fn in functions:
        lines = [f"# Function: {fn['name']}\n", '    """\n', f"    {fn.get('description', '')}\n\n"]
        properties = fn.get("parameters", {}).get("properties", {})
        if properties:
            lines.append("    Args:\n")
            for name, meta in properties.items():
                lines.extend(_python_param(name, meta, 0))
        lines.append('    """\n')
        blocks.extend(["".join(lines), "\n"])
    return "\n\n".join(blocks)


def _xml_param(name: str, meta: dict[str, Any], required: list[str] | None, level: int) -> str:
    indent = " " * level * 2
    kind = meta.get("type", "string")
    description = meta.get("description", "")
    if "enum" in meta:
        description += f" Enum values: {meta['enum']}."
    if "items" in meta and "type" in meta["items"]:
        kind = f"{kind}[{meta['items']['type']}]"
    elif "additionalProperties" in meta:
        kind = f"{kind}[{meta['additionalProperties'].get('type', 'string')}]"
    is_required = "true" if required is None or name in required else "false"
    attributes = [f'name="{name}", type="{kind}", required="{is_required}"']
    if "default" in meta:
        attributes.append(f'default="{meta["default"]!r}"')
    parts = [
        f"{indent}<param " + " ".join(attributes).replace(",", "") + ">\n",
        f"{indent}  <desc>{description}</desc>\n",
    ]
    if "properties" in meta:
        parts.append(f"{indent}  <params>\n")
        for child, child_meta in meta["properties"].items():
            parts.append(_xml_param(child, child_meta, meta.get("required"), level + 2))
        parts.append(f"{indent}  </params>\n")
    parts.append(f"{indent}</param>\n")
    return "".join(parts)


def _docs_xml(functions: list[dict[str, Any]]) -> str:
    blocks = []
    for fn in functions:
        schema = fn["parameters"]
        xml = f'<function name="{fn["name"]}">\n  <desc>{fn.get("description", "")}</desc>\n  <params>\n'
        for name, meta in schema.get("properties", {}).items():
            xml += _xml_param(name, meta, schema.get("required"), 2)
        blocks.append(xml + "  </params>\n</function>\n")
    return "\n".join(blocks)


def system_prompt(config: str, functions: list[dict[str, Any]]) -> str:
    """BFCL's system prompt for prompt-format models under ``config`` (``formulate_system_prompt``)."""
    from bitagent_plugins.bfcl.memory import _prompts  # BFCL's prompt constants, from the wheel

    prompts = _prompts()
    chosen = Config.parse(config)
    docs = {"python": _docs_python, "xml": _docs_xml, "json": lambda f: json.dumps(f, indent=4)}[chosen.doc_format](
        functions
    )
    style = prompts.PROMPT_STYLE_TEMPLATES[chosen.style]
    call_format = style["tool_call_with_tag" if chosen.tool_call_tag else "tool_call_no_tag"].format(
        output_format=prompts.OUTPUT_FORMAT_MAPPING[chosen.return_format],
        param_types=prompts.PARAM_TYPE_MAPPING[chosen.return_format],
    )
    return str(
        prompts.PROMPT_TEMPLATE_MAPPING[chosen.prompt_format].format(
            persona=style["persona"],
            task=style["task"],
            tool_call_format=call_format,
            multiturn_behavior=style["multiturn_behavior"],
            available_tools=style["available_tools"].format(format=chosen.doc_format, functions=docs),
        )
    )


# --- tasks -------------------------------------------------------------------------------------------------


def id_file(data_dir: Path) -> dict[str, list[str]]:
    """BFCL's format-sensitivity ids per category (``BFCL_v4_format_sensitivity.json``)."""
    data = json.loads((data_dir / "BFCL_v4_format_sensitivity.json").read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ValueError("BFCL_v4_format_sensitivity.json: a category -> ids object")
    return {str(k): [str(i) for i in v] for k, v in data.items() if v}


def build_tasks(base: Mapping[str, Iterable[Task]], ids: Mapping[str, list[str]]) -> list[Task]:
    """Every id under every configuration, in BFCL's order and with BFCL's ids. ``base``: each category's
    single-turn tasks (``bfcl:<category>``); their tools carry BFCL's Python hint once and BFCL adds it a
    second time to format-sensitivity entries (the hint is added on each load), so the prompt shows it twice."""
    entries = [task for category, wanted in ids.items() for task in base[category] if task.id in set(wanted)]
    out = []
    index = 0
    for task in entries:
        functions = []
        for tool in task.tools:
            doc = tool.to_json()
            doc["description"] = doc["description"] + _LANGUAGE_HINT
            functions.append(doc)
        messages, own = task.messages, ""
        if messages and messages[0].role == "system":  # BFCL: its prompt, a blank line, the entry's own
            messages, own = messages[1:], "\n\n" + messages[0].content
        for config in CONFIGS:
            out.append(
                attrs.evolve(
                    task,
                    id=f"{CATEGORY}_{index}:{config}:{task.id}",
                    category=CATEGORY,
                    messages=messages,
                    system_prompt=system_prompt(config, functions) + own,
                    metadata={**task.metadata, "format_config": config, "base_category": task.category},
                )
            )
            index += 1
    return out


# --- reading an answer as BFCL does under a configuration ----------------------------------------------------

_TAG = re.compile(r"<TOOLCALL>(.*?)</TOOLCALL>", re.S)
_JSON_SPAN = re.compile(r"\[.*\]", re.S)
_JSON_LIST = re.compile(r"\[\s*{.*?}\s*(?:,\s*{.*?}\s*)*\]", re.S)
MAX_ANSWER_CHARS = 200_000


def decode_answer(text: str, config: str) -> Decoded:
    """One answer read as BFCL's prompting handler reads it under ``config`` (``default_decode_ast_prompting``):
    backticks, line breaks and spaces stripped at both ends, wrapped in ``[...]``, the ``<TOOLCALL>`` content
    taken when the configuration asks for tags (none: an error), then read as pythonic calls, as BFCL's JSON
    (``[{"function": ..., "parameters": {...}}]``; unreadable JSON is no call) or as its XML. Nothing is
    evaluated; never raises."""
    from bitagent_core import ToolCall
    from bitagent_core.toolkit import Decoded, DecodeError, decode_pythonic
    from bitagent_plugins.bfcl.reading import BFCL, xml_calls

    chosen = Config.parse(config)
    body = (text or "")[:MAX_ANSWER_CHARS].strip("`\n ")
    body = ("" if body.startswith("[") else "[") + body + ("" if body.endswith("]") else "]")
    if chosen.tool_call_tag:
        match = _TAG.search(body)
        if match is None:
            return Decoded(error="no <TOOLCALL> tag")
        body = match.group(1).strip()
    if chosen.return_format == "python":
        return decode_pythonic(body.strip().strip("'"), dialect=BFCL)
    if chosen.return_format == "json":
        span = _JSON_SPAN.search(body)
        body = span.group(0) if span else body
        listed = _JSON_LIST.search(body)
        try:
            items = json.loads(listed.group(0) if listed else body)
        except (json.JSONDecodeError, RecursionError):
            return Decoded(format="json")  # BFCL: no call
        calls = []
        try:
            for item in items:
                if isinstance(item, dict):
                    if not isinstance(item["function"], str) or not isinstance(item["parameters"], dict):
                        return Decoded(error="a JSON call needs a 'function' name and 'parameters'")
                    calls.append(ToolCall(name=item["function"], arguments=dict(item["parameters"])))
        except (KeyError, TypeError) as exc:
            return Decoded(error=f"not BFCL's JSON call list: {type(exc).__name__}")
        return Decoded(calls=tuple(calls), format="json")
    try:
        found = xml_calls(body)
    except DecodeError as exc:
        return Decoded(error=str(exc))
    if found is None:
        return Decoded(error="no <functions> block")
    return Decoded(calls=tuple(found), format="xml")
