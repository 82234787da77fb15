"""The Gymnasium side of toolgym: ToolEnv, tools, the chat markup, the env registry.

Kept import-light on purpose: ``toolgym.envs.markup`` and ``toolgym.envs.tools`` are pure Python,
and nothing here imports torch or the policy.
"""
