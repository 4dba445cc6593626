"""Tensor groups by name (embedding, attention, FFN), as the TensorGuard paper groups a checkpoint's tensors.

The paper's features average over tensors picked by substrings of their names, whatever the layout; the
substrings are tensor-name spellings, so they are kept here with the other spellings, as data. Changing them
changes the published features (`lineage.features.tensorguard`) and the pinned fingerprints.
"""

from __future__ import annotations

#: `(group, substrings)`, tried in this order; a name matching none is in the group "other".
TENSOR_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("embedding", ("embed", "wte", "lm_head")),
    ("attention", ("attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj", "qkv")),
    ("ffn", ("mlp", "ffn", "feed_forward", "gate_proj", "up_proj", "down_proj", "dense_h")),
)
