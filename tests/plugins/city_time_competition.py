"""A third-party plugin the validator tests install (``PYTHONPATH=tests/plugins``): the ``city-time``
competition, one easy question per task, drawn from the seed.

Why: on the ``bitagent`` competition a round's sample comes from a private random seed, and the embedded
0.5B model scores 0 on some small samples -- then no weights are set, and a test of how weights are set has
nothing to check. The embedded model scores above zero on every ``city-time`` task (most of them fully; it
writes "Lisboa" for Lisbon), whatever the seed, while the sample still differs from seed to seed (so "one
round, one sample" stays checkable).
"""

import random

import bitagent_core as ba

BITAGENT_PLUGIN_API = "1"
CITIES = ("Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Kyiv", "Rome", "Seoul", "Dublin", "Nairobi", "Lisbon")
TIME = ba.Tool(
    "get_time",
    "Current local time in a city.",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "the city's name"}},
        "required": ["city"],
    },
)


class CityTimeTasks:
    name, version, description = "city-time", "1", "What time is it in <city>? (one call to get_time)"

    def __init__(self, arg: str | None = None) -> None:
        pass

    def categories(self) -> list[str]:
        return ["single_call"]

    def tasks(self, seed, limit):
        for i in range(len(CITIES) if limit is None else limit):
            city = random.Random(f"{seed}:{i}").choice(CITIES)
            yield ba.Task(
                id=f"city-time-{seed}-{i}",
                messages=(ba.Message("user", f"What time is it in {city}?"),),
                tools=(TIME,),
                expected_calls=(ba.ExpectedCall("get_time", {"city": (city,)}),),
                source=self.name,
                category="single_call",
                version=self.version,
            )


class CityTimeCompetition:
    name, version, description = "city-time", "1", "city-time tasks, bitagent scorer, cubic weights."
    sample_size, scorer, weight_rule = 2, "bitagent", "cubic"

    def mix(self, registry):
        return {"city-time": 1.0}


@ba.hookimpl
def register_task_sources(register):
    register("city-time", CityTimeTasks, description=CityTimeTasks.description)


@ba.hookimpl
def register_competitions(register):
    register("city-time", CityTimeCompetition, description=CityTimeCompetition.description)
