"""Search agent: multi-hop and inverted questions over a generated document collection.

A seed makes a universe of people, organisations, works, events, cities and regions with
functional relations and attributes (``world.py``), rendered into documents by varied
templates, facts scattered among profiles, articles and distractors (``corpus.py``), indexed
with tantivy (``index.py``, where the library choice is measured). The tools search, read and
grep documents (``tools.py``); tasks follow chains of 2–6 hops or identify a person from
several clues (``tasks.py``); the reference answers through the tools only (``reference.py``).
Corpus size grows with difficulty, from about 500 documents to about 100,000.

One world serves many tasks (:attr:`Search.tasks_per_world`): its documents and index are
built once per process, on first use, and shared by every episode (all tools read); an
episode's context pins them (:meth:`SearchWorld.pinned`), the process's store keeps a bounded
number of the others (:data:`toolgym.synth.search.world.BUILT_DOCUMENTS`).

Gate answers (every answer is a name, checked by the ``alias`` verifier):

* random: a uniformly drawn name of an entity of the answer's type (exact chance
  ``1 / count``, :meth:`Search.random_pass`; answer types are chosen so it is within the limit);
* bluff: a name of the right shape made with the world's name generator, without the world;
* perturbed: the answer with a letter changed, with a suffix, cut to its first word, the
  entity one hop before it (chains), and a near-namesake of it (same first name) when one exists.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from toolgym.envs.tools import Tool
from toolgym.spec import TaskDraft, TaskSpec
from toolgym.synth import names as nm
from toolgym.synth.family import Family, Program
from toolgym.synth.search import reference, tasks, tools
from toolgym.synth.search.world import SearchWorld, cached_world, make


class Search(Family):
    """Multi-hop and inverted (BrowseComp-style) questions answered by searching documents."""

    id = "search"
    env_name = "SearchAgent"
    version = 0
    summary = "multi-hop and clue-intersection questions over a generated, indexed document collection"
    categories = ("retrieval", "multi-hop question answering")
    # A difficulty-5 world (100k documents) takes ~2.5 s to generate, render and index, a candidate
    # ~15-30 ms: 64 candidates (the most SynthConfig allows) share one world.
    tasks_per_world = 64
    # The alias check's normal form (verifiers/aliases.py), not the shared exact-name rule: answers
    # are free text, and no tool suggests a closest name.
    names_rule = (
        "Answers are names matched after Unicode NFC normalization, ignoring case, punctuation, extra "
        "whitespace and the words a, an and the (& reads as and); an entity's other names (aliases) are "
        "accepted too, anything else is wrong.\n"
    )

    def make_world(self, seed: int, difficulty: int) -> SearchWorld:
        """The world of ``(seed, difficulty)`` (cached per process: its index is built once)."""
        return make(seed, difficulty)

    def load_world(self, data: dict[str, Any]) -> SearchWorld:
        """The world a stored row names, regenerated (or from the process cache)."""
        return cached_world(data)

    def world_stats(self, world: SearchWorld) -> dict[str, float]:
        """Corpus size and index build time of a world (a column of ``toolgym bench synth``).

        Builds the index if this process has not yet; the time is that of the build that ran.
        """
        return {"documents": len(world.corpus), "index build s": round(world.index.build_seconds, 3)}

    def episode_context(self, world: SearchWorld, task: TaskSpec) -> SearchWorld:
        """The world, pinned: its documents and index stay built while the episode reads them."""
        return world.pinned()

    def make_task(self, world: SearchWorld, difficulty: int, rng: random.Random) -> TaskDraft | None:
        """A chain or an inverted task."""
        return tasks.make_task(world, difficulty, rng)

    def tools(self, tool_config: dict[str, Any]) -> Sequence[Tool]:
        """The four tools (every task has the same)."""
        return tools.toolset(tool_config)

    def reference(self, params: dict[str, Any], tool_config: dict[str, Any]) -> Program:
        """The tool-only reference."""
        return reference.program(params)

    def heuristic(self, task: TaskSpec) -> Program:
        """The shallow agent of :mod:`toolgym.synth.search.reference` (first page, two hits a search)."""
        return reference.heuristic_program(task.params)

    def random_answer(self, world: SearchWorld, task: TaskSpec, rng: random.Random) -> Any:
        """A random name of the answer's type."""
        names = world.names[task.meta["answer_type"]]
        return names[rng.randrange(len(names))]

    def random_pass(self, world: SearchWorld, task: TaskSpec) -> float | None:
        """``1 / count`` of the answer's type: names and aliases are distinct under the check's normal form."""
        return 1 / len(world.names[task.meta["answer_type"]])

    def bluff_answer(self, task: TaskSpec, rng: random.Random) -> Any:
        """A made-up name of the right shape."""
        if task.meta["answer_type"] == "person":
            return f"{nm.word(rng, 2)} {nm.word(rng)}"
        return f"{nm.word(rng)} {rng.choice(('Press', 'Institute', 'Works', 'Foundation', 'Studios', 'Guild'))}"

    def perturb(self, world: SearchWorld, task: TaskSpec, answer: Any, rng: random.Random) -> list[Any]:
        """Broken copies of the answer and near misses of the world."""
        text = str(answer)
        i = rng.randrange(1, len(text))
        other = "x" if text[i].lower() != "x" else "q"
        out: list[Any] = [text[:i] + other + text[i + 1 :], text + " Junior", text.split(" ")[0]]
        out += task.meta.get("via", [])[-1:]
        if task.meta["answer_type"] == "person":
            first = text.split(" ", 1)[0] + " "
            near = [p for p in world.names["person"] if p.startswith(first) and p != text]
            if near:
                out.append(near[rng.randrange(len(near))])
        return out
