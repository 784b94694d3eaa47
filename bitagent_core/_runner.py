"""The core loop: tasks -> prompt -> backend -> decode -> score -> samples.jsonl.

One task's path, start to end, is :meth:`Evaluation._run_one`. Requests run concurrently up to
``concurrency``; each finished sample is written at once. A failed request (timeout, backend error) is
recorded as a failed sample scoring 0 and the run goes on; ``--resume`` retries failed samples and skips
finished ones. :meth:`Evaluation.request_stop` (first Ctrl-C) lets the requests in flight finish and starts no
more; cancellation (second Ctrl-C, SIGTERM) keeps every finished sample. Either way the run ends
``interrupted``. A backend that cannot start ends it ``failed`` (:class:`StartupError`), and so does a sample
that cannot be written (:class:`RunIOError`, e.g. a full disk); ``results.json`` then holds the error.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

import bitagent_core
from bitagent_core import _agent as agent
from bitagent_core import records as rec
from bitagent_core import rundir
from bitagent_core._plugins import PluginRegistry
from bitagent_core._reporting import Reporters
from bitagent_core.model import Step, Task
from bitagent_core.protocols import Backend, Competition, Scorer, TaskSource
from bitagent_core.records import RunResults, RunStatus, SampleRecord
from bitagent_core.rundir import RunDir
from bitagent_core.toolkit.checks import InvalidTask, check_protocol, validate_tasks


@attrs.define
class RunConfig:
    """Everything that decides what a run evaluates. Saved in ``results.json``; ``--resume`` reads it."""

    tasks: str = "bitagent"  # one task source spec, or several separated by commas
    backend: str = "llama-cpp"
    model: str | None = None
    scorer: str = "bitagent"
    limit: int | None = 20  # per task source spec; None: all its tasks
    seed: int = 0
    concurrency: int | None = None
    output_dir: str = "runs"
    backend_options: dict[str, str] = attrs.field(factory=dict)
    tool_format: str = "prompt"
    temperature: float = 0.0
    max_tokens: int = 160
    timeout_s: float = 300.0
    #: ``--repeats k``: each task runs k times (pass@k, pass^k in the summary)
    repeats: int = 1
    #: only these tasks (``--task-id``, repeatable), taken from all the sources' tasks; empty: every task
    task_ids: list[str] = attrs.field(factory=list)
    #: labels of the run (``--tag``), shown with it by ``runs list``, ``compare`` and the report
    tags: list[str] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def with_absolute_paths(self) -> RunConfig:
        """Paths in the model, the task specs and the output dir made absolute, so the run can be resumed
        or re-scored from any working directory."""

        def absolute(value: str) -> str:
            # only what names an existing file or folder; absolute() keeps symlinks (an HF cache's x.gguf
            # links to a blob without the suffix)
            path = Path(value).expanduser()
            return str(path.absolute()) if path.exists() and ("/" in value or "." in value) else value

        specs = []
        for piece in self.tasks.split(","):  # each comma-separated piece, as a spec or a spec's argument
            name, arg = split_spec(piece.strip())
            specs.append(f"{name}:{absolute(arg)}" if arg else absolute(piece.strip()))
        return attrs.evolve(
            self,
            tasks=",".join(specs),
            model=absolute(self.model) if self.model else self.model,
            output_dir=str(Path(self.output_dir).expanduser().absolute()),
        )


#: ``--resume`` continues a run as it started: these decide which tasks run and how they are answered and scored
FIXED_ON_RESUME = (
    "tasks",
    "backend",
    "model",
    "scorer",
    "limit",
    "seed",
    "tool_format",
    "temperature",
    "max_tokens",
    "repeats",
    "task_ids",
)
#: these may change on ``--resume`` (the change is recorded in results.json)
MAY_CHANGE_ON_RESUME = ("timeout_s", "concurrency", "backend_options")


class ResumeConflict(ValueError):
    """A flag given with ``--resume`` would change which tasks run or how they are scored."""


class StartupError(RuntimeError):
    """The backend could not start (model, server, attach). ``results.json`` says ``failed`` with the error."""


class RunIOError(OSError):
    """A sample could not be written (full disk...). Finished samples are kept; ``results.json`` says why."""


@attrs.define
class RunInfo:
    """What reporters see of a run."""

    run_dir: Path
    config: RunConfig
    n_tasks: int
    resumed: bool = False


class RunObserver:
    """Hears what a run does, for a progress display. Every method is optional (the defaults do nothing)."""

    def header(self, config: RunConfig, n_tasks: int, sources: dict[str, dict[str, Any]]) -> None:
        """The tasks are loaded; nothing has started."""

    def starting_backend(self, backend: str, model: str | None) -> None:
        """The backend is loading its model or starting its server."""

    def backend_ready(self, seconds: float) -> None:
        """The backend answered its start after ``seconds``."""

    def start(self, total: int, done: list[SampleRecord]) -> None:
        """Requests begin; ``done`` are the samples finished earlier (``--resume``)."""

    def sample(self, record: SampleRecord) -> None:
        """One sample finished."""

    def step(self, task: Task, turn: int, step: Step) -> None:
        """A multi-turn task played one more step (request) in turn ``turn``."""

    def stop(self) -> None:
        """The run ended (any way)."""


def split_spec(spec: str) -> tuple[str, str | None]:
    """``"bfcl:simple_python"`` -> ``("bfcl", "simple_python")``."""
    name, sep, arg = spec.partition(":")
    return name, (arg if sep else None)


def split_specs(specs: str, sources: Iterable[str] | None = None) -> list[str]:
    """``"bfcl:simple_python, bitagent"`` -> ``["bfcl:simple_python", "bitagent"]``.

    A source's own argument may hold commas (``bfcl:live_simple,live_multiple``): a piece starts a new spec
    only when it names a task source in ``sources`` (or, without ``sources``, when it has a colon), or when the
    spec before it has no argument to go on (``bitagent,nope``: ``nope`` is then reported as unknown)."""
    known = set(sources) if sources is not None else None
    out: list[str] = []
    for piece in (p.strip() for p in specs.split(",")):
        if not piece:
            continue
        name = piece.partition(":")[0]
        starts = name in known if known is not None else ":" in piece
        if out and not starts and ":" in out[-1]:  # only a spec with an argument goes on after a comma
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def make_task_source(registry: PluginRegistry, spec: str) -> TaskSource:
    name, arg = split_spec(spec)
    source: TaskSource = registry.create("task_sources", name, arg)
    return source


def competition_version(competition: Competition, registry: PluginRegistry) -> str:
    """The version a competition's evaluations are keyed by: its own, plus the sample size, its scorer's version
    and its task sources' versions and shares. Any change means every model is evaluated again (a regrade)."""
    parts = [str(competition.version), f"n={competition.sample_size}"]
    scorer = registry.create("scorers", competition.scorer)
    parts.append(f"{competition.scorer}={scorer.version}")
    for spec, share in sorted(competition.mix(registry).items()):
        parts.append(f"{spec}={make_task_source(registry, spec).version}@{float(share):g}")
    return ";".join(parts)


