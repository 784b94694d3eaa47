"""The run log's one owner: RunDir reads without changing a file, writes under its lock, and repairs a torn
last line only when asked (and then under the lock)."""

import json

import pytest

from bitagent_core import RunDir, RunDirLocked, RunResults, SampleRecord
from bitagent_core.rundir import read_samples


def torn_run(tmp_path):
    run = RunDir.create(tmp_path, "t", "m")
    run.append(SampleRecord(task_id="a", status="ok", score=1.0, passed=True))
    run.finish(RunResults(status="complete", run_dir=str(run.path), config={"tasks": "t"}))
    with open(run.samples_path, "ab") as f:
        f.write(b'{"task_id": "b", "sta')  # a crash mid-write
    return run.path


def test_reading_never_truncates_a_torn_tail(tmp_path):
    path = torn_run(tmp_path)
    size = (path / RunDir.SAMPLES).stat().st_size
    assert set(read_samples(path)) == {"a"}
    assert set(RunDir.open(path).read_samples()) == {"a"}
    assert [n for n, _ in RunDir.open(path / RunDir.SAMPLES).iter_samples()] == [1]
    assert (path / RunDir.SAMPLES).stat().st_size == size  # readers changed nothing


def test_repair_cuts_the_torn_tail_under_the_lock(tmp_path):
    path = torn_run(tmp_path)
    with RunDir.open(path) as holder:
        holder.lock()
        with pytest.raises(RunDirLocked):
            RunDir.open(path).repair()  # another process holds it: nothing is cut
        assert (path / RunDir.SAMPLES).read_bytes().endswith(b'"sta')
    with RunDir.open(path) as run:
        assert run.repair() == len(b'{"task_id": "b", "sta') and run.locked
        run.append(SampleRecord(task_id="b", status="ok"))
    lines = (path / RunDir.SAMPLES).read_text().splitlines()
    assert [json.loads(line)["task_id"] for line in lines] == ["a", "b"]


def test_writing_needs_the_lock_and_finish_releases_it(tmp_path):
    run = RunDir.create(tmp_path, "t", "m")
    with pytest.raises(RunDirLocked):
        RunDir(run.path).lock()  # another writer
    results = RunResults(status="complete", run_dir=str(run.path), config={})
    run.finish(results)
    assert not run.locked and run.read_results().status == "complete"
    reader = RunDir.open(run.path)
    with pytest.raises(RuntimeError, match="needs its lock"):
        reader.append(SampleRecord(task_id="x", status="ok"))
    reader.lock().close()  # free again
    with pytest.raises(ValueError, match="not a run directory"):
        RunDir.open(tmp_path)
