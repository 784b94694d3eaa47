"""Run ``bitagent mine`` / ``bitagent validate`` as a real process against the file-backed chain double.

    python tests/subnet_driver.py mine --chain-file chain.json -- --hf-model-name org/x --netuid 20 ...
    python tests/subnet_driver.py validate --chain-file chain.json -- --backend llama-cpp --once ...

The arguments after ``--`` go to the very click command ``bitagent`` registers; the only difference from the
installed CLI is the ``substrate_factory`` (bittensor's ``Substrate`` seam) pointing at the chain file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chain_double import FileChain  # noqa: E402

from bitagent_plugins.subnet.plugin import mine_command, validate_command  # noqa: E402


def main(argv: list[str]) -> int:
    if "--" in argv:
        split = argv.index("--")
        own, rest = argv[:split], argv[split + 1 :]
    else:
        own, rest = argv, []
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("mine", "validate"))
    parser.add_argument("--chain-file", required=True, type=Path)
    args = parser.parse_args(own)
    factory = lambda: FileChain(args.chain_file)  # noqa: E731
    command = mine_command(factory) if args.command == "mine" else validate_command(factory)
    return command.main(rest, prog_name=f"bitagent {args.command}", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
