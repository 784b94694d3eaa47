"""``bitagent validate``: the Subnet 20 validator loop.

Every ``sync_interval`` blocks (a *sync*): read the metagraph; record the neurons; collect each miner's
submission (its on-chain commitment, else its signed HTTP endpoint, 15 s timeout); lock ``org/name@sha``
per hotkey (a submission is resolved once, when it first appears or changes). The models waiting for
vetting or evaluation form the current *round*, which has one private random seed: every model evaluated
in a round answers the same task sample.

Evaluation runs beside the loop (one model at a time, in a worker thread with its own event loop), so syncs
and weight setting keep their schedule while a model is being evaluated. For one model: vet it at the
locked sha (a failure is recorded with its reason and never retried for that sha); download only the files
vetting selected into ``--cache-dir``; evaluate it with the chosen backend on the competition's sample;
record the score (or the failure); delete it from the cache. Each distinct ``org/name@sha`` is evaluated
once per competition version; when several hotkeys submit the same commit sha only the earliest committer
is evaluated and credited.

Every ``epoch_length`` blocks: scores per hotkey -> weights per current uid (the competition's rule,
normalised, within ``min_allowed_weights`` / ``max_weight_limit``) -> u16 -> ``SetWeights`` with this
release's version key (``--dry-run``: recorded, not submitted).

Crash safety: everything that matters is in the SQLite state (WAL), one transaction per change. After a
``kill -9`` the next start finds the unfinished round (and its seed), puts interrupted evaluations back to
pending, removes cached models whose evaluation is over, and carries on. ``--once`` runs one round to the
end (sync, evaluate everything pending, set weights) and exits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from bitagent_plugins.subnet.chain import (
    SUBNET_NETUID,
    Chain,
    ChainUnavailable,
    MetagraphView,
    fit_to_max_weight_limit,
    version_key,
)

log = logging.getLogger("bitagent.subnet.validator")

GGUF_BACKENDS = ("llama-cpp", "llama-cpp-server")


@attrs.define
class ValidatorConfig:
    netuid: int = SUBNET_NETUID
    network: str = "finney"
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: str | None = None
    state_path: Path = attrs.field(factory=lambda: Path("~/.bitagent/validator/state.sqlite").expanduser(),
                                   converter=Path)
    cache_dir: Path = attrs.field(factory=lambda: Path("~/.cache/bitagent/validator-hf").expanduser(),
                                  converter=Path)
    output_dir: Path | None = None
    backend: str = "sglang"
    backend_options: dict[str, str] = attrs.field(factory=dict)
    competition: str = "bitagent"
    sample_size: int | None = None
    dry_run: bool = False
    epoch_length: int = 100
    sync_interval: int = 10
    query_timeout_s: float = 15.0
    allow_private_axons: bool = False
    hf_offline: bool = False
    hf_token: str | None = None
    max_params: int | None = None
    max_download_bytes: int | None = None
    once: bool = False
    max_rounds: int | None = None
    tick_s: float | None = None
    request_timeout_s: float = 300.0

    @property
    def runs_dir(self) -> Path:
        return self.output_dir or self.state_path.parent / "runs"


@attrs.frozen
class ModelJob:
    """One distinct model to vet and evaluate in the current round."""

    repo_id: str
    sha: str
    committed_block: int

    @property
    def key(self) -> str:
        return f"{self.repo_id}@{self.sha}"


class AlreadyRunning(RuntimeError):
    pass


class _StateLock:
    """One validator per state file: an exclusive ``flock`` on ``<state>.lock``, released by the kernel
    when the process dies (even by ``kill -9``)."""

    def __init__(self, state_path: Path) -> None:
        self.path = state_path.with_name(state_path.name + ".lock")
        self._file: Any = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise AlreadyRunning(f"another validator is using {self.path.with_suffix('')}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _ThreadRun:
    """Runs a coroutine on its own event loop in a worker thread; :meth:`cancel` cancels it from outside."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._cancelled = False

    def run(self, factory: Callable[[], Any]) -> Any:
        async def main() -> Any:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            if self._cancelled:
                raise asyncio.CancelledError
            return await factory()

        return asyncio.run(main())

    def cancel(self) -> None:
        self._cancelled = True
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                self._loop.call_soon_threadsafe(self._task.cancel)