def load_tasks(
    registry: PluginRegistry, spec: str, seed: int, limit: int | None, sources: dict[str, dict[str, Any]] | None = None
) -> list[Task]:
    """The tasks of one spec or several (comma-separated; ``limit`` applies to each), each checked
    (:func:`~bitagent_core.toolkit.checks.validate_tasks`): an unusable task fails here, naming the source and the
    task, before any model loads. ``sources`` is filled with, per spec, the source's version, the tasks taken
    and, when the limit left some out, how many the source has."""
    tasks: list[Task] = []
    seen: dict[str, str] = {}
    for one in split_specs(spec, registry.registrations("task_sources")) or [spec]:
        source = make_task_source(registry, one)
        check_protocol(source, TaskSource, f"task source {one!r}")
        try:
            # exactly `limit`: a source may pick a different sample for another limit (a competition's mix does)
            taken = validate_tasks(itertools.islice(source.tasks(seed=seed, limit=limit), limit), one)
            available: int | None = len(taken)
            if limit is not None and len(taken) == limit:
                available = sum(1 for _ in source.tasks(seed=seed, limit=None))  # what --limit all would run
        except InvalidTask:
            raise
        except Exception as exc:  # a task source is plugin code: say which one failed
            raise RuntimeError(f"task source {one!r} failed: {type(exc).__name__}: {exc}") from exc
        for task in taken:
            if task.id in seen:
                where = "twice" if seen[task.id] == one else f"and {seen[task.id]!r} too"
                raise ValueError(f"task source {one!r} produced the task id {task.id!r} {where}")
            seen[task.id] = one
        tasks.extend(taken)
        if sources is not None:
            sources[one] = {"version": str(source.version), "taken": len(taken), "available": available}
    return tasks


