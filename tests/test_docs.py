"""Every Python example in docs/plugins.md runs as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_there_is_an_example_per_hook():
    text = DOC.read_text()
    for hook in ("register_task_sources", "register_backends", "register_scorers", "register_competitions",
                 "register_commands", "register_environments", "on_run_start", "on_sample_scored", "on_run_end"):
        assert f"def {hook}" in text, hook
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index):
    exec(compile(BLOCKS[index], f"docs/plugins.md[{index}]", "exec"), {"__name__": f"doc_example_{index}"})
