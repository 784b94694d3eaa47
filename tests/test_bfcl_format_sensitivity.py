"""BFCL v4's format sensitivity: its 26 configurations, its 200 ids, system prompts identical to BFCL's, and the
two figures it reports."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path

import pytest

from bitagent_core._plugins import get_registry
from bitagent_core._runner import load_tasks
from bitagent_core.toolkit.prompting import build_request
from bitagent_plugins.bfcl import format_sensitivity as fs

REFERENCE = json.loads((Path(__file__).parent / "data" / "bfcl_format_sensitivity_reference.json").read_text())


def test_the_configurations_are_bfcls():
    assert list(fs.CONFIGS) == REFERENCE["configs"] and len(fs.CONFIGS) == 26
    assert fs.DEFAULT_CONFIG in fs.CONFIGS
    with pytest.raises(ValueError):
        fs.Config.parse("ret_fmt=yaml&tool_call_tag=False&func_doc_fmt=json&prompt_fmt=plaintext&style=classic")


@pytest.mark.slow  # loads eight BFCL categories and builds 5,200 prompts
def test_every_task_and_prompt_is_bfcls():
    """Ids and system prompts, all 5,200, against the digest recorded from bfcl-eval 2026.3.23 itself
    (``load_dataset_entry("format_sensitivity")`` then ``system_prompt_pre_processing_chat_model``)."""
    tasks = load_tasks(get_registry(), "bfcl:format_sensitivity", 0, None)
    assert len(tasks) == REFERENCE["n"] == 5200
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(task.id.encode() + b"\0" + build_request(task).messages[0].content.encode() + b"\n")
    assert digest.hexdigest() == REFERENCE["ids_and_prompts_sha256"]
    first = tasks[0]
    assert first.id.startswith("format_sensitivity_0:ret_fmt=python&tool_call_tag=True&func_doc_fmt=python")
    assert first.expected_calls and first.metadata["base_category"] == "simple_python"


def test_the_two_figures_are_bfcls():
    accuracy = {c: a for c, a in zip(fs.CONFIGS, [0.5, 0.75, 0.6, 0.6] + [0.55] * 22, strict=True)}
    max_delta, std = fs.format_sensitivity_stats(accuracy)
    assert max_delta == 25.0  # (0.75 - 0.5) * 100
    assert std == round(statistics.stdev(accuracy.values()) * 100, 2)
    assert fs.format_sensitivity_stats({fs.DEFAULT_CONFIG: 0.9}) == (0.0, 0.0)
    verdicts = [(f"format_sensitivity_{i}:{fs.CONFIGS[i % 2]}:simple_python_{i}", i % 4 == 0) for i in range(8)]
    verdicts.append(("simple_python_1", True))  # not a format-sensitivity id: skipped
    assert fs.per_config_accuracy(verdicts) == {fs.CONFIGS[0]: 0.5, fs.CONFIGS[1]: 0.0}


@pytest.mark.slow  # loads eight BFCL categories and scores 2,224 answers
def test_bfcl_strict_agrees_with_bfcl_on_answers_in_every_format():
    """2,224 answers (every 8th entry under all 26 configurations: the ground truth in the format asked for,
    one value wrong, the tags left out, a python answer whatever was asked) with the verdicts BFCL's own
    decoder and checker gave (benchmarks/format_sensitivity_verdicts.py)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from format_sensitivity_verdicts import answer_key, corpus

    from bitagent_core.model import Completion
    from bitagent_plugins.bfcl.scorer import BfclScorer

    recorded = json.loads((Path(__file__).parent / "data" / "bfcl_format_sensitivity_verdicts.json").read_text())
    items = corpus()
    assert len(items) == len(recorded["verdicts"]) == 2224
    tasks = {t.id: t for t in load_tasks(get_registry(), "bfcl:format_sensitivity", 0, None)}
    strict = BfclScorer(strict=True)
    outcomes = set()
    for item, (key, valid, error_type) in zip(items, recorded["verdicts"], strict=True):
        assert answer_key(item) == key, "the corpus changed: record the verdicts again"
        verdict = strict.score(tasks[item["id"]], Completion(text=item["answer"]))
        assert verdict.passed is valid, (item["id"], item["variant"], item["answer"][:200], error_type, verdict)
        outcomes.add((item["variant"], valid))
    assert {
        ("right", True),
        ("python_anyway", True),
        ("python_anyway", False),
        ("untagged", False),
        ("wrong_value", False),
    } <= outcomes
