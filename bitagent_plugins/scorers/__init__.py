"""Built-in scorers. This module is the ``bitagent-scorer`` entry point and registers only: the scorer, and the
decoder it uses, are imported when a scorer is made, so loading the plugins (``bitagent --help``) stays light."""

from __future__ import annotations

from typing import Any

from bitagent_core import RegisterScorer, hookimpl


def make_bitagent_scorer() -> Any:  # not "bitagent_scorer": that name is the submodule
    from bitagent_plugins.scorers.bitagent_scorer import BitagentScorer

    return BitagentScorer()


@hookimpl
def register_scorers(register: RegisterScorer) -> None:
    register(
        "bitagent", make_bitagent_scorer, description="the upstream subnet's criteria (format/name/args/values), fixed"
    )
