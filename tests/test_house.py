"""House rules that a check can hold: changelog fragments that towncrier reads, one version (the git tag's)."""

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import bitagent_core

ROOT = Path(__file__).resolve().parent.parent
FRAGMENT = re.compile(r"^\d+\.[a-z0-9][a-z0-9-]*\.(added|changed|fixed|removed|security)\.md$")


def fragments() -> list[Path]:
    return [p for p in sorted((ROOT / "changelog").iterdir()) if p.name != "template.md.jinja"]


def test_every_changelog_fragment_is_named_and_typed():
    bad = [p.name for p in fragments() if not FRAGMENT.match(p.name) or not p.read_text().strip()]
    assert bad == [], "fragments are changelog/<issue>.<slug>.<added|changed|fixed|removed|security>.md"


def test_towncrier_builds_the_next_release_notes():
    towncrier = Path(sys.executable).with_name("towncrier")
    out = subprocess.run(
        [str(towncrier), "build", "--draft", "--version", "0.0.0-check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for path in fragments():  # each fragment is in the notes, under its issue
        first_words = " ".join(path.read_text().split()[:6])
        assert first_words in " ".join(out.stdout.split()), path.name
    assert "## [0.0.0-check]" in out.stdout


def test_one_version_from_the_package_metadata():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]  # no second copy to forget
    assert bitagent_core.__version__ == importlib.metadata.version("bitagent")
    assert "<!-- towncrier release notes start -->" in (ROOT / "CHANGELOG.md").read_text()


def test_every_hop_of_the_sample_map_names_real_code():
    """CONTRIBUTING.md's path of one sample names ``file.py:function``: each must exist (a rename breaks here)."""
    import importlib

    text = (ROOT / "CONTRIBUTING.md").read_text().split("## The path of one sample")[1].split("## Glossary")[0]
    current = ""
    checked = 0
    for path, name in re.findall(r"`(?:([\w/]+)\.py)?:?([A-Za-z_][\w.]*)[(`]", text):
        if not path:
            continue
        current = path if "/" in path else f"bitagent_core/{path}"
        obj = importlib.import_module(current.replace("/", "."))
        for part in name.split("."):
            obj = getattr(obj, part)
        checked += 1
    assert checked >= 20 and current
