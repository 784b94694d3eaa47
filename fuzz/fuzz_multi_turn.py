"""atheris harness for multi-turn execution: the BFCL environment, the safe executor and both scorers.

Each input becomes a trajectory (``\\x00`` separates turns, ``\\x01`` steps; the first byte picks a shape: as
is, each step wrapped in ``[...]``, a known method name prepended, blown up to 64 KB) and is scored by
``bfcl`` and ``bfcl-strict`` against BFCL entries over the file system, math, trading and vehicle APIs, and
played step by step through a fresh ``BfclEnvironment`` and :class:`~bitagent_core.toolkit.Executor`. A finding
is any of: an exception escaping, anything evaluated or run outside the environment (an audit hook watches
eval/exec of text, processes, file opens, sockets, imports), one trajectory taking over two seconds, a result
that is not a string.

    .venv/bin/python fuzz/fuzz_multi_turn.py /tmp/fuzz-mt fuzz/corpus -max_total_time=600 -max_len=65536 -timeout=20

See fuzz/README.md.
"""

import sys
import time

import atheris

with atheris.instrument_imports(include=["bitagent_core", "bitagent_plugins"]):
    from bitagent_core._plugins import get_registry
    from bitagent_core._runner import load_tasks
    from bitagent_core.model import Step, Trajectory
    from bitagent_core.toolkit import Executor
    from bitagent_plugins.bfcl.multi_turn import CLASS_MODULES, BfclEnvironment, api_class
    from bitagent_plugins.bfcl.multi_turn_scorer import score_trajectory

IDS = ("multi_turn_base_0", "multi_turn_base_55", "multi_turn_miss_param_0", "multi_turn_long_context_5")
for _name in CLASS_MODULES:  # imported before fuzzing: importing a module opens files, legitimately
    api_class(_name)
TASKS = [t for t in load_tasks(get_registry(), "bfcl:multi_turn", 0, None) if t.id in IDS]
NAMES = [
    "cd",
    "ls",
    "mv",
    "sort",
    "post_tweet",
    "mean",
    "power",
    "logarithm",
    "place_order",
    "startEngine",
    "_load_scenario",
    "__init__",
    "exec",
    "getattr",
]
LIMIT_S = 2.0
_active = {"on": False}
_WATCHED = (
    "os.system",
    "subprocess.Popen",
    "os.exec",
    "os.posix_spawn",
    "os.fork",
    "open",
    "socket.connect",
    "os.remove",
    "os.unlink",
    "ctypes.dlopen",
)


#: what an import opens: reading these is not reaching outside the environment (a lazy import inside the
#: code under test opens its module; before this, that tripped the hook on the first input)
_IMPORTED = (".py", ".pyc", ".so", ".json")


def _audit(event, args):
    if not _active["on"]:
        return
    if event == "open" and isinstance(args[0], str) and args[0].endswith(_IMPORTED) and args[1] in ("r", "rb"):
        return
    if event == "exec" and not getattr(args[0], "co_filename", "").endswith(".py"):
        raise RuntimeError(f"something was evaluated: {args[0]!r}")
    if event.startswith(_WATCHED):
        raise RuntimeError(f"execution reached outside the environment: {event} {args!r:.200}")


sys.addaudithook(_audit)


def make_trajectory(data: bytes) -> Trajectory:
    mode = data[0] % 8 if data else 0
    provider = atheris.FuzzedDataProvider(data[1:])
    text = provider.ConsumeUnicodeNoSurrogates(len(data))
    turns = [turn.split("\x01") for turn in text.split("\x00")][:8]
    if mode == 1:
        turns = [["[" + s + "]" for s in turn] for turn in turns]
    elif mode == 2:
        turns = [[f"[{NAMES[(i + j) % len(NAMES)]}({s})]" for j, s in enumerate(turn)] for i, turn in enumerate(turns)]
    elif mode == 3 and text:
        turns = [[(text * (65_536 // len(text) + 1))[:65_536]]]
    return Trajectory(tuple(tuple(Step(text=s) for s in turn[:25]) for turn in turns))


def TestOneInput(data: bytes) -> None:
    check(data, watch=True)


def check(data: bytes, *, watch: bool) -> None:
    trajectory = make_trajectory(data)
    started = time.perf_counter()
    _active["on"] = watch
    try:
        for task in TASKS:
            for strict in (True, False):
                score = score_trajectory(task, trajectory, strict=strict)
                assert score.value in (0.0, 1.0) and score.passed == (score.error_type is None)
            environment = BfclEnvironment(task.environment.config)
            executor = Executor(environment.objects(), environment.format_result)
            for turn in trajectory.turns:
                for step in turn:
                    calls, _ = environment.decode(step.text, ())
                    assert all(type(r) is str for r in executor.execute_step(calls))
    finally:
        _active["on"] = False
    elapsed = time.perf_counter() - started
    if elapsed > LIMIT_S * len(TASKS):
        raise AssertionError(f"one trajectory took {elapsed:.2f} s")


def main() -> None:
    check(b"\x02ls()\x01cd(folder='x')\x00mean(numbers=[1, 2])", watch=False)  # lazy imports happen here, unwatched
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
