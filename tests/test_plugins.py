"""Plugin loading through real entry points: a throwaway distribution is laid out on PYTHONPATH."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bitagent_core._plugins import PluginRegistry, UnknownPluginObject
from bitagent_core.hookspecs import hookimpl

BITAGENT = [sys.executable, "-m", "bitagent_core"]


def make_dist(root: Path, name: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[bitagent]\n{lines}\n")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


def run_cli(args: list[str], pythonpath: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, **env}
    if pythonpath:
        environ["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(BITAGENT + args, capture_output=True, text=True, env=environ, timeout=120)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    make_dist(
        tmp_path,
        "broken_plugin",
        {"broken": "broken_mod"},
        {"broken_mod": "raise ImportError('needs a library that is not installed')"},
    )
    make_dist(
        tmp_path,
        "good_plugin",
        {"good": "good_mod"},
        {
            "good_mod": """
        from bitagent_core.hookspecs import hookimpl

        class Echo:
            def __init__(self):
                self.name, self.version = "echo", "1"

        @hookimpl
        def register_scorers(register):
            register("echo", Echo, description="test scorer")
    """
        },
    )
    return tmp_path


def test_broken_plugin_is_reported_and_the_rest_load(plugin_dir):
    out = run_cli(["plugins", "--json"], plugin_dir)
    assert out.returncode == 1, out.stderr  # a plugin failed to load: listed, and the exit code says so
    rows = {row["name"]: row for row in json.loads(out.stdout)}
    assert "ImportError: needs a library" in rows["broken"]["error"]
    assert rows["good"]["error"] is None
    assert rows["good"]["provides"] == {"scorers": ["echo"]}
    # the built-ins still load beside the broken one
    assert rows["llama-cpp"]["provides"] == {"backends": ["llama-cpp"]}
    assert rows["bitagent-scorer"]["error"] is None
    text = run_cli(["plugins"], plugin_dir)
    assert "FAILED: ImportError" in text.stdout
    assert text.returncode == 1 and "1 plugin(s) failed to load: broken" in text.stderr
    fine = run_cli(["plugins"], plugin_dir, BITAGENT_PLUGINS="good")
    assert fine.returncode == 0, fine.stderr


def test_bitagent_plugins_env_limits_what_loads(plugin_dir):
    out = run_cli(["plugins", "--json"], plugin_dir, BITAGENT_PLUGINS="good,bitagent-scorer")
    names = sorted(row["name"] for row in json.loads(out.stdout))
    assert names == ["bitagent-scorer", "good"]
    none = run_cli(["plugins", "--json"], plugin_dir, BITAGENT_PLUGINS="")
    assert json.loads(none.stdout) == []


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from bitagent_core._cli import main; sys.argv=['bitagent','--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy=[m for m in ('llama_cpp','bittensor','huggingface_hub','torch') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "evaluate" in out.stdout


class _Dup:
    @hookimpl
    def register_scorers(self, register):
        register("bitagent", object)


def test_unknown_and_duplicate_names_are_clear_errors():
    registry = PluginRegistry()
    registry.load_entry_points({"bitagent-scorer"})
    with pytest.raises(UnknownPluginObject, match="unknown backend 'nope'"):
        registry.get("backends", "nope")
    registry.register_module(_Dup(), "dup")
    registry.registrations("scorers")
    dup = [p for p in registry.plugins if p.name == "dup"][0]
    assert "registered twice" in dup.error
