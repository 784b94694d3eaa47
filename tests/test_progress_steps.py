"""Progress for people watching a log file: a line every interval even while one long request or trajectory
runs, naming the multi-turn task, its turn and step."""

from __future__ import annotations

import io
import time

from bitagent_core._progress import ConsoleProgress
from bitagent_core._runner import RunObserver
from bitagent_core.model import Message, Step, Task, Turn

TASK = Task(
    id="multi_turn_base_7",
    messages=(Message("user", "hi"),),
    tools=(),
    turns=(Turn(messages=(Message("user", "and then"),)),),
)


def wait_for(predicate, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_log_file_gets_lines_while_one_trajectory_plays():
    out = io.StringIO()
    progress = ConsoleProgress(out, interval_s=0.05, tty=False)
    progress.start(3, [])
    progress.step(TASK, 0, Step(text="[cd(folder='x')]", prompt_tokens=4360))
    progress.step(TASK, 1, Step(text="done", prompt_tokens=4410))
    try:
        assert wait_for(lambda: "task multi_turn_base_7: turn 2/2, step 2, 4410 prompt tokens" in out.getvalue())
        assert wait_for(lambda: out.getvalue().count("[0/3] 0%") >= 2)  # periodic, with no sample finished
    finally:
        progress.stop()
    lines = out.getvalue().count("\n")
    time.sleep(0.2)
    assert out.getvalue().count("\n") == lines  # stop() ends the periodic lines


def test_the_default_observer_hears_steps_silently():
    RunObserver().step(TASK, 0, Step(text=""))
