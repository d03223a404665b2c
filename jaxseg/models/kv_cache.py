"""The decoder's preallocated key/value cache and the attention mask over it, shared by every
policy family (one cache layout, `[B, S_max, KV, Dh]` per layer, so the sampler's cache edits
serve all of them)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class KVCache:
    """Preallocated per-layer key/value cache.

    keys, values: per layer `[B, S_max, num_key_value_heads, head_dim]` (after RoPE).
    key_mask `[B, S_max]` bool: slot holds a real (non-pad) token.
    index: int32 scalar, the slot the next token is written to (shared by all rows; rows of
    different prompt lengths are left-padded and their pad slots are invalid in `key_mask`).
    """

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    key_mask: jax.Array
    index: jax.Array

    @classmethod
    def create(cls, config, batch_size: int, max_length: int, dtype=jnp.float32) -> KVCache:
        """Zeros for `config` (a text config with num_hidden_layers, num_key_value_heads and
        head_dim)."""
        shape = (batch_size, max_length, config.num_key_value_heads, config.head_dim)
        zeros = tuple(jnp.zeros(shape, dtype) for _ in range(config.num_hidden_layers))
        return cls(
            keys=zeros,
            values=tuple(jnp.zeros(shape, dtype) for _ in range(config.num_hidden_layers)),
            key_mask=jnp.zeros((batch_size, max_length), bool),
            index=jnp.zeros((), jnp.int32),
        )

    @property
    def max_length(self) -> int:
        return int(self.key_mask.shape[1])


def attention_mask_4d(
    attention_mask: jax.Array | None, batch: int, length: int, kv_cache: KVCache | None
) -> tuple[jax.Array, jax.Array | None]:
    """Boolean mask `[B, 1, L, S]` and the updated key-validity mask (cache case).

    Without cache: causal over `L` and key padding from `attention_mask [B, L]`.
    With cache: query i sits in slot `index + i`; it sees slots `<= index + i` that are valid
    in the cache's key mask after this step's `attention_mask` is written into it."""
    valid = (
        jnp.ones((batch, length), bool) if attention_mask is None else attention_mask.astype(bool)
    )
    if kv_cache is None:
        causal = jnp.tril(jnp.ones((length, length), bool))
        return causal[None, None] & valid[:, None, None, :], None
    index = kv_cache.index
    key_mask = jax.lax.dynamic_update_slice(kv_cache.key_mask, valid, (0, index))
    q_slot = index + jnp.arange(length)
    k_slot = jnp.arange(kv_cache.max_length)
    causal = k_slot[None, :] <= q_slot[:, None]
    return causal[None, None] & key_mask[:, None, None, :], key_mask
