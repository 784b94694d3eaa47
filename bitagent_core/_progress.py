"""What ``bitagent evaluate`` says on stderr while it runs: a header, the backend loading and ready, then a
progress bar (on a terminal) or a plain line every ``interval_s`` seconds and at the end (in a log file), with
the running mean over every finished sample (earlier ones included after ``--resume``), the rate and an ETA."""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from bitagent_core._runner import RunConfig, RunObserver
from bitagent_core.model import Step, Task
from bitagent_core.records import SampleRecord


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe_sources(sources: dict[str, dict[str, Any]]) -> str:
    """``bfcl:simple_python (20 of 400 tasks)``, one per spec."""
    parts = []
    for spec, counts in sources.items():
        taken, available = counts.get("taken"), counts.get("available")
        of = f"{taken} of {available}" if available is not None and available != taken else f"{taken}"
        parts.append(f"{spec} ({of} tasks)")
    return ", ".join(parts)


class ConsoleProgress(RunObserver):
    def __init__(self, stream: IO[str] | None = None, *, interval_s: float = 10.0, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval_s = interval_s
        self._bar: Any = None
        self._task: Any = None
        self._total = 0
        self._done = 0
        self._sum = 0.0
        self._new = 0
        self._t0 = 0.0
        self._last_line = 0.0
        #: the multi-turn task last heard of, as "task T: turn i/n, step k, N prompt tokens"
        self._playing = ""
        self._steps: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stopped = threading.Event()

    def say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def header(self, config: RunConfig, n_tasks: int, sources: dict[str, dict[str, Any]]) -> None:
        limit = "all" if config.limit is None else str(config.limit)
        self.say(
            f"bitagent: {describe_sources(sources) or config.tasks} | {n_tasks} tasks | "
            f"model {config.model or 'default'} | backend {config.backend} | scorer {config.scorer} | "
            f"seed {config.seed} | limit {limit} | timeout {config.timeout_s:g} s"
        )

    def starting_backend(self, backend: str, model: str | None) -> None:
        self.say(f"loading model {model or 'default'} ({backend})...")

    def backend_ready(self, seconds: float) -> None:
        self.say(f"ready after {seconds:.1f} s")

    def start(self, total: int, done: list[SampleRecord]) -> None:
        self._total, self._done = total, len(done)
        self._sum = sum(r.score for r in done)
        self._t0 = self._last_line = time.monotonic()
        if done:
            self.say(f"resuming: {len(done)} of {total} samples already done (mean {self.mean:.3f})")
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("[bold]evaluating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("mean {task.fields[mean]:.3f}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA {task.fields[eta]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(
                "evaluate", total=total, completed=self._done, mean=self.mean, rate="", eta="?"
            )
        elif self.interval_s > 0:
            # a log file gets a line every interval even while one long request or trajectory runs (in-process
            # llama.cpp holds the event loop's thread, so the line comes from a thread of its own)
            self._stopped.clear()
            self._ticker = threading.Thread(target=self._tick, name="bitagent-progress", daemon=True)
            self._ticker.start()

    @property
    def mean(self) -> float:
        """Mean score over the finished samples; a failed one counts 0, as in the results."""
        return self._sum / self._done if self._done else 0.0

    def _rate_eta(self) -> tuple[str, str]:
        elapsed = time.monotonic() - self._t0
        if not self._new or elapsed <= 0:
            return "", "?"
        rate = self._new / elapsed
        shown = f"{rate:.2f} tasks/s" if rate >= 0.1 else f"{1 / rate:.1f} s/task"
        return shown, _duration((self._total - self._done) / rate)

    def sample(self, record: SampleRecord) -> None:
        with self._lock:
            self._done += 1
            self._new += 1
            self._sum += record.score if record.ok else 0.0
            self._playing = ""
        rate, eta = self._rate_eta()
        if self._task is not None:
            self._bar.update(self._task, completed=self._done, mean=self.mean, rate=rate, eta=eta)
            return
        if time.monotonic() - self._last_line >= self.interval_s or self._done >= self._total:
            self._line()

    def step(self, task: Task, turn: int, step: Step) -> None:
        self._steps[task.id] = self._steps.get(task.id, 0) + 1
        self._playing = (
            f"task {task.id}: turn {turn + 1}/{1 + len(task.turns)}, step {self._steps[task.id]}, "
            f"{step.prompt_tokens} prompt tokens"
        )
        if self._task is not None:
            self._bar.console.print(self._playing, markup=False, highlight=False)

    def _line(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._last_line = now
            rate, eta = self._rate_eta()
            percent = 100 * self._done / self._total if self._total else 100.0
            playing = f" | {self._playing}" if self._playing else ""
            print(
                f"[{self._done}/{self._total}] {percent:.0f}% mean {self.mean:.3f} {rate} "
                f"elapsed {_duration(now - self._t0)} ETA {eta}{playing}".replace("  ", " "),
                file=self.stream,
                flush=True,
            )

    def _tick(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self._line()

    def stop(self) -> None:
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._bar is not None:
            self._bar.stop()
            self._bar = self._task = None
