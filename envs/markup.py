"""The chat markup of DESIGN.md: its special strings, parser and renderer.

Special strings are single tokens of the policy tokenizer (``toolgym.policy.tokenizer`` adds
them as special tokens), so every observation starts and ends on a token boundary and a
policy's context ``obs0 + act1 + obs1 + ...`` is token-exact without re-tokenizing history.
"""

from __future__ import annotations

SYSTEM = "<|system|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
TOOL = "<|tool|>"
END = "<|end|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"

#: Every special string, in a fixed order (tokenizers assign ids in this order).
SPECIAL_TOKENS: tuple[str, ...] = (
    SYSTEM,
    USER,
    ASSISTANT,
    TOOL,
    END,
    THINK_OPEN,
    THINK_CLOSE,
    CALL_OPEN,
    CALL_CLOSE,
)
