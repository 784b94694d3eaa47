"""Subnet 20 validator and miner pieces: submission vetting, validator state, weights, chain access.

``vetting`` parses and vets Hugging Face submissions (``org/name[@revision]``) at a locked commit;
``gguf`` reads GGUF headers safely; ``state`` keeps the validator's state in SQLite (WAL);
``weights`` turns per-uid scores into the u16 weights the chain accepts.
"""
