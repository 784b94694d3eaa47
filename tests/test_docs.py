"""Every Python example in docs/plugins.md runs as written, and everything it registers passes the conformance
kit: an example that breaks a protocol fails here even if it never calls the kit itself."""

import re
from pathlib import Path

import pytest

import bitagent_core as ba
import bitagent_testing as testing
from bitagent_core import toolkit

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
#: examples only (the kit overview uses placeholder names)
EXAMPLES = [b for b in BLOCKS if "@ba.hookimpl" in b]


def test_there_is_an_example_per_hook():
    text = DOC.read_text()
    for hook in (
        "register_task_sources",
        "register_backends",
        "register_scorers",
        "register_competitions",
        "register_commands",
        "register_environments",
        "on_run_start",
        "on_sample_scored",
        "on_run_end",
        "on_round_end",
    ):
        assert f"def {hook}" in text, hook
    assert len(EXAMPLES) >= 6


def test_the_doc_documents_the_whole_public_data_model_and_every_protocol():
    text = DOC.read_text()
    for name in (
        "Tool",
        "Message",
        "ToolCall",
        "ExpectedCall",
        "Task",
        "ChatRequest",
        "Completion",
        "Score",
        "EnvironmentSpec",
        "Turn",
        "Step",
        "Trajectory",
        "SampleRecord",
        "RunResults",
        "TaskSource",
        "Backend",
        "Scorer",
        "Competition",
        "Reporter",
        "BackendOptions",
        "Environment",
        "TrajectoryScorer",
    ):
        assert f"ba.{name}" in text, name
    for model in (
        ba.Tool,
        ba.Message,
        ba.ToolCall,
        ba.ExpectedCall,
        ba.Task,
        ba.ChatRequest,
        ba.Completion,
        ba.Score,
        ba.EnvironmentSpec,
        ba.Turn,
        ba.Step,
        ba.Trajectory,
    ):
        for field in model.__attrs_attrs__:
            assert re.search(rf"\b{field.name}\b", text), f"{model.__name__}.{field.name} is not documented"
    for phrase in ("limit=None", "run_dir` is `None`", "Irrelevance tasks", "Versioning", "BITAGENT_PLUGIN_API"):
        assert phrase in text, phrase


def test_the_doc_lists_the_whole_public_surface_and_nothing_more():
    listed = DOC.read_text().split("## The data model")[0]
    assert sorted(set(re.findall(r"`ba\.(\w+)`", listed))) == sorted(ba.__all__)
    assert len(ba.__all__) <= 60  # the few dozen names a plugin needs


def test_the_doc_lists_the_whole_toolkit_and_nothing_more():
    text = DOC.read_text()
    listed = text.split("## The toolkit")[1].split("\n## ")[0]
    assert sorted(set(re.findall(r"`toolkit\.(\w+)", listed))) == sorted(toolkit.__all__)
    assert not set(toolkit.__all__) & set(ba.__all__)  # one public home per name
    for name in toolkit.__all__:
        assert getattr(toolkit, name) is not None, name


def run_example(code: str, label: str) -> list[str]:
    """Run one example; then the conformance checks on everything its registries hold that is not built in."""
    namespace: dict = {"__name__": f"doc_example_{label}"}
    exec(compile(code, f"docs/plugins.md[{label}]", "exec"), namespace)
    failures = []
    for registry in [v for v in namespace.values() if isinstance(v, ba.PluginRegistry)]:
        builtin = {p.name for p in registry.plugins if p.distribution == "bitagent"}
        for kind in ba.PluginRegistry.KINDS:
            for name, registration in registry.registrations(kind).items():
                if registration.plugin in builtin:
                    continue
                report = testing.check_registered(registry, name, kind=kind)
                failures += [f"{c.subject}: {c.name}: {c.message}" for c in report.failures]
    return failures


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_runs_and_conforms(index):
    assert run_example(EXAMPLES[index], str(index)) == []


def test_an_example_that_breaks_a_protocol_fails():
    (competition,) = [b for b in EXAMPLES if "register_competitions" in b]
    broken = competition.replace("def mix(self, registry", "def task_mix(self, registry")
    broken = broken.replace("testing.check_competition(competition, registry).assert_ok()\n", "")
    assert broken != competition
    failures = run_example(broken, "broken")
    assert any("has no 'mix'" in f for f in failures), failures
