"""The ``domains`` family: relational tool worlds synthesized from archetypes, without an LLM.

Modules, in the order data flows:

* ``ontology.py``: the archetype format (YAML in ``archetypes/``), validated;
* ``schema.py``: a world's sampled schema (entities, attributes, links, actions, policies, names);
* ``kinds.py``: value generators for every attribute kind;
* ``world.py``: worlds (:func:`~toolgym.synth.domains.world.generate`), their indices, the
  per-episode overlay state, the DuckDB export;
* ``rules.py``: conditions, policies and effects (one evaluator for tools, generator, reference);
* ``argmodels.py``, ``tools.py``, ``actions.py``: the toolset derived from a schema;
* ``query.py``, ``requests.py``: selectors and write requests as tasks state them;
* ``tasks.py``, ``writes.py``: task kinds by difficulty; ``reference.py``: the tool-only
  reference; ``family.py``: :class:`~toolgym.synth.domains.family.Domains`, the family.
"""
