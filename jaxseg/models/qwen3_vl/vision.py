"""Qwen3-VL vision tower (`Qwen3VLVisionModel`) in nnx.

patch embed (Conv3d with kernel = stride and a bias, one matmul over the processor's
`[N, C*T*P*P]` rows) + the learned absolute position table resampled bilinearly to each grid
-> `depth` pre-norm blocks (LayerNorm, attention with 2-D axial RoPE within each temporal
slice, GELU(tanh) MLP) -> patch merger (LayerNorm per patch, 4 patches concatenated,
Linear-GELU-Linear). DeepStack (Qwen3-VL report, "DeepStack"): after each block listed in
`deepstack_visual_indexes` a merger with post-shuffle LayerNorm projects the hidden states to
the decoder width; the decoder adds them to its first layers' hidden states at the visual
positions.
Reference: transformers modeling_qwen3_vl.py (`Qwen3VLVisionModel.forward`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseg.models.layers import LayerNorm, Linear, param
from jaxseg.models.qwen2_5_vl.rope import vision_rope_cos_sin
from jaxseg.models.qwen2_5_vl.vision import VisionAttention
from jaxseg.models.remat import RematStack, check_remat, remat_block

from .config import VisionConfig
from .vision_layout import VisionLayout

VISION_NORM_EPS = 1e-6  # hard-coded in transformers (Qwen3VLVisionBlock, Qwen3VLVisionPatchMerger)


class VisionMLP(nnx.Module):
    def __init__(self, config: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        d, f = config.hidden_size, config.intermediate_size
        kw = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.linear_fc1 = Linear(d, f, axes=("vision_embed", "vision_mlp"), **kw)
        self.linear_fc2 = Linear(f, d, axes=("vision_mlp", "vision_embed"), **kw)

    def __call__(self, x):
        return self.linear_fc2(jax.nn.gelu(self.linear_fc1(x), approximate=True))


class VisionBlock(nnx.Module):
    def __init__(self, config: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.norm1 = LayerNorm(config.hidden_size, eps=VISION_NORM_EPS, param_dtype=param_dtype)
        self.norm2 = LayerNorm(config.hidden_size, eps=VISION_NORM_EPS, param_dtype=param_dtype)
        self.attn = VisionAttention(config, **kw)
        self.mlp = VisionMLP(config, **kw)

    def __call__(self, x, cos, sin, blocks):
        x = x + self.attn(self.norm1(x), cos, sin, blocks)
        return x + self.mlp(self.norm2(x))


class PatchMerger(nnx.Module):
    """`spatial_merge_unit` consecutive patches -> one decoder-width token.

    `postshuffle_norm=False` (the final merger): LayerNorm per patch, then concatenate;
    `True` (DeepStack mergers): concatenate, then LayerNorm over the concatenation."""

    def __init__(
        self, config: VisionConfig, *, postshuffle_norm: bool, dtype, param_dtype, rngs: nnx.Rngs
    ):
        merged = config.hidden_size * config.spatial_merge_unit
        kw = dict(use_bias=True, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        norm_size = merged if postshuffle_norm else config.hidden_size
        self.norm = LayerNorm(norm_size, eps=VISION_NORM_EPS, param_dtype=param_dtype)
        self.linear_fc1 = Linear(merged, merged, axes=("vision_merge", "vision_mlp"), **kw)
        self.linear_fc2 = Linear(merged, config.out_hidden_size, axes=("vision_mlp", "embed"), **kw)
        self.postshuffle_norm = postshuffle_norm
        self.merged = merged

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.postshuffle_norm:
            x = self.norm(x.reshape(-1, self.merged))
        else:
            x = self.norm(x).reshape(-1, self.merged)
        return self.linear_fc2(jax.nn.gelu(self.linear_fc1(x), approximate=False))


def _block_call(block: VisionBlock, x, cos, sin, blocks):
    """One vision block (the function remat wraps)."""
    return block(x, cos, sin, blocks)


class VisionTransformer(nnx.Module, RematStack):
    """Pixels `[N, C*T*P*P]` + host `VisionLayout` -> (merged features `[N / 4, out]`,
    DeepStack features: one `[N / 4, out]` per `deepstack_visual_indexes` entry), in the
    processor's order (the order of the placeholder tokens)."""

    def __init__(
        self, config: VisionConfig, *, dtype, param_dtype, rngs: nnx.Rngs, remat: str = "none"
    ):
        self.config = config
        self.remat = check_remat(remat)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.patch_embed = Linear(
            config.patch_dim,
            config.hidden_size,
            use_bias=True,
            axes=("vision_patch", "vision_embed"),
            **kw,
        )
        self.pos_embed = param(
            rngs,
            nnx.initializers.normal(0.02),
            (config.num_position_embeddings, config.hidden_size),
            param_dtype,
            ("vision_pos", "vision_embed"),
        )
        self.blocks = nnx.List([VisionBlock(config, **kw) for _ in range(config.depth)])
        self.merger = PatchMerger(config, postshuffle_norm=False, **kw)
        self.deepstack_merger_list = nnx.List(
            [
                PatchMerger(config, postshuffle_norm=True, **kw)
                for _ in config.deepstack_visual_indexes
            ]
        )
        self.dtype = dtype

    def __call__(
        self, pixel_values: jax.Array, layout: VisionLayout
    ) -> tuple[jax.Array, list[jax.Array]]:
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
        x = self.patch_embed(pixel_values)  # [N, D]
        table = self.pos_embed[...]
        pos = jnp.sum(table[layout.interp_indices] * layout.interp_weights[..., None], axis=1)
        x = x + pos.astype(x.dtype)
        cos, sin = vision_rope_cos_sin(layout.rotary_ids, cfg.head_dim, cfg.rope_theta)
        blocks = (layout.full_gather, layout.full_valid, layout.full_inverse)
        call = remat_block(_block_call, self.remat)
        deepstack = []
        for i, block in enumerate(self.blocks):
            x = call(block, x, cos, sin, blocks)
            if i in cfg.deepstack_visual_indexes:
                k = cfg.deepstack_visual_indexes.index(i)
                deepstack.append(self.deepstack_merger_list[k](x))
        return self.merger(x), deepstack


