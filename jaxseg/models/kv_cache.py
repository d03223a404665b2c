"""The decoder's preallocated key/value cache and the attention over it, shared by every policy
family (one cache layout, `[B, S_max, KV, Dh]` per layer, so the sampler's cache edits serve all
of them).

A group's prompt can be held once (`KVCache.prefix_*`): the G rollouts of one prompt share its
keys/values `[P, KV, S_p, Dh]` (P prompts, rows p*G .. p*G+G-1 belong to prompt p) and each row
keeps only its own suffix (generated tokens, later turns) in `keys`/`values`. Attention then runs
in two parts, the shared prefix (one matmul for the G*L queries of a group) and the row's suffix,
combined exactly by their log-sum-exp (`attend_two_part`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from .layers import masked_softmax_attention


@struct.dataclass
class KVCache:
    """Preallocated per-layer key/value cache.

    keys, values: per layer `[B, S_max, num_key_value_heads, head_dim]` (after RoPE).
    key_mask `[B, S_max]` bool: slot holds a real (non-pad) token.
    index: int32 scalar, the slot the next token is written to (shared by all rows; rows of
    different prompt lengths are left-padded and their pad slots are invalid in `key_mask`).
    prefix_keys, prefix_values: None, or per layer `[P, KV, S_p, Dh]`: a prompt's keys/values
    held once for its `G = B // P` rows, which attend to them before their own slots.
    prefix_mask `[P, S_p]` bool (with a prefix): valid prompt slots.
    """

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    key_mask: jax.Array
    index: jax.Array
    prefix_keys: tuple[jax.Array, ...] | None = None
    prefix_values: tuple[jax.Array, ...] | None = None
    prefix_mask: jax.Array | None = None

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

    @property
    def has_prefix(self) -> bool:
        return self.prefix_mask is not None

    def layer_prefix(self, i: int) -> tuple[jax.Array, jax.Array, jax.Array] | None:
        """(keys `[P, KV, S_p, Dh]`, values, mask `[P, S_p]`) of layer i, or None."""
        if not self.has_prefix:
            return None
        return self.prefix_keys[i], self.prefix_values[i], self.prefix_mask


def split_prefix(cache: KVCache, group_size: int, suffix_length: int) -> KVCache:
    """A filled prompt cache (`P` rows, index at its end) as the shared prefix of `P * G` rows
    with an empty per-row part of `suffix_length` slots (index 0)."""
    rows = cache.key_mask.shape[0] * group_size

    def empty(x):
        return jnp.zeros((rows, suffix_length, *x.shape[2:]), x.dtype)

    return KVCache(
        keys=tuple(empty(k) for k in cache.keys),
        values=tuple(empty(v) for v in cache.values),
        key_mask=jnp.zeros((rows, suffix_length), bool),
        index=jnp.zeros((), jnp.int32),
        prefix_keys=tuple(jnp.swapaxes(k, 1, 2) for k in cache.keys),
        prefix_values=tuple(jnp.swapaxes(v, 1, 2) for v in cache.values),
        prefix_mask=cache.key_mask,
    )


def attention_mask_4d(
    attention_mask: jax.Array | None, batch: int, length: int, kv_cache: KVCache | None
) -> tuple[jax.Array, jax.Array | None]:
    """Boolean mask `[B, 1, L, S]` and the updated key-validity mask (cache case).

    Without cache: causal over `L` and key padding from `attention_mask [B, L]`.
    With cache: query i sits in slot `index + i`; it sees slots `<= index + i` that are valid
    in the cache's key mask after this step's `attention_mask` is written into it (a shared
    prefix, which precedes every slot, is masked by `prefix_mask` alone)."""
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


def _softmax_parts(scores: jax.Array, mask: jax.Array, dtype) -> tuple[jax.Array, ...]:
    """Masked scores (the dtype's minimum where masked, as transformers' eager attention) in
    float32: (exp(s - m), m, sum) over the last axis."""
    s = jnp.where(mask, scores, jnp.finfo(dtype).min).astype(jnp.float32)
    m = jnp.max(s, axis=-1, keepdims=True)
    e = jnp.exp(s - m)
    return e, m, jnp.sum(e, axis=-1, keepdims=True)


def _grouped_scores(q: jax.Array, k: jax.Array) -> jax.Array:
    """q `[B, L, KV, R, D]`, k `[B, S, KV, D]` -> `[B, KV, R, L, S]` in q's dtype. One query
    (decode) is a fused multiply-reduce that reads the cache once in its own layout (a dot
    would first copy the cache to a heads-major layout every step)."""
    if q.shape[1] == 1:
        prod = q[:, 0, None] * k[:, :, :, None, :]  # [B, S, KV, R, D]
        s = jnp.sum(prod.astype(jnp.float32), axis=-1).astype(q.dtype)
        return jnp.transpose(s, (0, 2, 3, 1))[:, :, :, None, :]
    return jnp.einsum("blgrd,bsgd->bgrls", q, k)


def _grouped_values(p: jax.Array, v: jax.Array) -> jax.Array:
    """p `[B, KV, R, L, S]`, v `[B, S, KV, D]` -> `[B, L, KV, R, D]` (float32 accumulation)."""
    if p.shape[3] == 1:
        pt = jnp.transpose(p[:, :, :, 0], (0, 3, 1, 2))  # [B, S, KV, R]
        prod = pt[..., None].astype(jnp.float32) * v[:, :, :, None, :].astype(jnp.float32)
        return jnp.sum(prod, axis=1)[:, None].astype(p.dtype)
    return jnp.einsum("bgrls,bsgd->blgrd", p, v)


def grouped_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    mask: jax.Array,
    scale: float,
    prefix: tuple[jax.Array, jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Grouped-query attention of q `[B, L, H, D]` over k/v `[B, S, KV, D]` (KV heads shared by
    H // KV query heads), mask `[B, 1, L, S]`; with `prefix = (pk [P, KV, S_p, D], pv,
    pmask [P, S_p])` also over each row's shared prefix (`attend_two_part`).
    A decode step (L = 1) does not repeat the KV heads (fused multiply-reduces over the cache,
    `_grouped_scores`); longer queries without a prefix use `layers.masked_softmax_attention`
    over repeated heads. Scores in q's dtype, softmax in float32 (transformers' eager
    attention). Returns `[B, L, H, D]`."""
    b, length, h, d = q.shape
    kv = k.shape[2]
    if prefix is None and length > 1:
        # prefill / teacher forcing: repeated heads in plain batched GEMMs run ~2x faster on
        # XLA:CPU than the grouped einsum (measured at [8, 306] queries)
        rep = lambda x: jnp.repeat(x, h // kv, axis=2)  # noqa: E731
        return masked_softmax_attention(q, rep(k), rep(v), mask, scale)
    qg = q.reshape(b, length, kv, h // kv, d)
    scale = jnp.asarray(scale, q.dtype)
    scores = _grouped_scores(qg, k) * scale
    e, m, total = _softmax_parts(scores, mask[:, :, None], q.dtype)  # [B, KV, R, L, S]
    if prefix is None:
        out = _grouped_values((e / total).astype(q.dtype), v)
        return out.reshape(b, length, h, d)
    return attend_two_part(qg, scale, (e, m, total), v, prefix).reshape(b, length, h, d)


def attend_two_part(qg, scale, suffix_parts, v, prefix) -> jax.Array:
    """Combines attention over a group's shared prefix with each row's own slots.

    qg `[B, L, KV, R, D]` (B = P * G rows), suffix_parts = (exp(s - m), m, sum) of the row's own
    scores `[B, KV, R, L, S]`, v `[B, S, KV, D]`, prefix = (pk `[P, KV, S_p, D]`, pv, pmask
    `[P, S_p]`). The prefix scores of a group's G*L*R queries are one matmul per (prompt, kv
    head); the two parts' unnormalised outputs are rescaled to the common max and divided by
    the combined sum (log-sum-exp merge), which equals one softmax over both parts.
    Returns `[B, L, KV, R, D]`."""
    pk, pv, pmask = prefix
    b, length, kv, r, d = qg.shape
    p = pk.shape[0]
    g = b // p
    e_s, m_s, l_s = suffix_parts
    # [P, KV, G*R*L, D] queries against [P, KV, S_p, D] keys
    qp = jnp.transpose(qg.reshape(p, g, length, kv, r, d), (0, 3, 1, 4, 2, 5))
    qp = qp.reshape(p, kv, g * r * length, d)
    sp = jnp.einsum("pkmd,pksd->pkms", qp, pk.astype(qg.dtype)) * scale
    e_p, m_p, l_p = _softmax_parts(sp, pmask[:, None, None, :], qg.dtype)
    o_p = jnp.einsum("pkms,pksd->pkmd", e_p.astype(qg.dtype), pv.astype(qg.dtype))
    o_p = o_p.astype(jnp.float32).reshape(p, kv, g, r, length, d)
    o_p = jnp.transpose(o_p, (0, 2, 1, 3, 4, 5)).reshape(b, kv, r, length, d)
    m_p = jnp.transpose(m_p.reshape(p, kv, g, r, length), (0, 2, 1, 3, 4)).reshape(
        b, kv, r, length, 1
    )
    l_p = jnp.transpose(l_p.reshape(p, kv, g, r, length), (0, 2, 1, 3, 4)).reshape(
        b, kv, r, length, 1
    )
    o_s = jnp.moveaxis(_grouped_values(e_s.astype(qg.dtype), v).astype(jnp.float32), 1, 3)
    m = jnp.maximum(m_p, m_s)
    w_p, w_s = jnp.exp(m_p - m), jnp.exp(m_s - m)
    out = (o_p * w_p + o_s * w_s) / (l_p * w_p + l_s * w_s)  # [B, KV, R, L, D]
    return jnp.transpose(out, (0, 3, 1, 2, 4)).astype(qg.dtype)
