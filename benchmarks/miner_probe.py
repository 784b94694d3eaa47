"""The attack probe of issue 8 against a miner endpoint in its own process on 127.0.0.1 (RLIMIT_NOFILE 1024).

Phases: idle; ``SLOW`` slow-loris connections (a partial request head, then a byte every 2 s) while 20 valid
signed queries are made; for each count in ``--slow-body`` (300 and 1,000), that many reconnecting slow
uploads (a request head without auth headers, then a body byte every 2 s; reconnecting whenever closed) for
``--slow-body-seconds`` while a validator makes valid queries, 4 at a time, back to back: the share of them
served (goal >= 0.99); a ``--burst`` of valid queries at once, each on its own connection: how many were
answered 200, 503 (with Retry-After) or closed without an answer (goal 0); ``BIG`` connections each sending
100 header lines of 60 KB and no body; ``ROUNDS`` rounds of 50 concurrent valid queries. Measured with psutil
(the peak from /proc): the miner's RSS (now and peak), open fds, and the client's latencies (p50/p99) and
failures.

    .venv/bin/python benchmarks/miner_probe.py [--baseline-root DIR] [--slow 1000] [--slow-body 300,1000]
        [--burst 1000] [--big 50] [--rounds 5]

``--baseline-root`` runs the same probe first against another checkout's code (e.g. the commit before the
hardening: ``git archive b648af6 bitagent_core bitagent_plugins | tar -x -C /tmp/before``) and prints the
ratios after/before. Prints name=value lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

MINER = r"""
import json, sys, time
import attrs
from pathlib import Path
import bittensor as bt
from bitagent_plugins.subnet.protocol import MetagraphAuthorizer, SubmissionServer
wallet_dir, validator = sys.argv[1], sys.argv[2]
wallet = bt.Wallet("miner", "default", wallet_dir)
authorizer = MetagraphAuthorizer(20, require_permit=True)
authorizer.update({validator: True})
server = SubmissionServer(wallet, "acme/model@main", netuid=20, authorize=authorizer, host="127.0.0.1", port=0)
host, port = server.start()
print(f"{host}:{port}", flush=True)
for line in sys.stdin:  # "stats": the endpoint's counters as one JSON line; end of input: stop
    print(json.dumps(attrs.asdict(server.stats)), flush=True)
