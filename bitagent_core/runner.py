"""The core loop: tasks -> prompt -> backend -> decode -> score -> samples.jsonl.

One task's path, start to end, is :meth:`Evaluation._run_one`. Requests run concurrently up to
``concurrency``; each finished sample is written at once. A failed request (timeout, backend error) is
recorded as a failed sample scoring 0 and the run goes on; ``--resume`` retries failed samples and skips
finished ones. Cancellation (Ctrl-C, SIGTERM) keeps every finished sample and marks the run interrupted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

import bitagent_core
from bitagent_core import agent, rundir
from bitagent_core.jsonio import write_json_atomic
from bitagent_core.model import Completion, Score, Task
from bitagent_core.plugins import PluginRegistry
from bitagent_core.prompting import build_request
from bitagent_core.protocols import Backend, Competition, Scorer, TaskSource
from bitagent_core.reporting import Reporters
from bitagent_core.validation import InvalidTask, check_protocol, validate_tasks


@attrs.define
class RunConfig:
    """Everything that decides what a run evaluates. Saved in ``results.json``; ``--resume`` reads it."""

    tasks: str = "bitagent"
    backend: str = "llama-cpp"
    model: str | None = None
    scorer: str = "bitagent"
    limit: int | None = 20
    seed: int = 0
    concurrency: int | None = None
    output_dir: str = "runs"
    backend_options: dict[str, str] = attrs.field(factory=dict)
    tool_format: str = "prompt"
    temperature: float = 0.0
    max_tokens: int = 160
    timeout_s: float = 300.0

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@attrs.define
class RunInfo:
    """What reporters see of a run."""

    run_dir: Path
    config: RunConfig
    n_tasks: int
    resumed: bool = False


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"bfcl:simple_python"`` -> ``("bfcl", "simple_python")``."""
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


def make_task_source(registry: PluginRegistry, spec: str) -> TaskSource:
    name, arg = split_spec(spec)
    source: TaskSource = registry.get("task_sources", name).factory(arg)
    return source


def competition_version(competition: Competition, registry: PluginRegistry) -> str:
    """The version a competition's evaluations are keyed by: its own, plus the sample size, its scorer's version
    and its task sources' versions and shares. Any change means every model is evaluated again (a regrade)."""
    parts = [str(competition.version), f"n={competition.sample_size}"]
    scorer = registry.get("scorers", competition.scorer).factory()
    parts.append(f"{competition.scorer}={scorer.version}")
    for spec, share in sorted(competition.mix(registry).items()):
        parts.append(f"{spec}={make_task_source(registry, spec).version}@{float(share):g}")
    return ";".join(parts)


def load_tasks(registry: PluginRegistry, spec: str, seed: int, limit: int | None) -> list[Task]:
    """The tasks of ``spec``, each checked (:func:`~bitagent_core.validation.validate_tasks`): an unusable
    task fails here, naming the source and the task, before any model loads."""
    return tasks_of(make_task_source(registry, spec), spec, seed, limit)


def tasks_of(source: TaskSource, spec: str, seed: int, limit: int | None) -> list[Task]:
    check_protocol(source, TaskSource, f"task source {spec!r}")
    try:
        return validate_tasks(source.tasks(seed=seed, limit=limit), spec)
    except InvalidTask:
        raise
    except Exception as exc:  # a task source is plugin code: say which one failed
        raise RuntimeError(f"task source {spec!r} failed: {type(exc).__name__}: {exc}") from exc


