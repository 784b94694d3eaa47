"""Third-party plugin packages (a dist-info and an entry point on PYTHONPATH, real `bitagent` processes): a
plugin written to the contract before 1.0 keeps working, a duplicate name fails the plugin that registered it
second (built-ins win), a failed plugin leaves nothing behind, and a raising `register_commands` does not take
the CLI down."""

import json

from tests.test_plugins import make_dist, run_cli

OLD_BACKEND = """
    from bitagent_core import Completion
    from bitagent_core.hookspecs import hookimpl

    class Old:
        default_concurrency = 1

        def __init__(self, model, options):
            # the pre-1.0 contract: options are a mapping
            self.answer = options.get("answer", "none") if "answer" in options else options.get("x", "none")
            self.exact = options["answer"]

        async def start(self, run_dir):
            pass

        async def complete(self, request):
            return Completion(text=self.answer + self.exact)

        async def close(self):
            pass

        def describe(self):
            return {"model": "old"}

    @hookimpl
    def register_backends(register):
        register("old", Old)
"""


def test_a_backend_written_before_1_0_reads_its_options_as_a_mapping(tmp_path):
    make_dist(tmp_path / "path", "old_plugin", {"old": "old_mod"}, {"old_mod": OLD_BACKEND})
    out = run_cli(
        [
            "evaluate",
            "--backend",
            "old",
            "--limit",
            "2",
            "-B",
            "answer=[f()]",
            "--output-dir",
            str(tmp_path / "runs"),
            "--json",
        ],
        tmp_path / "path",
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    samples = [
        json.loads(line)
        for run in (tmp_path / "runs").iterdir()
        for line in (run / "samples.jsonl").read_text().splitlines()
    ]
    assert len(samples) == 2 and {s["completion"]["text"] for s in samples} == {"[f()][f()]"}
    assert {s["status"] for s in samples} == {"ok"}


def test_a_duplicate_name_fails_the_plugin_that_registered_it_second_and_leaves_nothing(tmp_path):
    # loaded before the built-ins (PYTHONPATH comes first): the built-in still wins
    make_dist(
        tmp_path,
        "squatter",
        {"squatter": "squatter_mod"},
        {
            "squatter_mod": """
        from bitagent_core.hookspecs import hookimpl

        class Mine:
            name, version = "mine", "1"

        @hookimpl
        def register_scorers(register):
            register("mine", Mine)
            register("bitagent", Mine)

        @hookimpl
        def register_task_sources(register):
            raise RuntimeError("and this hook fails too")
    """
        },
    )
    out = run_cli(["plugins", "--json"], tmp_path)
    assert out.returncode == 1, out.stderr  # a plugin failed to load
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert rows["bitagent-scorer"]["error"] is None and rows["bitagent-scorer"]["provides"] == {"scorers": ["bitagent"]}
    error = rows["squatter"]["error"]
    assert "scorer 'bitagent' registered twice (by bitagent-scorer and squatter)" in error
    assert "register_task_sources failed: RuntimeError: and this hook fails too" in error  # every failing hook
    assert rows["squatter"]["provides"] == {}  # not even 'mine'
    listed = run_cli(["scorers", "list", "--json"], tmp_path)
    assert "mine" not in {row["name"] for row in json.loads(listed.stdout)}


def test_a_raising_register_commands_is_isolated(tmp_path):
    make_dist(
        tmp_path,
        "bad_commands",
        {"bad-commands": "bad_commands_mod"},
        {
            "bad_commands_mod": """
        import click
        from bitagent_core.hookspecs import hookimpl

        @hookimpl
        def register_commands(cli):
            cli.add_command(click.Command("half-added", callback=lambda: None))
            raise KeyError("no such group")
    """
        },
    )
    help_out = run_cli(["--help"], tmp_path)
    assert help_out.returncode == 0 and "evaluate" in help_out.stdout, help_out.stderr
    assert "half-added" not in help_out.stdout and "Traceback" not in help_out.stderr
    rows = {row["name"]: row for row in json.loads(run_cli(["plugins", "--json"], tmp_path).stdout)}
    assert rows["bad-commands"]["error"] == "register_commands failed: KeyError: 'no such group'"
    assert rows["bitagent-scorer"]["error"] is None


def test_a_plugin_whose_factory_breaks_fails_in_one_line(tmp_path):
    make_dist(
        tmp_path / "path",
        "broken_factory",
        {"broken-factory": "broken_factory_mod"},
        {
            "broken_factory_mod": """
        from bitagent_core.hookspecs import hookimpl

        class Broken:
            def __init__(self, model, options):
                self.size = options.context_size  # an attribute the options do not have

        @hookimpl
        def register_backends(register):
            register("broken", Broken)
    """
        },
    )
    out = run_cli(
        ["evaluate", "--backend", "broken", "--limit", "1", "--output-dir", str(tmp_path / "runs")], tmp_path / "path"
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "backend 'broken' of plugin broken-factory could not be built: AttributeError" in out.stderr
