"""``bitagent update`` installs only from a source the operator named and only a release whose wheel hash the
operator pinned; the README's install command works from this repository.

Real pip, real virtualenvs, wheels built here (tests/test_update.py builds them); nothing leaves 127.0.0.1:
every run has ``--no-index`` or a wheel directory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from test_update import BITAGENT, ROOT, build_release, env, run_update


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*BITAGENT, "update", "--root", str(tmp_path / "releases"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env(tmp_path),
        timeout=300,
    )


def test_update_without_a_named_source_installs_nothing(tmp_path):
    pin = ["--wheel-sha256", "0" * 64]
    for extra in ([], ["--auto-update", "--", "validate"]):
        done = _run(tmp_path, *pin, *extra)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "name where releases come from: --index-url URL" in done.stderr
        assert "pip's default index is never used" in done.stderr
    assert not (tmp_path / "releases" / "venvs").exists()
    assert not (tmp_path / "validator.log").exists()  # --auto-update started nothing


def test_update_without_a_pinned_hash_installs_nothing(tmp_path):
    build_release(tmp_path / "wheels", "0.1.0", pin=False)
    done = _run(tmp_path, "--find-links", str(tmp_path / "wheels"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pin the release: --wheel-sha256 HEX or --hash-file FILE" in done.stderr
    assert not (tmp_path / "releases" / "venvs").exists()


def test_a_release_whose_hash_is_not_pinned_is_not_installed(tmp_path):
    build_release(tmp_path / "wheels", "0.1.0")  # pinned
    assert run_update(tmp_path).returncode == 0
    build_release(tmp_path / "wheels", "0.2.0", pin=False)  # on the source, but nobody pinned it
    done = run_update(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"bitagent-0\.2\.0-py3-none-any\.whl has sha256 [0-9a-f]{64}, which is not pinned", done.stderr)
    assert [p.name.split("-")[0] for p in (tmp_path / "releases" / "venvs").iterdir()] == ["0.1.0"]
    release = json.loads((tmp_path / "releases" / "current" / "release.json").read_text())
    pinned = (tmp_path / "pinned.sha256").read_text().split()
    assert release["version"] == "0.1.0" and release["wheel_sha256"] == pinned[0]
    # a wheel directory alone never reaches pip's default index
    assert "--no-index" in release["source"]


def test_the_readme_install_command_works_from_this_repository(tmp_path):
    readme = (ROOT / "README.md").read_text()
    assert "pip install '.[subnet]'" in readme
    # pip resolves the checkout with its extra (metadata built by the project's own backend, no network)
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--report",
            str(report),
            ".[subnet]",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (item,) = json.loads(report.read_text())["install"]
    assert item["metadata"]["name"] == "bitagent" and item["requested_extras"] == ["subnet"]
    assert any(r.startswith("bittensor") and 'extra == "subnet"' in r for r in item["metadata"]["requires_dist"])