class Evaluation:
    """One run of one model over one task list."""

    def __init__(self, config: RunConfig, registry: PluginRegistry, *, resume_dir: Path | None = None,
                 on_sample: Callable[[dict[str, Any]], None] | None = None,
                 on_start: Callable[[int, int], None] | None = None) -> None:
        self.config = config
        self.registry = registry
        self.resume_dir = resume_dir
        self.on_sample = on_sample
        self.on_start = on_start
        self.tasks: list[Task] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.run_dir: Path | None = None

    def prepare(self) -> list[Task]:
        """Resolve plugins, load tasks and create (or reopen) the run directory; returns the tasks to do."""
        cfg = self.config
        source = make_task_source(self.registry, cfg.tasks)
        self.tasks = tasks_of(source, cfg.tasks, cfg.seed, cfg.limit)
        self.task_source_version = str(source.version)  # recorded in results.json: runs compare only within one
        self.scorer: Scorer = self.registry.get("scorers", cfg.scorer).factory()
        self.backend: Backend = self.registry.make_backend(cfg.backend, cfg.model, dict(cfg.backend_options))
        check_protocol(self.scorer, Scorer, f"scorer {cfg.scorer!r}")
        check_protocol(self.backend, Backend, f"backend {cfg.backend!r}")
        self.reporters = Reporters(self.registry)
        if self.resume_dir is not None:
            self.run_dir = self.resume_dir
            self.records = rundir.read_samples(self.run_dir)
            known = {t.id for t in self.tasks}
            self.records = {k: v for k, v in self.records.items() if k in known}
        else:
            self.run_dir = rundir.new_run_dir(Path(cfg.output_dir), cfg.tasks, cfg.model or "default")
        self.started_at = rundir.utc_stamp()
        self.git_commit = rundir.git_commit(Path(bitagent_core.__file__).resolve().parent.parent)  # once per run
        return [t for t in self.tasks if self.records.get(t.id, {}).get("status") != "ok"]

    async def run(self) -> dict[str, Any]:
        todo = self.prepare()
        assert self.run_dir is not None
        info = RunInfo(self.run_dir, self.config, len(self.tasks), resumed=self.resume_dir is not None)
        self._write_results("running")
        self.reporters.call("on_run_start", run=info)
        if self.on_start:
            self.on_start(len(self.tasks), len(self.tasks) - len(todo))
        writer = rundir.SampleWriter(self.run_dir)
        status = "interrupted"
        t0 = time.perf_counter()
        try:
            await self.backend.start(self.run_dir)
            self._write_results("running")  # now with the model's identity
            concurrency = self.config.concurrency or self.backend.default_concurrency
            limiter = asyncio.Semaphore(max(1, int(concurrency)))

            async def one(task: Task) -> None:
                async with limiter:
                    record = await self._run_one(task)
                writer.write(record)
                self.records[task.id] = record
                self.reporters.call("on_sample_scored", run=info, sample=record)
                if self.on_sample:
                    self.on_sample(record)

            await asyncio.gather(*(one(task) for task in todo))
            status = "complete"
        finally:
            writer.close()
            try:
                await asyncio.shield(self.backend.close())
            finally:
                results = self._write_results(status, time.perf_counter() - t0)
                self.reporters.call("on_run_end", run=info, results=results)
        return results

    async def _run_one(self, task: Task) -> dict[str, Any]:
        if task.environment is not None:  # multi-turn: played by the agent loop
            return await agent.run_task(self, task)
        cfg = self.config
        request = build_request(task, cfg.tool_format, temperature=cfg.temperature, max_tokens=cfg.max_tokens)
        started = time.perf_counter()
        try:
            completion = await asyncio.wait_for(self.backend.complete(request), timeout=cfg.timeout_s)
        except TimeoutError:
            completion = Completion(error=f"timeout after {cfg.timeout_s:g} s")
        except Exception as exc:  # noqa: BLE001 - one failed sample must not end the run
            completion = Completion(error=f"{type(exc).__name__}: {exc}")
        if not completion.latency_s:
            completion = attrs.evolve(completion, latency_s=time.perf_counter() - started)
        if completion.error is not None:
            score = Score(0.0, error_type="backend_error", detail=completion.error)
            status = "failed"
        else:
            score, status = self._score(task, completion)
        return {
            "task_id": task.id,
            "source": task.source,
            "category": task.category,
            "status": status,
            "score": score.value,
            "passed": score.passed,
            "error_type": score.error_type,
            "breakdown": score.breakdown,
            "decoded_calls": [c.to_json() for c in score.decoded_calls],
            "detail": score.detail,
            "completion": completion.to_json(),
            "messages": [m.to_json() for m in request.messages],
            "tools": [t.to_json() for t in task.tools],
            "expected_calls": [c.to_json() for c in task.expected_calls],
        }

    def _score(self, task: Task, completion: Completion) -> tuple[Score, str]:
        """The scorer's verdict; a scorer that raises or returns something that is not a usable Score fails
        only this sample (``scorer_error``, the completion kept), never the run."""
        try:
            score = self.scorer.score(task, completion)
            if not isinstance(score, Score):
                raise TypeError(f"returned a {type(score).__name__}, not a Score")
            json.dumps(score.to_json(), allow_nan=False)  # what samples.jsonl will hold
        except Exception as exc:  # noqa: BLE001 - plugin code: one bad verdict must not end the run
            detail = f"scorer {self.config.scorer!r}: {type(exc).__name__}: {exc}"
            return Score(0.0, error_type="scorer_error", detail=detail[:2000]), "failed"
        return score, "ok"

    def summary(self) -> dict[str, Any]:
        """Scores over all tasks of the run: a failed or missing sample counts 0."""
        per_category: dict[str, list[float]] = {}
        passed: dict[str, int] = {}
        for task in self.tasks:
            record = self.records.get(task.id) or {}
            ok = record.get("status") == "ok"
            category = task.category or "all"
            per_category.setdefault(category, []).append(float(record["score"]) if ok else 0.0)
            passed[category] = passed.get(category, 0) + bool(ok and record.get("passed"))
        scores = [v for values in per_category.values() for v in values]
        done = [r for r in self.records.values() if r.get("status") == "ok"]
        latencies = [r["completion"]["latency_s"] for r in done]
        return {
            "mean_score": round(statistics.fmean(scores), 6) if scores else 0.0,
            "n_tasks": len(self.tasks),
            "n_scored": len(done),
            "n_failed": sum(1 for r in self.records.values() if r.get("status") == "failed"),
            "n_scorer_errors": sum(1 for r in self.records.values() if r.get("error_type") == "scorer_error"),
            "n_passed": sum(passed.values()),
            "per_category": {
                cat: {"n": len(values), "mean_score": round(statistics.fmean(values), 6), "passed": passed[cat]}
                for cat, values in sorted(per_category.items())
            },
            "prompt_tokens": sum(r["completion"]["prompt_tokens"] for r in done),
            "completion_tokens": sum(r["completion"]["completion_tokens"] for r in done),
            "mean_latency_s": round(statistics.fmean(latencies), 4) if latencies else None,
        }

    def _write_results(self, status: str, duration_s: float | None = None) -> dict[str, Any]:
        assert self.run_dir is not None
        try:
            model = self.backend.describe()
        except Exception as exc:  # noqa: BLE001
            model = {"error": str(exc)}
        results = {
            "status": status,
            "run_dir": str(self.run_dir),
            "started_at": self.started_at,
            "updated_at": rundir.utc_stamp(),
            "duration_s": round(duration_s, 3) if duration_s is not None else None,
            "config": self.config.to_json(),
            "seed": self.config.seed,
            "model": model,
            "scorer": {"name": self.config.scorer, "version": self.scorer.version},
            "task_source": {"spec": self.config.tasks, "version": self.task_source_version},
            "bitagent_version": bitagent_core.__version__,
            "git_commit": self.git_commit,
            "plugins": self.registry.plugin_versions(),
            **self.summary(),
        }
        write_json_atomic(self.run_dir / rundir.RESULTS, results)
        return results


def config_for_resume(run_dir: Path, **overrides: Any) -> RunConfig:
    """The config a run was started with, so ``--resume`` evaluates exactly the same tasks."""
    data = rundir.read_results(run_dir)["config"]
    data.update({k: v for k, v in overrides.items() if v is not None})
    return RunConfig.from_json(data)
