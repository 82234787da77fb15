"""A GRPO smoke run through TRL's real trainer on toolgym tasks: a tiny Qwen2 built here, on CPU, nothing downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

trl = pytest.importorskip("trl", reason="the TRL adapter needs the `trl` extra: pip install 'toolgym[trl]'")
transformers = pytest.importorskip("transformers", reason="the TRL adapter needs transformers")
datasets = pytest.importorskip("datasets", reason="the GRPO smoke run needs `datasets`")

from .conftest import readme_snippet  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<tool_response>",
            "</tool_response>"]  # fmt: skip


def tiny_tokenizer() -> Any:
    """A byte-level BPE trained here on a few strings, with Qwen2.5's chat template (TRL parses its tool calls)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ['{"name": "search", "arguments": {"query": "who"}}', "Find the person. Submit the answer."] * 20
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(corpus, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    fast.chat_template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    return fast


@pytest.mark.slow
def test_the_readme_grpo_snippet_trains_two_steps_on_toolgym_tasks(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8192,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model = transformers.Qwen2ForCausalLM(config)
    args = trl.GRPOConfig(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, num_generations=2,
        max_completion_length=24, learning_rate=1e-3, logging_steps=1, report_to=[], save_strategy="no",
        use_cpu=True, bf16=False, dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    # the README's snippet, as written but for the model (built here, not downloaded), its settings and n
    code = readme_snippet(
        0,
        {
            'model="Qwen/Qwen3-0.6B",': "model=MODEL, processing_class=TOKENIZER,",
            'GRPOConfig(output_dir="runs/grpo-search", max_steps=100, max_completion_length=1024)': "ARGS",
            "n=64": "n=2",
        },
    )
    ns: dict[str, Any] = {"MODEL": model, "TOKENIZER": tokenizer, "ARGS": args}
    exec(compile(code, "README.md", "exec"), ns)
    trainer, envs = ns["trainer"], ns["envs"]
    # the environments own the reward: one reward source per task class, named after it (TRL's get_reward rule)
    assert set(trainer.reward_func_names) == {cls.__name__ for cls in envs.values()} and len(envs) == 2
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 2 and len(logs) == 2
    # each step logs the verifier's reward of the task it drew (None for the task not in that batch)
    for h in logs:
        drawn = [
            float(h[f"rewards/{c.__name__}/mean"])
            for c in envs.values()
            if h.get(f"rewards/{c.__name__}/mean") is not None
        ]
        assert drawn and all(0.0 <= r <= 1.0 for r in drawn), h
        assert "tools/call_frequency" in h
    # every pooled instance was reset onto its own task
    for tid, pool in trainer._environment_pool.items():
        assert pool and all(inst._episode.task.task_id == tid and inst._episode._ctx is not None for inst in pool)
