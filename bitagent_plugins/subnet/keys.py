"""The two rules every part of the subnet plugin shares: what a *model key* is, and who gets the credit.

* :class:`ModelKey` -- ``org/name@sha``: one Hugging Face repo at one commit, the unit that is vetted,
  downloaded and evaluated. Built here and nowhere else (vetting's ``LockedModel`` is this class).
* :func:`earliest_committer` -- when several hotkeys submit the same weights (the same ``repo@sha``, or the
  same weight files re-uploaded under another repo or commit), the one that committed at the earliest
  block gets the credit; ties go to the smaller hotkey string, so every validator picks the same one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Protocol

import attrs


@attrs.frozen(order=True)
class ModelKey:
    repo_id: str
    sha: str

    @property
    def key(self) -> str:
        """``org/name@sha``, as the state stores it."""
        return f"{self.repo_id}@{self.sha}"

    def __str__(self) -> str:
        return self.key

    @classmethod
    def parse(cls, text: str) -> ModelKey:
        repo_id, sep, sha = text.rpartition("@")
        if not sep or not repo_id or not sha:
            raise ValueError(f"not a model key (org/name@sha): {text!r}")
        return cls(repo_id, sha)


class Commitment(Protocol):
    """What the earliest-committer rule looks at."""

    @property
    def hotkey(self) -> str: ...

    @property
    def committed_block(self) -> int: ...


def earliest_committer(claims: Iterable[Commitment]) -> str | None:
    """The hotkey credited among ``claims`` of the same weights: earliest block, then smallest hotkey."""
    best = min(((int(c.committed_block), c.hotkey) for c in claims), default=None)
    return None if best is None else best[1]


def credited(claims: Iterable[Commitment], group_of: Mapping[str, str]) -> dict[str, str]:
    """``{group: credited hotkey}``: claims grouped by ``group_of[hotkey]`` (the weights identity),
    each group credited by :func:`earliest_committer`."""
    groups: dict[str, list[Commitment]] = {}
    for claim in claims:
        groups.setdefault(group_of[claim.hotkey], []).append(claim)
    return {group: earliest_committer(members) for group, members in groups.items()}  # type: ignore[misc]


def weights_digest(file_hashes: Mapping[str, str]) -> str:
    """One digest for a model's weight files: sha256 over their content hashes (the Hub's LFS sha256),
    sorted, so the same weights under another repo, commit or file name give the same digest."""
    joined = "\n".join(sorted(h.lower() for h in file_hashes.values()))
    return "sha256:" + hashlib.sha256(joined.encode()).hexdigest()
