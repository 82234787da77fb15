"""The ``codeagent`` family (``toolgym/CodeAgent-v0``): repair a generated package; see ``family.py``."""
