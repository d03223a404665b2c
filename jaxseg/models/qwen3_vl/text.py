"""Qwen3-VL language model (`Qwen3VLTextModel`): Qwen3 decoder blocks with interleaved M-RoPE
and DeepStack.

Attention: q/k/v/o projections (bias only with `attention_bias`), explicit `head_dim`, per-head
RMSNorm on queries and keys before the rotary (Qwen3), GQA. SiLU-gated MLP without bias,
RMSNorm at `rms_norm_eps`, final norm. Positions are `[3, B, L]` (t, h, w) M-RoPE ids.

DeepStack: `deepstack [K, B, L, D]` (zeros outside the visual positions) is added to the
output of decoder layer k for k < K, as `Qwen3VLTextModel._deepstack_process` adds each level's
visual features at the visual positions. Decode steps (no visual tokens) pass None.
The cache layout and mask are the shared `jaxseg.models.kv_cache` ones.
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxseg.models.kv_cache import KVCache, attention_mask_4d, grouped_attention
from jaxseg.models.layers import AttentionCapture, Embed, Linear, RMSNorm, gated_mlp
from jaxseg.models.qwen2_5_vl.rope import apply_text_rope
from jaxseg.models.remat import RematStack, check_remat, remat_block

from .config import TextConfig
from .rope import text_rope_cos_sin


class TextAttention(nnx.Module, AttentionCapture):
    def __init__(self, config: TextConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        d, hd = config.hidden_size, config.head_dim
        h, kv = config.num_attention_heads, config.num_key_value_heads
        bias = config.attention_bias
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.q_proj = Linear(d, h * hd, use_bias=bias, axes=("embed", "q_heads"), **kw)
        self.k_proj = Linear(d, kv * hd, use_bias=bias, axes=("embed", "kv_heads"), **kw)
        self.v_proj = Linear(d, kv * hd, use_bias=bias, axes=("embed", "kv_heads"), **kw)
        self.o_proj = Linear(h * hd, d, use_bias=bias, axes=("q_heads", "embed"), **kw)
        eps = config.rms_norm_eps
        self.q_norm = RMSNorm(hd, eps=eps, param_dtype=param_dtype, axes=("head_dim",))
        self.k_norm = RMSNorm(hd, eps=eps, param_dtype=param_dtype, axes=("head_dim",))
        self.num_heads, self.num_kv_heads, self.head_dim = h, kv, hd

    def __call__(self, x, cos, sin, mask, cache_kv=None, index=None, prefix=None):
        """x `[B, L, D]`, mask `[B, 1, L, S]`; with `cache_kv = (k, v)` each
        `[B, S_max, KV, Dh]`, the new keys/values are written at `index` and returned;
        `prefix = (k [P, KV, S_p, Dh], v, mask [P, S_p])` is a group's shared prompt, attended
        before the row's own slots (`kv_cache.grouped_attention`)."""
        b, length, _ = x.shape
        q = self.q_norm(self.q_proj(x).reshape(b, length, self.num_heads, self.head_dim))
        k = self.k_norm(self.k_proj(x).reshape(b, length, self.num_kv_heads, self.head_dim))
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
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=eps, param_dtype=param_dtype)
        self.self_attn = TextAttention(config, **kw)
        self.post_attention_layernorm = RMSNorm(
            config.hidden_size, eps=eps, param_dtype=param_dtype
        )
        self.mlp = TextMLP(config, **kw)

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
    """embed_tokens + decoder layers (+ DeepStack) + final norm (transformers
    `model.language_model`). `remat`: per-block rematerialisation of the cache-free forward."""

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
        deepstack: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache | None]:
        """inputs_embeds `[B, L, D]`, position_ids `[3, B, L]`, attention_mask `[B, L]`,
        deepstack `[K, B, L, D]` or None. Returns final-normed hidden states `[B, L, D]` and the
        updated cache (or None)."""
        cfg = self.config
        b, length, _ = inputs_embeds.shape
        if position_ids.shape != (3, b, length):
            raise ValueError(f"position_ids must be [3, {b}, {length}], got {position_ids.shape}")
        x = inputs_embeds.astype(self.dtype)
        cos, sin = text_rope_cos_sin(
            position_ids, cfg.head_dim, cfg.rope_theta, cfg.mrope_section, x.dtype
        )
        mask, key_mask = attention_mask_4d(attention_mask, b, length, kv_cache)
        n_deep = 0 if deepstack is None else deepstack.shape[0]
        if kv_cache is None and self.remat != "none":
            block = remat_block(_layer_hidden, self.remat)
            for i, layer in enumerate(self.layers):
                x = block(layer, x, cos, sin, mask)
                if i < n_deep:
                    x = x + deepstack[i].astype(x.dtype)
            return self.norm(x), None
        new_keys, new_values = [], []
        for i, layer in enumerate(self.layers):
            cache_kv = None if kv_cache is None else (kv_cache.keys[i], kv_cache.values[i])
            index = None if kv_cache is None else kv_cache.index
            prefix = None if kv_cache is None else kv_cache.layer_prefix(i)
            x, new_kv = layer(x, cos, sin, mask, cache_kv, index, prefix)
            if i < n_deep:
                x = x + deepstack[i].astype(x.dtype)
            if new_kv is not None:
                new_keys.append(new_kv[0])
                new_values.append(new_kv[1])
        x = self.norm(x)
        if kv_cache is None:
            return x, None
        return x, kv_cache.replace(
            keys=tuple(new_keys),
            values=tuple(new_values),
            key_mask=key_mask,
            index=kv_cache.index + length,
        )
