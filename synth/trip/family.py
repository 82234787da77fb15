"""Trip planning: the DeepSeek-V3.2 general-agent example, synthesized offline.

A multi-day itinerary under conditional constraints over a generated travel region. See
``world.py`` (the region), ``tools.py`` (the toolset), ``tasks.py`` (constraints, difficulty,
prompts), ``solver.py`` (the search), ``reference.py`` (the tool-only reference solution) and
``toolgym.verifiers.itinerary`` (the independent checker).

Gate answers:

* random: a uniformly drawn *plausible* plan: right dates, starting city, a random walk over
  real connections, real venues of the right kind in each day's city. It satisfies the
  structural rules by construction, so it passes only if the task's remaining constraints are
  loose: exactly the "too easy" case the gate exists to drop;
* bluff: the right shape and the start city from the prompt, every other name invented with
  the world's own name generator (so names look right but exist nowhere);
* perturbed: the reference plan with one guaranteed break (a venue from another city, lunch
  repeated at dinner, a day dropped, dates shifted, days swapped, a misspelt name).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from toolgym.envs.tools import Tool
from toolgym.spec import TaskDraft, TaskSpec
from toolgym.synth import names as nm
from toolgym.synth.family import Family, Program
from toolgym.synth.trip import reference, tasks, tools
from toolgym.synth.trip.solver import view_of_world
from toolgym.synth.trip.world import TripWorld, add_days, generate


def _constraint(task: TaskSpec, kind: str) -> dict[str, Any]:
    return next(c for c in task.params["constraints"] if c["kind"] == kind)


class TripPlanning(Family):
    """Multi-day itinerary planning under conditional constraints."""

    id = "trip"
    env_name = "TripPlanning"
    version = 1
    summary = "multi-day itinerary under budget, rating, opening-day, weather and tier constraints"
    categories = ("planning", "constraint satisfaction", "multi-step tool use")

    def make_world(self, seed: int, difficulty: int) -> TripWorld:
        """Generate a region."""
        return TripWorld(generate(seed, difficulty))

    def load_world(self, data: dict[str, Any]) -> TripWorld:
        """Rebuild a region from its data."""
        return TripWorld(data)

    def make_task(self, world: TripWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
        """Propose an itinerary task (solvable by construction)."""
        view = getattr(world, "_view", None)
        if view is None:
            view = world._view = view_of_world(world)  # type: ignore[attr-defined]
        return tasks.make_task(world, view, difficulty, rng)

    def tools(self, tool_config: dict[str, Any]) -> Sequence[Tool]:
        """The toolset for a task."""
        return tools.toolset(tool_config)

    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
        """The tool-only reference planner."""
        return reference.program(params)

    def random_answer(self, world: TripWorld, task: TaskSpec, rng: random.Random) -> Any:
        """A random plausible plan."""
        days = _constraint(task, "days")
        city = _constraint(task, "start_city")["city"]
        path = [city]
        for _ in range(days["n_days"] - 1):
            nxt = [c for c in world.cities if c not in path and world.transport(path[-1], c)]
            nxt = nxt or [c for c in world.cities if c not in path]
            path.append(rng.choice(nxt))
        plan = []
        for i, c in enumerate(path):
            rests = world.by_kind["restaurant"][c]
            lunch, dinner = rng.sample(rests, 2) if len(rests) > 1 else (rests[0], rests[0])
            plan.append(
                {
                    "date": add_days(days["start_date"], i),
                    "city": c,
                    "hotel": rng.choice(world.by_kind["hotel"][c])["name"],
                    "lunch": lunch["name"],
                    "attraction": rng.choice(world.by_kind["attraction"][c])["name"],
                    "dinner": dinner["name"],
                }
            )
        return plan

    def bluff_answer(self, task: TaskSpec, rng: random.Random) -> Any:
        """A well-formed plan whose names are invented."""
        days = _constraint(task, "days")
        start = _constraint(task, "start_city")["city"]
        return [
            {
                "date": add_days(days["start_date"], i),
                "city": start if i == 0 else nm.city_name(rng),
                "hotel": nm.hotel_name(rng),
                "lunch": nm.restaurant_name(rng),
                "attraction": nm.attraction_name(rng, rng.choice(nm.ATTRACTION_CATEGORIES)),
                "dinner": nm.restaurant_name(rng),
            }
            for i in range(days["n_days"])
        ]

    def perturb(self, world: TripWorld, task: TaskSpec, answer: Any, rng: random.Random) -> list[Any]:
        """Broken copies of a correct plan, each violating a rule by construction."""
        plan = [dict(d) for d in answer]
        out: list[Any] = []
        i = rng.randrange(len(plan))
        elsewhere = [h for c in world.cities if c != plan[i]["city"] for h in world.by_kind["hotel"][c]]
        if elsewhere:
            broken = [dict(d) for d in plan]
            broken[i]["hotel"] = rng.choice(elsewhere)["name"]
            out.append(broken)
        broken = [dict(d) for d in plan]
        broken[i]["dinner"] = broken[i]["lunch"]
        out.append(broken)
        out.append(plan[:-1])
        out.append([dict(d, date=add_days(d["date"], 1)) for d in plan])
        if len(plan) > 1:
            out.append([plan[1], plan[0], *plan[2:]])
        broken = [dict(d) for d in plan]
        broken[i]["attraction"] = broken[i]["attraction"] + " " + nm.word(rng, 1)
        out.append(broken)
        return out
