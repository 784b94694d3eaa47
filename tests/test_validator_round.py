"""A whole validator round on this machine, every part real except the chain, which is bittensor 11's own
client over the ``Substrate`` seam (tests/chain_double.py):

* three ``bitagent mine`` processes on 127.0.0.1 (one commits on chain, two answer only through the signed
  endpoint), and more submissions committed on chain through the SDK's real write path;
* Hugging Face repos in a local cache built here and read by huggingface_hub with ``HF_HUB_OFFLINE=1``: one
  good GGUF repo holding the embedded model, and bad ones (wrong license, too large, custom code, pickle
  weights, no chat template), plus hostile and unknown names;
* ``bitagent validate --once`` as a process: the llama-cpp backend serves the good model, SQLite state;
* the exact ``set_mechanism_weights`` extrinsic is asserted.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chain_double import FileChain, new_chain
from click.testing import CliRunner
from subnet_helpers import (
    DRIVER,
    ROOT,
    TEST_PLUGINS,
    gguf_repo,
    hf_repo,
    make_wallet,
    safetensors_repo,
    start_miner,
    stop,
    subprocess_env,
    wait_for_file,
)

from bitagent_plugins.subnet.chain import Chain, conformed_weights, fit_to_max_weight_limit, version_key
from bitagent_plugins.subnet.state import ValidatorState
from bitagent_plugins.subnet.weights import quantize_u16, subnet_weights

NETUID = 20
SAMPLE = 3
#: the validator's plugins: the bitagent competition without the BFCL source (its long prompts take minutes
#: on 2 CPU cores); the mix with BFCL is covered by tests/test_competitions.py
PLUGINS = "llama-cpp,bitagent-tasks,bitagent-scorer,bitagent-competition,subnet,wandb-reporter"
#: the whole round's: the ``city-time`` competition (tests/plugins), whose one-tool prompts are a fifth of the
#: bitagent tasks' and on which the embedded model scores above zero on any sample, so the round always sets
#: weights (on the bitagent competition a private sample can score 0); a validator evaluates the bitagent
#: competition in tests/test_validator_scores.py
ROUND_PLUGINS = PLUGINS + ",city-time-competition"
MAX_WEIGHT_U16 = 45000
MIN_WEIGHTS = 3


class Payload:
    """Unpickling this runs a shell command: the pickle repo's weights, which must never be loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tree(root: Path, skip: tuple[Path, ...]) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        found.update(str((here / f).relative_to(root)) for f in filenames)
    return found


def _commit(chain_file: Path, wallet, text: str) -> None:
    async def main():
        async with Chain("local", NETUID, wallet=wallet, substrate=FileChain(chain_file)) as chain:
            result = await chain.commit(text)
            assert result.success, result.message

    asyncio.run(main())


