"""The in-repo policy: tokenizer, model (DSA + MoE), generation, training and evaluation.

Importing this package does not import torch; the modules that need it import it themselves,
so the env side never pays for it.

Modules:
    model       ModelConfig, Transformer (MLA + DSA lightning indexer + DeepSeekMoE), KVCache
    kernel      fast paths (fused attention, the one-token decode step), each tested equal to its reference
    tokenizer   byte-level BPE with the chat markup as special tokens (no torch)
    corpus      offline corpora: the standard library's sources (no torch)
    generate    Session (batched, KV-cached, sparse decode), SamplingParams, Turn, token_logprobs
    checkpoint  save_checkpoint / load_checkpoint (safetensors + config.json + tokenizer.json)
    train_lm    the LM training loop and its stages (dense, indexer warm-up, sparse); pretrain
    evaluate    pass@k / pass^k evaluation of any policy on tasks
"""
