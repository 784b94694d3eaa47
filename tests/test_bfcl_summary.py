"""``bitagent bfcl-summary``: BFCL's leaderboard CSVs byte for byte against BFCL's own ``generate_leaderboard_csv``
(the installed wheel, in a side process: tests/bfcl_csv_side.py) over random accuracy tables, which runs count as
BFCL runs, and both irrelevance counts."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bitagent_plugins.bfcl.summary import COUNTS, CSV_FILES, format_sensitivity_configs

ROOT = Path(__file__).resolve().parent.parent
BITAGENT = str(Path(sys.executable).with_name("bitagent"))
MODEL = "bitagent-test"  # no underscore: BFCL maps "_" in model names to "/"


def bitagent(*args, check=True):
    done = subprocess.run([BITAGENT, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def random_table(rng: random.Random) -> dict:
    table = {}
    for category, full in COUNTS.items():
        if rng.random() < 0.3:
            continue  # not evaluated: BFCL counts it 0 and shows N/A
        n = rng.choice([full, rng.randint(1, full)])
        passed = rng.randint(0, n) if rng.random() < 0.9 else rng.choice([0, n])
        table[category] = {"accuracy": passed / n, "total_count": n}
    if rng.random() < 0.6:
        configs = format_sensitivity_configs()
        chosen = {cfg: {"accuracy": rng.randint(0, 200) / 200} for cfg in rng.sample(configs, rng.randint(1, 26))}
        values = [c["accuracy"] for c in chosen.values()]
        table["format_sensitivity"] = {
            "accuracy_max_delta": round((max(values) - min(values)) * 100, 2),
            "accuracy_std": round(rng.random() * 20, 2),
            **chosen,
        }
    return table


@pytest.mark.parametrize("seed", range(8))
def test_csvs_are_bfcls_own_byte_for_byte(tmp_path, seed):
    rng = random.Random(seed)
    table = random_table(rng) if seed else {}  # seed 0: nothing evaluated at all
    if seed == 1:
        table = {c: {"accuracy": 1.0, "total_count": n} for c, n in COUNTS.items()}  # everything, perfect
    accuracies = tmp_path / "acc.json"
    accuracies.write_text(json.dumps(table))
    theirs, ours = tmp_path / "bfcl", tmp_path / "ours"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bfcl_csv_side.py"), str(accuracies), str(theirs), MODEL],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(
        bitagent(
            "bfcl-summary", "--accuracies", str(accuracies), "--csv-dir", str(ours), "--model-name", MODEL, "--json"
        ).stdout
    )
    for name in CSV_FILES:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    overall = (theirs / "data_overall.csv").read_text().splitlines()[1].split(",")[1]
    assert overall == f"{summary['overall'] * 100:.2f}%"


def test_bfcl_overall_weights_and_na(tmp_path):
    accuracies = tmp_path / "acc.json"
    accuracies.write_text(
        json.dumps(
            {
                "simple_python": {"accuracy": 0.5405, "total_count": 400},
                "live_simple": {"accuracy": 0.5, "total_count": 258},
                "live_multiple": {"accuracy": 0.25, "total_count": 1053},
            }
        )
    )
    summary = json.loads(
        bitagent("bfcl-summary", "--accuracies", str(accuracies), "--json", "--csv-dir", str(tmp_path / "csv")).stdout
    )
    live = (0.5 * 258 + 0.25 * 1053) / (258 + 1053 + 16 + 24)  # count-weighted, missing ones 0 at full size
    non_live = (0.5405 / 3) / 4
    assert summary["aggregates"]["live"]["accuracy"] == pytest.approx(live, abs=1e-6)
    assert summary["aggregates"]["non_live"]["accuracy"] == pytest.approx(non_live, abs=1e-6)
    assert summary["overall"] == pytest.approx(0.1 * live + 0.1 * non_live, abs=1e-6)
    assert summary["format_sensitivity"] == {"max_delta": "N/A", "std": "N/A"}
    non_live_csv = (tmp_path / "csv" / "data_non_live.csv").read_text().splitlines()[1].split(",")
    assert non_live_csv[5] == "54.05%" and non_live_csv[3] == "N/A" and non_live_csv[6] == "N/A"
    bad = tmp_path / "bad.json"
    for text, message in (
        ('{"simple": {"accuracy": 1, "total_count": 1}}', "unknown BFCL category 'simple'"),
        ('{"multiple": {"accuracy": 2, "total_count": 1}}', "'accuracy' must be a number"),
        ('{"multiple": {"accuracy": 1}}', "'total_count' must be"),
        ("[", "cannot read"),
    ):
        bad.write_text(text)
        done = bitagent("bfcl-summary", "--accuracies", str(bad), check=False)
        assert done.returncode == 1 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def write_run(run_dir: Path, tasks: str, samples: list[dict], rescored_from: str | None = None) -> Path:
    run_dir.mkdir(parents=True)
    per: dict = {}
    for s in samples:
        stats = per.setdefault(s["category"], {"n": 0, "passed": 0, "mean_score": 0.0})
        stats["n"] += 1
        stats["passed"] += bool(s["passed"])
    (run_dir / "results.json").write_text(
        json.dumps(
            {
                "status": "COMPLETE",
                "config": {"tasks": tasks},
                "sources": {tasks: {"taken": len(samples)}},
                "per_category": per,
                "rescored_from": rescored_from,
                "scorer": {"name": "bfcl"},
            }
        )
    )
    (run_dir / "samples.jsonl").write_text("".join(json.dumps({"status": "ok", **s}) + "\n" for s in samples))
    return run_dir


def test_runs_are_bfcl_runs_by_their_task_source_not_their_name(tmp_path):
    demo = write_run(
        tmp_path / "demo_bfcl_rescored-bfcl",
        "bitagent",
        [{"task_id": "a", "source": "bitagent", "category": "irrelevance", "passed": True}],
    )
    refused = bitagent("bfcl-summary", str(demo), check=False)
    assert refused.returncode == 1
    assert "not a BFCL run (its task source is bitagent" in refused.stderr
    shuffle = write_run(
        tmp_path / "shuffle",
        "bfcl-shuffle",
        [{"task_id": "b", "source": "bfcl-shuffle", "category": "irrelevance", "passed": True}],
    )
    assert "not a BFCL run" in bitagent("bfcl-summary", str(shuffle), check=False).stderr
    real = write_run(
        tmp_path / "some-run",
        "bfcl:irrelevance",
        [{"task_id": f"i{k}", "source": "bfcl", "category": "irrelevance", "passed": k < 3} for k in range(4)],
    )
    rescored = write_run(
        tmp_path / "some-run_rescored-bfcl",
        "bfcl:irrelevance",
        [{"task_id": f"i{k}", "source": "bfcl", "category": "irrelevance", "passed": k < 2} for k in range(4)],
        rescored_from=str(real),
    )
    done = bitagent("bfcl-summary", str(demo), str(real), str(rescored), "--json")
    summary = json.loads(done.stdout)
    assert summary["categories"]["irrelevance"]["passed"] == 2  # the later run wins, and says so
    assert any("replaces" in note for note in summary["notes"])
    assert any("re-scoring of" in note for note in summary["notes"])
    assert summary["refused"] and "refused:" in done.stderr and "demo_bfcl_rescored-bfcl" in done.stderr
    mixed = write_run(
        tmp_path / "mixed",
        "bfcl:irrelevance,bitagent",
        [
            {"task_id": "m1", "source": "bfcl", "category": "irrelevance", "passed": True},
            {"task_id": "m2", "source": "bitagent", "category": "irrelevance", "passed": False},
        ],
    )
    results = json.loads((mixed / "results.json").read_text())
    results["sources"] = {"bfcl:irrelevance": {}, "bitagent": {}}
    (mixed / "results.json").write_text(json.dumps(results))
    counted = json.loads(bitagent("bfcl-summary", str(mixed), "--json").stdout)["categories"]["irrelevance"]
    assert (counted["n"], counted["passed"]) == (1, 1)  # only the bfcl samples of a mixed run


def test_both_irrelevance_counts(tmp_path):
    unreadable = {"breakdown": {"unparseable_call": 1.0}}
    strict = write_run(
        tmp_path / "strict",
        "bfcl:irrelevance",
        [
            {"task_id": "a", "source": "bfcl", "category": "irrelevance", "passed": True},
            {"task_id": "b", "source": "bfcl", "category": "irrelevance", "passed": True, **unreadable},
            {"task_id": "c", "source": "bfcl", "category": "irrelevance", "passed": False},
        ],
    )
    lenient = write_run(
        tmp_path / "lenient",
        "bfcl:irrelevance",
        [
            {"task_id": "a", "source": "bfcl", "category": "irrelevance", "passed": True},
            {"task_id": "b", "source": "bfcl", "category": "irrelevance", "passed": False, **unreadable},
            {"task_id": "c", "source": "bfcl", "category": "irrelevance", "passed": False},
        ],
    )
    for run_dir in (strict, lenient):
        counts = json.loads(bitagent("bfcl-summary", str(run_dir), "--json").stdout)["irrelevance_counts"]
        assert counts["irrelevance"] == {
            "n": 3,
            "unparseable_calls": 1,
            "passed_bfcl_rule": 2,
            "passed_bitagent_rule": 1,
        }
    table = bitagent("bfcl-summary", str(lenient)).stdout
    assert "1 of 3 answers tried to call but could not be read" in table
