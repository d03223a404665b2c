"""Qwen2.5-VL vision tower (`Qwen2_5_VisionTransformerPretrainedModel`) in nnx.

patch embed (Conv3d with kernel = stride, written as one matmul over the processor's flattened
`[N, C*T*P*P]` rows) -> window permutation -> `depth` pre-norm blocks (RMSNorm, attention with
2-D RoPE, gated SiLU MLP with bias) where blocks in `fullatt_block_indexes` attend within each
temporal slice and the others within windows -> patch merger (RMSNorm per patch, 4 patches
concatenated, Linear-GELU(erf)-Linear) -> inverse permutation.
Reference: transformers `modeling_qwen2_5_vl.py`, `Qwen2_5_VisionTransformerPretrainedModel`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from ..layers import Linear, RMSNorm, gated_mlp, masked_softmax_attention, param
from ..remat import RematStack, check_remat, remat_block
from .config import VisionConfig
from .rope import apply_vision_rope, vision_rope_cos_sin
from .vision_layout import VisionLayout

VISION_NORM_EPS = 1e-6  # hard-coded in transformers (Qwen2_5_VLVisionBlock, Qwen2_5_VLPatchMerger)


class PatchEmbed(nnx.Module):
    """Conv3d(C, D, kernel=stride=(T, P, P), bias=False) on `[N, C*T*P*P]` rows == rows @ kernel.

    `kernel [C*T*P*P, D]` is torch's `proj.weight [D, C, T, P, P]` reshaped to `[D, -1]` and
    transposed (the row layout is (C, T, P, P), as the processor flattens it)."""

    def __init__(self, config: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.kernel = param(
            rngs,
            nnx.initializers.normal(0.02),
            (config.patch_dim, config.hidden_size),
            param_dtype,
            ("vision_patch", "vision_embed"),
        )
        self.dtype = dtype

    def __call__(self, pixel_values: jax.Array) -> jax.Array:
        return jnp.matmul(pixel_values.astype(self.dtype), self.kernel[...].astype(self.dtype))


class VisionAttention(nnx.Module):
    def __init__(self, config: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        d = config.hidden_size
        kw = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.qkv = Linear(d, 3 * d, axes=("vision_embed", "vision_heads"), **kw)
        self.proj = Linear(d, d, axes=("vision_heads", "vision_embed"), **kw)
        self.num_heads = config.num_heads
        self.head_dim = config.head_dim

    def __call__(self, x: jax.Array, cos, sin, blocks) -> jax.Array:
        """x `[N, D]`; blocks = (gather `[B, S]`, valid `[B, S]`, inverse `[N]`) from the layout:
        each token attends to the tokens of its own segment (window or temporal slice)."""
        gather, valid, inverse = blocks
        n = x.shape[0]
        qkv = self.qkv(x).reshape(n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        q = apply_vision_rope(q, cos, sin)
        k = apply_vision_rope(k, cos, sin)
        mask = valid[:, None, None, :]  # keys of each block
        out = masked_softmax_attention(q[gather], k[gather], v[gather], mask, self.head_dim**-0.5)
        out = out.reshape(-1, self.num_heads * self.head_dim)[inverse]  # [N, H * Dh]
        return self.proj(out)


class VisionMLP(nnx.Module):
    def __init__(self, config: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        d, f = config.hidden_size, config.intermediate_size
        kw = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate_proj = Linear(d, f, axes=("vision_embed", "vision_mlp"), **kw)
        self.up_proj = Linear(d, f, axes=("vision_embed", "vision_mlp"), **kw)
        self.down_proj = Linear(f, d, axes=("vision_mlp", "vision_embed"), **kw)

    def __call__(self, x):
        return gated_mlp(x, self.gate_proj, self.up_proj, self.down_proj)


class VisionBlock(nnx.Module):
    def __init__(self, config: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        self.norm1 = RMSNorm(config.hidden_size, eps=VISION_NORM_EPS, param_dtype=param_dtype)
        self.norm2 = RMSNorm(config.hidden_size, eps=VISION_NORM_EPS, param_dtype=param_dtype)
        self.attn = VisionAttention(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.mlp = VisionMLP(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, x, cos, sin, blocks):
        x = x + self.attn(self.norm1(x), cos, sin, blocks)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nnx.Module):
    """RMSNorm per patch, groups of `spatial_merge_unit` rows concatenated, Linear-GELU-Linear.

    `fc1`/`fc2` are transformers' `merger.mlp.0` / `merger.mlp.2`."""

    def __init__(self, config: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        merged = config.hidden_size * config.spatial_merge_unit
        kw = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.ln_q = RMSNorm(config.hidden_size, eps=VISION_NORM_EPS, param_dtype=param_dtype)
        self.fc1 = Linear(merged, merged, axes=("vision_merge", "vision_mlp"), **kw)
        self.fc2 = Linear(merged, config.out_hidden_size, axes=("vision_mlp", "embed"), **kw)
        self.merged = merged

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.ln_q(x).reshape(-1, self.merged)
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


def _block_call(block: VisionBlock, x, cos, sin, blocks):
    """One vision block (the function remat wraps)."""
    return block(x, cos, sin, blocks)


class VisionTransformer(nnx.Module, RematStack):
    """Pixels `[N, C*T*P*P]` + host `VisionLayout` -> merged features `[N / 4, out_hidden_size]`,
    in the processor's order (the order of the placeholder tokens).

    `remat`: per-block rematerialisation, a name of remat.REMAT_POLICIES."""

    def __init__(
        self, config: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs, remat: str = "none"
    ):
        self.config = config
        self.remat = check_remat(remat)
        self.patch_embed = PatchEmbed(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.blocks = nnx.List(
            [
                VisionBlock(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                for _ in range(config.depth)
            ]
        )
        self.merger = PatchMerger(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs)

    def __call__(self, pixel_values: jax.Array, layout: VisionLayout) -> jax.Array:
        cfg = self.config
        n_pad = layout.rotary_ids.shape[0]
        n = pixel_values.shape[0]
        if pixel_values.ndim != 2 or pixel_values.shape[1] != cfg.patch_dim:
            raise ValueError(
                f"pixel_values must be [num_patches, {cfg.patch_dim}], got {pixel_values.shape}"
            )
        if n not in (layout.num_patches, n_pad):
            raise ValueError(
                f"pixel_values has {n} rows but its grid_thw describes {layout.num_patches} "
                f"patches (padded layout: {n_pad})"
            )
        if n < n_pad:
            pixel_values = jnp.pad(pixel_values, ((0, n_pad - n), (0, 0)))
        unit = cfg.spatial_merge_unit
        x = self.patch_embed(pixel_values)  # [N, D]
        x = x.reshape(n_pad // unit, unit, -1)[layout.window_index].reshape(n_pad, -1)
        cos, sin = vision_rope_cos_sin(layout.rotary_ids, cfg.head_dim, cfg.rope_theta)
        full = set(cfg.fullatt_block_indexes)
        full_blocks = (layout.full_gather, layout.full_valid, layout.full_inverse)
        window_blocks = (layout.window_gather, layout.window_valid, layout.window_inverse)
        call = remat_block(_block_call, self.remat)
        for i, block in enumerate(self.blocks):
            x = call(block, x, cos, sin, full_blocks if i in full else window_blocks)
        merged = self.merger(x)  # [M, out]
        return merged[layout.reverse_index]
