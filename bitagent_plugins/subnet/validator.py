"""``bitagent validate``: the Subnet 20 validator loop, built from four typed parts.

* :class:`~bitagent_plugins.subnet.collection.SubmissionCollector` -- every ``sync_interval`` blocks: the
  metagraph, each miner's submission (commitment, else signed endpoint), locked to ``org/name@sha``; the first
  accepted submission of a hotkey is final.
* :class:`~bitagent_plugins.subnet.pipeline.ModelPipeline` -- one model at a time: vet at the locked sha,
  download only what vetting selected, evaluate on the round's private sample, delete.
* :class:`~bitagent_plugins.subnet.scoring.Scoreboard` -- what to evaluate next (first evaluations before
  re-evaluations; copies are not evaluated), moving averages per weights, re-evaluation schedule.
* :class:`~bitagent_plugins.subnet.weight_setter.WeightSetter` -- every ``epoch_length`` blocks: scores ->
  u16 weights on scored uids only -> ``SetWeights``.

This module runs them on one event loop: evaluation is a task beside the loop (never a second loop in a
thread), so syncs, the heartbeat and weights keep their schedule. A *round* is the set of models evaluated
with one private seed (every model of a round answers the same sample); when it is over, the miners'
feedback files are written (``feedback``).

Failures are classified (``failures``): the model's are recorded and count 0; the validator's own (engine
missing, GPU, disk, Hub, chain) change no score: the model goes back to pending and is retried with backoff,
the log says what to fix, and ``--once`` exits with ``EXIT_VALIDATOR_FAILURE``. The start checks
(``checks``, also ``--check``) stop a validator that cannot work before it touches anyone.

Crash safety: everything that matters is in the SQLite state (WAL), one transaction per change. After a
``kill -9`` the next start finds the unfinished round (and its seed), puts interrupted evaluations back to
pending, removes cached models whose evaluation is over, and carries on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs

from bitagent_plugins.subnet import vetting
from bitagent_plugins.subnet.chain import SUBNET_NETUID, Chain, ChainUnavailable, MetagraphView, version_key
from bitagent_plugins.subnet.collection import SubmissionCollector
from bitagent_plugins.subnet.diskfull import disk_full, disk_full_line
from bitagent_plugins.subnet.failures import (
    EXIT_CHECK_FAILED,
    EXIT_VALIDATOR_FAILURE,
    UNKNOWN_RETRIES,
    Failure,
    Fault,
    classify_exception,
    classify_results,
)
from bitagent_plugins.subnet.keys import ModelKey
from bitagent_plugins.subnet.pipeline import DEFAULT_DEADLINE_S, ModelPipeline
from bitagent_plugins.subnet.scoring import ModelJob, Scoreboard
from bitagent_plugins.subnet.state import DEFAULT_EMA_ALPHA, RoundRow, ValidatorState
from bitagent_plugins.subnet.weight_setter import WeightSetter

log = logging.getLogger("bitagent.subnet.validator")
_T = TypeVar("_T")
#: seconds between retries of a state write while the disk is full
DISK_RETRY_S = 5.0


class _UpstreamGrep(logging.Filter):
    """Upstream's operators follow the evaluation of miners' models with ``grep OFFLINE``: the lines about one
    model (its key first) and the round lines carry that prefix here too (docs/subnet.md maps them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        args = record.args if isinstance(record.args, tuple) else ()
        if ((args and isinstance(args[0], ModelKey)) or msg.startswith("round ")) and not msg.startswith("OFFLINE:"):
            record.msg = "OFFLINE: " + msg
        return True


log.addFilter(_UpstreamGrep())

__all__ = ["AlreadyRunning", "ModelJob", "Validator", "ValidatorConfig", "run_validator"]


@attrs.define
class ValidatorConfig:
    netuid: int = SUBNET_NETUID
    network: str = "finney"
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: str | None = None
    state_path: Path = attrs.field(
        factory=lambda: Path("~/.bitagent/validator/state.sqlite").expanduser(), converter=Path
    )
    cache_dir: Path = attrs.field(factory=lambda: Path("~/.cache/bitagent/validator-hf").expanduser(), converter=Path)
    output_dir: Path | None = None
    backend: str = "sglang"
    backend_options: dict[str, str] = attrs.field(factory=dict)
    competition: str = "bitagent"
    #: tasks per evaluation; None: the competition's ``sample_size``
    sample_size: int | None = None
    #: the competition's numeric settings changed (``multi_turn_share``, ``longevity_versions``...)
    competition_options: dict[str, str] = attrs.field(factory=dict)
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
    #: seconds one model's whole evaluation may take (model start included); past it its process is stopped
    evaluation_deadline_s: float = DEFAULT_DEADLINE_S
    #: blocks between re-evaluations of each vetted model (None: never); 7200 blocks ~ one day at 12 s
    reevaluate_blocks: int | None = 7200
    ema_alpha: float = DEFAULT_EMA_ALPHA
    #: seconds between "idle" heartbeat lines
    heartbeat_s: float = 60.0
    #: start even when the start checks find problems (they are still logged)
    skip_start_check: bool = False
    #: the weights version key to send (None: upstream's formula on this release's version)
    weights_version_key: int | None = None

    @property
    def runs_dir(self) -> Path:
        return self.output_dir or self.state_path.parent / "runs"


def configure_competition(competition: Any, options: dict[str, str]) -> None:
    """Set a competition's numeric settings (``--competition-option multi_turn_share=0.2``); an unknown name
    or a value of the wrong kind is refused with the settings it has."""
    known: dict[str, type[int] | type[float]] = {}
    for name in dir(type(competition)):
        value = getattr(type(competition), name, None)
        if not name.startswith("_") and type(value) in (int, float):
            known[name] = int if type(value) is int else float
    for name, text in options.items():
        if name not in known:
            raise ValueError(
                f"competition {competition.name!r} has no setting {name!r} "
                f"(its settings: {', '.join(sorted(known)) or 'none'})"
            )
        try:
            value = known[name](text)
        except ValueError:
            raise ValueError(f"competition option {name}={text!r}: not a {known[name].__name__}") from None
        if value < 0:
            raise ValueError(f"competition option {name}={text!r}: must not be negative")
        setattr(competition, name, value)


class AlreadyRunning(RuntimeError):
    pass


class _StateLock:
    """One validator per state file: an exclusive lock on ``<state>.lock`` (filelock: ``flock`` on Unix,
    released by the kernel when the process dies, even by ``kill -9``; ``bitagent update`` checks it)."""

    def __init__(self, state_path: Path) -> None:
        import filelock

        self.path = state_path.with_name(state_path.name + ".lock")
        self._lock = filelock.FileLock(str(self.path), timeout=0)

    def acquire(self) -> None:
        import filelock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise AlreadyRunning(f"another validator is using {self.path.with_suffix('')}") from None

    def release(self) -> None:
        self._lock.release()


def state_lock(state_path: Path) -> _StateLock:
    """The lock a validator holds on its state (``acquire`` raises :class:`AlreadyRunning`)."""
    return _StateLock(state_path)


class Validator:
    """The loop; ``substrate`` and ``hub`` replace the chain RPC and the Hub (tests)."""

    def __init__(
        self,
        config: ValidatorConfig,
        *,
        substrate: Any = None,
        hub: Any = None,
        registry: Any = None,
        wallet: Any = None,
    ) -> None:
        from bitagent_core import competition_version, get_registry
        from bitagent_plugins.subnet.chain import load_wallet

        self.config = config
        self.registry = registry if registry is not None else get_registry()
        self.competition = self.registry.create("competitions", config.competition)
        if config.sample_size is not None:
            # the override is the sample size itself: the competition task source draws this many tasks and
            # the version (which keys evaluations) says n=<this>
            self.competition.sample_size = int(config.sample_size)
        configure_competition(self.competition, config.competition_options)
        self.sample_size = int(self.competition.sample_size)
        self.version = competition_version(self.competition, self.registry)
        self.wallet_error: str | None = None
        if wallet is None:
            try:
                wallet = load_wallet(config.wallet_name, config.wallet_hotkey, config.wallet_path)
            except ChainUnavailable as exc:
                self.wallet_error = str(exc)
        self.wallet = wallet
        self.chain = Chain(config.network, config.netuid, wallet=self.wallet, substrate=substrate)
        self.hub = (
            hub
            if hub is not None
            else vetting.hub_client(config.cache_dir, offline=config.hf_offline, token=config.hf_token)
        )
        #: the cache is also where submissions come from (--hf-offline or HF_HUB_OFFLINE=1)
        self.offline = config.hf_offline or isinstance(self.hub, vetting.OfflineHubClient)
        defaults = vetting.VettingLimits()
        licenses = getattr(self.competition, "licenses", None)
        self.limits = vetting.VettingLimits(
            max_params=config.max_params or defaults.max_params,
            max_total_bytes=config.max_download_bytes or defaults.max_total_bytes,
            licenses=frozenset(licenses) if licenses else UPSTREAM_LICENSES,
        )
        self.pipeline = ModelPipeline(
            registry=self.registry,
            competition=self.competition,
            cache_dir=config.cache_dir,
            hub=self.hub,
            limits=self.limits,
            backend=config.backend,
            backend_options=config.backend_options,
            runs_dir=config.runs_dir,
            request_timeout_s=config.request_timeout_s,
            deadline_s=config.evaluation_deadline_s,
        )
        #: sent with the weights: ``--weights-version-key``, else upstream's formula on this release's version
        self.weights_version_key = (
            config.weights_version_key if config.weights_version_key is not None else version_key()
        )
        self.state: ValidatorState | None = None
        self.scoreboard: Scoreboard | None = None
        self.collector: SubmissionCollector | None = None
        self.weights: WeightSetter | None = None
        self.metagraph: MetagraphView | None = None
        self._lock = _StateLock(config.state_path)
        self._stop: asyncio.Event | None = None  # created on the running loop
        self._worker: asyncio.Task | None = None
        self._collector_task: asyncio.Task | None = None
        self._round: RoundRow | None = None
        self._deferred: dict[str, int] = {}  # model key -> block before which it is not retried
        self._attempts: dict[str, int] = {}  # model key -> the validator's own failures in a row
        self._disk_full_said: float | None = None
        self._reports: dict[str, vetting.VettingReport] = {}  # model key -> the VettingReport of this process
        self._data_digest: str | None = None
        #: the validator's own failures (the last 100; what the operator must fix) and how many since start
        self.own_failures: collections.deque[Failure] = collections.deque(maxlen=100)
        self.own_failure_count = 0
        self.exit_code = 0
        self.rounds_done = 0
        #: what happened, in order: ("sync" | "weights" | "eval-start" | "eval-end" | "own-failure", detail)
        self.events: collections.deque[tuple[str, str]] = collections.deque(maxlen=1000)

    # -- checks --------------------------------------------------------------------------------------------

    def _uses_bfcl(self) -> bool:
        return any(spec.split(":")[0].startswith("bfcl") for spec in self.competition.mix(self.registry))

    async def check(self) -> Any:
        """The start checks (``--check``): a :class:`~bitagent_plugins.subnet.checks.CheckReport`."""
        from bitagent_plugins.subnet import bfcl_data
        from bitagent_plugins.subnet.checks import run_checks

        bfcl_problem = bfcl_note = None
        if self._uses_bfcl():
            self._data_digest, bfcl_problem = bfcl_data.check()
            bfcl_note = f"{self._data_digest} (bfcl-eval {bfcl_data.PINNED_RELEASE})"

        def wallet_loader() -> Any:
            if self.wallet_error:
                raise RuntimeError(self.wallet_error)
            return self.wallet

        return await run_checks(
            chain=self.chain,
            wallet_loader=wallet_loader,
            backend=self.config.backend,
            backend_options=self.config.backend_options,
            cache_dir=self.config.cache_dir,
            max_params=self.limits.max_params,
            max_download_bytes=self.limits.max_total_bytes,
            bfcl_problem=bfcl_problem or None,
            bfcl_note=bfcl_note,
            weights_version_key=self.weights_version_key,
        )

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until stopped (SIGTERM/SIGINT), ``--once`` finishes a round, or ``max_rounds`` rounds are done."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._stop.set)
        self._lock.acquire()
        try:
            started = time.monotonic()
            report = await self.check()
            for note in report.notes:
                log.info("check: %s", note)
            for problem in report.problems:
                log.error("check: %s", problem)
            log.info("start checks done in %.1f s: %d problem(s)", time.monotonic() - started, len(report.problems))
            if report.problems and not self.config.skip_start_check:
                log.error(
                    "OPERATOR ACTION NEEDED: fix the problems above (bitagent validate --check lists them); "
                    "not starting"
                )
                return EXIT_CHECK_FAILED
            if self.wallet is None:
                return EXIT_CHECK_FAILED
            self.state = await self._open_state()
            if self.state is None:
                return self.exit_code
            self._build_parts(self.state)
            self.config.cache_dir.mkdir(parents=True, exist_ok=True)
            log.info(
                "validator %s: subnet %d on %s, competition %s (version %s), %d tasks per evaluation, "
                "backend %s, state %s",
                self.chain.hotkey,
                self.config.netuid,
                self.config.network,
                self.competition.name,
                self.version,
                self.sample_size,
                self.config.backend,
                self.config.state_path,
            )
            async with self.chain:
                await self._recover()
                return await self._loop()
        finally:
            await self.chain.close()
            for task in (self._collector_task, self._worker):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
            if self.state is not None:
                self.state.close()
            self._lock.release()

    def _build_parts(self, state: ValidatorState) -> None:
        cfg = self.config
        self.scoreboard = Scoreboard(
            state,
            competition=self.competition.name,
            version=self.version,
            alpha=cfg.ema_alpha,
            reevaluate_blocks=cfg.reevaluate_blocks,
            longevity=(
                int(getattr(self.competition, "longevity_versions", 0)),
                float(getattr(self.competition, "longevity_share", 0.0)),
            ),
        )
        self.collector = SubmissionCollector(
            state,
            hub=self.hub,
            wallet=self.wallet,
            own_hotkey=self.chain.hotkey,
            netuid=cfg.netuid,
            query_timeout_s=cfg.query_timeout_s,
            allow_private=cfg.allow_private_axons,
            retry_blocks=max(cfg.sync_interval * 10, 50),
        )
        self.weights = WeightSetter(
            state,
            self.chain,
            scores=self.scoreboard.scores,
            competition_version=self.version,
            weight_rule=self.competition.weight_rule,
            epoch_length=cfg.epoch_length,
            retry_blocks=cfg.sync_interval,
            dry_run=cfg.dry_run,
            weights_version_key=self.weights_version_key,
        )

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _recover(self) -> None:
        """After a crash: interrupted evaluations back to pending; cached models whose fate is sealed removed."""
        assert self.state is not None and self.scoreboard is not None
        resumed = self.state.resume_interrupted()
        if resumed:
            log.info("resumed %d interrupted evaluation(s)", resumed)
        self._round = self.state.current_round()
        if self._round is not None:
            log.info("resuming round %d", self._round.id)
        keep = {job.key for job in self.scoreboard.pending_jobs()}
        scoreboard = self.scoreboard

        def removable(key: str) -> bool:
            # online the cache is only a download area; offline it is also where submissions come from, so
            # only what will never be read again goes (vetted out, or evaluated with no re-evaluation to come)
            if not self.offline:
                return True
            vetted = scoreboard.state.vetting(key)
            return (vetted is not None and not vetted.ok) or (
                not self.config.reevaluate_blocks and scoreboard.sealed(key)
            )

        await asyncio.to_thread(self.pipeline.sweep_cache, keep=keep, removable=removable)

    async def _loop(self) -> int:
        cfg = self.config
        block_time = await self.chain.block_time()
        tick = cfg.tick_s if cfg.tick_s is not None else max(0.05, min(12.0, block_time))
        last_sync: int | None = None
        last_beat = time.monotonic()
        assert self._stop is not None and self.weights is not None
        while not self._stop.is_set():
            try:
                head = await self.chain.block()
                if last_sync is None or head - last_sync >= cfg.sync_interval:
                    await self.sync()
                    last_sync = head
                self._ensure_round()
                self._start_worker()
                if not cfg.once and self.weights.due(head):
                    outcome = await self.weights.set_weights(head)
                    self.events.append(("weights", outcome.result))
                if self._round_complete():
                    await self._finish_round()
                    if cfg.once or (cfg.max_rounds is not None and self.rounds_done >= cfg.max_rounds):
                        break
            except ChainUnavailable as exc:  # the node went away: keep the state, try again next tick
                self._own_failure(
                    Failure(
                        Fault.VALIDATOR, f"chain unavailable: {exc}", "check --subtensor.network / the chain endpoint"
                    )
                )
            except (sqlite3.Error, OSError) as exc:  # a state write failed: nothing done is lost, retried next tick
                if disk_full(exc):
                    self._disk_full("syncing, setting weights or closing a round")
                else:
                    self._own_failure(
                        Failure(
                            Fault.VALIDATOR,
                            f"writing the state failed: {exc}",
                            f"check {self.config.state_path} and its disk",
                        )
                    )
            if time.monotonic() - last_beat >= cfg.heartbeat_s:
                last_beat = time.monotonic()
                self._heartbeat()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), tick)
        return self.exit_code

    async def _open_state(self) -> ValidatorState | None:
        """The state, opened when there is room for it (retried while the disk is full); None when stopped
        first or when it cannot be opened (one line says why)."""
        assert self._stop is not None
        while True:
            try:
                return ValidatorState(self.config.state_path)
            except (sqlite3.Error, OSError) as exc:
                if not disk_full(exc):
                    log.error("OPERATOR ACTION NEEDED: cannot open the state %s: %s", self.config.state_path, exc)
                    self.exit_code = EXIT_CHECK_FAILED
                    return None
                self._disk_full("opening the state")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), DISK_RETRY_S)
            if self._stop.is_set():
                return None

    def _disk_full(self, what: str) -> None:
        """One line a minute while the disk stays full (the writes are retried meanwhile)."""
        now = time.monotonic()
        if self._disk_full_said is None or now - self._disk_full_said >= 60:
            self._disk_full_said = now
            log.error("OPERATOR ACTION NEEDED: %s", disk_full_line(self.config.state_path, what))

    async def _write(self, write: Callable[[], _T], what: str) -> _T:
        """A state write, retried while the disk is full, so that a finished evaluation is kept once space is
        back (stopping gives up: the evaluation is resumed at the next start)."""
        assert self._stop is not None
        while True:
            try:
                return write()
            except (sqlite3.Error, OSError) as exc:
                if not disk_full(exc) or self._stop.is_set():
                    raise
                self._disk_full(what)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), DISK_RETRY_S)

    def _heartbeat(self) -> None:
        assert self.scoreboard is not None
        busy = self._worker is not None and not self._worker.done()
        pending = len(self.scoreboard.pending_jobs(set(self._deferred)))
        log.info(
            "heartbeat: %s; round %s; %d model(s) pending, %d deferred; block %s",
            "evaluating" if busy else "idle",
            self._round.id if self._round else "-",
            pending,
            len(self._deferred),
            self.metagraph.block if self.metagraph else "?",
        )

    # -- one sync: metagraph, submissions, locks -------------------------------------------------------------

    async def sync(self) -> MetagraphView:
        """Metagraph and neurons now; collecting and locking the submissions in a background task (the
        endpoints may take their whole timeout, the Hub its own)."""
        assert self.state is not None and self.collector is not None and self.scoreboard is not None
        started = time.monotonic()
        mg = await self.chain.metagraph()
        self.metagraph = mg
        self.state.sync_neurons(mg.hotkeys, mg.block)
        self._deferred = {key: block for key, block in self._deferred.items() if block > mg.block}
        if self._round is None:  # between rounds: a round evaluates each model once, on its one sample
            self.scoreboard.schedule_reevaluations(mg.block)
        if self._collector_task is None or self._collector_task.done():
            task = self._collector_task
            if task is not None and not task.cancelled() and disk_full(task.exception() or Exception()):
                self._disk_full("collecting submissions")  # collected again by this sync's task
            else:
                _log_failure(task, "collecting submissions")
            self._collector_task = asyncio.create_task(self.collector.run(mg), name="bitagent-collect")
        self.events.append(("sync", str(mg.block)))
        log.info("sync: block %d, %d neurons (%.1f s)", mg.block, len(mg), time.monotonic() - started)
        return mg

    @property
    def rejected(self) -> dict[str, str]:
        return self.collector.rejected if self.collector is not None else {}

    def _pending_jobs(self) -> list[ModelJob]:
        assert self.scoreboard is not None
        return self.scoreboard.pending_jobs(set(self._deferred))

    def _ensure_round(self) -> None:
        """A round exists while models wait (with ``--once``: from the first collection on)."""
        assert self.state is not None and self.collector is not None
        if self._round is not None:
            return
        jobs = self._pending_jobs()
        if jobs or (self.config.once and self.collector.collections_done):
            self._round = self.state.begin_round(secrets.randbits(63))
            first = sum(not job.reevaluation for job in jobs)
            log.info(
                "round %d started: %d model(s) to vet or evaluate (%d first evaluation(s), %d re-evaluation(s))",
                self._round.id,
                len(jobs),
                first,
                len(jobs) - first,
            )

    # -- evaluation beside the loop ----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        if self._round is not None and (self._worker is None or self._worker.done()) and self._pending_jobs():
            _log_failure(self._worker, "evaluating")
            self._worker = asyncio.create_task(self._work(), name="bitagent-evaluations")

    def _round_complete(self) -> bool:
        assert self.collector is not None
        return (
            self._round is not None
            and self.collector.collections_done > 0
            and (self._collector_task is None or self._collector_task.done())
            and (self._worker is None or self._worker.done())
            and not self._pending_jobs()
        )

    async def _work(self) -> None:
        assert self._stop is not None
        previous: str | None = None
        while not self._stop.is_set():
            jobs = self._pending_jobs()
            if not jobs:
                return
            if jobs[0].key == previous:  # processed and still first: no progress; never spin on it
                log.warning("%s: still pending after processing; trying again in a later sync", previous)
                self._deferred[previous] = (self.metagraph.block if self.metagraph else 0) + self.config.sync_interval
                continue
            previous = jobs[0].key
            await self.process(jobs[0])

    async def process(self, job: ModelJob) -> None:
        """Vet, download, evaluate, record, delete: one model. Whose fault a failure is decides what is
        recorded: the model's counts 0, the validator's own changes nothing and is retried with backoff.
        Stopping (cancellation) leaves the download in the cache for the next start."""
        assert self.scoreboard is not None and self.state is not None
        key = job.model
        # offline, the cache is the only copy: a model to be re-evaluated stays (online it is downloaded again)
        delete = not (self.offline and self.config.reevaluate_blocks)
        own_failures = self.own_failure_count
        try:
            report = self._reports.get(key.key)
            if report is None:  # not vetted yet, or vetted by an earlier process: the files to fetch
                report = await self.pipeline.vet(key)
                if not report.ok and report.transient:
                    self._own_failure(
                        Failure(
                            Fault.VALIDATOR,
                            f"{key}: vetting: {report.reason}",
                            "check the access to the Hugging Face Hub (or the offline cache)",
                        ),
                        key.key,
                    )
                    return
                scoreboard = self.scoreboard
                await self._write(lambda: scoreboard.record_vetting(key.key, report), f"recording {key}'s vetting")
                if not report.ok:
                    delete = True
                    return
                self._reports[key.key] = report
            original = self.scoreboard.copy_of(key.key)
            if original is not None:
                log.info("%s: the same weights as %s (committed earlier): a copy, not evaluated", key, original)
                return
            try:
                snapshot = await self.pipeline.download(key, report)
            except vetting.VettingFailed as exc:
                if exc.transient:
                    self._own_failure(
                        Failure(
                            Fault.VALIDATOR,
                            f"{key}: download: {exc.reason}",
                            "check the access to the Hugging Face Hub and the disk",
                        ),
                        key.key,
                    )
                else:
                    self.state.record_vetting(key.key, False, f"download refused: {exc.reason}")
                    log.warning("%s: download refused: %s", key, exc.reason)
                return
            except OSError as exc:
                self._own_failure(classify_exception(exc, context=f"{key}: download"), key.key)
                return
            if not self.scoreboard.claim(key.key):
                return
            await self._evaluate(job, snapshot, report)
        except asyncio.CancelledError:
            delete = False  # stopping: keep the download for the next start, which resumes this model
            raise
        finally:
            self._reports.pop(key.key, None)
            if self.own_failure_count != own_failures:
                # the validator's own failure: the submission stays for the retry (offline it is the only copy)
                log.info("%s: kept in the cache for the retry (the failure was this validator's)", key)
            elif delete:
                await self.pipeline.delete(key)

    async def _evaluate(self, job: ModelJob, snapshot: Path, report: vetting.VettingReport) -> None:
        assert self.scoreboard is not None
        scoreboard = self.scoreboard
        key = job.model
        if self._round is None:  # a model resumed outside a round still answers a round's sample
            assert self.state is not None
            self._round = self.state.begin_round(secrets.randbits(63))
        block = self.metagraph.block if self.metagraph is not None else 0
        self.events.append(("eval-start", key.key))
        try:
            result = await self.pipeline.evaluate(
                key, self.pipeline.model_argument(snapshot, report), seed=self._round.seed, sample_size=self.sample_size
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified: a bad model fails its evaluation, never the validator
            failure = classify_exception(exc, context=f"{key}: evaluation")
            # nothing says whose fault: retried like the validator's own before it ever counts as the model's
            unknown = failure.fault is Fault.UNKNOWN and self._attempts.get(key.key, 0) < UNKNOWN_RETRIES
            if failure.ours or unknown:
                await self._write(lambda: scoreboard.release(key.key), f"releasing {key}")
                self._own_failure(failure, key.key)
            else:
                round_id = self._round.id
                average = await self._write(
                    lambda: scoreboard.fail(key.key, failure, block=block, round_id=round_id), f"recording {key}"
                )
                log.warning(
                    "%s: evaluation failed by the model: %s; moving average now %.4f", key, failure.reason, average
                )
        else:
            own = classify_results(result.n_tasks, result.error_types, result.errors)
            if own is not None:
                await self._write(lambda: scoreboard.release(key.key), f"releasing {key}")
                self._own_failure(own, key.key)
            else:
                round_id = self._round.id
                average = await self._write(
                    lambda: scoreboard.finish(
                        key.key,
                        score=result.score,
                        n_tasks=result.n_tasks,
                        ci95=result.ci95,
                        run_dir=result.run_dir,
                        block=block,
                        round_id=round_id,
                        data_digest=self._data_digest,
                    ),
                    f"recording the score of {key}",
                )
                self._attempts.pop(key.key, None)
                log.info(
                    "%s: score %.4f +/- %.4f (95%% CI over %d tasks)%s; moving average now %.4f",
                    key,
                    result.score,
                    result.ci95,
                    result.n_tasks,
                    " (re-evaluation)" if job.reevaluation else "",
                    average,
                )
        self.events.append(("eval-end", key.key))

    def _own_failure(self, failure: Failure, key: str | None = None) -> None:
        """The validator failed, not the model: no score changes; the model is retried with backoff."""
        self.own_failures.append(failure)
        self.own_failure_count += 1
        self.events.append(("own-failure", failure.reason))
        if key is not None:
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            head = self.metagraph.block if self.metagraph is not None else 0
            wait = min(max(2 * self.config.sync_interval, 20) * 2 ** (attempts - 1), 7200)
            self._deferred[key] = head + wait
            retry = f"; {key} is retried in {wait} blocks (attempt {attempts})"
        else:
            retry = ""
            if len(self.own_failures) > 1 and self.own_failures[-2].reason == failure.reason:
                return  # the same outage again (the chain, every tick): said once
        log.error("VALIDATOR FAILURE (no miner's score changes): %s%s", failure.reason, retry)
        if failure.action:
            log.error("OPERATOR ACTION NEEDED: %s", failure.action)

    async def _finish_round(self) -> None:
        assert self.state is not None and self._round is not None and self.weights is not None
        from bitagent_plugins.subnet.feedback import round_feedback, write_feedback

        round_ = self._round
        if self.config.once:
            outcome = await self.weights.set_weights()
            self.events.append(("weights", outcome.result))
            if outcome.failed:
                self.exit_code = 1
        entries = round_feedback(
            self.state, round_id=round_.id, competition=self.competition.name, version=self.version
        )
        folder = write_feedback(entries, self.config.runs_dir, round_.id)
        info = {
            "id": round_.id,
            "competition": self.competition.name,
            "competition_version": self.version,
            "dir": str(folder) if folder else None,
        }
        try:
            self.registry.pm.hook.on_round_end(round=info, feedback=entries)
        except Exception as exc:  # noqa: BLE001 - a reporter must never stop the validator
            log.warning("a reporter failed at the end of round %d: %s", round_.id, exc)
        self.state.finish_round(round_.id)
        if self.collector is not None:
            log.info("round %d: %s", round_.id, self.collector.not_collected_summary())
        own = self.own_failure_count
        log.info(
            "round %d done: feedback for %d miner(s), %d validator failure(s) so far", round_.id, len(entries), own
        )
        if own and self.config.once:
            self.exit_code = EXIT_VALIDATOR_FAILURE
        self._round = None
        self.rounds_done += 1


#: upstream's licence policy (its README: apache-2.0); a competition may set its own ``licenses``
UPSTREAM_LICENSES = frozenset({"apache-2.0"})


def _log_failure(task: asyncio.Task | None, what: str) -> None:
    if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
        log.error("%s failed: %r", what, task.exception())


def run_validator(config: ValidatorConfig, **kwargs: Any) -> int:
    """Blocking entry point: build the validator and run it on a fresh event loop."""
    validator = Validator(config, **kwargs)
    started = time.monotonic()
    code = asyncio.run(validator.run())
    log.info("validator stopped after %.0f s (exit code %d)", time.monotonic() - started, code)
    return code


def check_validator(config: ValidatorConfig, **kwargs: Any) -> int:
    """``bitagent validate --check``: print one line per problem; 0 when there is none."""
    import click

    async def main() -> Any:
        validator = Validator(config, **kwargs)
        try:
            return await validator.check()
        finally:
            await validator.chain.close()

    report = asyncio.run(main())
    for note in report.notes:
        click.echo(f"ok: {note}")
    for problem in report.problems:
        click.echo(f"problem: {problem}", err=True)
    return 0 if report.ok else EXIT_CHECK_FAILED
