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


# --- toolgym serve: a tiny checkpoint behind a real uvicorn server (test_serve, test_serve_responses)


@pytest.fixture(scope="module")
def ckpt(small_tokenizer):
    """A tiny random checkpoint in float64 (greedy paths compared exactly)."""
    from toolgym.policy.checkpoint import Checkpoint

    cfg = ModelConfig(
        vocab_size=300, dim=64, n_layers=2, n_dense_layers=1, inter_dim=128, n_heads=4, q_lora_rank=32,
        kv_lora_rank=32, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8,
        n_shared_experts=1, n_activated_experts=2, moe_inter_dim=32, index_n_heads=2, index_head_dim=16, index_topk=8,
    )  # fmt: skip
    return Checkpoint(Transformer(cfg, seed=0).double().eval(), small_tokenizer)


@pytest.fixture(scope="module")
def url(ckpt):
    """The API base of ``ckpt`` served as ``tiny`` (12 tokens per action unless a request says otherwise)."""
    pytest.importorskip("fastapi")
    from toolgym.policy.serve import BackgroundServer, Engine, ServeConfig, create_app

    torch.set_num_threads(1)
    engine = Engine(ckpt, ServeConfig(name="tiny", max_tokens=12, max_tokens_limit=64))
    with BackgroundServer(create_app(engine)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    """The official ``openai`` client of ``url`` (no retries)."""
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
