"""SAM's two-way transformer (sam2/modeling/sam/transformer.py) in nnx.

Tokens (output tokens + prompts) [B, N, C] and image keys [B, h*w, C] update each other:
token self-attention, token->image cross-attention, token MLP, image->token cross-attention,
then a final token->image attention. Cross-attentions project to C / downsample_rate.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .config import Sam2DecoderConfig
from .layers import MLP, layer_norm


class Attention(nnx.Module):
    """Multi-head attention with q/k/v projected to `dim // downsample_rate` (torch SDPA,
    scale 1/sqrt(head_dim), no dropout at inference)."""

    def __init__(self, dim: int, heads: int, rngs: nnx.Rngs, downsample_rate: int = 1):
        internal = dim // downsample_rate
        self.heads = heads
        self.q_proj = nnx.Linear(dim, internal, rngs=rngs)
        self.k_proj = nnx.Linear(dim, internal, rngs=rngs)
        self.v_proj = nnx.Linear(dim, internal, rngs=rngs)
        self.out_proj = nnx.Linear(internal, dim, rngs=rngs)

    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        """q [B, Nq, C], k/v [B, Nk, C] -> [B, Nq, C]."""

        def heads(x):
            b, n, d = x.shape
            return x.reshape(b, n, self.heads, d // self.heads)

        q, k, v = heads(self.q_proj(q)), heads(self.k_proj(k)), heads(self.v_proj(v))
        scale = q.shape[-1] ** -0.5
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale
        weights = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v)
        b, n, h, d = out.shape
        return self.out_proj(out.reshape(b, n, h * d))


class TwoWayAttentionBlock(nnx.Module):
    def __init__(self, cfg: Sam2DecoderConfig, skip_first_layer_pe: bool, rngs: nnx.Rngs):
        c, rate = cfg.transformer_dim, cfg.attention_downsample_rate
        self.self_attn = Attention(c, cfg.heads, rngs)
        self.norm1 = layer_norm(c, rngs)
        self.cross_attn_token_to_image = Attention(c, cfg.heads, rngs, rate)
        self.norm2 = layer_norm(c, rngs)
        self.mlp = MLP(c, cfg.mlp_dim, c, 2, rngs)
        self.norm3 = layer_norm(c, rngs)
        self.norm4 = layer_norm(c, rngs)
        self.cross_attn_image_to_token = Attention(c, cfg.heads, rngs, rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def __call__(self, queries, keys, query_pe, key_pe):
        if self.skip_first_layer_pe:  # first layer: no PE and no residual (as sam2)
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + query_pe, keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nnx.Module):
    def __init__(self, cfg: Sam2DecoderConfig, rngs: nnx.Rngs):
        c = cfg.transformer_dim
        self.layers = nnx.List(
            [
                TwoWayAttentionBlock(cfg, skip_first_layer_pe=(i == 0), rngs=rngs)
                for i in range(cfg.depth)
            ]
        )
        self.final_attn_token_to_image = Attention(
            c, cfg.heads, rngs, cfg.attention_downsample_rate
        )
        self.norm_final_attn = layer_norm(c, rngs)

    def __call__(
        self, image: jax.Array, image_pe: jax.Array, tokens: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """image, image_pe [B, h*w, C]; tokens [B, N, C] -> (tokens [B, N, C], image [B, h*w, C])."""
        queries, keys = tokens, image
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, image_pe)
        q, k = queries + tokens, keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