@pytest.mark.model
def test_a_whole_round(tmp_path, embedded_model):
    names = [
        "validator",
        "good",
        "copycat",
        "license",
        "big",
        "code",
        "pickle",
        "notemplate",
        "ghost",
        "traversal",
        "lookalike",
        "revision",
        "idle",
    ]
    wallet_dir = tmp_path / "wallets"
    wallets = {name: make_wallet(wallet_dir, name) for name in names}
    hk = {name: w.hotkey.ss58_address for name, w in wallets.items()}
    uid = {name: i for i, name in enumerate(names)}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        # the copycat registered after the original committed: a miner without a commitment is dated at its
        # registration block (the same for every validator), so the original keeps the credit
        neurons=[
            {"hotkey": hk[n], "validator_permit": n == "validator", "stake": 5000 if n == "validator" else 0}
            | ({"block_at_registration": 100_000} if n == "copycat" else {})
            for n in names
        ],
        hyperparameters={"MinAllowedWeights": MIN_WEIGHTS, "MaxWeightsLimit": MAX_WEIGHT_U16},
    )

    markers = tmp_path / "markers"
    markers.mkdir()
    cache = tmp_path / "hf-cache"
    evil_code = f"open({str(markers / 'code-ran')!r}, 'w').write('x')\n".encode()
    sha = {
        "good": hf_repo(cache, "acme/good", gguf_repo(embedded_model)),
        "license": hf_repo(cache, "acme/license", safetensors_repo(license_="llama3")),
        "big": hf_repo(cache, "acme/big", safetensors_repo(shapes={"w": [200_000, 100_000]}, with_data=False)),
        "code": hf_repo(
            cache,
            "acme/code",
            safetensors_repo(
                extra={
                    "modeling_evil.py": evil_code,
                    "config.json": b'{"auto_map": {"AutoModel": "modeling_evil.Evil"}}',
                }
            ),
        ),
        "pickle": hf_repo(
            cache,
            "acme/pickle",
            {  # pickle weights only (beside safetensors they are ignored)
                **{k: v for k, v in safetensors_repo().items() if k != "model.safetensors"},
                "pytorch_model.bin": pickle.dumps(Payload(markers / "pickle-ran")),
            },
        ),
        "notemplate": hf_repo(cache, "acme/notemplate", safetensors_repo(chat_template=False)),
    }
    expected_reasons = {
        "license": "license 'llama3'",
        "big": "parameters exceeds",
        "code": "custom code",
        "pickle": "weights only in pickle format",
        "notemplate": "no chat template",
    }

    # on chain, through the SDK's real commitment path
    for name in ("big", "code", "pickle"):
        _commit(chain_file, wallets[name], f"acme/{name}@{sha[name]}")
    _commit(chain_file, wallets["notemplate"], "acme/notemplate")  # a branch: locked to its sha by the validator
    _commit(chain_file, wallets["ghost"], "ghost/missing")
    _commit(chain_file, wallets["traversal"], "../../../etc/passwd")
    _commit(chain_file, wallets["lookalike"], "\u0430cme/good")  # Cyrillic a
    _commit(chain_file, wallets["revision"], "acme/good@../../../../tmp/x")

    miners = []
    try:
        # the good model committed on chain (first), a copycat and a bad license through the endpoint only
        miners.append(
            start_miner(
                tmp_path,
                chain=chain_file,
                wallet_dir=wallet_dir,
                name="good",
                model=f"acme/good@{sha['good']}",
                netuid=NETUID,
            )
        )
        wait_for_file(miners[0][1], miners[0][0])
        for name, model in (("copycat", f"acme/good@{sha['good']}"), ("license", "acme/license")):
            proc, ready = start_miner(
                tmp_path,
                chain=chain_file,
                wallet_dir=wallet_dir,
                name=name,
                model=model,
                netuid=NETUID,
                extra=["--no-commit"],
            )
            miners.append((proc, ready))
        for proc, ready in miners:
            wait_for_file(ready, proc)
        state = FileChain(chain_file).state()
        assert hk["copycat"] not in state["commitments"] and hk["license"] not in state["commitments"]
        assert all(state["neurons"][uid[n]]["axon"] for n in ("good", "copycat", "license"))

        state_dir = tmp_path / "validator"
        before = _tree(tmp_path, skip=(state_dir, tmp_path / "home"))
        cache_before = _tree(cache, skip=())
        log_path = tmp_path / "validator.log"
        with open(log_path, "w") as log:
            validator = subprocess.run(
                [
                    sys.executable,
                    str(DRIVER),
                    "validate",
                    "--chain-file",
                    str(chain_file),
                    "--",
                    "--netuid",
                    str(NETUID),
                    "--subtensor.network",
                    "local",
                    "--wallet.name",
                    "validator",
                    "--wallet.path",
                    str(wallet_dir),
                    "--backend",
                    "llama-cpp",
                    "-B",
                    "n_threads=2",
                    "-B",
                    "n_ctx=2048",
                    "--sample-size",
                    str(SAMPLE),
                    "--cache-dir",
                    str(cache),
                    "--hf-offline",
                    "--state-path",
                    str(state_dir / "state.sqlite"),
                    "--allow-private-axons",
                    "--sync-interval",
                    "5",
                    "--once",
                    "--max-download-bytes",
                    "2000000000",
                    "--reevaluate-blocks",
                    "0",
                    "--competition",
                    "city-time",
                ],
                cwd=ROOT,
                env=subprocess_env(tmp_path, BITAGENT_PLUGINS=ROUND_PLUGINS, PYTHONPATH=str(TEST_PLUGINS)),
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
        output = log_path.read_text()
        assert validator.returncode == 0, output[-4000:]
    finally:
        for proc, _ in miners:
            stop(proc)
    assert all(proc.returncode == 0 for proc, _ in miners)

    with ValidatorState(state_dir / "state.sqlite") as db:
        assert db.check() == []
        submissions = {row.hotkey: row for row in db.submissions()}
        # the hostile and unknown names were refused before anything was looked up or stored
        assert set(submissions) == {
            hk[n] for n in ("good", "copycat", "license", "big", "code", "pickle", "notemplate")
        }
        assert submissions[hk["good"]].committed_block < submissions[hk["copycat"]].committed_block
        assert submissions[hk["copycat"]].sha == sha["good"]
        assert submissions[hk["notemplate"]].sha == sha["notemplate"]
        for name, reason in expected_reasons.items():
            vetted = db.vetting(f"acme/{name}@{sha[name]}")
            assert vetted is not None and not vetted.ok and reason in vetted.reason, (name, vetted)
        (evaluation,) = db.evaluations()
        assert evaluation.model_key == f"acme/good@{sha['good']}" and evaluation.status == "done"
        assert evaluation.n_tasks == SAMPLE and 0 < evaluation.score <= 1
        (round_,) = db.rounds()
        assert round_.status == "done"
        competition_version = evaluation.competition_version
        history = db.weights_history()

    for name, why in (
        ("ghost", "cannot lock ghost/missing"),
        ("traversal", "invalid submission"),
        ("lookalike", "non-ASCII character U+0430"),
        ("revision", "invalid submission"),
    ):
        assert any(hk[name] in line and why in line for line in output.splitlines()), (name, output[-3000:])

    # the exact weights: the good model's score, zero for the rest, through the competition's rule; only the
    # uids with a scored submission get weights (not the validator, nor the unknown or hostile names)
    scores = {uid[n]: 0.0 for n in ("copycat", "license", "big", "code", "pickle", "notemplate")}
    scores[uid["good"]] = evaluation.score
    weights, forced = subnet_weights(
        scores,
        n_uids=len(names),
        own_uid=uid["validator"],
        min_allowed_weights=MIN_WEIGHTS,
        max_weight_limit=MAX_WEIGHT_U16 / 65535,
        rule="cubic",
    )
    assert forced == [] and set(weights) == set(scores)
    uids, values = quantize_u16(weights)
    expected = (uids, fit_to_max_weight_limit(uids, values, MAX_WEIGHT_U16))
    assert conformed_weights(*expected, MAX_WEIGHT_U16 / 65535) == expected  # SetWeights sends it unchanged
    assert 65535 * 65535 <= MAX_WEIGHT_U16 * sum(expected[1])  # and the runtime accepts it
    submitted = FileChain(chain_file).weights_submitted()
    assert [(s["signer"], s["dests"], s["weights"], s["version_key"]) for s in submitted] == [
        (hk["validator"], expected[0], expected[1], version_key())
    ]
    assert max(expected[1]) == 65535 and expected[0][expected[1].index(65535)] == uid["good"]
    (recorded,) = history
    assert recorded.submitted and (recorded.uids, recorded.weights) == (expected[0], [float(v) for v in expected[1]])
    assert recorded.competition_version == competition_version

    # nothing ran, nothing was written outside the cache, and the models are gone from it
    assert list(markers.iterdir()) == []
    assert _tree(tmp_path, skip=(state_dir, tmp_path / "home", cache)) - before <= {"validator.log"}, (
        "files written outside the cache"
    )
    assert _tree(cache, skip=()) <= cache_before
    assert not (cache / "models--acme--good" / "snapshots" / sha["good"]).exists()
    runs = [run for run in (state_dir / "runs").iterdir() if run.name != "feedback"]
    assert len(runs) == 1 and (runs[0] / "samples.jsonl").read_text().count("\n") == SAMPLE

    # the miners' feedback, written once the round was over: the good model's and its copycat's
    folder = state_dir / "runs" / "feedback" / f"round-{round_.id}"
    files = {path.name: json.loads(path.read_text()) for path in folder.iterdir()}
    assert set(files) == {f"uid-{uid[n]}-{hk[n]}.json" for n in ("good", "copycat")}
    good = files[f"uid-{uid['good']}-{hk['good']}.json"]
    assert good["credited"] and good["score"] == evaluation.score and good["model"] == f"acme/good@{sha['good']}"
    assert len(good["tasks"]) == SAMPLE and all(
        {"task_id", "messages", "answer", "score"} <= set(t) for t in good["tasks"]
    )
    assert not files[f"uid-{uid['copycat']}-{hk['copycat']}.json"]["credited"]
    # what an operator reads: every phase with its timing
    for phase in (
        "start checks done",
        "sync: block",
        "submissions:",
        "vetting passed",
        "downloaded",
        "evaluation started",
        "responses",
        "moving average now",
        "weights for",
        "removed from the cache",
        "feedback:",
        "round 1 done",
    ):
        assert phase in output, phase


def test_validate_help_lists_every_option_with_its_environment_variable():
    from bitagent_plugins.subnet.plugin import mine_command, validate_command

    for command in (validate_command(), mine_command()):
        result = CliRunner().invoke(command, ["--help"], terminal_width=200)
        assert result.exit_code == 0
        for param in command.params:
            if param.name == "help":
                continue
            assert param.envvar and param.envvar.startswith("BITAGENT_"), param.name
            assert f"env var: {param.envvar}" in " ".join(result.output.split()), param.name
    text = " ".join(CliRunner().invoke(validate_command(), ["--help"], terminal_width=200).output.split())
    for flag in (
        "--netuid",
        "--subtensor.network",
        "--subtensor.chain_endpoint",
        "--wallet.name",
        "--wallet.hotkey",
        "--wallet.path",
        "--logging.debug",
        "--cache-dir, --validator-hf-cache-dir",
        "--backend",
        "--competition",
        "--dry-run",
        "--state-path",
        "--epoch-length",
        "--visible-devices",
        "--server-python",
        "--mem-fraction-static",
        "--neuron.device",
        "--log_level",
        "--check",
        "--skip-start-check",
        "--reevaluate-blocks",
        "--ema-alpha",
        "--heartbeat",
    ):
        assert flag in text, flag
    mine_text = " ".join(CliRunner().invoke(mine_command(), ["--help"], terminal_width=200).output.split())
    assert "--hf-model-name, --miner-hf-model-name-to-submit" in mine_text


@pytest.mark.model
def test_syncs_and_weights_keep_their_schedule_while_a_model_is_evaluated(tmp_path, embedded_model, monkeypatch):
    """Two models in one round; while the second is being evaluated, the loop keeps syncing and sets weights
    (from the first one's score) every ``epoch_length`` blocks. On the ``city-time`` competition
    (tests/plugins): the first model's score is above zero on any sample, so there are weights to set."""
    from bitagent_core import _plugins as plugins
    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    monkeypatch.syspath_prepend(str(TEST_PLUGINS))
    monkeypatch.setenv(
        "BITAGENT_PLUGINS", "llama-cpp,bitagent-scorer,bitagent-competition,subnet,city-time-competition"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    plugins.reset_registry()
    names = ["validator", "first", "second"]
    wallets = {name: make_wallet(tmp_path / "wallets", name) for name in names}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        block_time=0.2,
        neurons=[{"hotkey": wallets[n].hotkey.ss58_address, "validator_permit": n == "validator"} for n in names],
    )
    cache = tmp_path / "hf-cache"
    for name in ("first", "second"):
        # two models the validator does not take for copies: the test cache names a file's blob by its path
        # (hashing 491 MB for each test is too slow), so the second's GGUF is a link under another path
        model = tmp_path / f"{name}.gguf"
        try:
            os.link(embedded_model, model)
        except OSError:
            shutil.copyfile(embedded_model, model)
        sha = hf_repo(cache, f"acme/{name}", gguf_repo(model))
        _commit(chain_file, wallets[name], f"acme/{name}@{sha}")
        time.sleep(0.3)  # the second commits at a later block, so it is evaluated second
    config = ValidatorConfig(
        netuid=NETUID,
        network="local",
        state_path=tmp_path / "state" / "state.sqlite",
        cache_dir=cache,
        backend="llama-cpp",
        backend_options={"n_threads": "2", "n_ctx": "2048"},
        competition="city-time",
        sample_size=2,
        hf_offline=True,
        epoch_length=3,
        sync_interval=2,
        max_rounds=1,
        max_download_bytes=2 * 10**9,
    )
    try:
        validator = Validator(config, substrate=FileChain(chain_file), wallet=wallets["validator"])
        assert asyncio.run(validator.run()) == 0
    finally:
        plugins.reset_registry()
    events = list(validator.events)
    kinds = [kind for kind, _ in events]
    starts = [i for i, (kind, _) in enumerate(events) if kind == "eval-start"]
    ends = [i for i, (kind, _) in enumerate(events) if kind == "eval-end"]
    assert len(starts) == len(ends) == 2 and events[starts[1]][1].startswith("acme/second@")
    during_first = kinds[starts[0] : ends[0]]
    during_second = kinds[starts[1] : ends[1]]
    assert "sync" in during_first and "sync" in during_second
    assert "weights" in during_second  # set from the first model's score while the second ran
    submitted = FileChain(chain_file).weights_submitted()
    assert submitted and (submitted[0]["dests"], submitted[0]["weights"]) == ([1], [65535])
    # one round, one seed: both models answered the same sample
    with ValidatorState(config.state_path) as db:
        (round_,) = db.rounds()
        runs = [Path(e.run_dir) for e in db.evaluations()]
    samples = [
        [json.loads(line)["task_id"] for line in (run / "samples.jsonl").read_text().splitlines()] for run in runs
    ]
    assert len(samples) == 2 and sorted(samples[0]) == sorted(samples[1]) and len(samples[0]) == 2
    assert {json.loads((run / "results.json").read_text())["seed"] for run in runs} == {round_.seed}


@pytest.mark.slow
def test_dry_run_records_weights_without_submitting_and_sigterm_stops_it(tmp_path, monkeypatch):
    """A continuous validator process with ``--dry-run``: it vets (two bad submissions), computes weights on
    schedule (from a score an earlier run left in the state) and records them unsubmitted; SIGTERM ends it
    cleanly."""
    from bitagent_core import _plugins as plugins
    from bitagent_core import competition_version as effective_version
    from bitagent_plugins.competitions import get_competition

    names = ["validator", "a", "b", "scored"]
    wallet_dir = tmp_path / "wallets"
    wallets = {name: make_wallet(wallet_dir, name) for name in names}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[{"hotkey": wallets[n].hotkey.ss58_address, "validator_permit": n == "validator"} for n in names],
    )
    cache = tmp_path / "hf-cache"
    for name, files in (("a", safetensors_repo(license_="llama3")), ("b", safetensors_repo(chat_template=False))):
        _commit(chain_file, wallets[name], f"acme/{name}@{hf_repo(cache, f'acme/{name}', files)}")
    state = tmp_path / "validator" / "state.sqlite"
    monkeypatch.setenv("BITAGENT_PLUGINS", PLUGINS)
    plugins.reset_registry()
    try:
        registry = plugins.get_registry()
        version = effective_version(get_competition(registry, "bitagent"), registry)
    finally:
        plugins.reset_registry()
    with ValidatorState(state) as db:  # "scored": scored 0.5 in an earlier round
        db.sync_neurons({i: wallets[n].hotkey.ss58_address for i, n in enumerate(names)}, 900)
        db.upsert_submission(wallets["scored"].hotkey.ss58_address, 3, "acme/scored", None, "e" * 40, 900)
        db.record_vetting("acme/scored@" + "e" * 40, True, "ok")
        assert db.claim_evaluation("acme/scored@" + "e" * 40, "bitagent", version)
        db.finish_evaluation("acme/scored@" + "e" * 40, "bitagent", version, score=0.5, n_tasks=1000, block=900)
    log_path = tmp_path / "validator.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(DRIVER),
            "validate",
            "--chain-file",
            str(chain_file),
            "--",
            "--netuid",
            str(NETUID),
            "--subtensor.network",
            "local",
            "--wallet.name",
            "validator",
            "--wallet.path",
            str(wallet_dir),
            "--backend",
            "llama-cpp",
            "--cache-dir",
            str(cache),
            "--hf-offline",
            "--state-path",
            str(state),
            "--sync-interval",
            "2",
            "--epoch-length",
            "3",
            "--dry-run",
            "--reevaluate-blocks",
            "0",
            "--max-download-bytes",
            "2000000000",
        ],
        cwd=ROOT,
        env=subprocess_env(tmp_path, BITAGENT_PLUGINS=PLUGINS),
        stdout=open(log_path, "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if state.exists():
                with ValidatorState(state) as db:
                    if len(db.weights_history()) >= 2:
                        break
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
    finally:
        stop(proc)
    with ValidatorState(state) as db:
        history = db.weights_history()
        assert len(history) >= 2 and not any(row.submitted for row in history)
        assert all(row.result == "dry run: not submitted" for row in history)
        assert history[0].uids == [3]  # the scored model's uid; not the vetted-out (0), nor the validator's
        assert db.check() == []
    assert FileChain(chain_file).weights_submitted() == []


def test_no_positive_score_sets_no_weights(tmp_path, monkeypatch, caplog):
    """Every scored model scored 0: nothing is set (a vector over zeros would reward copies and vetted-out
    models), the round still ends well, and the log says why."""
    from bitagent_core import _plugins as plugins
    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    monkeypatch.setenv("BITAGENT_PLUGINS", PLUGINS)
    plugins.reset_registry()
    names = ["validator", "a", "b"]
    wallets = {name: make_wallet(tmp_path / "wallets", name) for name in names}
    hotkeys = {n: wallets[n].hotkey.ss58_address for n in names}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[{"hotkey": hotkeys[n], "validator_permit": n == "validator"} for n in names],
    )
    config = ValidatorConfig(
        netuid=NETUID,
        network="local",
        state_path=tmp_path / "state.sqlite",
        cache_dir=tmp_path / "hf-cache",
        backend="llama-cpp",
        hf_offline=True,
        once=True,
        sync_interval=2,
        max_download_bytes=10**9,
    )
    try:
        validator = Validator(config, substrate=FileChain(chain_file), wallet=wallets["validator"])
        with ValidatorState(tmp_path / "state.sqlite") as db:  # both scored 0 in an earlier round
            db.sync_neurons({i: hotkeys[n] for i, n in enumerate(names)}, 900)
            for uid, name in ((1, "a"), (2, "b")):
                key = f"acme/{name}@" + str(uid) * 40
                db.upsert_submission(hotkeys[name], uid, f"acme/{name}", None, str(uid) * 40, 900)
                db.record_vetting(key, True, "ok")
                assert db.claim_evaluation(key, "bitagent", validator.version)
                db.finish_evaluation(key, "bitagent", validator.version, score=0.0, n_tasks=9, block=9)
        with caplog.at_level("INFO"):
            assert asyncio.run(validator.run()) == 0
    finally:
        plugins.reset_registry()
    assert "weights: no uid has a positive score yet; nothing set" in caplog.text
    assert FileChain(chain_file).weights_submitted() == []
    with ValidatorState(tmp_path / "state.sqlite") as db:
        assert db.scores_by_hotkey("bitagent", validator.version) == {hotkeys["a"]: 0.0, hotkeys["b"]: 0.0}
        assert not any(row.submitted for row in db.weights_history())


