"""Template competition ``template-competition``: what `bitagent validate --competition` evaluates miners on."""

from __future__ import annotations

import bitagent_core as ba

BITAGENT_PLUGIN_API = "1.0"


class TemplateCompetition:
    name = "template-competition"
    #: changing it (or the scorer's or a source's version) re-evaluates every model
    version = "1"
    description = "Template: bitagent tasks, one in four an irrelevance task"
    sample_size = 40
    scorer = "bitagent"
    weight_rule = "cubic"

    def mix(self, registry: ba.PluginRegistry) -> dict[str, float]:
        # task source spec -> share; ask the registry when a source is optional
        return {"bitagent:single_call": 3.0, "bitagent:irrelevance": 1.0}


@ba.hookimpl
def register_competitions(register: ba.RegisterCompetition) -> None:
    register("template-competition", TemplateCompetition, description=TemplateCompetition.description)
