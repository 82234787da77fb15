"""The benchmarks behind ``toolgym bench …``: each measured side by side with its baseline in one run.

Modules (imported on demand: importing this package imports none of them, so neither torch nor
the synthesis pipeline is loaded until a benchmark runs):
    env      ``toolgym bench env``: env step and reset vs a plain-Python floor, re-templating, SkyRL-Gym
    synth    ``toolgym bench synth``: synthesis throughput (1 vs N workers), hardness and kind mix per difficulty
    model    ``toolgym bench model``: DSA vs dense attention, MoE vs dense FFN, cache size, balance, quality
    sandbox  ``toolgym bench sandbox``: subprocess vs sandbox call vs warm kernel vs docker exec
    eval     ``toolgym bench eval``: the model policy's episodes/s and tokens/s at 1 slot vs 16
"""