def test_a_subnet_requiring_a_newer_version_key_gets_no_weights(tmp_path, monkeypatch):
    import attrs

    from bitagent_core import _plugins as plugins
    from bitagent_plugins.subnet.failures import EXIT_CHECK_FAILED
    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    monkeypatch.setenv("BITAGENT_PLUGINS", PLUGINS)
    plugins.reset_registry()
    names = ["validator", "a"]
    wallets = {name: make_wallet(tmp_path / "wallets", name) for name in names}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[{"hotkey": wallets[n].hotkey.ss58_address, "validator_permit": n == "validator"} for n in names],
        hyperparameters={"WeightsVersionKey": version_key() + 1},
    )
    cache = tmp_path / "hf-cache"
    _commit(chain_file, wallets["a"], f"acme/a@{hf_repo(cache, 'acme/a', safetensors_repo(license_='llama3'))}")
    config = ValidatorConfig(
        netuid=NETUID,
        network="local",
        state_path=tmp_path / "state.sqlite",
        cache_dir=cache,
        backend="llama-cpp",
        hf_offline=True,
        once=True,
        sync_interval=2,
        max_download_bytes=10**9,
    )
    try:
        validator = Validator(config, substrate=FileChain(chain_file), wallet=wallets["validator"])
        with ValidatorState(tmp_path / "state.sqlite") as db:  # a score from an earlier round: weights to set
            db.sync_neurons({0: wallets["validator"].hotkey.ss58_address, 1: wallets["a"].hotkey.ss58_address}, 900)
            db.upsert_submission(wallets["a"].hotkey.ss58_address, 1, "acme/old", None, "e" * 40, 900)
            db.record_vetting("acme/old@" + "e" * 40, True, "ok")
            assert db.claim_evaluation("acme/old@" + "e" * 40, "bitagent", validator.version)
            db.finish_evaluation("acme/old@" + "e" * 40, "bitagent", validator.version, score=0.5, n_tasks=9, block=9)
        # the start check sees it first: the chain would refuse this validator's weights, so it does not start
        assert asyncio.run(validator.run()) == EXIT_CHECK_FAILED
        assert FileChain(chain_file).weights_submitted() == []
        validator = Validator(
            attrs.evolve(config, skip_start_check=True), substrate=FileChain(chain_file), wallet=wallets["validator"]
        )
        assert asyncio.run(validator.run()) == 1  # --once: the round's weights could not be set
    finally:
        plugins.reset_registry()
    with ValidatorState(tmp_path / "state.sqlite") as db:
        (row,) = db.weights_history()
        assert not row.submitted and "requires weights version" in row.result
    assert FileChain(chain_file).weights_submitted() == []


