"""Adapters: toolgym tasks inside the trainers and protocols people already use (layer L6).

Each adapter is one module with its own optional extra (``toolgym[mcp]``, ``toolgym[trl]``, ``toolgym[verifiers]``)
and imports its library only there; this package imports nothing, so ``import toolgym`` never
pulls a trainer in.
"""
