"""The layers, checked on the import graph by import-linter (pyproject's [tool.importlinter]), and what the
`from` check of test_contract lets through: a plugin that takes a core *submodule* via
``from bitagent_core import rundir``."""

import ast
import subprocess
import sys
from pathlib import Path

import bitagent_core as ba

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold():
    out = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "broken" not in out.stdout.split("Contracts:")[-1].replace("0 broken", "")


def test_plugins_take_names_not_submodules_from_bitagent_core():
    offenders = []
    for root in ("bitagent_plugins", "bitagent_testing", "examples"):
        for path in (ROOT / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module == "bitagent_core":
                    offenders += [
                        f"{path.relative_to(ROOT)}: {alias.name}"
                        for alias in node.names
                        if alias.name not in ba._LAZY and alias.name not in ("__version__", "toolkit")
                    ]
    assert offenders == []
