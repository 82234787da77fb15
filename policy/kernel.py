"""Fast paths behind plain functions; each has a reference in ``model.py`` and an equivalence test.

* ``fused_attention`` is PyTorch's ``scaled_dot_product_attention`` (a fused flash-style kernel
  on CPU as well; with an arbitrary mask it falls back to PyTorch's own math path), used for the
  expanded-MHA attention in training and prefill. Its reference is ``model.attention``. When the
  indexer's KL needs the probabilities, the model recomputes them outside autograd, so the
  backward pass never stores a [B, H, S, T] tensor for them.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float) -> Tensor:
    """Softmax attention without materialised probabilities.

    Args:
        q: [B, H, S, d] queries.
        k: [B, H, T, d] keys.
        v: [B, H, T, dv] values.
        mask: bool, broadcastable to [B, H, S, T], True where a key may be attended; or None.
            Every query must be allowed at least one key.
        scale: the softmax scale.

    Returns:
        [B, H, S, dv], equal to ``model.attention(q, k, v, mask, scale)`` up to rounding.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