def sincos_position_table(side: int, dim: int, *, scale: float = 1.0, base: float = 10000.0):
    """A 2-D sine-cosine table `[side * side, dim]` for the learned position embedding, rows in
    the table's row-major (h, w) order: dims [0, dim/4) sin(w * f), then cos(w * f), sin(h * f),
    cos(h * f), frequencies f = base^(-k / (dim/4)) (MAE, He et al. 2022, §A.1; big_vision's
    `posemb_sincos_2d`). Neighbouring positions get similar codes, so where a token sits can be
    read off its value linearly from the first step; `scale` sets its size against the patch
    embedding's (its per-dim RMS is scale / sqrt(2))."""
    if dim % 4:
        raise ValueError(f"sincos position table: width {dim} is not a multiple of 4")
    quarter = dim // 4
    freqs = base ** (-np.arange(quarter, dtype=np.float64) / quarter)  # [dim/4]
    h, w = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    wf = w.reshape(-1, 1) * freqs  # [side^2, dim/4]
    hf = h.reshape(-1, 1) * freqs
    table = np.concatenate([np.sin(wf), np.cos(wf), np.sin(hf), np.cos(hf)], axis=1)
    return (scale * table).astype(np.float32)


def init_position_table(model, scheme: str, *, scale: float = 1.0) -> None:
    """Re-initialise `model`'s learned vision position table in place: "sincos2d" (the table
    stays a trained parameter; only its starting values change) or "normal" (as built)."""
    if scheme == "normal":
        return
    if scheme != "sincos2d":
        raise ValueError(f"position table init {scheme!r}: choose 'normal' or 'sincos2d'")
    vision = model.visual
    side = int(round(vision.config.num_position_embeddings**0.5))
    table = sincos_position_table(side, vision.config.hidden_size, scale=scale)
    old = vision.pos_embed[...]
    vision.pos_embed.set_value(jax.device_put(jnp.asarray(table, old.dtype), old.sharding))
