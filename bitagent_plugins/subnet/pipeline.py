"""The model pipeline: vet, download, evaluate, delete -- one model at a time, on the validator's own loop.

Each step returns a typed result or raises; deciding what a failure means for the miner (``failures``) and
recording it (``scoring``) is the caller's job. Evaluations run as tasks on the validator's event loop, so
syncs, the heartbeat and weight setting keep their schedule while a model answers.

An evaluation has a deadline (``--evaluation-deadline``): past it the evaluation is cancelled, which stops the
model's server process (SIGTERM, then SIGKILL after the backend's ``stop_timeout``), and the miss is raised as
:class:`DeadlineMissed` with what happened (missed by N s). The in-process llama.cpp backend cannot be
interrupted inside a chat-template render (a template that loops holds its thread for hours, and the process
with it), so the validator runs ``--backend llama-cpp`` as ``llama-cpp-server``: the same engine in a process
it can kill.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Any

import attrs

from bitagent_core import BackendError, Fault
from bitagent_plugins.subnet import vetting
from bitagent_plugins.subnet.keys import ModelKey

log = logging.getLogger("bitagent.subnet.validator")

GGUF_BACKENDS = ("llama-cpp", "llama-cpp-server")
#: a backend that runs the model in this process -> the same engine as a server process the validator can kill
KILLABLE_BACKENDS = {"llama-cpp": "llama-cpp-server"}
#: the in-process backend's options the server backend takes too (``worker_thread``, ``verbose``: not there)
SERVER_OPTIONS = ("n_ctx", "n_threads", "n_gpu_layers", "n_batch", "seed")
#: seconds an evaluation may take, model start included (``--evaluation-deadline``)
DEFAULT_DEADLINE_S = 3600.0


class DeadlineMissed(BackendError):
    """The evaluation ran past its deadline and its model process was stopped. Whose fault: the model's when
    its requests ran into the per-request timeout (as for any timeout while the server answers: a chat
    template that loops, a model that never stops); otherwise this validator was too slow for its deadline
    (still loading, or answering every request in time but too slowly), which changes no score."""

    def __init__(self, deadline_s: float, over_s: float, *, answered: int, total: int, timeouts: int) -> None:
        self.over_s = over_s
        fault: Fault = "model" if timeouts else "validator"
        if timeouts:
            why, action = f"{timeouts} of them ran past the request timeout", ""
        else:
            why = "none past the request timeout: this validator was too slow for its deadline"
            action = "raise --evaluation-deadline or give the model server more compute"
        super().__init__(
            f"deadline of {deadline_s:g} s missed by {over_s:.1f} s ({answered}/{total} tasks ended, {why}); "
            "the model's process was stopped",
            fault=fault,
            retryable=fault != "model",
            action=action,
        )


@attrs.frozen
class EvaluationResult:
    score: float
    n_tasks: int
    #: half-width of the 95 % confidence interval of the mean score (normal approximation)
    ci95: float
    run_dir: str
    #: per-task outcome, for miner feedback once the round is over
    samples: tuple[dict[str, Any], ...] = ()
    #: errors of the samples that failed (to tell a dead server from a slow model)
    errors: tuple[str, ...] = ()
    #: their ``error_type`` (``engine_error``: the request failed on the validator's side), in the same order
    error_types: tuple[str, ...] = ()
    results: dict[str, Any] = attrs.field(factory=dict)


def ci95(scores: list[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean of ``scores``: 1.96 s / sqrt(n)."""
    n = len(scores)
    if n < 2:
        return math.inf
    mean = math.fsum(scores) / n
    var = math.fsum((s - mean) ** 2 for s in scores) / (n - 1)
    return 1.96 * math.sqrt(var / n)


