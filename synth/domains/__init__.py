"""The ``domains`` family: relational tool worlds synthesized from archetypes, without an LLM."""