def test_options_that_do_not_apply_to_the_backend_are_refused_at_start():
    from bitagent_plugins.subnet.plugin import validate_command

    result = CliRunner().invoke(validate_command(), ["--backend", "llama-cpp", "--mem-fraction-static", "0.5"])
    assert result.exit_code == 2 and "does not apply to the llama-cpp backend" in result.output
    result = CliRunner().invoke(validate_command(), ["--backend", "llama-cpp", "-B", "n_threads=2", "-B", "warp=9"])
    assert result.exit_code == 2 and "has no option 'warp'" in result.output
    result = CliRunner().invoke(validate_command(), ["--backend", "nope"])
    assert result.exit_code == 2 and "unknown backend 'nope'" in result.output


def test_upstreams_device_and_log_level_flags():
    from bitagent_plugins.subnet.plugin import _device, validate_command

    assert _device("cuda:1", None, "sglang") == "1"
    assert _device("cuda", "0", "vllm") == "0" and _device("cpu", None, "llama-cpp-server") is None
    assert _device("cuda:1", None, "llama-cpp") is None  # in-process llama.cpp: not a server's GPU
    for args, message in (
        (["--neuron.device", "cpu"], "needs a GPU"),
        (["--neuron.device", "tpu"], "expected cpu"),
        (["--neuron.device", "cuda:1", "--visible-devices", "0"], "not among the 1 visible"),
        (["--log_level", "LOUD"], "Invalid value for '--log_level'"),
    ):
        result = CliRunner().invoke(validate_command(), ["--backend", "sglang", *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)


def test_the_pm2_ecosystem_sets_only_variables_the_commands_read():
    import re

    from bitagent_plugins.subnet.plugin import mine_command, validate_command

    text = (ROOT / "ecosystem.config.js").read_text()
    blocks = dict(re.findall(r'name: "(bitagent-\w+)",(.*?)\n    \}', text, re.S))
    assert set(blocks) == {"bitagent-validator", "bitagent-miner"}
    for name, command in (("bitagent-validator", validate_command()), ("bitagent-miner", mine_command())):
        readable = {p.envvar for p in command.params if p.envvar}
        used = set(re.findall(r"(BITAGENT_[A-Z_]+):", blocks[name]))
        assert used and used <= readable, used - readable
        assert f'args: "{name.split("-")[1].replace("validator", "validate").replace("miner", "mine")}"' in blocks[name]


def test_a_new_competition_version_regrades_every_model(tmp_path, monkeypatch):
    """Evaluations are keyed by the competition's effective version: when it changes, every model is
    evaluated again and only the new version's scores make weights."""
    from bitagent_core import _plugins as plugins
    from bitagent_plugins.subnet.validator import Validator, ValidatorConfig

    monkeypatch.setenv("BITAGENT_PLUGINS", PLUGINS)
    plugins.reset_registry()
    wallets = {name: make_wallet(tmp_path / "wallets", name) for name in ("validator", "a")}
    chain_file = new_chain(
        tmp_path / "chain.json",
        netuid=NETUID,
        neurons=[{"hotkey": wallets[n].hotkey.ss58_address, "validator_permit": n == "validator"} for n in wallets],
    )
    state_path = tmp_path / "state.sqlite"
    try:
        old = Validator(
            ValidatorConfig(
                netuid=NETUID,
                network="local",
                state_path=state_path,
                cache_dir=tmp_path,
                backend="llama-cpp",
                sample_size=5,
            ),
            substrate=FileChain(chain_file),
            wallet=wallets["validator"],
        )
        new = Validator(
            ValidatorConfig(
                netuid=NETUID,
                network="local",
                state_path=state_path,
                cache_dir=tmp_path,
                backend="llama-cpp",
                sample_size=6,
            ),
            substrate=FileChain(chain_file),
            wallet=wallets["validator"],
        )
    finally:
        plugins.reset_registry()
    assert old.version != new.version and ";n=6;" in new.version and ";n=5;" in old.version
    hotkey = wallets["a"].hotkey.ss58_address
    key = "acme/a@" + "c" * 40
    with ValidatorState(state_path) as db:
        db.sync_neurons({0: wallets["validator"].hotkey.ss58_address, 1: hotkey}, 1000)
        db.upsert_submission(hotkey, 1, "acme/a", None, "c" * 40, 1000)
        db.record_vetting(key, True, "ok")
        assert db.claim_evaluation(key, "bitagent", old.version)
        db.finish_evaluation(key, "bitagent", old.version, score=0.9, n_tasks=5)
        for validator in (old, new):
            validator._build_parts(db)
        assert old._pending_jobs() == []
        assert [job.key for job in new._pending_jobs()] == [key]  # regraded under the new version
        assert db.scores_by_hotkey("bitagent", new.version) == {}  # the old score does not count
        assert db.claim_evaluation(key, "bitagent", new.version)
        db.finish_evaluation(key, "bitagent", new.version, score=0.4, n_tasks=6)
        assert new._pending_jobs() == [] and db.scores_by_hotkey("bitagent", new.version) == {hotkey: 0.4}
