"""Tiny real models for the policy tests (float64 where paths are compared exactly)."""

from __future__ import annotations

import pytest
import torch

from toolgym.policy.model import ModelConfig, Transformer


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run policy tests on one intra-op thread.

    The shapes here are tiny, so a second thread buys nothing, and on a shared 2-core machine an
    OpenMP thread that cannot get a core stalls every parallel op: under load the same tests
    ran several times slower with two threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides: object) -> ModelConfig:
    """3 layers (1 dense + 2 MoE), 4 heads, 8 experts, indexer 2x16, top-8 (``ModelConfig.micro``), vocab 300."""
    return ModelConfig.micro(**{"vocab_size": 300, **overrides})


def tiny_model(seed: int = 0, double: bool = True, **overrides: object) -> Transformer:
    model = Transformer(tiny_config(**overrides), seed=seed)
    return (model.double() if double else model).eval()


def random_tokens(b: int, s: int, seed: int = 0, vocab: int = 300) -> torch.Tensor:
    return torch.randint(11, vocab, (b, s), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tiny() -> Transformer:
    return tiny_model()


@pytest.fixture
def make_model():
    """Factory fixture (importlib mode cannot import helpers from conftest)."""
    return tiny_model


@pytest.fixture
def make_config():
    return tiny_config


@pytest.fixture
def tokens():
    return random_tokens


@pytest.fixture(scope="session")
def small_tokenizer():
    """A 300-id byte-level BPE trained on a few standard-library files and some markup."""
    from toolgym.envs import markup as mk
    from toolgym.policy.corpus import stdlib_corpus
    from toolgym.policy.tokenizer import Tokenizer

    corpus = stdlib_corpus(max_bytes=300_000, val_fraction=0.5)
    chat = f'{mk.USER}Plan a trip{mk.END}{mk.ASSISTANT}{mk.THINK_OPEN}hmm{mk.THINK_CLOSE}{mk.CALL_OPEN}{{"name": "f"}}'
    return Tokenizer.train(corpus.train + [chat] * 20, vocab_size=300)
