"""The serving engine of ``toolgym serve``: one model, one lock, a prefix cache, OpenAI-style errors.

Split from :mod:`toolgym.policy.serve` (which re-exports :class:`Engine`, :class:`ServeConfig` and
:class:`APIError`): this module generates, that one speaks HTTP and the chat format.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from toolgym.envs.markup import THINK_CLOSE, THINK_OPEN


class APIError(Exception):
    """A request the server refuses: rendered as OpenAI-style JSON with ``status``."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param

    def body(self) -> dict[str, Any]:
        """The OpenAI error object."""
        kind = "not_found_error" if self.status == 404 else "invalid_request_error"
        kind = kind if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class Generated(NamedTuple):
    """One generated action and its token counts (the ``usage`` of both routes)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int  # of completion_tokens: see :func:`reasoning_token_count`


def reasoning_token_count(tokens: Sequence[int], think_open: int, think_close: int) -> int:
    """How many of an action's generated ``tokens`` are its thought.

    The thought is a leading ``<think>`` through its ``</think>`` (both tags counted, as the
    model generated them); when the budget ran out inside it, every generated token is thought.
    An action that does not start with ``<think>`` has none. This is what OpenAI's
    ``reasoning_tokens`` counts (Responses ``output_tokens_details``, chat
    ``completion_tokens_details``): output tokens spent reasoning, a part of the output count.

    Args:
        tokens: the action's generated ids (``<|end|>`` included when it was sampled).
        think_open: the id of ``<think>``.
        think_close: the id of ``</think>``.
    """
    if not tokens or tokens[0] != think_open:
        return 0
    for i, t in enumerate(tokens):
        if t == think_close:
            return i + 1
    return len(tokens)


class ServeConfig(BaseModel):
    """Settings of ``toolgym serve``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="the model id clients pass as `model`")
    device: str = "cpu"
    seed: int = Field(0, ge=0, description="seed of requests that carry none")
    max_tokens: int = Field(256, ge=1, description="token budget of a request that sets none")
    max_tokens_limit: int = Field(4096, ge=1, description="the most tokens a request may ask for")
    cache_rows: int = Field(4, ge=1, description="conversations whose context the prefix cache keeps")
    max_context: int = Field(
        8192, ge=2, description="most tokens of a request's prompt plus its max_tokens (as --policy model's bound)"
    )

    @model_validator(mode="after")
    def _default_within_limit(self) -> ServeConfig:
        if self.max_tokens > self.max_tokens_limit:
            raise ValueError(f"max_tokens ({self.max_tokens}) is over max_tokens_limit ({self.max_tokens_limit})")
        return self


class Engine:
    """The checkpoint's model and tokenizer, generating one action per request (under a lock).

    **Prefix cache.** A client sends the whole conversation with every turn; re-running its
    prompt each time would make a turn cost a prefill of the whole context. The engine keeps
    ``config.cache_rows`` contexts in one :class:`~toolgym.policy.generate.Session` (each row:
    the last request's tokens and the tokens generated after them) and serves a request from
    the row sharing its longest prefix: a request that extends the row's last prompt (the next
    turn of that conversation, whatever action the client kept) continues in that row;
    otherwise the shared prefix is copied to the least recently used row. Only the rest is
    appended, then one row is decoded. The cache changes the cost, not the tokens (cache
    entries of a prefix depend on the prefix alone).

    Attributes:
        prefilled: prompt tokens run through the model so far.
        shared: prompt tokens served from the cache instead.
        generated: tokens sampled so far.
        cancelled: requests stopped (or never started) because their client went away.
    """

    def __init__(self, checkpoint: Any, config: ServeConfig) -> None:
        """Wrap a loaded :class:`~toolgym.policy.checkpoint.Checkpoint` (its model on ``config.device``)."""
        import torch

        from toolgym.policy.generate import Session

        self.model, self.tokenizer, self.config = checkpoint.model, checkpoint.tokenizer, config
        self.lock = threading.Lock()
        self.generator = torch.Generator().manual_seed(config.seed)
        tok, rows = self.tokenizer, config.cache_rows
        self.session = Session(self.model, rows, stop_ids=[tok.end_id], pad_id=tok.pad_id, capacity=256)
        self._rows: list[list[int]] = [[] for _ in range(rows)]  # ids each cache row holds
        self._prompt = [0] * rows  # of which the last request's prompt (the rest: its action)
        self._last_use = [0] * rows
        self._tick = 0
        self.prefilled = self.shared = 0
        self.generated = self.cancelled = 0

    def _row_for(self, ids: list[int]) -> tuple[int, int]:
        """(row to generate in, prompt tokens it will share), with the prefix moved into that row."""
        from toolgym.policy.model_policy import longest_prefix

        limit = max(len(ids) - 1, 0)  # at least one token is appended (the row needs its logits)
        n, best = longest_prefix(ids, self._rows, limit)
        extends = n >= self._prompt[best] > 0  # the next turn of that row's conversation
        row = best if extends else min(range(len(self._rows)), key=lambda r: (r == best, self._last_use[r]))
        self.session.copy_prefix(row, best, n)
        self._rows[row], self._prompt[row] = [], 0  # unknown until this request is done
        return row, n

    def generate(
        self,
        text: str,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        cancel: threading.Event | None = None,
    ) -> Generated:
        """Sample one action after ``text`` until ``<|end|>`` or ``max_tokens``, or until ``cancel`` is set.

        A cancelled request (its client went away) stops before its next token, or does not
        start if it was still waiting for the lock; what it sampled stays in its cache row.

        Returns:
            The action text and its prompt, completion and reasoning token counts.

        Raises:
            APIError: 400 ``context_length_exceeded`` when the prompt plus ``max_tokens`` is over
                ``config.max_context`` (OpenAI's code), before any model work.
        """
        import torch

        from toolgym.policy.generate import SamplingParams

        ids = self.tokenizer.encode_prompt(text)
        if len(ids) + max_tokens > self.config.max_context:
            raise APIError(
                400,
                f"This model's maximum context length is {self.config.max_context} tokens; the request has "
                f"{len(ids)} prompt tokens and max_tokens {max_tokens}",
                "context_length_exceeded",
                "messages",
            )
        params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_tokens)
        rows = range(self.config.cache_rows)
        with self.lock:
            if cancel is not None and cancel.is_set():
                self.cancelled += 1
                return Generated("", len(ids), 0, 0)
            row, n = self._row_for(ids)
            self.session.append([ids[n:] if r == row else [] for r in rows])
            generator = self.generator if seed is None else torch.Generator().manual_seed(seed)
            active = [r == row for r in rows]
            stop = None if cancel is None else cancel.is_set
            turn = self.session.generate(params, generator, active=active, should_stop=stop)[row]
            self.cancelled += cancel is not None and cancel.is_set()
            self.generated += len(turn.tokens) if turn is not None else 0
            assert turn is not None  # the row is active
            tokens = turn.tokens.tolist()
            self._rows[row], self._prompt[row] = ids + tokens, len(ids)
            self._tick += 1
            self._last_use[row] = self._tick
            self.prefilled, self.shared = self.prefilled + len(ids) - n, self.shared + n
        tok = self.tokenizer
        thought = reasoning_token_count(tokens, tok.special_ids[THINK_OPEN], tok.special_ids[THINK_CLOSE])
        return Generated(tok.decode(tokens), len(ids), len(tokens), thought)
