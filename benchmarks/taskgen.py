"""How long the ``bitagent`` task source takes: parsing the catalog, and generating 1,000 tasks.

Run: ``.venv/bin/python benchmarks/taskgen.py``. Prints ``name=value`` lines (best of 5, seconds):

- ``catalog_load_s``: reading, validating and compiling the shipped catalog (uncached);
- ``taskgen_1000_s``: a fresh source generating 1,000 tasks, catalog already parsed (as in a run, where it
  is parsed once per process).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bitagent_plugins.tasks.bitagent_tasks import BitagentTaskSource, cached_catalog, load_catalog

REPEATS = 5
N_TASKS = 1000


def best_of(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    catalog_s = best_of(load_catalog)
    cached_catalog()  # parse once outside the generation timing

    def generate() -> None:
        tasks = list(BitagentTaskSource().tasks(seed=12345, limit=N_TASKS))
        assert len(tasks) == N_TASKS

    print(f"catalog_load_s={catalog_s:.6f}")
    print(f"taskgen_1000_s={best_of(generate):.6f}")


if __name__ == "__main__":
    main()