class ModelPipeline:
    def __init__(
        self,
        *,
        registry: Any,
        competition: Any,
        cache_dir: Path,
        hub: vetting.HubClient,
        limits: vetting.VettingLimits,
        backend: str,
        backend_options: dict[str, str],
        runs_dir: Path,
        request_timeout_s: float,
        deadline_s: float = DEFAULT_DEADLINE_S,
    ) -> None:
        self.registry = registry
        self.competition = competition
        self.cache_dir = cache_dir
        self.hub = hub
        self.limits = limits
        #: as configured (what vetting checks the model against); ``engine``: what runs it
        self.backend = backend
        self.engine, options = _killable(registry, backend, backend_options)
        self.backend_options = _context_length(self.engine, _off_the_loop(registry, self.engine, options))
        self.runs_dir = runs_dir
        self.request_timeout_s = request_timeout_s
        if deadline_s <= request_timeout_s:  # a request that never ends must time out before the deadline
            raise ValueError(
                f"the evaluation deadline ({deadline_s:g} s) must be longer than the request timeout "
                f"({request_timeout_s:g} s)"
            )
        self.deadline_s = deadline_s

    async def vet(self, key: ModelKey) -> vetting.VettingReport:
        """The vetting verdict at the locked sha; a repo that crashes vetting is rejected, not retried."""
        started = time.monotonic()
        try:
            report = await asyncio.to_thread(
                vetting.vet, key, cache_dir=self.cache_dir, limits=self.limits, api=self.hub
            )
        except Exception as exc:  # noqa: BLE001 - a hostile repo must not crash the validator
            report = vetting.VettingReport(False, f"vetting crashed on this repo: {type(exc).__name__}: {exc}")
        if report.ok and (refusal := vetting.engine_refusal(report, self.backend)):
            report = vetting.VettingReport(False, refusal, weights_format=report.weights_format)
        log.info(
            "%s: vetting %s in %.1f s (%s)",
            key,
            "passed" if report.ok else ("could not finish" if report.transient else "failed"),
            time.monotonic() - started,
            report.reason,
        )
        return report

    async def download(self, key: ModelKey, report: vetting.VettingReport) -> Path:
        """The snapshot folder with the files vetting selected. Raises ``vetting.VettingFailed``."""
        started = time.monotonic()
        path = await asyncio.to_thread(
            vetting.download, key, cache_dir=self.cache_dir, allow_patterns=report.allow_patterns, api=self.hub
        )
        log.info(
            "%s: downloaded %s bytes in %.1f s",
            key,
            f"{report.total_bytes:,}" if report.total_bytes else "?",
            time.monotonic() - started,
        )
        return path

    def model_argument(self, snapshot: Path, report: vetting.VettingReport) -> str:
        """What the backend gets as ``--model``: the GGUF file, or the snapshot folder (safetensors)."""
        if report.weights_format == "gguf":
            ggufs = [f for f in report.files if f.lower().endswith(".gguf")]
            return str(snapshot / ggufs[0])
        if self.backend in GGUF_BACKENDS:
            raise RuntimeError(f"the {self.backend} backend runs GGUF models; this one is safetensors")
        return str(snapshot)

    async def evaluate(self, key: ModelKey, model: str, *, seed: int, sample_size: int) -> EvaluationResult:
        """Run the competition's sample for ``seed`` against ``model``; raises when the run does not complete."""
        from bitagent_core import Evaluation, RunConfig, RunObserver

        config = RunConfig(
            tasks=f"competition:{self.competition.name}",
            backend=self.engine,
            model=model,
            scorer=self.competition.scorer,
            limit=sample_size,
            seed=seed,
            output_dir=str(self.runs_dir),
            backend_options=dict(self.backend_options),
            tool_format="prompt",
            timeout_s=self.request_timeout_s,
        )
        started = time.monotonic()
        progress = {"done": 0, "timeouts": 0, "step": max(1, sample_size // 10)}

        class LogProgress(RunObserver):
            """The evaluation's phases as the validator's INFO lines."""

            def starting_backend(self, backend: str, model: str | None) -> None:
                log.info("%s: evaluation started (%d tasks, backend %s): starting the model", key, sample_size, backend)

            def backend_ready(self, seconds: float) -> None:
                log.info("%s: model ready after %.1f s", key, seconds)

            def sample(self, record: Any) -> None:
                progress["done"] += 1
                progress["timeouts"] += getattr(record, "error_type", None) == "timeout"
                done = progress["done"]
                if done % progress["step"] == 0 or done == sample_size:
                    log.info("%s: %d/%d responses (%.1f s)", key, done, sample_size, time.monotonic() - started)

        evaluation = Evaluation(config, self.registry, observer=LogProgress())
        try:
            # cancelling the run stops the model's process (the backend's close), bounded by its stop_timeout
            async with asyncio.timeout(self.deadline_s) as deadline:
                run_results = await evaluation.run()
        except TimeoutError:
            if not deadline.expired():
                raise
            missed = DeadlineMissed(
                self.deadline_s,
                time.monotonic() - started - self.deadline_s,
                answered=progress["done"],
                total=sample_size,
                timeouts=progress["timeouts"],
            )
            log.warning("%s: %s", key, missed)
            raise missed from None
        log.info("%s: model stopped after %.1f s", key, time.monotonic() - started)
        if run_results.status != "complete":
            raise RuntimeError(f"the evaluation ended {run_results.status}")
        results = run_results.to_json()
        missing = {"status": "failed", "score": 0.0}
        samples: tuple[dict[str, Any], ...] = tuple(
            evaluation.records[task.id].to_json() if task.id in evaluation.records else {"task_id": task.id, **missing}
            for task in evaluation.tasks
        )
        scores = [float(s.get("score") or 0.0) if s.get("status") == "ok" else 0.0 for s in samples]
        errors = tuple(
            str((s.get("completion") or {}).get("error") or s.get("detail") or "")
            for s in samples
            if s.get("status") != "ok"
        )
        error_types = tuple(str(s.get("error_type") or "") for s in samples if s.get("status") != "ok")
        score = float(results["mean_score"])
        score_samples = getattr(self.competition, "score_samples", None)  # a competition's own rule (BFCL overall)
        if callable(score_samples):
            score = float(score_samples(samples))
            log.info(
                "%s: %s score %.4f (mean task score %.4f)",
                key,
                self.competition.name,
                score,
                float(results["mean_score"]),
            )
        result = EvaluationResult(
            score=score,
            n_tasks=int(results["n_tasks"]),
            ci95=ci95(scores),
            run_dir=str(results["run_dir"]),
            samples=samples,
            errors=errors,
            error_types=error_types,
            results=results,
        )
        log.info("%s: %d responses (%d failed) in %.1f s", key, len(samples), len(errors), time.monotonic() - started)
        return result

    async def delete(self, key: ModelKey) -> int:
        freed = await asyncio.to_thread(vetting.delete, key, self.cache_dir)
        if freed:
            log.info("%s: removed from the cache (%d bytes)", key, freed)
        return freed

    def sweep_cache(self, *, keep: set[str], removable: Any) -> None:
        """Remove cached models a crash left behind: those not in ``keep`` for which ``removable(key)``."""
        from huggingface_hub import scan_cache_dir

        try:
            info = scan_cache_dir(self.cache_dir)
        except Exception:  # noqa: BLE001 - no cache yet, or unreadable: nothing to sweep
            return
        for repo in info.repos:
            if repo.repo_type != "model":
                continue
            for rev in repo.revisions:
                key = ModelKey(repo.repo_id, rev.commit_hash)
                if key.key in keep or not removable(key.key):
                    continue
                freed = vetting.delete(key, self.cache_dir)
                log.info("removed %s from the cache (%d bytes)", key, freed)


def _killable(registry: Any, backend: str, options: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The backend that runs ``backend``'s engine in a process the validator can kill, with the options it
    takes; ``backend`` itself when it has no such twin or the twin's plugin is not loaded (said once)."""
    server = KILLABLE_BACKENDS.get(backend)
    if server is None:
        return backend, dict(options)
    try:
        registry.get("backends", server)
    except LookupError:
        log.warning(
            "the %s backend runs in this process: a chat template that loops cannot be stopped "
            "(load the servers plugin to run it as %s)",
            backend,
            server,
        )
        return backend, dict(options)
    return server, {k: v for k, v in options.items() if k in SERVER_OPTIONS}


def _off_the_loop(registry: Any, backend: str, options: dict[str, str]) -> dict[str, str]:
    """The options with ``worker_thread=true`` for a backend whose typed options offer it (llama-cpp
    generates on the caller's loop by default; the validator's loop must keep syncing and setting weights
    meanwhile). The switch is found in the backend's options model (``bitagent_core.options``)."""
    try:
        model = registry.get("backends", backend).options
    except LookupError:
        return dict(options)
    fields = getattr(model, "model_fields", None) or {}
    if "worker_thread" in fields and "worker_thread" not in options:
        return {**options, "worker_thread": "true"}
    return dict(options)


#: the option that sets an engine's context length
CONTEXT_OPTIONS = {"sglang": "context_length", "vllm": "max_model_len"}


def _context_length(backend: str, options: dict[str, str]) -> dict[str, str]:
    """The options with min_compute.toml's context length for sglang/vLLM, unless the operator set one."""
    from bitagent_plugins.subnet.requirements import load_min_compute

    key = CONTEXT_OPTIONS.get(backend)
    length = load_min_compute().role("validator").context_length if key else None
    if key is None or length is None or key in options:
        return dict(options)
    return {**options, key: str(length)}
