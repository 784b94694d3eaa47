"""The BFCL data every validator must read: the pinned ``bfcl-eval`` release's, checked by digest.

Two validators that sample BFCL tasks from different data would score the same model differently. The
``[subnet]`` extra cannot depend on ``bfcl-eval`` (its dependencies are GBs of torch and vendor SDKs), so the
data comes from its wheel installed without them::

    pip install --no-deps bfcl-eval==2026.3.23      # `make install` does this

and the validator refuses to start unless the files it would read (``BFCL_v4_*.json`` and
``possible_answer/BFCL_v4_*.json``, wherever ``BITAGENT_BFCL_DATA`` or the installed wheel puts them) hash to
:data:`PINNED_DIGEST`. The Hub dataset is not accepted for validators: its files at a revision would have to
be fetched before they could be checked, and nothing here could verify a revision that matches the release.
Each evaluation records the digest of the data it read (``evaluations.data_digest``).

Read without importing ``bfcl_eval`` (``importlib.util.find_spec`` locates it), as the BFCL plugin does;
plugins never import each other, so the location rule is restated here in a few lines.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

PINNED_RELEASE = "2026.3.23"
#: sha256 over "<relative path>\0<sha256 of the file>\n" for every data file, sorted by path
PINNED_DIGEST = "sha256:70af9ee67e9753fc107c52f9545bb2e988c8b48afcf189f504af3131ab28dd71"
DATA_ENV = "BITAGENT_BFCL_DATA"
INSTALL_HINT = f"pip install --no-deps bfcl-eval=={PINNED_RELEASE}"


def data_dir() -> tuple[Path | None, str]:
    """The directory the BFCL task sources read, or None with why."""
    setting = os.environ.get(DATA_ENV, "").strip()
    if setting.startswith("hub"):
        return None, f"{DATA_ENV}={setting}: a validator reads the pinned release's data, not the Hub ({INSTALL_HINT})"
    if setting:
        path = Path(setting).expanduser()
        return (path, "") if path.is_dir() else (None, f"{DATA_ENV}={setting} is not a directory")
    try:
        spec = importlib.util.find_spec("bfcl_eval")
    except (ImportError, ValueError):
        spec = None
    for base in (spec.submodule_search_locations or []) if spec else []:
        data = Path(base) / "data"
        if (data / "possible_answer").is_dir():
            return data, ""
    return None, f"bfcl-eval is not installed ({INSTALL_HINT})"


def digest(directory: Path) -> str:
    files = sorted([*directory.glob("BFCL_v4_*.json"), *(directory / "possible_answer").glob("BFCL_v4_*.json")])
    h = hashlib.sha256()
    for path in files:
        with open(path, "rb") as f:
            h.update(
                f"{path.relative_to(directory).as_posix()}\0{hashlib.file_digest(f, 'sha256').hexdigest()}\n".encode()
            )
    return "sha256:" + h.hexdigest()


def check() -> tuple[str | None, str]:
    """``(digest, problem)``: the digest of the data in use, and a problem line unless it is the pinned one."""
    directory, why = data_dir()
    if directory is None:
        return None, why
    found = digest(directory)
    if found != PINNED_DIGEST:
        return found, (
            f"{directory} differs from bfcl-eval {PINNED_RELEASE}'s data ({found} != {PINNED_DIGEST}); "
            f"install the pinned data: {INSTALL_HINT}"
        )
    return found, ""
