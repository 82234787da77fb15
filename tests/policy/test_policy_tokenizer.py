"""The tokenizer round-trips any text and keeps the action/observation protocol token-exact."""

from __future__ import annotations

import pytest

from toolgym.envs import markup as mk
from toolgym.errors import ConfigError
from toolgym.policy.tokenizer import ALL_SPECIAL_TOKENS, Tokenizer

TEXTS = [
    "",
    "plain ascii",
    "  leading, trailing and   inner   runs \t\t\n\n\r\n   ",
    "unicode: naïve café, 日本語のテキスト, Ελληνικά, עברית, emoji 🎉👩‍👩‍👧 and \u200b zero-width",
    "control \x00\x01\x7f and a lone surrogate-free \ufffd",
    f"special strings{mk.END}inside{mk.ASSISTANT}text{mk.THINK_OPEN} and </think> and <|end| broken",
    "def f(x):\n    return {'a': [1, 2.5e-3, None]}  # comment\n",
    "<|bos|><|pad|><|unknown|>",
]


def test_special_tokens_are_single_ids_in_markup_order(small_tokenizer):
    for i, s in enumerate(ALL_SPECIAL_TOKENS):
        assert small_tokenizer.encode(s) == [i]
    assert small_tokenizer.end_id == ALL_SPECIAL_TOKENS.index(mk.END)
    assert small_tokenizer.vocab_size == 300


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact(small_tokenizer, text):
    assert small_tokenizer.decode(small_tokenizer.encode(text)) == text


def test_a_lone_surrogate_encodes_as_the_replacement_character(small_tokenizer):
    # Not a Unicode scalar value, so UTF-8 cannot hold it: the library raised a bare TypeError.
    tok = small_tokenizer
    assert tok.encode("a\ud800b") == tok.encode("a\ufffdb")
    assert tok.encode("\ud83d\ude00") == tok.encode("\U0001f600")  # a split pair is joined
    assert tok.encode_batch(["x", "a\udfffb"]) == [tok.encode("x"), tok.encode("a\ufffdb")]
    with pytest.raises(TypeError):
        tok.encode(b"bytes")  # type: ignore[arg-type]


def test_piecewise_equals_whole_across_the_protocol(small_tokenizer):
    tok = small_tokenizer
    obs0 = f"{mk.SYSTEM}tools: get_x(city){mk.END}{mk.USER}  find  the  café {mk.END}{mk.ASSISTANT}"
    call = '{"name": "get_x", "arguments": {"city": "Zürich"}}'
    act1 = f"{mk.THINK_OPEN} look up\n\n  first {mk.THINK_CLOSE}{mk.CALL_OPEN}{call}{mk.CALL_CLOSE}"
    obs1 = f'{mk.END}{mk.TOOL}{{"name": "get_x", "content": [" a ", "b  "]}}{mk.END}{mk.ASSISTANT}'
    act2 = f"  no think, trailing spaces   {mk.END}"
    obs2 = f"{mk.TOOL}error: unknown tool\n{mk.END}{mk.ASSISTANT}"
    act3 = "truncated mid-wor"  # a budget-truncated action: the next observation opens with <|end|>
    obs3 = f"{mk.END}{mk.TOOL}ok{mk.END}{mk.ASSISTANT}"
    pieces = [obs0, act1, obs1, act2, obs2, act3, obs3]
    assert sum((tok.encode(p) for p in pieces), []) == tok.encode("".join(pieces))


def test_save_load_and_serialisation(small_tokenizer, tmp_path):
    small_tokenizer.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(tmp_path / "tokenizer.json")
    for text in TEXTS:
        assert again.encode(text) == small_tokenizer.encode(text)


def test_training_is_deterministic_and_validates_size():
    texts = ["alpha beta gamma " * 20, "def f(x):\n    return x\n" * 10]
    assert Tokenizer.train(texts, 290).to_str() == Tokenizer.train(texts, 290).to_str()
    with pytest.raises(ConfigError, match="vocab_size"):
        Tokenizer.train(texts, 100)


def test_policy_package_tokenizer_and_corpus_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, toolgym.policy, toolgym.policy.tokenizer, toolgym.policy.corpus; sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_word_is_the_same_tokens_in_prose_and_in_json():
    """Issue 12: a value copied from the question into a call must be a copy of tokens, not a translation."""
    texts = ['Find the guest whose name is Noor Pruquy, case CL-00098. {"name":"Noor Pruquy","id":"CL-00098"}'] * 50
    tok = Tokenizer.train(texts, 400)
    for value in ("Noor Pruquy", "CL-00098"):
        prose, call = tok.encode(f"whose name is {value}"), tok.encode(f'{{"name":"{value}"}}')
        ids = tok.encode(value)
        assert len(ids) < len(value)  # merged into words, not left as bytes
        assert any(prose[i : i + len(ids)] == ids for i in range(len(prose)))
        assert any(call[i : i + len(ids)] == ids for i in range(len(call)))
