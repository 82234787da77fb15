"""Byte-level BPE tokenizer whose special tokens are the chat markup of DESIGN.md.

Why this shape:

* **Byte level** (GPT-2's byte-to-unicode map and decoder, the 256-byte alphabet seeded before
  training): every string, in any script, with any whitespace, encodes and decodes back exactly;
  there is no unknown token and no normalisation.
* **A word is the same tokens wherever it stands** (:data:`PRE_TOKENIZE`): runs of letters and
  runs of digits never carry the space before them, unlike GPT-2's rule (a letter run takes the
  space before it). A tool policy copies names between prose and JSON: "whose name is Noor
  Pruquy" and ``{"name":"Noor Pruquy"}``. With GPT-2's rule the first word was ``" N" "oor"``
  in the question and ``"Noor"`` in the call, and ``" CL"`` vs ``"CL"`` in ids, so the first
  token of every copied value needed a learned translation, not a copy (issue 12: a policy that copied the rest of a
  value, median 0.5 nats a token, paid 5.2 nats for its first token, and wrote ``PS-00089`` for
  ``LN-00089``). The cost is a token per space: on ``domains`` episodes +30% tokens (mostly the
  system prompt's prose) and +6% in actions, at a 4,096 vocabulary. It removes the translation,
  not the lookup: after 600 SFT steps with it the first token still cost 5.75 nats (2026-12-01).
* **Markup strings are special tokens** (``toolgym.envs.markup.SPECIAL_TOKENS``, ids 0..8 in
  that order, then ``<|pad|>`` and ``<|bos|>``). The library splits them out of the text before
  the byte-level pre-tokenizer runs, so no merge ever crosses one. Every observation of the
  action/observation protocol starts and ends on a special string, hence tokenizing
  ``obs0 + act1 + obs1`` piece by piece gives exactly the tokens of the whole.
* The wrapped ``tokenizers.Tokenizer`` serialises to one JSON string, which the checkpoint stores
  next to the weights (``tokenizer.json``).

This module does not import torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from toolgym.envs.markup import END, SPECIAL_TOKENS, scalar_text
from toolgym.errors import CheckpointError, ConfigError

#: Pre-tokenization chunks: a run of letters, a run of digits, punctuation with at most one space
#: before it, or a run of whitespace. Every character falls in exactly one chunk, so the chunks
#: concatenate back to the text (the byte-level round trip is exact).
PRE_TOKENIZE = r"\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+|\s+"

PAD = "<|pad|>"  # fills ragged batches; never trained on
BOS = "<|bos|>"  # separates documents in the LM corpus
ALL_SPECIAL_TOKENS: tuple[str, ...] = (*SPECIAL_TOKENS, PAD, BOS)


class Tokenizer:
    """The policy's tokenizer: a thin typed face over a ``tokenizers.Tokenizer``."""

    def __init__(self, hf: HFTokenizer) -> None:
        """Wrap a trained byte-level BPE; it must carry every special token as one id.

        Raises:
            ConfigError: if a special token is missing or not a single id.
        """
        self.hf = hf
        missing = [s for s in ALL_SPECIAL_TOKENS if hf.token_to_id(s) is None]
        if missing:
            raise ConfigError(f"Tokenizer lacks the special tokens {missing}; train it with Tokenizer.train.")
        self.special_ids = {s: int(hf.token_to_id(s)) for s in ALL_SPECIAL_TOKENS}
        self.end_id, self.pad_id, self.bos_id = self.special_ids[END], self.special_ids[PAD], self.special_ids[BOS]
        self.first_plain_id = max(self.special_ids.values()) + 1  # the special ids are the lowest

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> Tokenizer:
        """Train a byte-level BPE on texts (deterministic for the same texts in the same order).

        Args:
            texts: training documents.
            vocab_size: total vocabulary including the 256 bytes and the special tokens.
            min_frequency: merges seen fewer times are not learned.
        """
        floor = 256 + len(ALL_SPECIAL_TOKENS)
        if vocab_size < floor:
            raise ConfigError(f"vocab_size must be at least {floor} (bytes + special tokens), got {vocab_size}.")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(PRE_TOKENIZE), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(ALL_SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        hf.train_from_iterator(texts, trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        """Number of ids (the model's ``vocab_size`` must be at least this)."""
        return int(self.hf.get_vocab_size(with_added_tokens=True))

    def encode(self, text: str) -> list[int]:
        """Token ids of text; special strings anywhere in it become their single ids.

        A lone surrogate (not a Unicode scalar value, so not encodable) is encoded as U+FFFD
        (:func:`~toolgym.envs.markup.scalar_text`, the env's own rule for tool results); the
        check costs a second pass only on that failure path.
        """
        try:
            return self.hf.encode(text, add_special_tokens=False).ids
        except TypeError:  # the library's error for a str it cannot convert to UTF-8
            if not isinstance(text, str):
                raise
            return self.hf.encode(scalar_text(text), add_special_tokens=False).ids

    def encode_prompt(self, text: str) -> list[int]:
        """The first tokens of a model context: ``<|bos|>``, then ``text`` (an episode's first observation).

        Every context starts this way: LM documents (``train lm``), SFT rows (``sft_data``),
        and the contexts the policy acts in (the model policy, ``serve``, GRPO rollouts), so the
        model never sees a start it was not trained on.
        """
        return [self.bos_id, *self.encode(text)]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` over many texts (parallel inside the library), lone surrogates as in ``encode``."""
        try:
            return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]
        except TypeError:
            if not all(isinstance(t, str) for t in texts):
                raise
            return [e.ids for e in self.hf.encode_batch([scalar_text(t) for t in texts], add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids, special tokens included, so ``decode(encode(t)) == t`` for every t without lone surrogates."""
        return self.hf.decode(list(ids), skip_special_tokens=False)

    def to_str(self) -> str:
        """The library's JSON serialisation."""
        return self.hf.to_str()

    @classmethod
    def from_str(cls, data: str) -> Tokenizer:
        """Inverse of ``to_str``."""
        return cls(HFTokenizer.from_str(data))

    def save(self, path: Path) -> None:
        """Write ``tokenizer.json`` style JSON to path."""
        Path(path).write_text(self.to_str(), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        """Read what ``save`` wrote.

        Raises:
            CheckpointError: when the file is missing or is not a tokenizer.
        """
        path = Path(path)
        try:
            return cls.from_str(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, Exception) as exc:  # tokenizers raises bare Exception
            raise CheckpointError(f"Cannot load tokenizer from {path}: {exc}") from exc
