"""The in-repo policy: tokenizer, model (DSA + MoE), generation, training and evaluation.

Importing this package does not import torch; the modules that need it import it themselves,
so the env side never pays for it.
"""
