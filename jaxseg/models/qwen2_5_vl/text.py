"""Qwen2.5-VL language model (`Qwen2_5_VLTextModel`): Qwen2 decoder blocks with M-RoPE.

q/k/v projections with bias, o_proj without, GQA, SiLU-gated MLP without bias, RMSNorm at
`rms_norm_eps`, final norm. Positions are `[3, B, L]` (t, h, w) M-RoPE ids (rope.py).

The decoder takes `inputs_embeds` (so the multimodal merge happens outside) and an optional
preallocated `KVCache` so one jitted function serves prefill and single-token decode:
keys/values are written with `dynamic_update_slice` at `cache.index`, and the mask is built
from the `[B, S_max]` key-validity mask (left padding = invalid slots) plus causality on slots.
"""

from __future__ import annotations

import jax
from flax import nnx

from ..kv_cache import KVCache, attention_mask_4d, grouped_attention
from ..layers import AttentionCapture, Embed, Linear, RMSNorm, gated_mlp
from ..remat import RematStack, check_remat, remat_block
from .config import TextConfig
from .rope import apply_text_rope, text_rope_cos_sin


class TextAttention(nnx.Module, AttentionCapture):
    def __init__(self, config: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        d, hd = config.hidden_size, config.head_dim
        h, kv = config.num_attention_heads, config.num_key_value_heads
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = Linear(d, h * hd, use_bias=True, axes=("embed", "q_heads"), **kw)
        self.k_proj = Linear(d, kv * hd, use_bias=True, axes=("embed", "kv_heads"), **kw)
        self.v_proj = Linear(d, kv * hd, use_bias=True, axes=("embed", "kv_heads"), **kw)
        self.o_proj = Linear(h * hd, d, use_bias=False, axes=("q_heads", "embed"), **kw)
        self.num_heads, self.num_kv_heads, self.head_dim = h, kv, hd

    def __call__(self, x, cos, sin, mask, cache_kv=None, index=None, prefix=None):
        """x `[B, L, D]`, mask `[B, 1, L, S]` (S = L without cache, S_max with cache).

        With `cache_kv = (k [B, S_max, KV, Dh], v)`, the new k/v are written at `index` and the
        updated pair is returned; `prefix = (k [P, KV, S_p, Dh], v, mask [P, S_p])` is a group's
        shared prompt, attended before the row's own slots (`kv_cache.grouped_attention`)."""
        b, length, _ = x.shape
        q = self.q_proj(x).reshape(b, length, self.num_heads, self.head_dim)
        k = self.k_proj(x).reshape(b, length, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).reshape(b, length, self.num_kv_heads, self.head_dim)
        q, k = apply_text_rope(q, cos, sin), apply_text_rope(k, cos, sin)
        new_kv = None
        if cache_kv is not None:
            ck, cv = cache_kv
            start = (0, index, 0, 0)
            k = jax.lax.dynamic_update_slice(ck, k.astype(ck.dtype), start)
            v = jax.lax.dynamic_update_slice(cv, v.astype(cv.dtype), start)
            new_kv = (k, v)
            k, v = k.astype(q.dtype), v.astype(q.dtype)
        self.capture(q, k, v, mask, self.head_dim**-0.5, cached=cache_kv is not None)
        out = grouped_attention(q, k, v, mask, self.head_dim**-0.5, prefix)
        return self.o_proj(out.reshape(b, length, -1)), new_kv


class TextMLP(nnx.Module):
    def __init__(self, config: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        d, f = config.hidden_size, config.intermediate_size
        kw = dict(use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = Linear(d, f, axes=("embed", "mlp"), **kw)
        self.up_proj = Linear(d, f, axes=("embed", "mlp"), **kw)
        self.down_proj = Linear(f, d, axes=("mlp", "embed"), **kw)

    def __call__(self, x):
        return gated_mlp(x, self.gate_proj, self.up_proj, self.down_proj)


class DecoderLayer(nnx.Module):
    def __init__(self, config: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        eps = config.rms_norm_eps
        self.input_layernorm = RMSNorm(config.hidden_size, eps=eps, param_dtype=param_dtype)
        self.self_attn = TextAttention(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(
            config.hidden_size, eps=eps, param_dtype=param_dtype
        )
        self.mlp = TextMLP(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x, cos, sin, mask, cache_kv=None, index=None, prefix=None):
        attn, new_kv = self.self_attn(
            self.input_layernorm(x), cos, sin, mask, cache_kv, index, prefix
        )
        x = x + attn
        return x + self.mlp(self.post_attention_layernorm(x)), new_kv


def _layer_hidden(layer: DecoderLayer, x, cos, sin, mask):
    """One decoder block without cache, hidden states only (the function remat wraps)."""
    return layer(x, cos, sin, mask)[0]


class TextModel(nnx.Module, RematStack):
    """embed_tokens + decoder layers + final norm (transformers `model.language_model`).

    `remat`: per-block rematerialisation of the cache-free (training) forward, a name of
    remat.REMAT_POLICIES ("none", "dots_saveable", "full")."""

    def __init__(
        self, config: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs, remat: str = "none"
    ):
        self.config = config
        self.dtype = dtype
        self.remat = check_remat(remat)
        self.embed_tokens = Embed(
            config.vocab_size, config.hidden_size, dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )
        self.layers = nnx.List(
            [
                DecoderLayer(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for _ in range(config.num_hidden_layers)
            ]
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps, param_dtype=param_dtype)

    def __call__(
        self,
        inputs_embeds: jax.Array,
        position_ids: jax.Array,
        attention_mask: jax.Array | None = None,
        kv_cache: KVCache | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """inputs_embeds `[B, L, D]`, position_ids `[3, B, L]`, attention_mask `[B, L]` (1 = real
        token). Returns final-normed hidden states `[B, L, D]` and the updated cache (or None)."""
        cfg = self.config
        b, length, _ = inputs_embeds.shape
        if position_ids.shape != (3, b, length):
            raise ValueError(f"position_ids must be [3, {b}, {length}], got {position_ids.shape}")
        x = inputs_embeds.astype(self.dtype)
        cos, sin = text_rope_cos_sin(
            position_ids, cfg.head_dim, cfg.rope_theta, cfg.mrope_section, x.dtype
        )
        mask, key_mask = attention_mask_4d(attention_mask, b, length, kv_cache)
        if kv_cache is None and self.remat != "none":
            block = remat_block(_layer_hidden, self.remat)
            for layer in self.layers:
                x = block(layer, x, cos, sin, mask)
            return self.norm(x), None
        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            cache_kv = None if kv_cache is None else (kv_cache.keys[i], kv_cache.values[i])
            index = None if kv_cache is None else kv_cache.index
            prefix = None if kv_cache is None else kv_cache.layer_prefix(i)
            x, new_kv = layer(x, cos, sin, mask, cache_kv, index, prefix)
            if new_kv is not None:
                new_keys.append(new_kv[0])
                new_values.append(new_kv[1])
        x = self.norm(x)
        if kv_cache is None:
            return x, None
        new_cache = kv_cache.replace(
            keys=tuple(new_keys),
            values=tuple(new_values),
            key_mask=key_mask,
            index=kv_cache.index + length,
        )
        return x, new_cache
