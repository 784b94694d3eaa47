"""What a miner's llama.cpp score says about the validator's: the same weights on the two engines.

The embedded model (Qwen2.5-Coder-0.5B-Instruct) as its Q4_K_M GGUF on llama.cpp (what ``bitagent evaluate``
runs by default, what a miner tries locally) and as bf16 safetensors on vLLM (what a validator serves: a miner
submits the HF repo), on the same tasks (the ``bitagent`` competition's mix: generated bitagent tasks and BFCL-
derived ones), prompted as the validator does, temperature 0.

    .venv/bin/python benchmarks/engine_parity.py --vllm-python PY --vllm-model DIR [--tasks 120] [--seed 0]
        [--only llama-cpp|vllm]   # one side per call; a complete run of the other side is reused

``DIR``: the embedded model converted to an HF repo (tests/engine_helpers.py ``bf16_repo`` makes and caches it).
Prints ``name=value`` lines: ``agreement`` (share of tasks with the same pass/fail on both), ``mean_llama``,
``mean_vllm``, ``mean_diff`` (vLLM - llama.cpp, paired) with ``mean_diff_ci95_low``/``_high`` (normal
approximation of the paired differences), and the same per task source.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bitagent_core import Evaluation, RunConfig  # noqa: E402
from bitagent_core._plugins import get_registry  # noqa: E402


def emit(name: str, value: Any) -> None:
    if isinstance(value, float):
        value = f"{value:.4f}"
    print(f"{name}={value}", flush=True)


def finished(backend: str, args: argparse.Namespace) -> dict[str, dict[str, Any]] | None:
    """The samples of a complete earlier run of ``backend`` on the same tasks (``--only`` runs one side at a time)."""
    for results_path in sorted((args.run_dir / backend).glob("*/results.json"), reverse=True):
        results = json.loads(results_path.read_text())
        config = results.get("config") or {}
        same = config.get("limit") == args.tasks and config.get("seed") == args.seed
        if results.get("status") == "complete" and same:
            lines = (results_path.parent / "samples.jsonl").read_text().splitlines()
            return {record["task_id"]: record for record in map(json.loads, lines)}
    return None


async def run(
    backend: str, model: str | None, options: dict[str, str], args: argparse.Namespace, concurrency: int | None
) -> dict[str, dict[str, Any]]:
    earlier = finished(backend, args)
    if earlier is not None:
        return earlier
    config = RunConfig(
        tasks="competition:bitagent",
        backend=backend,
        model=model,
        scorer="bitagent",
        limit=args.tasks,
        seed=args.seed,
        output_dir=str(args.run_dir / backend),
        backend_options=options,
        tool_format="prompt",
        concurrency=concurrency,
        timeout_s=900.0,
    )
    evaluation = Evaluation(config, get_registry())
    results = await evaluation.run()
    if results.status != "complete":
        raise SystemExit(f"the {backend} run ended {results.status}: {results.error}")
    return {task_id: record.to_json() for task_id, record in evaluation.records.items()}


def paired(llama: list[float], vllm: list[float]) -> tuple[float, float]:
    """Mean of the paired differences (vLLM - llama.cpp) and the half-width of its 95 % interval."""
    diffs = [v - w for v, w in zip(vllm, llama, strict=True)]
    mean = statistics.fmean(diffs)
    half = 1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.inf
    return mean, half


def report(prefix: str, ids: list[str], llama: dict[str, dict[str, Any]], vllm: dict[str, dict[str, Any]]) -> None:
    def score(record: dict[str, Any]) -> float:
        return float(record.get("score") or 0.0) if record.get("status") == "ok" else 0.0

    def passed(record: dict[str, Any]) -> bool:
        return bool(record.get("passed")) and record.get("status") == "ok"

    a, b = [score(llama[i]) for i in ids], [score(vllm[i]) for i in ids]
    mean, half = paired(a, b)
    emit(f"{prefix}n_tasks", len(ids))
    emit(f"{prefix}agreement", sum(passed(llama[i]) == passed(vllm[i]) for i in ids) / len(ids))
    emit(f"{prefix}same_score", sum(x == y for x, y in zip(a, b, strict=True)) / len(ids))
    emit(f"{prefix}pass_llama", sum(passed(llama[i]) for i in ids) / len(ids))
    emit(f"{prefix}pass_vllm", sum(passed(vllm[i]) for i in ids) / len(ids))
    emit(f"{prefix}mean_llama", statistics.fmean(a))
    emit(f"{prefix}mean_vllm", statistics.fmean(b))
    emit(f"{prefix}mean_diff", mean)
    emit(f"{prefix}mean_diff_ci95_low", mean - half)
    emit(f"{prefix}mean_diff_ci95_high", mean + half)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vllm-python", required=True, help="the interpreter that has vLLM")
    parser.add_argument("--vllm-model", required=True, help="the embedded model as an HF safetensors folder")
    parser.add_argument("--tasks", type=int, default=120, help="tasks (the competition's mix)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "bench-engine-parity")
    parser.add_argument("--vllm-extra-args", default="", help="appended to vLLM's command (e.g. -O0: no torch.compile)")
    parser.add_argument(
        "--only",
        choices=("llama-cpp", "vllm"),
        help="run one side now (a complete run of the other is reused from --run-dir)",
    )
    args = parser.parse_args()
    emit("cpu_count", os.cpu_count() or 1)
    emit("loadavg_1m_at_start", os.getloadavg()[0])

    if args.only != "vllm":
        llama = await run("llama-cpp", None, {"n_threads": str(args.threads), "n_ctx": "4096"}, args, 1)
    if args.only != "llama-cpp":
        vllm = await run(
            "vllm",
            args.vllm_model,
            {
                "server_python": args.vllm_python,
                "kv_cache_gib": "2",
                "max_model_len": "8192",
                "ready_timeout": "900",
                "request_timeout": "900",
                "extra_args": args.vllm_extra_args,
            },
            args,
            8,
        )
    if args.only:
        return
    ids = sorted(set(llama) & set(vllm))
    if len(ids) < len(llama) or len(ids) < len(vllm):
        emit("unpaired_tasks", len(set(llama) ^ set(vllm)))
    report("", ids, llama, vllm)
    for source in sorted({str(llama[i].get("source")) for i in ids}):
        report(f"{source}_", [i for i in ids if str(llama[i].get("source")) == source], llama, vllm)
    emit("loadavg_1m_at_end", os.getloadavg()[0])


if __name__ == "__main__":
    asyncio.run(main())
