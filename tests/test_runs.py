"""Looking at runs: ``bitagent score RUN``, ``runs list/show``, ``compare`` and the HTML ``report`` (rendered in
a real headless Chromium), on two real runs made by the runner with an in-test backend that answers from the
ground truth (right on some tasks, wrong or failing on others)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bitagent_core._plugins import PluginRegistry
from bitagent_core._runner import Evaluation, RunConfig, load_tasks
from bitagent_core.hookspecs import hookimpl
from bitagent_core.model import Completion
from bitagent_core.records import RunResults
from bitagent_core.toolkit import render_expected
from bitagent_plugins.runs.view import call_diff, compare_pair, paired_test

BIN = Path(sys.executable).parent
N_TASKS = 24


def bitagent(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "bitagent"), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


class OracleBackend:
    """Model "strong" answers every task right but one; "weak" is right on every third and fails one request."""

    default_concurrency = 4
    answers: dict[str, tuple[int, str]] = {}  # question -> (task index, right answer)

    def __init__(self, model, options):
        self.model = model

    async def start(self, run_dir):
        pass

    async def complete(self, request):
        index, right = self.answers[request.messages[-1].content]
        if self.model == "weak" and index == 4:
            raise ConnectionError("server went away")
        wrong = (self.model == "weak" and index % 3 != 0) or (self.model == "strong" and index == 1)
        return Completion(
            text="I cannot help." if wrong and right else ("[nope(x=1)]" if wrong else right),
            prompt_tokens=50,
            completion_tokens=10,
            latency_s=0.1 + index / 100,
        )

    async def close(self):
        pass

    def describe(self):
        return {"model": f"acme/{self.model}"}


class Plugin:
    @hookimpl
    def register_backends(self, register):
        register("oracle", OracleBackend)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    registry = PluginRegistry()
    registry.load_entry_points({"bitagent-tasks", "bitagent-scorer"})
    registry.register_module(Plugin(), "oracle")
    tasks = load_tasks(registry, "bitagent", 0, N_TASKS)
    OracleBackend.answers = {t.messages[-1].content: (i, render_expected(t)) for i, t in enumerate(tasks)}
    for model in ("strong", "weak"):
        config = RunConfig(tasks="bitagent", backend="oracle", model=model, limit=N_TASKS, output_dir=str(out))
        asyncio.run(Evaluation(config, registry).run())
    return out


def _run(runs_dir: Path, model: str) -> Path:
    return next(p for p in runs_dir.iterdir() if p.name.endswith(f"_bitagent_{model}"))


@pytest.mark.slow
def test_score_rescores_a_run_into_a_new_run_directory(runs_dir, tmp_path):
    weak = _run(runs_dir, "weak")
    done = bitagent("score", str(weak), "--output-dir", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    rescored = RunResults.from_json(json.loads(done.stdout))
    original = RunResults.from_json(json.loads((weak / "results.json").read_text()))
    assert rescored.mean_score == original.mean_score and rescored.n_tasks == N_TASKS
    assert rescored.rescored_from == str(weak / "samples.jsonl") and rescored.status == "complete"
    assert Path(rescored.run_dir).parent == tmp_path
    assert len((Path(rescored.run_dir) / "samples.jsonl").read_text().splitlines()) == N_TASKS
    assert f"answers for {N_TASKS} of {N_TASKS} tasks" in done.stderr
    # its samples.jsonl alone works too; a scorer of another kind scores the same answers its own way
    done = bitagent("score", str(weak / "samples.jsonl"), "-s", "bfcl", "--output-dir", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scorer"]["name"] == "bfcl"


@pytest.mark.slow
def test_score_counts_missing_answers_unless_partial_and_refuses_empty_input(runs_dir, tmp_path):
    strong = _run(runs_dir, "strong")
    part = tmp_path / "part"
    part.mkdir()
    shutil.copy(strong / "results.json", part / "results.json")
    lines = (strong / "samples.jsonl").read_text().splitlines()
    (part / "samples.jsonl").write_text("\n".join(lines[:6] + lines[:1]) + "\n")  # 6 answers, one duplicate
    whole = bitagent("score", str(part), "--output-dir", str(tmp_path), "--json")
    assert whole.returncode == 0, whole.stderr
    assert "answers for 6 of 24 tasks" in whole.stderr and "more than once" in whole.stderr
    n_passed = json.loads(whole.stdout)["n_passed"]
    assert json.loads(whole.stdout)["mean_score"] <= 6 / 24
    partial = json.loads(bitagent("score", str(part), "--partial", "--output-dir", str(tmp_path), "--json").stdout)
    assert partial["n_tasks"] == 6 and partial["n_passed"] == n_passed
    (part / "samples.jsonl").write_text("")
    empty = bitagent("score", str(part), "--output-dir", str(tmp_path))
    assert empty.returncode == 1 and "nothing was scored" in empty.stderr
    assert "mean score" not in empty.stdout  # the error, not a table of zeros before it
    answers = tmp_path / "empty.jsonl"
    answers.write_text("")
    empty = bitagent("score", "--tasks", "bitagent", "--scorer", "bitagent", "--responses", str(answers))
    assert empty.returncode == 1 and "nothing was scored" in empty.stderr and "accuracy" not in empty.stdout


@pytest.mark.slow
def test_runs_list_and_show(runs_dir):
    listed = json.loads(bitagent("runs", "list", "-o", str(runs_dir), "--json").stdout)
    assert {row["model"] for row in listed} == {"acme/strong", "acme/weak"}
    assert listed[0]["started_at"] >= listed[-1]["started_at"]
    table = bitagent("runs", "list", "-o", str(runs_dir))
    assert table.returncode == 0 and "strong" in table.stdout and "weak" in table.stdout
    weak = _run(runs_dir, "weak")
    shown = bitagent("runs", "show", weak.name, "-o", str(runs_dir), "--failed", "--json")
    records = [json.loads(line) for line in shown.stdout.splitlines()]
    assert records and all(not (r["status"] == "ok" and r["passed"]) for r in records)
    assert any(r["status"] == "failed" for r in records)
    text = bitagent("runs", "show", str(weak), "--failed", "--category", "single_call")
    assert text.returncode == 0, text.stderr
    assert "expected (-) vs called (+)" in text.stdout and "raw answer" in text.stdout
    assert bitagent("runs", "show", "no-such-run", "-o", str(runs_dir)).returncode == 1


def test_compare_pairs_runs_on_shared_tasks(runs_dir):
    done = bitagent("compare", str(_run(runs_dir, "weak")), str(_run(runs_dir, "strong")), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    pair = data["paired"][0]
    assert pair["n"] == N_TASKS and pair["diff"] > 0 and pair["b_better"] > pair["a_better"]
    assert pair["p_value"] < 0.05
    assert data["categories"][-1]["category"] == "all"
    text = bitagent("compare", str(_run(runs_dir, "weak")), str(_run(runs_dir, "strong")))
    assert "paired permutation p =" in text.stdout and "a real difference" in text.stdout


def test_paired_statistics():
    assert paired_test([0.0, 0.0]) == 1.0
    assert paired_test([1.0] * 10) == pytest.approx(2 / 2**10)  # exact: only all-plus or all-minus as extreme
    assert paired_test([1.0, -1.0] * 30) == 1.0
    same = compare_pair({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 0.0, "c": 1.0})
    assert same.n == 2 and same.diff == 0.0 and same.p_value == 1.0


def test_call_diff_marks_wrong_and_missing_arguments():
    from bitagent_core.model import ExpectedCall, ToolCall

    diff = call_diff([ExpectedCall("f", {"a": (1,), "b": ("x", "")})], [ToolCall("f", {"a": 2})])
    assert ("-", "    a=1") in diff and ("+", "    a=2") in diff and ("-", '    b="x"|<omitted>') in diff
    assert call_diff([], []) == [(" ", "(no call)")]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "Chromium is installed by `make test` (apt-get install chromium)"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_the_report_renders_in_a_real_browser_with_charts_and_a_working_filter(runs_dir, tmp_path):
    report = tmp_path / "report.html"
    done = bitagent("report", str(_run(runs_dir, "strong")), str(_run(runs_dir, "weak")), "-o", str(report))
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert not re.search(r"""(src|href)=["']?https?://""", html)  # nothing fetched: opens offline

    dom = chromium("--dump-dom", report.as_uri()).stdout
    for kind in ("category-bars", "score-histogram", "latency-histogram"):
        assert f'data-chart="{kind}"' in dom
    assert dom.count('class="errorbar"') >= 4  # 2 runs x (1 category + all)
    assert re.search(r'<table id="leaderboard">.*acme/strong.*acme/weak', dom, re.S)  # best first
    rows = re.findall(r'<tr class="sample"[^>]*>', dom)
    assert rows and not any("hidden" in r for r in rows)
    assert f'<span id="shown">{len(rows)}</span>' in dom

    # the filter, run by the browser's JavaScript from the link's #fragment: only the failed request remains
    dom = chromium("--dump-dom", report.as_uri() + "#q=server%20went%20away").stdout
    visible = [r for r in re.findall(r'<tr class="sample"[^>]*>', dom) if "hidden" not in r]
    assert len(visible) == 1 and '<span id="shown">1</span>' in dom
    dom = chromium("--dump-dom", report.as_uri() + "#error=backend_error").stdout
    assert '<span id="shown">1</span>' in dom

    shot = tmp_path / "report.png"
    chromium(f"--screenshot={shot}", "--window-size=1100,1500", "--hide-scrollbars", report.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


class Browser:
    """A headless Chromium driven over the DevTools protocol (websockets on 127.0.0.1), to act as a user."""

    def __init__(self, url: str, profile: Path) -> None:
        import time

        assert CHROMIUM, "Chromium is installed by `make test` (apt-get install chromium)"
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (port_file.exists() and port_file.read_text().strip()):
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        import httpx

        while time.monotonic() < deadline:
            pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json", timeout=10).json() if t["type"] == "page"]
            if pages and pages[0]["url"].startswith("file:"):
                break
            time.sleep(0.1)
        self.ws_url = pages[0]["webSocketDebuggerUrl"]
        self._id = 0

    def send(self, *calls: tuple[str, dict]) -> list[dict]:
        import websockets.sync.client

        results = []
        with websockets.sync.client.connect(self.ws_url, max_size=None, open_timeout=30) as ws:
            for method, params in calls:
                self._id += 1
                ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
                while True:
                    message = json.loads(ws.recv(timeout=30))
                    if message.get("id") == self._id:
                        results.append(message.get("result", {}))
                        break
        return results

    def js(self, expression: str):
        (result,) = self.send(
            ("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        )
        return result.get("result", {}).get("value")  # no result: the page navigated while it ran

    def wait_loaded(self) -> None:
        """Until the report itself has loaded: the target's URL turns to file: when the navigation starts,
        while the document may still be the first about:blank (also readyState "complete")."""
        import time

        deadline = time.monotonic() + 60
        while not self.js("location.protocol === 'file:' && document.readyState === 'complete'"):
            assert time.monotonic() < deadline, "the report did not load within 60 s"
            time.sleep(0.05)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.mark.slow
def test_a_user_filters_the_failed_samples_by_typing_and_choosing(runs_dir, tmp_path):
    report = tmp_path / "report.html"
    assert (
        bitagent("report", str(_run(runs_dir, "strong")), str(_run(runs_dir, "weak")), "-o", str(report)).returncode
        == 0
    )
    browser = Browser(report.as_uri(), tmp_path / "profile")
    try:
        browser.wait_loaded()
        total = browser.js("document.querySelectorAll('#samples tr.sample').length")
        assert total > 1 and browser.js("document.getElementById('shown').textContent") == str(total)
        # the charts are drawn: bars with a real height, error bars, in the rendered layout
        heights = browser.js(
            "[...document.querySelectorAll('svg[data-chart=category-bars] rect.bar')].map(r => r.getBBox().height)"
        )
        assert len(heights) == 6 and all(h > 0 for h in heights)  # 2 runs x (2 categories + all)
        assert (
            browser.js("document.querySelector('svg[data-chart=latency-histogram]').getBoundingClientRect().height")
            > 100
        )
        # type into the filter box, as a user does
        browser.js("document.getElementById('q').focus()")
        browser.send(("Input.insertText", {"text": "server went away"}))
        assert browser.js("document.getElementById('shown').textContent") == "1"
        visible = browser.js(
            "[...document.querySelectorAll('#samples tr.sample')].filter(r => !r.hidden).map(r => r.dataset.error)"
        )
        assert visible == ["backend_error"]
        # clear it and pick an error type from the list instead
        browser.js("const q = document.getElementById('q'); q.value = ''; q.dispatchEvent(new Event('input'))")
        assert browser.js("document.getElementById('shown').textContent") == str(total)
        shown = browser.js(
            "const s = document.getElementById('f-run'); s.selectedIndex = 2;"
            "s.dispatchEvent(new Event('change')); document.getElementById('shown').textContent"
        )
        weak = browser.js(
            "[...document.querySelectorAll('#samples tr.sample')].filter(r => r.dataset.run.includes('weak')).length"
        )
        assert int(shown) == weak and 0 < weak < total
    finally:
        browser.close()
