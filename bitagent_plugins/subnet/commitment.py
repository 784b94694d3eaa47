"""A miner's on-chain commitment that does not reveal the submission: ``bitagent-sha256:<hex>``.

``hex = sha256("<org/name@revision>\\n<salt>")``. The chain holds only the hash (and its block, which fixes
who submitted first); the name and salt reach validators over signed requests only (our endpoint's ``salt``,
the ``GetHFModelName`` answer's ``bitagent_salt``), and a validator takes a revealed name only if it opens the
commitment. The salt is random (128 bits, so nobody can test guesses against the hash) and kept by the miner
in a file next to its wallet, so a restarted miner commits the same text (no new commitment, no rate limit).

Plain-text commitments (``org/name@revision``, what earlier ``bitagent mine`` wrote, or a miner's choice)
are still read as they are. bittensor 11 also offers drand timelock encryption (``bittensor.timelock``, the
chain's ``TimelockEncrypted`` commitment field): we do not use it, since the name becomes public to everyone
at the reveal round and decrypting needs the drand HTTP API.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "bitagent-sha256:"
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_SALT_RE = re.compile(r"[0-9a-f]{16,128}")


def digest(submission: str, salt: str) -> str:
    return hashlib.sha256(f"{submission}\n{salt}".encode()).hexdigest()


def make(submission: str, salt: str) -> str:
    """The commitment text for ``submission`` with ``salt`` (80 characters)."""
    return PREFIX + digest(submission, salt)


def parse(text: str) -> str | None:
    """The digest of a hashed commitment, or ``None`` when ``text`` is not one (a plain submission)."""
    text = text.strip()
    if not text.startswith(PREFIX):
        return None
    value = text[len(PREFIX) :].lower()
    return value if _DIGEST_RE.fullmatch(value) else ""  # "" = malformed: opens nothing


def opens(expected: str, submission: str, salt: str | None) -> bool:
    """Whether ``submission`` with ``salt`` is what the commitment ``expected`` hides."""
    if not expected or salt is None or not _SALT_RE.fullmatch(salt):
        return False
    return hmac.compare_digest(digest(submission.strip(), salt), expected)


def new_salt() -> str:
    return secrets.token_hex(16)