async def in_thread(factory: Callable[[], Any]) -> Any:
    """``await`` a coroutine run on a worker thread; cancelling the caller cancels it there too."""
    runner = _ThreadRun()
    future = asyncio.get_running_loop().run_in_executor(None, runner.run, factory)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        runner.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(future), 120)
        raise


class Validator:
    """The loop and its pieces; ``substrate`` and ``hub`` replace the chain RPC and the Hub (tests)."""

    def __init__(self, config: ValidatorConfig, *, substrate: Any = None, hub: Any = None,
                 registry: Any = None, wallet: Any = None) -> None:
        from bitagent_core.plugins import get_registry
        from bitagent_core.runner import make_task_source
        from bitagent_plugins.subnet import vetting
        from bitagent_plugins.subnet.chain import load_wallet

        self.config = config
        self.registry = registry if registry is not None else get_registry()
        self.competition = self.registry.get("competitions", config.competition).factory()
        if config.sample_size is not None:
            self.competition.sample_size = int(config.sample_size)
        # the competition task source's version covers the competition, its scorer, its sources and sample size
        self.version = make_task_source(self.registry, f"competition:{self.competition.name}").version
        if config.sample_size is not None:
            self.version += f";limit={int(config.sample_size)}"
        self.wallet = wallet if wallet is not None else load_wallet(config.wallet_name, config.wallet_hotkey,
                                                                    config.wallet_path)
        self.chain = Chain(config.network, config.netuid, wallet=self.wallet, substrate=substrate)
        self.hub = hub if hub is not None else vetting.hub_client(config.cache_dir, offline=config.hf_offline,
                                                                  token=config.hf_token)
        #: the cache is also where submissions come from (--hf-offline or HF_HUB_OFFLINE=1)
        self.offline = config.hf_offline or isinstance(self.hub, vetting.OfflineHubClient)
        defaults = vetting.VettingLimits()
        self.limits = vetting.VettingLimits(max_params=config.max_params or defaults.max_params,
                                            max_total_bytes=config.max_download_bytes or defaults.max_total_bytes)
        self.state: Any = None
        self.metagraph: MetagraphView | None = None
        self._lock = _StateLock(config.state_path)
        self._stop: asyncio.Event | None = None  # created on the running loop
        self._worker: asyncio.Task | None = None
        self._round: Any = None
        self._unresolved: dict[str, tuple[str, int | None, str]] = {}  # hotkey -> (text, retry block, reason)
        self._deferred: dict[str, int] = {}  # model key -> block before which it is not retried
        self._reports: dict[str, Any] = {}  # model key -> the VettingReport of this process
        self._last_weights_try: int | None = None
        self._weights_failed = False
        self._collector: asyncio.Task | None = None
        self.collections_done = 0
        self.exit_code = 0
        self.rounds_done = 0
        #: what happened, in order: ("sync" | "weights" | "eval-start" | "eval-end", detail); the last 1000
        self.events: collections.deque[tuple[str, str]] = collections.deque(maxlen=1000)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped (SIGTERM/SIGINT), ``--once`` finishes a round, or ``max_rounds`` rounds are done."""
        from bitagent_plugins.subnet.state import ValidatorState

        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._stop.set)
        self._lock.acquire()
        try:
            self.state = ValidatorState(self.config.state_path)
            self.config.cache_dir.mkdir(parents=True, exist_ok=True)
            async with self.chain:
                await self._recover()
                return await self._loop()
        finally:
            for task in (self._collector, self._worker):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if self.state is not None:
                self.state.close()
            self._lock.release()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _recover(self) -> None:
        """After a crash: interrupted evaluations back to pending; cached models whose fate is sealed removed."""
        resumed = self.state.resume_interrupted()
        if resumed:
            log.info("resumed %d interrupted evaluation(s)", resumed)
        self._round = self.state.current_round()
        if self._round is not None:
            log.info("resuming round %d", self._round.id)
        await asyncio.to_thread(self._sweep_cache)

    def _sweep_cache(self) -> None:
        """Remove cached models a crash left behind. Online, the cache is only a download area: anything not
        waiting for evaluation goes. Offline (``--hf-offline``), the cache is also where submissions come
        from, so only models whose fate is sealed (vetting failed, evaluation done or failed) go."""
        from huggingface_hub import scan_cache_dir

        from bitagent_plugins.subnet import vetting

        try:
            info = scan_cache_dir(self.config.cache_dir)
        except Exception:  # noqa: BLE001 - no cache yet, or unreadable: nothing to sweep
            return
        keep = {job.key for job in self._pending_jobs()}
        for repo in info.repos:
            if repo.repo_type != "model":
                continue
            for rev in repo.revisions:
                key = f"{repo.repo_id}@{rev.commit_hash}"
                if key in keep or (self.offline and not self._sealed(key)):
                    continue
                freed = vetting.delete(vetting.LockedModel(repo.repo_id, rev.commit_hash), self.config.cache_dir)
                log.info("removed %s from the cache (%d bytes)", key, freed)

    def _sealed(self, key: str) -> bool:
        vetted = self.state.vetting(key)
        if vetted is not None and not vetted.ok:
            return True
        evaluation = self.state.evaluation(key, self.competition.name, self.version)
        return evaluation is not None and evaluation.status in ("done", "failed")

    async def _loop(self) -> int:
        cfg = self.config
        block_time = await self.chain.block_time()
        tick = cfg.tick_s if cfg.tick_s is not None else max(0.05, min(12.0, block_time))
        last_sync: int | None = None
        while not self._stop.is_set():
            try:
                head = await self.chain.block()
                if last_sync is None or head - last_sync >= cfg.sync_interval:
                    await self.sync()
                    last_sync = head
                self._ensure_round()
                self._start_worker()
                if not cfg.once and self._weights_due(head):
                    self._last_weights_try = head
                    await self.set_weights()
                if self._round_complete():
                    await self._finish_round()
                    if cfg.once or (cfg.max_rounds is not None and self.rounds_done >= cfg.max_rounds):
                        break
            except ChainUnavailable as exc:  # the node went away: keep the state, try again next tick
                log.warning("chain unavailable: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), tick)
        return self.exit_code

    # -- one sync: metagraph, submissions, locks -------------------------------------------------------------

    async def sync(self) -> MetagraphView:
        """Metagraph and neurons now; collecting and locking the submissions in a background task (the
        endpoints may take their whole timeout, the Hub its own), one at a time."""
        mg = await self.chain.metagraph()
        self.metagraph = mg
        self.state.sync_neurons(mg.hotkeys, mg.block)
        self._deferred = {key: block for key, block in self._deferred.items() if block > mg.block}
        if self._collector is None or self._collector.done():
            _log_failure(self._collector, "collecting submissions")
            self._collector = asyncio.create_task(self._collect_and_lock(mg), name="bitagent-collect")
        self.events.append(("sync", str(mg.block)))
        return mg

    async def _collect_and_lock(self, mg: MetagraphView) -> None:
        submissions = await self.collect(mg)
        current = {row.hotkey: row for row in self.state.submissions()}
        limiter = asyncio.Semaphore(8)

        async def one(hotkey: str, text: str, block: int) -> None:
            async with limiter:
                await self.lock(mg, hotkey, text, block, current.get(hotkey))

        await asyncio.gather(*(one(h, text, block) for h, (text, block) in submissions.items()))
        self.collections_done += 1

    def _ensure_round(self) -> None:
        """A round exists while models wait (with ``--once``: from the first collection on)."""
        if self._round is not None:
            return
        jobs = self._pending_jobs()
        if jobs or (self.config.once and self.collections_done):
            self._round = self.state.begin_round(secrets.randbits(63))
            log.info("round %d: %d model(s) to vet or evaluate", self._round.id, len(jobs))

    async def collect(self, mg: MetagraphView) -> dict[str, tuple[str, int]]:
        """``{hotkey: (submission text, block)}``: commitments first, the signed endpoint as fallback."""
        from bitagent_plugins.subnet.protocol import QueryFailed, query_submissions

        found: dict[str, tuple[str, int]] = {}
        ask: dict[str, str] = {}
        me = self.chain.hotkey
        for n in mg.neurons:
            if n.hotkey == me:
                continue
            if n.commitment:
                found[n.hotkey] = (n.commitment.strip(), int(n.commitment_block or mg.block))
            elif n.axon:
                ask[n.hotkey] = n.axon
        if ask:
            replies = await query_submissions(self.wallet, ask, netuid=self.config.netuid,
                                              timeout_s=self.config.query_timeout_s,
                                              allow_private=self.config.allow_private_axons)
            for hotkey, reply in replies.items():
                if isinstance(reply, QueryFailed):
                    log.debug("no submission from %s: %s", hotkey, reply.reason)
                else:
                    found[hotkey] = (reply.model.strip(), mg.block)
        return found

    async def lock(self, mg: MetagraphView, hotkey: str, text: str, block: int, current: Any = None) -> None:
        """Lock ``hotkey``'s submission (``current``: its state row, if any) to a commit sha, unless it is
        the one already locked."""
        from bitagent_plugins.subnet import vetting

        neuron = mg.by_hotkey(hotkey)
        if neuron is None:
            return
        try:
            sub = vetting.parse_submission(text)
        except vetting.InvalidSubmission as exc:
            if self.state.remove_submission(hotkey):
                log.info("%s withdrew its submission for an invalid one", hotkey)
            self._note_rejected(hotkey, text, f"invalid submission: {exc.reason}", retry_after=None)
            return
        if current is not None and current.repo_id == sub.repo_id and sub.revision in (current.revision,
                                                                                         current.sha):
            self.state.upsert_submission(hotkey, neuron.uid, current.repo_id, current.revision, current.sha, block)
            return
        pending = self._unresolved.get(hotkey)
        if pending is not None and pending[0] == text and (pending[1] is None or mg.block < pending[1]):
            return
        try:
            locked = await asyncio.to_thread(vetting.resolve, sub, api=self.hub)
        except vetting.VettingFailed as exc:
            retry = mg.block + max(self.config.sync_interval * 10, 50) if exc.transient else None
            self._note_rejected(hotkey, text, f"cannot lock {sub}: {exc.reason}", retry_after=retry)
            return
        self._unresolved.pop(hotkey, None)
        if self.state.upsert_submission(hotkey, neuron.uid, locked.repo_id, sub.revision, locked.sha, block):
            log.info("uid %d (%s) submits %s", neuron.uid, hotkey, locked.key)

    def _note_rejected(self, hotkey: str, text: str, reason: str, retry_after: int | None) -> None:
        previous = self._unresolved.get(hotkey)
        if previous is None or previous[0] != text:
            log.warning("%s: %r rejected: %s", hotkey, text[:120], reason)
        self._unresolved[hotkey] = (text, retry_after, reason)

    @property
    def rejected(self) -> dict[str, str]:
        """Submissions that could not be locked this run: ``{hotkey: reason}``."""
        return {hotkey: reason for hotkey, (_text, _retry, reason) in self._unresolved.items()}

    def _pending_jobs(self) -> list[ModelJob]:
        """Distinct models still to vet or evaluate, earliest commitment first; for a commit sha submitted by
        several hotkeys only the earliest committer's (the one that gets the credit)."""
        first: dict[str, tuple[int, str, str]] = {}
        for row in self.state.submissions():
            candidate = (row.committed_block, row.hotkey, row.repo_id)
            if row.sha not in first or candidate < first[row.sha]:
                first[row.sha] = candidate
        jobs = []
        for sha, (block, _hotkey, repo_id) in sorted(first.items(), key=lambda item: item[1]):
            job = ModelJob(repo_id, sha, block)
            if job.key in self._deferred:
                continue
            vetted = self.state.vetting(job.key)
            if vetted is not None and not vetted.ok:
                continue
            evaluation = self.state.evaluation(job.key, self.competition.name, self.version)
            if evaluation is None or evaluation.status == "pending":
                jobs.append(job)
        return jobs

    # -- evaluation beside the loop ----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self._round is not None and (self._worker is None or self._worker.done()) and self._pending_jobs():
            _log_failure(self._worker, "evaluating")
            self._worker = asyncio.create_task(self._work(), name="bitagent-evaluations")

    def _round_complete(self) -> bool:
        return (self._round is not None and self.collections_done > 0
                and (self._collector is None or self._collector.done())
                and (self._worker is None or self._worker.done()) and not self._pending_jobs())

    async def _work(self) -> None:
        while not self._stop.is_set():
            jobs = self._pending_jobs()
            if not jobs:
                return
            await self.process(jobs[0])

    async def process(self, job: ModelJob) -> None:
        """Vet, download, evaluate, record, delete: one model. A failure of the Hub (or of the offline cache)
        defers the model to a later round; a failure of the model is recorded and never retried. Stopping
        (cancellation) leaves the download in the cache for the next start."""
        from bitagent_plugins.subnet import vetting

        locked = vetting.LockedModel(job.repo_id, job.sha)
        name, version = self.competition.name, self.version
        delete = True
        try:
            report = self._reports.get(job.key)
            if report is None:  # not vetted yet, or vetted by an earlier process: the files to fetch
                report = await self._vet(locked)
                if report is None:
                    return
            try:
                snapshot = await asyncio.to_thread(vetting.download, locked, cache_dir=self.config.cache_dir,
                                                   allow_patterns=report.allow_patterns, api=self.hub)
            except vetting.VettingFailed as exc:
                if exc.transient:
                    self._defer(job.key, f"download: {exc.reason}")
                else:
                    self.state.record_vetting(job.key, False, f"download refused: {exc.reason}")
                    log.warning("%s: download refused: %s", job.key, exc.reason)
                return
            if not self.state.claim_evaluation(job.key, name, version):
                return
            self.events.append(("eval-start", job.key))
            try:
                score, n_tasks, run_dir = await self._evaluate(self._model_argument(snapshot, report))
            except Exception as exc:  # noqa: BLE001 - a bad model fails its evaluation, never the validator
                reason = f"{type(exc).__name__}: {exc}"[:2000]
                self.state.fail_evaluation(job.key, name, version, reason=reason)
                log.warning("%s: evaluation failed: %s", job.key, reason)
            else:
                self.state.finish_evaluation(job.key, name, version, score=score, n_tasks=n_tasks, run_dir=run_dir)
                log.info("%s: score %.4f over %d tasks", job.key, score, n_tasks)
            self.events.append(("eval-end", job.key))
        except asyncio.CancelledError:
            delete = False  # stopping: keep the download for the next start, which resumes this model
            raise
        finally:
            self._reports.pop(job.key, None)
            if delete:
                freed = await asyncio.to_thread(vetting.delete, locked, self.config.cache_dir)
                if freed:
                    log.info("%s: removed from the cache (%d bytes)", job.key, freed)

    async def _vet(self, locked: Any) -> Any:
        """The VettingReport of a model that passes (recording the verdict the first time); None otherwise."""
        from bitagent_plugins.subnet import vetting

        try:
            report = await asyncio.to_thread(vetting.vet, locked, cache_dir=self.config.cache_dir,
                                             limits=self.limits, api=self.hub)
        except Exception as exc:  # noqa: BLE001 - a repo that crashes the vetting is rejected, not retried
            report = vetting.VettingReport(False, f"vetting crashed on this repo: {type(exc).__name__}: {exc}")
        if not report.ok and report.transient:
            self._defer(locked.key, report.reason)
            return None
        previous = self.state.vetting(locked.key)
        if previous is None:
            self.state.record_vetting(locked.key, report.ok, report.reason)
            log.info("%s: vetting %s (%s)", locked.key, "passed" if report.ok else "failed", report.reason)
        elif previous.ok and not report.ok:  # vetted by an earlier process, and no longer passes
            self.state.record_vetting(locked.key, False, report.reason)
        if not report.ok:
            return None
        self._reports[locked.key] = report
        return report

    def _defer(self, key: str, reason: str) -> None:
        head = self.metagraph.block if self.metagraph is not None else 0
        self._deferred[key] = head + max(2 * self.config.sync_interval, 20)
        log.warning("%s: cannot finish now (%s); trying again in a later round", key, reason)

    async def _evaluate(self, model: str) -> tuple[float, int, str]:
        from bitagent_core.runner import Evaluation, RunConfig

        seed = self._round.seed if self._round is not None else self.state.begin_round(secrets.randbits(63)).seed
        config = RunConfig(tasks=f"competition:{self.competition.name}", backend=self.config.backend, model=model,
                           scorer=self.competition.scorer, limit=self.competition.sample_size, seed=seed,
                           output_dir=str(self.config.runs_dir), backend_options=dict(self.config.backend_options),
                           tool_format="prompt", timeout_s=self.config.request_timeout_s)
        evaluation = Evaluation(config, self.registry)
        results = await in_thread(evaluation.run)
        if results.status != "complete":
            raise RuntimeError(f"the evaluation ended {results.status}")
        return results.mean_score, results.n_tasks, results.run_dir

    def _model_argument(self, snapshot: Path, report: Any) -> str:
        """What the backend gets as ``--model``: the GGUF file, or the snapshot folder (safetensors)."""
        if report.weights_format == "gguf":
            ggufs = [f for f in report.files if f.lower().endswith(".gguf")]
            return str(snapshot / ggufs[0])
        if self.config.backend in GGUF_BACKENDS:
            raise RuntimeError(f"the {self.config.backend} backend runs GGUF models; this one is safetensors")
        return str(snapshot)

    async def _finish_round(self) -> None:
        if self.config.once and not await self.set_weights() and self._weights_failed:
            self.exit_code = 1
        self.state.finish_round(self._round.id)
        log.info("round %d done", self._round.id)
        self._round = None
        self.rounds_done += 1

    # -- weights -------------------------------------------------------------------------------------------------

    def _weights_due(self, head: int) -> bool:
        if self._last_weights_try is not None and head - self._last_weights_try < self.config.sync_interval:
            return False
        history = self.state.weights_history(1)
        if not history:
            return True
        last = history[0]
        wait = self.config.epoch_length if last.submitted or self.config.dry_run else max(
            1, self.config.epoch_length // 10)
        return head - last.block >= wait

    def compute_weights(self, mg: MetagraphView, limits: Any) -> tuple[list[int], list[int]] | None:
        """Scores per hotkey -> ``(uids, u16 weights)`` for the current metagraph; None if nothing is scored."""
        from bitagent_plugins.subnet.weights import quantize_u16, scores_to_weights

        scores = self.state.scores_by_hotkey(self.competition.name, self.version)
        by_uid = {n.uid: scores[n.hotkey] for n in mg.neurons if n.hotkey in scores}
        if not by_uid:
            return None
        weights = scores_to_weights(by_uid, n_uids=len(mg), min_allowed_weights=limits.min_allowed_weights,
                                    max_weight_limit=limits.max_weight_limit, rule=self.competition.weight_rule)
        uids, values = quantize_u16(weights)
        return uids, fit_to_max_weight_limit(uids, values, limits.max_weight_limit_u16)

    async def set_weights(self) -> bool:
        """Set weights now from the scores in the state; True if submitted (or recorded, with --dry-run).
        ``_weights_failed`` says whether a False meant a failure (not merely nothing to set yet)."""
        self._weights_failed = True
        try:
            mg = await self.chain.metagraph()
            limits = await self.chain.weight_limits()
        except ChainUnavailable as exc:
            log.warning("cannot set weights: %s", exc)
            return False
        computed = self.compute_weights(mg, limits)
        if computed is None:
            log.info("no scored model yet: no weights to set")
            self._weights_failed = False
            return False
        uids, values = computed
        ours = version_key()
        if self.config.dry_run:
            result, submitted = "dry run: not submitted", False
        elif limits.version_key > ours:
            result, submitted = (f"not submitted: the subnet requires weights version {limits.version_key}, "
                                 f"this bitagent has {ours}; upgrade"), False
        else:
            try:
                tx = await self.chain.set_weights(uids, values, version_key=ours)
            except ChainUnavailable as exc:
                log.warning("cannot set weights: %s", exc)
                return False
            result, submitted = (f"{'ok' if tx.success else 'failed'}: {tx.message}"
                                 + (f" ({tx.extrinsic_id})" if tx.extrinsic_id else "")), tx.success
            uids, values = tx.data.get("uids", uids), tx.data.get("weights", values)  # exactly what was sent
        self.state.record_weights(block=mg.block, competition_version=self.version, uids=uids,
                                  weights=[float(v) for v in values], submitted=submitted, result=result)
        self.events.append(("weights", result))
        log.info("weights for %d uid(s): %s", len(uids), result)
        return submitted or self.config.dry_run


def _log_failure(task: asyncio.Task | None, what: str) -> None:
    if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
        log.error("%s failed: %r", what, task.exception())


def run_validator(config: ValidatorConfig, **kwargs: Any) -> int:
    """Blocking entry point: build the validator and run it on a fresh event loop."""
    validator = Validator(config, **kwargs)
    started = time.monotonic()
    code = asyncio.run(validator.run())
    log.info("validator stopped after %.0f s", time.monotonic() - started)
    return code