server.stop()
"""


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def _proc(pid: int) -> dict[str, int]:
    process = psutil.Process(pid)
    # psutil has no peak RSS; Linux keeps it as VmHWM
    peak_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmHWM:")
    )
    return {"rss_mb": process.memory_info().rss // 2**20, "peak_rss_mb": peak_kb // 1024, "fds": process.num_fds()}


async def _valid(wallet, miner_hotkey: str, address: str, n: int) -> tuple[list[float], int]:
    from bitagent_plugins.subnet.protocol import QueryFailed, query_submission
    from bitagent_plugins.subnet.protocol import _client as client_for

    times: list[float] = []
    failures = 0
    async with client_for(15, n) as client:

        async def one() -> None:
            nonlocal failures
            started = time.perf_counter()
            try:
                await asyncio.wait_for(
                    query_submission(client, wallet, hotkey=miner_hotkey, axon=address, netuid=20, allow_private=True),
                    15,
                )
                times.append(time.perf_counter() - started)
            except (QueryFailed, TimeoutError):
                failures += 1

        await asyncio.gather(*(one() for _ in range(n)))
    return times, failures


async def _valid_stream(
    wallet, miner_hotkey: str, address: str, seconds: float, parallel: int = 4
) -> tuple[int, int, list[float], dict[str, int]]:
    """Valid queries back to back, ``parallel`` at a time, for ``seconds``: (asked, served, latencies, why not)."""
    from bitagent_plugins.subnet.protocol import QueryFailed, query_submission
    from bitagent_plugins.subnet.protocol import _client as client_for

    asked = served = 0
    times: list[float] = []
    failures: dict[str, int] = {}
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal asked, served
        while time.monotonic() < deadline:
            asked += 1
            started = time.perf_counter()
            async with client_for(15, 1) as client:  # a fresh connection per query, as a validator makes
                try:
                    await asyncio.wait_for(
                        query_submission(
                            client, wallet, hotkey=miner_hotkey, axon=address, netuid=20, allow_private=True
                        ),
                        15,
                    )
                    served += 1
                    times.append(time.perf_counter() - started)
                except (QueryFailed, TimeoutError) as exc:
                    reason = getattr(exc, "reason", "timed out")[:40]
                    failures[reason] = failures.get(reason, 0) + 1

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return asked, served, times, failures


async def _burst(wallet, miner_hotkey: str, address: str, n: int) -> dict[str, int]:
    """``n`` valid queries at once, each on its own connection: how each ended."""
    import httpx
    from bittensor import http_auth

    from bitagent_plugins.subnet.protocol import SUBMISSION_PATH, hotkey_signer, request_body

    outcomes: dict[str, int] = {"200": 0, "503_retry_after": 0, "other_status": 0, "silent_close": 0}
    body = request_body(20)
    signer = hotkey_signer(wallet)

    async def one(client: httpx.AsyncClient) -> None:
        # signed right before it is sent, as a validator does (signing all 1,000 first takes seconds on a loaded
        # machine: their nonces went stale before they were sent)
        headers = http_auth.sign(signer, method="POST", path=SUBMISSION_PATH, body=body, receiver_ss58=miner_hotkey)
        try:
            response = await client.post(f"http://{address}{SUBMISSION_PATH}", content=body, headers=headers)
        except httpx.TimeoutException:
            outcomes["timeout"] = outcomes.get("timeout", 0) + 1
            return
        except httpx.HTTPError as exc:
            outcomes["silent_close"] += 1
            kind = f"silent_close_{type(exc).__name__}"
            outcomes[kind] = outcomes.get(kind, 0) + 1
            return
        if response.status_code == 200:
            outcomes["200"] += 1
        elif response.status_code == 503 and response.headers.get("retry-after"):
            outcomes["503_retry_after"] += 1
        else:
            outcomes["other_status"] += 1
            kind = f"status_{response.status_code}"
            outcomes[kind] = outcomes.get(kind, 0) + 1

    # one client, one connection per request (none kept alive): a client per request cost ~10 ms each to make
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, trust_env=False, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(n)))
    return outcomes


def _stats(proc: subprocess.Popen) -> dict[str, int]:
    """The miner endpoint's counters (``ServerStats``)."""
    proc.stdin.write("stats\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe(root: Path, args: argparse.Namespace, wallets: tuple, label: str) -> dict[str, float]:
    wallet_dir, validator, miner_hotkey = wallets
    env = dict(os.environ, PYTHONPATH=str(root), HOME=str(wallet_dir))
    proc = subprocess.Popen(
        [sys.executable, "-c", MINER, str(wallet_dir), validator.hotkey.ss58_address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        preexec_fn=_limit_fds,
        text=True,
        cwd=root,
    )  # ``-c`` imports from the cwd first
    out: dict[str, float] = {}
    try:
        address = proc.stdout.readline().strip()
        host, port = address.split(":")
        time.sleep(0.5)
        idle = _proc(proc.pid)
        out.update({f"idle_{k}": v for k, v in idle.items()})

        slow: list[socket.socket] = []
        for _ in range(args.slow):
            try:
                sock = socket.create_connection((host, int(port)), timeout=5)
                sock.sendall(b"POST /submission HTTP/1.1\r\nHost: x\r\n")
                slow.append(sock)
            except OSError:
                break
        opened = len(slow)
        max_fds = _proc(proc.pid)["fds"] if proc.poll() is None else -1
        times, failures = asyncio.run(_valid(validator, miner_hotkey, address, 20))  # during the attack
        deadline = time.monotonic() + args.slow_seconds
        while time.monotonic() < deadline:  # a byte every 2 s on every connection still open
            for sock in list(slow):
                try:
                    sock.send(b"X")
                except OSError:
                    slow.remove(sock)
            if proc.poll() is None:
                max_fds = max(max_fds, _proc(proc.pid)["fds"])
            time.sleep(2)
        end_fds = _proc(proc.pid)["fds"] if proc.poll() is None else -1
        out.update(
            {
                "slow_opened": opened,
                "slow_max_fds": max_fds,
                "slow_end_fds": end_fds,
                "slow_still_open": len(slow),
                "slow_valid_failures": failures,
                "slow_valid_p99_ms": round(1000 * _pct(times, 0.99), 1),
                "slow_server_alive": int(proc.poll() is None),
            }
        )
        for sock in slow:
            sock.close()
        time.sleep(1)

        from slow_clients import SlowBodies

        for n in args.slow_body:
            with SlowBodies((host, int(port)), n, interval_s=2.0) as attack:
                time.sleep(3)  # every slot taken, the attackers reconnecting
                asked, served, times, why = asyncio.run(
                    _valid_stream(validator, miner_hotkey, address, args.slow_body_seconds)
                )
                fds = _proc(proc.pid)["fds"] if proc.poll() is None else -1
            out.update(
                {
                    f"slowbody{n}_valid_asked": asked,
                    f"slowbody{n}_valid_served": served,
                    f"slowbody{n}_valid_served_share": round(served / asked, 4) if asked else float("nan"),
                    f"slowbody{n}_valid_p99_ms": round(1000 * _pct(times, 0.99), 1),
                    f"slowbody{n}_attacker_connects": attack.connects,
                    f"slowbody{n}_miner_fds": fds,
                    f"slowbody{n}_failures": json.dumps(why, sort_keys=True).replace(" ", ""),
                }
            )
            time.sleep(3)  # the last attackers' connections time out
        if args.burst:
            before = _stats(proc)
            burst = asyncio.run(_burst(validator, miner_hotkey, address, args.burst))
            out.update({f"burst{args.burst}_{k}": v for k, v in burst.items()})
            after = _stats(proc)
            out.update({f"burst{args.burst}_miner_{k}": after[k] - before.get(k, 0) for k in after})
            time.sleep(1)

        line = b"X-Pad: " + b"a" * 60_000 + b"\r\n"
        big: list[socket.socket] = []
        for _ in range(args.big):
            try:
                sock = socket.create_connection((host, int(port)), timeout=5)
                sock.sendall(b"POST /submission HTTP/1.1\r\nHost: x\r\n")
                for _ in range(100):
                    sock.sendall(line)
                big.append(sock)
            except OSError:
                continue
        time.sleep(0.5)
        after_big = _proc(proc.pid) if proc.poll() is None else {"rss_mb": -1, "peak_rss_mb": -1, "fds": -1}
        out.update({"big_rss_mb": after_big["rss_mb"], "big_peak_rss_mb": after_big["peak_rss_mb"]})
        for sock in big:
            sock.close()
        time.sleep(1)

        all_times: list[float] = []
        all_failures = 0
        for _ in range(args.rounds):
            times, failures = asyncio.run(_valid(validator, miner_hotkey, address, 50))
            all_times += times
            all_failures += failures
        out.update(
            {
                "c50_p50_ms": round(1000 * statistics.median(all_times), 1) if all_times else float("nan"),
                "c50_p99_ms": round(1000 * _pct(all_times, 0.99), 1),
                "c50_failures": all_failures,
            }
        )
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    for key, value in out.items():
        print(f"{label}{key}={value}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline-root", type=Path)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--slow-seconds", type=float, default=12)
    parser.add_argument(
        "--slow-body",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[300, 1000],
        help="counts of reconnecting slow uploads, comma-separated",
    )
    parser.add_argument("--slow-body-seconds", type=float, default=20)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--big", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # this side holds the attackers and the burst
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from subnet_helpers import make_wallet

    wallet_dir = Path(tempfile.mkdtemp(prefix="bitagent-probe-"))
    validator = make_wallet(wallet_dir, "validator")
    miner = make_wallet(wallet_dir, "miner")
    wallets = (wallet_dir, validator, miner.hotkey.ss58_address)
    here = Path(__file__).resolve().parents[1]
    after = probe(here, args, wallets, "")
    if args.baseline_root is not None:
        before = probe(args.baseline_root.resolve(), args, wallets, "baseline_")
        for key in ("slow_max_fds", "slow_end_fds", "big_peak_rss_mb", "c50_p99_ms"):
            if before.get(key) and before[key] > 0:
                print(f"{key}_ratio={after[key] / before[key]:.3f}")
    print("config=" + json.dumps(vars(args), default=str))


if __name__ == "__main__":
    main()
