"""SAM2's prompt encoder (sam2/modeling/sam/prompt_encoder.py, position_encoding.py) in nnx.

Points and boxes become sparse tokens [B, N, C] (random-Fourier position code of the pixel
centre plus a learned type embedding); a mask becomes a dense map [B, h, w, C] (two 2x2
stride-2 convs + a 1x1 conv); no mask gives the learned `no_mask_embed` everywhere.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from .config import Sam2DecoderConfig
from .layers import Buffer, Embedding, LayerNorm2d, PatchConv, gelu

NUM_POINT_EMBEDDINGS = 4  # label 0 negative, 1 positive, 2 box top-left, 3 box bottom-right


class PositionEmbeddingRandom(nnx.Module):
    """Random spatial frequencies: pe(x) = [sin(2 pi (2x-1) G), cos(2 pi (2x-1) G)], x in [0,1]^2."""

    def __init__(self, num_pos_feats: int, rngs: nnx.Rngs):
        self.positional_encoding_gaussian_matrix = Buffer(
            jax.random.normal(rngs.params(), (2, num_pos_feats), jnp.float32)
        )

    def encode(self, coords01: jax.Array) -> jax.Array:
        """[..., 2] (x, y) in [0, 1] -> [..., C]."""
        proj = (2.0 * coords01 - 1.0) @ self.positional_encoding_gaussian_matrix[...]
        proj = 2.0 * math.pi * proj
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)

    def grid(self, h: int, w: int) -> jax.Array:
        """[h, w, C]: the code of every pixel centre of an h x w grid."""
        ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
        xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
        xy = jnp.stack(jnp.broadcast_arrays(xs[None, :], ys[:, None]), axis=-1)
        return self.encode(xy)

    def points(self, coords: jax.Array, image_hw: tuple[int, int]) -> jax.Array:
        """coords [..., 2] (x, y) in pixels of an image of size image_hw -> [..., C]."""
        scale = jnp.asarray([image_hw[1], image_hw[0]], jnp.float32)
        return self.encode(coords.astype(jnp.float32) / scale)


class MaskDownscaling(nnx.Module):
    """torch `mask_downscaling` Sequential: conv2x2 s2, LN2d, GELU, conv2x2 s2, LN2d, GELU, conv1x1."""

    def __init__(self, mask_in_chans: int, embed_dim: int, rngs: nnx.Rngs):
        q = mask_in_chans // 4
        self.conv1 = PatchConv(1, q, 2, rngs)
        self.norm1 = LayerNorm2d(q)
        self.conv2 = PatchConv(q, mask_in_chans, 2, rngs)
        self.norm2 = LayerNorm2d(mask_in_chans)
        self.conv3 = PatchConv(mask_in_chans, embed_dim, 1, rngs)

    def __call__(self, masks: jax.Array) -> jax.Array:
        """[B, 4h, 4w, 1] -> [B, h, w, C]."""
        x = gelu(self.norm1(self.conv1(masks)))
        x = gelu(self.norm2(self.conv2(x)))
        return self.conv3(x)


class PromptEncoder(nnx.Module):
    def __init__(self, cfg: Sam2DecoderConfig, rngs: nnx.Rngs):
        c = cfg.transformer_dim
        self.embed_dim = c
        self.input_image_size = (cfg.input_image_size, cfg.input_image_size)
        self.image_embedding_size = (cfg.image_embedding_size, cfg.image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom(c // 2, rngs)
        self.point_embeddings = nnx.List(
            [Embedding(1, c, rngs) for _ in range(NUM_POINT_EMBEDDINGS)]
        )
        self.not_a_point_embed = Embedding(1, c, rngs)
        self.mask_downscaling = MaskDownscaling(cfg.mask_in_chans, c, rngs)
        self.no_mask_embed = Embedding(1, c, rngs)

    def dense_pe(self) -> jax.Array:
        """[h, w, C]: `get_dense_pe()` (torch gives it as [1, C, h, w])."""
        return self.pe_layer.grid(*self.image_embedding_size)

    def embed_points(self, coords: jax.Array, labels: jax.Array, pad: bool) -> jax.Array:
        """coords [B, P, 2] pixels, labels [B, P] int (-1 pad, 0 neg, 1 pos, 2/3 box corners)
        -> [B, P (+1 if pad), C]. `pad` appends a (0, 0) point labelled -1, as torch does when
        no box follows."""
        coords = coords.astype(jnp.float32) + 0.5  # pixel centre
        labels = labels.astype(jnp.int32)
        if pad:
            b = coords.shape[0]
            coords = jnp.concatenate([coords, jnp.zeros((b, 1, 2), jnp.float32)], axis=1)
            labels = jnp.concatenate([labels, -jnp.ones((b, 1), jnp.int32)], axis=1)
        emb = self.pe_layer.points(coords, self.input_image_size)
        lab = labels[..., None]
        emb = jnp.where(lab == -1, self.not_a_point_embed.weight[0], emb)
        for k, table in enumerate(self.point_embeddings):
            emb = jnp.where(lab == k, emb + table.weight[0], emb)
        return emb

    def embed_boxes(self, boxes: jax.Array) -> jax.Array:
        """boxes [B, 4] (x0, y0, x1, y1) pixels -> [B, 2, C] (two corner tokens)."""
        corners = boxes.astype(jnp.float32).reshape(-1, 2, 2) + 0.5
        emb = self.pe_layer.points(corners, self.input_image_size)
        corner_types = jnp.stack(
            [self.point_embeddings[2].weight[0], self.point_embeddings[3].weight[0]]
        )
        return emb + corner_types

    def embed_masks(self, masks: jax.Array) -> jax.Array:
        """[B, 1, 4h, 4w] (channel-first, as torch) -> [B, h, w, C]."""
        return self.mask_downscaling(jnp.transpose(masks, (0, 2, 3, 1)).astype(jnp.float32))

    def __call__(
        self,
        batch_size: int,
        points: tuple[jax.Array, jax.Array] | None = None,
        boxes: jax.Array | None = None,
        masks: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """torch PromptEncoder.forward -> (sparse [B, N, C], dense [B, h, w, C]).

        Unlike torch, the batch size is given (the image batch), so prompts with a batch of 1
        broadcast and the no-prompt case gives [B, 0, C] rather than [1, 0, C].
        """
        parts = []
        if points is not None:
            parts.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))
        parts = [jnp.broadcast_to(p, (batch_size, *p.shape[1:])) for p in parts]
        if parts:
            sparse = jnp.concatenate(parts, axis=1)
        else:
            sparse = jnp.zeros((batch_size, 0, self.embed_dim), jnp.float32)
        if masks is not None:
            dense = self.embed_masks(masks)
            dense = jnp.broadcast_to(dense, (batch_size, *dense.shape[1:]))
        else:
            h, w = self.image_embedding_size
            dense = jnp.broadcast_to(
                self.no_mask_embed.weight[0], (batch_size, h, w, self.embed_dim)
            )
        return sparse, dense
