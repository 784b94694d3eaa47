"""The Berkeley Function Calling Leaderboard: its data as task sources (``tasks.py``), its checker's rules as
scorers (``scorer.py``, registered here).

This module is the ``bfcl-scorer`` entry point and registers only: the scorer, and the decoder it uses, are
imported when a scorer is made, so loading the plugins (every ``bitagent`` command, ``--help`` included)
stays light.
"""

from __future__ import annotations

from typing import Any

from bitagent_core import RegisterScorer, hookimpl


def make_bfcl_scorer() -> Any:
    from bitagent_plugins.bfcl.scorer import BfclScorer

    return BfclScorer()


def make_bfcl_strict_scorer() -> Any:
    from bitagent_plugins.bfcl.scorer import BfclScorer

    return BfclScorer(strict=True)


@hookimpl
def register_scorers(register: RegisterScorer) -> None:
    register(
        "bfcl",
        make_bfcl_scorer,
        description="BFCL's AST checker rules, pass/fail; any answer format; "
        "nothing evaluated, parallel calls matched by bipartite matching",
    )
    register(
        "bfcl-strict",
        make_bfcl_strict_scorer,
        description="the bfcl scorer reading only what BFCL's prompting decoder reads (bare pythonic calls)",
    )