def select_tasks(tasks: list[Task], task_ids: Iterable[str], spec: str) -> list[Task]:
    """The tasks with these ids, in the sources' order; an id none has is an error naming it."""
    wanted = list(dict.fromkeys(task_ids))
    known = {t.id for t in tasks}
    missing = [i for i in wanted if i not in known]
    if missing:
        raise ValueError(f"--task-id: {spec} has no task {', '.join(map(repr, missing))} for this seed")
    return [t for t in tasks if t.id in set(wanted)]


def task_digest(tasks: Iterable[Task]) -> str:
    """sha256 over the tasks' JSON, in order: the same digest means the same questions and ground truth."""
    digest = hashlib.sha256()
    for task in tasks:
        digest.update(json.dumps(task.to_json(), sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


@attrs.frozen
class PreparedRun:
    """What :meth:`Evaluation.prepare` resolved: the run's tasks, those still to do, the plugins and the
    (new or reopened, locked) run directory."""

    tasks: tuple[Task, ...]
    #: each sample still to do: a task and its repeat index (None without ``--repeats``)
    todo: tuple[tuple[Task, int | None], ...]
    run_dir: Path
    scorer: Scorer
    backend: Backend
    task_digest: str


class Evaluation:
    """One run of one model over one task list."""

    def __init__(
        self,
        config: RunConfig,
        registry: PluginRegistry,
        *,
        resume_dir: Path | None = None,
        observer: RunObserver | None = None,
        resume_changes: dict[str, Any] | None = None,
    ) -> None:
        self.config = config.with_absolute_paths()
        self.registry = registry
        self.resume_dir = resume_dir
        self.resume_changes = resume_changes or {}
        self.observer = observer or RunObserver()
        self.tasks: list[Task] = []
        self.records: dict[str, SampleRecord] = {}
        self.run_dir: Path | None = None
        self.sources: dict[str, dict[str, Any]] = {}
        self.error: str | None = None
        self._stopping = False
        self._previous: RunResults | None = None

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`request_stop` was called (a multi-turn trajectory ends after its request in flight)."""
        return self._stopping

    def request_stop(self) -> None:
        """Finish the requests in flight, start no more; the run ends ``interrupted``. Safe from a signal handler."""
        self._stopping = True

    def prepare(self) -> PreparedRun:
        """Resolve plugins, load tasks and create (or reopen) the run directory; returns what it resolved.
        Errors here (unknown plugin, bad option, unreadable tasks) leave no run directory behind."""
        cfg = self.config
        self.tasks = load_tasks(self.registry, cfg.tasks, cfg.seed, None if cfg.task_ids else cfg.limit, self.sources)
        if cfg.task_ids:
            self.tasks = select_tasks(self.tasks, cfg.task_ids, cfg.tasks)
        self.digest = task_digest(self.tasks)
        self.scorer: Scorer = self.registry.create("scorers", cfg.scorer)
        self.backend: Backend = self.registry.make_backend(cfg.backend, cfg.model, dict(cfg.backend_options))
        check_protocol(self.scorer, Scorer, f"scorer {cfg.scorer!r}")
        check_protocol(self.backend, Backend, f"backend {cfg.backend!r}")
        self.reporters = Reporters(self.registry)
        self.observer.header(cfg, len(self.tasks), self.sources)
        if self.resume_dir is not None:
            self._run = RunDir(self.resume_dir.resolve()).lock()
            self.run_dir = self._run.path
            self._previous = self._run.read_results()
            if self._previous.task_digest and self._previous.task_digest != self.digest:
                self._run.close()
                raise ResumeConflict(
                    f"the tasks of {cfg.tasks} are no longer the ones this run started with "
                    "(their data or the task source changed); start a new run"
                )
            self._run.repair()  # a crash mid-write left a torn last line: appends start on a fresh one
            known = {rec.sample_key(t.id, r) for t, r in self.samples()}
            self.records = {k: v for k, v in self._run.read_samples().items() if k in known}
        else:
            try:
                self._run = RunDir.create(Path(cfg.output_dir), cfg.tasks, cfg.model or "default")
            except OSError as exc:  # an unwritable --output-dir: a file problem (exit 5), not bad input
                raise RunIOError(
                    exc.errno, f"cannot create a run directory under {cfg.output_dir}: {exc.strerror or exc}"
                ) from None
            self.run_dir = self._run.path
        self.started_at = self._previous.started_at if self._previous else rundir.utc_stamp()
        self.git_commit = rundir.git_commit(Path(bitagent_core.__file__).resolve().parent.parent)  # once per run
        assert self.run_dir is not None
        todo = tuple(
            (t, r)
            for t, r in self.samples()
            if not ((key := rec.sample_key(t.id, r)) in self.records and self.records[key].ok)
        )
        return PreparedRun(
            tasks=tuple(self.tasks),
            todo=todo,
            run_dir=self.run_dir,
            scorer=self.scorer,
            backend=self.backend,
            task_digest=self.digest,
        )

    def samples(self) -> list[tuple[Task, int | None]]:
        """Every sample of the run: each task with its repeat index (None without ``--repeats``)."""
        if self.config.repeats <= 1:
            return [(t, None) for t in self.tasks]
        return [(t, r) for t in self.tasks for r in range(self.config.repeats)]

    async def run(self) -> RunResults:
        prepared = self.prepare()
        info = RunInfo(prepared.run_dir, self.config, len(prepared.tasks), resumed=self.resume_dir is not None)
        status: RunStatus = rec.INTERRUPTED
        t0 = time.perf_counter()
        try:
            self._write_results(rec.RUNNING)
            self.reporters.call("on_run_start", run=info)
            await self._start_backend()
            self._write_results(rec.RUNNING)  # now with the model's identity
            self.observer.start(len(self.samples()), [r for r in self.records.values() if r.ok])
            await self._run_tasks(prepared.todo, info)
            status = rec.INTERRUPTED if self._stopping else rec.COMPLETE
        except (StartupError, RunIOError):
            status = rec.RUN_FAILED
            raise
        except OSError as exc:  # results.json or samples.jsonl could not be opened or written
            status, self.error = rec.RUN_FAILED, f"I/O error: {exc}"
            raise RunIOError(exc.errno, self.error) from None
        finally:
            self.observer.stop()
            try:
                await asyncio.shield(self.backend.close())
            finally:
                try:
                    results = self._write_results(status, time.perf_counter() - t0)
                    self.reporters.call("on_run_end", run=info, results=results)
                finally:
                    self._run.close()
        return results

    async def _start_backend(self) -> None:
        self.observer.starting_backend(self.config.backend, self.config.model)
        started = time.perf_counter()
        try:
            await self.backend.start(self.run_dir)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to start is the run's one error, said once
            self.error = f"the {self.config.backend} backend could not start: {type(exc).__name__}: {exc}"
            raise StartupError(self.error) from exc
        self.observer.backend_ready(time.perf_counter() - started)

    async def _run_tasks(self, todo: Iterable[tuple[Task, int | None]], info: RunInfo) -> None:
        concurrency = self.config.concurrency or self.backend.default_concurrency
        limiter = asyncio.Semaphore(max(1, int(concurrency)))
        io_error: list[OSError] = []
        # a DAG (PersistentEnvironment): a task starts once its dependencies in this run have ended; they wait
        # before taking a slot, and only on earlier tasks, so no cycle can hold the run
        todo = list(todo)
        ended = {rec.sample_key(task.id, repeat): asyncio.Event() for task, repeat in todo}
        order = {rec.sample_key(task.id, repeat): i for i, (task, repeat) in enumerate(todo)}

        async def one(task: Task, repeat: int | None) -> None:
            key = rec.sample_key(task.id, repeat)
            try:
                for dependency in task.metadata.get("depends_on") or ():
                    dependency_key = rec.sample_key(dependency, repeat)  # within the same repeat
                    if order.get(dependency_key, len(todo)) < order[key]:
                        await ended[dependency_key].wait()
                await run(task, repeat)
            finally:
                ended[key].set()

        async def run(task: Task, repeat: int | None) -> None:
            async with limiter:
                if self._stopping or io_error:
                    return
                record = await self._run_one(task)
            if repeat is not None:
                record = attrs.evolve(record, repeat=repeat)
            if io_error:
                return
            try:
                self._run.append(record)
            except OSError as exc:
                io_error.append(exc)
                return
            self.records[record.key] = record
            self.reporters.call("on_sample_scored", run=info, sample=record)
            self.observer.sample(record)

        await asyncio.gather(*(one(task, repeat) for task, repeat in todo))
        if io_error:
            exc = io_error[0]
            self.error = f"cannot write {self._run.samples_path}: {exc.strerror or exc}"
            raise RunIOError(exc.errno, self.error)

    async def _run_one(self, task: Task) -> SampleRecord:
        """One task, single- or multi-turn, through the one sample path (:func:`agent.run_sample`)."""
        cfg = self.config
        return await agent.run_sample(
            task,
            self.backend,
            self.scorer,
            self.registry,
            agent.PlayConfig(
                tool_format=cfg.tool_format,
                temperature=cfg.temperature,
                max_tokens=cfg.max_tokens,
                timeout_s=cfg.timeout_s,
                stop_requested=lambda: self._stopping,
                scorer_name=cfg.scorer,
                run_dir=self.run_dir,
                on_step=lambda turn, step: self.observer.step(task, turn, step),
            ),
        )

    def summary(self, partial: bool = False) -> dict[str, Any]:
        """Scores over all samples of the run: a failed or missing sample counts 0 (``partial``, while the run
        is running: only the finished ones count); with ``--repeats``, also pass@k and pass^k (``pass_k``)."""
        summary = rec.summarize(
            ((rec.sample_key(t.id, r), t.category) for t, r in self.samples()), self.records, partial=partial
        )
        if self.config.repeats > 1:
            pairs = [(t.id, t.category) for t in self.tasks]
            summary["extra"] = {"pass_k": rec.summarize_repeats(pairs, self.records, self.config.repeats)}
        return summary

    def _write_results(self, status: RunStatus, duration_s: float | None = None) -> RunResults:
        assert self.run_dir is not None
        try:
            model = self.backend.describe()
        except Exception as exc:  # noqa: BLE001
            model = {"error": str(exc)}
        resumes = list(self._previous.resumes) if self._previous else []
        if self.resume_dir is not None:
            resumes.append({"at": rundir.utc_stamp(), "changed": self.resume_changes})
        previous_s = (self._previous.duration_s or 0.0) if self._previous else 0.0
        results = RunResults(
            status=status,
            run_dir=str(self.run_dir),
            started_at=self.started_at,
            updated_at=rundir.utc_stamp(),
            duration_s=round(previous_s + duration_s, 3) if duration_s is not None else None,
            config=self.config.to_json(),
            seed=self.config.seed,
            model=model,
            scorer={"name": self.config.scorer, "version": self.scorer.version},
            bitagent_version=bitagent_core.__version__,
            git_commit=self.git_commit,
            plugins=self.registry.plugin_versions(),
            error=self.error,
            task_digest=self.digest,
            sources=self.sources,
            resumes=tuple(resumes),
            **self.summary(partial=status == rec.RUNNING),
        )
        self._run.write_results(results)
        return results


def config_for_resume(run_dir: Path, changes: dict[str, Any] | None = None) -> tuple[RunConfig, dict[str, Any]]:
    """The config a run was started with, and the flags ``changes`` alters on it.

    ``changes`` are the flags given with ``--resume``. One in :data:`FIXED_ON_RESUME` with a different value
    raises :class:`ResumeConflict`; those in :data:`MAY_CHANGE_ON_RESUME` are applied (backend options merged).
    Returns the config and what changed, ``{name: [old, new]}``, to record in ``results.json``.
    """
    config = RunConfig.from_json(rundir.read_results(run_dir).config)
    changes = {k: v for k, v in (changes or {}).items() if v is not None}
    given = attrs.evolve(config, **{k: v for k, v in changes.items() if k in FIXED_ON_RESUME}).with_absolute_paths()
    conflicts = [
        f"{name} {getattr(given, name)!r} (the run has {getattr(config, name)!r})"
        for name in FIXED_ON_RESUME
        if name in changes and getattr(given, name) != getattr(config, name)
    ]
    if conflicts:
        raise ResumeConflict(
            "--resume continues a run with the tasks, model and scoring it started with; "
            f"these flags would change them: {'; '.join(conflicts)}. "
            "Drop them, or start a new run"
        )
    changed: dict[str, Any] = {}
    for name in MAY_CHANGE_ON_RESUME:
        if name not in changes:
            continue
        old = getattr(config, name)
        new = {**old, **changes[name]} if name == "backend_options" else changes[name]
        if new != old:
            changed[name] = [old, new]
            setattr(config, name, new)
    return config, changed
