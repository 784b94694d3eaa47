"""Each plugin template (examples/templates/*) and the example package install into a clean venv and work there:
`bitagent plugins` lists them, `bitagent plugins check` passes, and their own tests pass.

The venv has no bitagent of its own: a .pth file adds this project's site-packages (offline and fast), and
each template is installed with `pip install --no-deps --no-build-isolation -e`, as an author would."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {  # directory -> (entry point, name checked by `bitagent plugins check`)
    "examples/templates/task-source": ("template-tasks", "template-tasks"),
    "examples/templates/scorer": ("template-scorer", "template-scorer"),
    "examples/templates/backend": ("template-backend", "template-backend"),
    "examples/templates/reporter": ("template-reporter", "template-reporter"),
    "examples/templates/competition": ("template-competition", "template-competition"),
    "examples/bitagent-tasks-example": ("unit-conversion", "unit-conversion"),
}


def test_there_is_a_template_per_plugin_kind():
    kinds = {p.name for p in (ROOT / "examples" / "templates").iterdir() if p.is_dir()}
    assert kinds == {"task-source", "scorer", "backend", "reporter", "competition"}


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("clean") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    project_site = sysconfig.get_paths()["purelib"]
    (site / "_bitagent_project.pth").write_text(f"import site; site.addsitedir({project_site!r})\n")
    return python


def _run(args: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, cwd=cwd)


@pytest.mark.slow
@pytest.mark.parametrize("directory", sorted(PACKAGES))
def test_the_package_installs_and_works_in_a_clean_venv(directory, venv_python, tmp_path):
    entry_point, name = PACKAGES[directory]
    package = tmp_path / Path(directory).name
    shutil.copytree(ROOT / directory, package)  # build files land in the copy, not in the repository
    before = _run([venv_python, "-m", "bitagent_core", "plugins", "--json"])
    assert entry_point not in {row["name"] for row in json.loads(before.stdout)}, "not clean"
    pip = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv_python,
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-e",
            package,
        ]
    )
    assert pip.returncode == 0, pip.stderr
    listed = _run([venv_python, "-m", "bitagent_core", "plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows[entry_point]["error"] is None, rows[entry_point]
    assert rows[entry_point]["api_version"] == "1.0"
    check = _run([venv_python, "-m", "bitagent_core", "plugins", "check", name])
    assert check.returncode == 0 and "\n0 of " in f"\n{check.stdout}", check.stdout + check.stderr
    tests = _run([venv_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=package)
    assert tests.returncode == 0, tests.stdout + tests.stderr
