"""The Gymnasium side of toolgym: ToolEnv, the tool protocol, the chat markup, env registry
and sandboxes.

Kept import-light on purpose: ``toolgym.envs.markup`` and ``toolgym.envs.tools`` are pure Python,
and nothing here imports torch or the policy.
"""
