"""Honest comparisons: runs of one model with another seed or tool format are told apart in their labels;
``compare`` and the report warn when task sets differ and say why, pair only runs asked the same questions,
list the tasks that flipped with their diffs and count error types per run; the report lists every sample,
passed ones too, filterable by verdict (rendered in a real headless Chromium)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from bitagent_core._plugins import PluginRegistry
from bitagent_core._runner import Evaluation, RunConfig, load_tasks
from bitagent_core.toolkit import render_expected
from tests.test_runs import CHROMIUM, OracleBackend, Plugin, bitagent, chromium

N = 12


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """strong and weak on seed 0 (prompt format), strong on seed 7, strong with native tools; one tagged."""
    out = tmp_path_factory.mktemp("runs")
    registry = PluginRegistry()
    registry.load_entry_points({"bitagent-tasks", "bitagent-scorer"})
    registry.register_module(Plugin(), "oracle")
    OracleBackend.answers = {}
    for seed in (0, 7):
        tasks = load_tasks(registry, "bitagent", seed, N)
        for i, t in enumerate(tasks):  # seed 0's index wins where seed 7 asks the same question
            OracleBackend.answers.setdefault(t.messages[-1].content, (i, render_expected(t)))
    made = {}
    for key, model, seed, tool_format in (
        ("strong", "strong", 0, "prompt"),
        ("weak", "weak", 0, "prompt"),
        ("seed7", "strong", 7, "prompt"),
        ("native", "strong", 0, "native"),
    ):
        config = RunConfig(
            tasks="bitagent",
            backend="oracle",
            model=model,
            limit=N,
            seed=seed,
            tool_format=tool_format,
            output_dir=str(out / key),
            tags=[key],
        )
        made[key] = Path(asyncio.run(Evaluation(config, registry).run()).run_dir)
    return made


def compare(*runs: Path, json_out: bool = True):
    done = bitagent("compare", *map(str, runs), *(["--json"] if json_out else []))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if json_out else done.stdout


@pytest.mark.slow
def test_labels_tell_seed_tool_format_and_tags_apart(runs):
    data = compare(runs["strong"], runs["native"])
    labels = [r["label"] for r in data["runs"]]
    assert "[prompt, seed 0, #strong]" in labels[0] and "[native, seed 0, #native]" in labels[1]
    traits = data["runs"][0]["traits"]
    for key in ("task_digest", "seed", "tool_format", "scorer", "scorer_version", "backend", "model_sha", "limit"):
        assert key in traits, key
    assert data["comparable"] and not data["warnings"]  # the same tasks, scored the same way: ranked and paired
    assert data["paired"][0]["n"] == N


@pytest.mark.slow
def test_compare_lists_flipped_tasks_with_diffs_and_error_counts(runs):
    data = compare(runs["strong"], runs["weak"])
    flipped = data["paired"][0]["flipped"]
    # strong misses task 1 only; weak passes every third task (0, 3, 6, 9) and its request for task 4 fails
    assert len(flipped) == N - 4 - 1 and all(f["a_passed"] and not f["b_passed"] for f in flipped)
    failed_request = next(f for f in flipped if f["b_error"] == "backend_error")
    assert failed_request["a_diff"] and failed_request["b_diff"]  # each side's expected-vs-called lines
    weak_errors = data["runs"][1]["error_counts"]
    assert weak_errors["backend_error"] == 1 and sum(weak_errors.values()) == N - 4
    assert sum(data["runs"][0]["error_counts"].values()) == 1
    text = compare(runs["strong"], runs["weak"], json_out=False)
    assert f"{len(flipped)} task(s) flipped" in text and "pass -> fail" in text
    assert "expected (-) vs called (+)" in text and "backend_error 1" in " ".join(text.split())


@pytest.mark.slow
def test_compare_warns_and_says_why_when_the_task_sets_differ(runs):
    data = compare(runs["strong"], runs["seed7"])
    assert not data["comparable"]
    (warning,) = data["warnings"]
    assert "not comparable" in warning and "different seed (0 vs 7)" in warning
    pair = data["paired"][0]
    assert pair["n"] == 0 and pair["flipped"] == []  # ids may repeat across seeds; the questions do not
    assert pair["task_set_differences"] == ["different seed (0 vs 7)"]
    text = " ".join(compare(runs["strong"], runs["seed7"], json_out=False).split())
    assert "WARNING:" in text and "different seed (0 vs 7)" in text and "no shared tasks (different seed" in text


@pytest.mark.slow
def test_the_report_refuses_to_rank_different_task_sets_and_lists_every_sample(runs, tmp_path):
    assert CHROMIUM, "Chromium is installed by `make test` (apt-get install chromium)"
    report = tmp_path / "report.html"
    done = bitagent("report", str(runs["strong"]), str(runs["seed7"]), str(runs["weak"]), "-o", str(report))
    assert done.returncode == 0, done.stderr
    dom = chromium("--dump-dom", report.as_uri()).stdout
    assert 'id="not-comparable"' in dom and "different seed (0 vs 7)" in dom
    leaderboard = re.search(r'<table id="leaderboard">(.*?)</table>', dom, re.S).group(1)
    assert re.findall(r"<tr><td>([^<]*)</td>", leaderboard) == ["-", "-", "-"]  # no ranks
    assert '<table id="errors">' in dom and "backend_error" in dom
    rows = re.findall(r'<tr class="sample"[^>]*data-verdict="(\w+)"', dom)
    assert len(rows) == 3 * N and "passed" in rows and "failed" in rows and "wrong" in rows
    dom = chromium("--dump-dom", report.as_uri() + "#verdict=passed").stdout
    visible = [r for r in re.findall(r'<tr class="sample"[^>]*>', dom) if "hidden" not in r]
    assert len(visible) == rows.count("passed") and all('data-verdict="passed"' in r for r in visible)
    assert f'<span id="shown">{rows.count("passed")}</span>' in dom
