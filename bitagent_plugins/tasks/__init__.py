"""Task sources shipped with bitagent: procedurally generated ``bitagent`` tasks and ``jsonl`` files."""
