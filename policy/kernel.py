"""Fast paths behind plain functions; each has a reference in ``model.py`` and an equivalence test.

* ``fused_attention`` is PyTorch's ``scaled_dot_product_attention`` (a fused flash-style kernel
  on CPU as well), used for the expanded-MHA attention whenever the probabilities themselves are
  not needed (i.e. everywhere except when computing the indexer's KL target). Its reference is
  ``model.attention``. It saves the [B, H, S, T] score tensor and its copies in training and
  dense prefill, and stays within float rounding of the reference.
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
        [B, H, S, dv], equal to ``model.attention(q, k, v, mask, scale)[0]`` up to rounding.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
