"""BFCL's own checker in a side process (its own virtualenv, ``BFCL_PYTHON``), timed round by round.

The side script reads the JSON lines file it is given, answers ``{"verdicts": [...]}`` once, then
``{"seconds": s}`` for every ``round`` line on its stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class SideProcess:
    def __init__(self, python: str, script: Path, lines: Iterable[dict[str, Any]]) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
            self.path = f.name
        self.script = script
        self.proc = subprocess.Popen(
            [python, str(script), self.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.verdicts = self._read()["verdicts"]
        self.cpu_seconds: list[float] = []  # the side's CPU time per round, where it reports it

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise RuntimeError(f"{self.script.name} failed:\n{self.proc.stderr.read()[-2000:]}")
        return json.loads(line)

    def round(self) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "cpu_seconds" in reply:
            self.cpu_seconds.append(float(reply["cpu_seconds"]))
        return float(reply["seconds"])

    def close(self) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        finally:
            os.unlink(self.path)


def serve(verdict: Any) -> None:
    """The side script's half (run in the side interpreter; stdlib only): read the JSON lines file named in
    ``sys.argv[1]``, print every item's verdict, then time one round over all items per line on stdin."""
    import sys
    import time

    with open(sys.argv[1], encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    print(json.dumps({"verdicts": [verdict(i) for i in items]}), flush=True)
    for command in sys.stdin:
        if command.strip() != "round":
            break
        started, cpu = time.perf_counter(), time.process_time()
        for item in items:
            verdict(item)
        print(
            json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu}), flush=True
        )
