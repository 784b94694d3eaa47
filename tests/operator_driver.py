"""Run ``bitagent stage`` / ``bitagent register`` as a real process against the file-backed chain double.

    python tests/operator_driver.py stage --chain-file chain.json -- --num_validators 1 --num_miners 2 ...

The arguments after ``--`` go to the very click command ``bitagent`` registers; the differences from the
installed CLI: the ``substrate_factory`` (bittensor's ``Substrate`` seam) points at the chain file, and the
processes ``stage`` launches are ``tests/subnet_driver.py mine|validate`` on the same chain file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chain_double import FileChain  # noqa: E402

from bitagent_plugins.operator.plugin import register_command, stage_command  # noqa: E402

SUBNET_DRIVER = Path(__file__).resolve().parent / "subnet_driver.py"


def main(argv: list[str]) -> int:
    split = argv.index("--") if "--" in argv else len(argv)
    own, rest = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=("stage", "register"))
    parser.add_argument("--chain-file", required=True, type=Path)
    args = parser.parse_args(own)
    factory = lambda: FileChain(args.chain_file)  # noqa: E731
    if args.command == "register":
        command = register_command(factory)
    else:
        command = stage_command(
            factory,
            launch_prefix=lambda role: [
                sys.executable,
                str(SUBNET_DRIVER),
                role,
                "--chain-file",
                str(args.chain_file),
                "--",
            ],
        )
    return command.main(rest, prog_name=f"bitagent {args.command}", standalone_mode=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
