"""Run by bittensor 10.5.0's Python (a side virtualenv, see ``tests/test_legacy_interop.py``); never imports bitagent.

``dendrite``: query one axon with the upstream ``GetHFModelName`` synapse through a real ``bt.Dendrite``, print
the result as JSON. ``axon``: serve a miner written the upstream subnet's way (its ``GetHFModelName`` synapse
class, forward / blacklist / priority functions attached to a real ``bt.Axon``) on 127.0.0.1 until stdin closes.
"""

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Optional, Tuple  # noqa: UP035 - the Axon compares signatures with typing.Tuple

import bittensor as bt
from bittensor.utils import networking

# the Dendrite and the Axon ask public services for our address at construction: keep everything offline
networking.get_external_ip = lambda: "203.0.113.7"


class GetHFModelName(bt.Synapse):
    """The upstream subnet's synapse (``bitagent/protocol.py``)."""

    hf_model_name: Optional[str] = None  # noqa: UP045 - as upstream wrote it


def dendrite(args: argparse.Namespace) -> None:
    wallet = bt.Wallet(name=args.wallet, hotkey="default", path=args.wallet_path)
    axon = bt.AxonInfo(version=0, ip=args.ip, port=args.port, ip_type=4, hotkey=args.miner_hotkey, coldkey="x")
    client = bt.Dendrite(wallet=wallet)

    async def ask():
        try:
            return await client.forward(axons=[axon], synapse=GetHFModelName(), deserialize=False, timeout=args.timeout)
        finally:
            await client.aclose_session()

    results = []
    for _ in range(args.repeat):
        response = asyncio.run(ask())[0]
        results.append(
            {
                "hf_model_name": response.hf_model_name,
                "status_code": response.dendrite.status_code,
                "status_message": response.dendrite.status_message,
                "axon_hotkey": response.axon.hotkey,
            }
        )
    print(json.dumps(results))


class UpstreamMiner:
    """The upstream miner's GetHFModelName handling: forward, blacklist (``force_validator_permit``), priority."""

    def __init__(self, model: str, metagraph: dict) -> None:
        self.model = model
        self.hotkeys = metagraph["hotkeys"]
        self.validator_permit = metagraph["validator_permit"]
        self.stake = metagraph["stake"]

    async def forward_for_get_hf_model_name(self, synapse: GetHFModelName) -> GetHFModelName:
        synapse.hf_model_name = self.model
        return synapse

    async def blacklist_for_get_hf_model_name(self, synapse: GetHFModelName) -> Tuple[bool, str]:  # noqa: UP006
        if synapse.dendrite.hotkey in self.hotkeys:
            uid = self.hotkeys.index(synapse.dendrite.hotkey)
            if not self.validator_permit[uid]:
                return True, "validator permit required"
        else:
            return True, "validator permit required, but hotkey not registered"
        return False, "Hotkey recognized!"

    async def priority_for_get_hf_model_name(self, synapse: GetHFModelName) -> float:
        return float(self.stake[self.hotkeys.index(synapse.dendrite.hotkey)])


def axon(args: argparse.Namespace) -> None:
    wallet = bt.Wallet(name=args.wallet, hotkey="default", path=args.wallet_path)
    miner = UpstreamMiner(args.model, json.loads(Path(args.metagraph).read_text()))
    server = bt.Axon(wallet=wallet, ip="127.0.0.1", port=args.port, external_ip="127.0.0.1", external_port=args.port)
    server.fast_server.config.host = "127.0.0.1"  # the Axon binds 0.0.0.0 by default
    server.attach(
        forward_fn=miner.forward_for_get_hf_model_name,
        blacklist_fn=miner.blacklist_for_get_hf_model_name,
        priority_fn=miner.priority_for_get_hf_model_name,
    )
    server.start()
    try:
        Path(args.ready).write_text(f"127.0.0.1:{args.port}\n")
        sys.stdin.read()  # until the test closes our stdin
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["dendrite", "axon"])
    parser.add_argument("--wallet", required=True)
    parser.add_argument("--wallet-path", required=True)
    parser.add_argument("--ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--miner-hotkey")
    parser.add_argument("--timeout", type=float, default=12.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--model")
    parser.add_argument("--metagraph")
    parser.add_argument("--ready")
    args = parser.parse_args()
    {"dendrite": dendrite, "axon": axon}[args.mode](args)


if __name__ == "__main__":
    main()
