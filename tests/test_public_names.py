"""The built-in plugins are written against the public surface like any other plugin: every name they take
from ``bitagent_core`` is in its ``__all__`` (the contract) or comes from ``bitagent_core.toolkit``, so the
contract cannot be bypassed by the built-ins (read from their imports with ``ast``)."""

import ast
from pathlib import Path

import pytest

import bitagent_core as ba
from bitagent_core import toolkit

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "bitagent_plugins").rglob("*.py")) + sorted((ROOT / "bitagent_testing").rglob("*.py"))


def names_taken(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` for every name ``path`` takes from bitagent_core: ``from`` imports and ``ba.X``."""
    taken = []
    aliases = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bitagent_core":
            taken += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "bitagent_core":
                    aliases.add(alias.asname or alias.name)
                elif alias.name.startswith("bitagent_core."):  # a submodule: past the public names
                    taken.append((alias.name, "*"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            taken.append(("bitagent_core", node.attr))
    return taken


def public(module: str, name: str) -> bool:
    if module == "bitagent_core":
        return name in ba.__all__ or name in ("__version__", "toolkit")
    return module == "bitagent_core.toolkit" and name in toolkit.__all__


def offenders(paths: list[Path]) -> list[str]:
    return [
        f"{path.name}: {module}.{name}"
        for path in paths
        for module, name in names_taken(path)
        if not public(module, name)
    ]


def test_the_built_in_plugins_take_only_contract_and_toolkit_names():
    assert offenders(SOURCES) == []


@pytest.mark.parametrize(
    "source",
    [
        "from bitagent_core import split_spec\n",  # importable once, never in the contract
        "from bitagent_core._runner import Evaluation\n",  # the machinery
        "from bitagent_core.toolkit.decoding import literal\n",  # a toolkit module, not its public names
        "import bitagent_core as ba\nba.RunInfo\n",  # the machinery's type, through the top level
        "from bitagent_core.toolkit import nothing_there\n",
        "import bitagent_core._cli\n",
    ],
)
def test_a_plugin_that_reaches_past_the_public_names_is_caught(tmp_path, source):
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert len(offenders([probe])) == 1


def test_the_contract_and_the_toolkit_keep_their_names_apart():
    assert not set(ba.__all__) & set(toolkit.__all__)
    assert ba._LAZY.keys() == set(ba.__all__) - {"__version__"}  # nothing importable beyond the contract
    assert toolkit._LAZY.keys() == set(toolkit.__all__)
