"""SAM2's prompt encoder + mask decoder as one nnx module: image features + prompts -> masks.

This is the trainable part of the Sa2VA / VideoSEG-O3 [SEG] -> mask path
(arXiv 2606.06819 ([SEG] decoding)): the frozen SAM2 image encoder runs in the sidecar
(`SidecarClient.image_features`), the [SEG] hidden state, projected to C, is injected as an
extra sparse prompt token, and this module decodes the keyframe mask, memory-free.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from .config import Sam2DecoderConfig
from .mask_decoder import DecoderOutput, MaskDecoder
from .prompt_encoder import PromptEncoder

NO_OBJ_SCORE = -1024.0  # sam2_base.NO_OBJ_SCORE: mask logit where no object is predicted


class SAM2MaskDecoderModule(nnx.Module):
    """Holds `prompt_encoder` and `mask_decoder` (torch `sam_prompt_encoder` /
    `sam_mask_decoder`); weights.py maps their checkpoint keys."""

    def __init__(self, cfg: Sam2DecoderConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.prompt_encoder = PromptEncoder(cfg, rngs)
        self.mask_decoder = MaskDecoder(cfg, rngs)

    def sparse_and_dense(
        self,
        batch_size: int,
        extra_tokens: jax.Array | None = None,
        points: tuple[jax.Array, jax.Array] | None = None,
        boxes: jax.Array | None = None,
        mask_input: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Prompt tokens as sam2 builds them, then the injected tokens: (sparse [B, N+K, C],
        dense [B, h, w, C]).

        No points and no boxes: like `SAM2Base._forward_sam_heads`, a (0, 0) point labelled -1
        is encoded, which the prompt encoder pads with a second one, so sparse starts with two
        `not_a_point_embed` tokens. Sa2VA's `inject_language_embd` (and VideoSEG-O3, which
        reuses it) calls that path and appends the [SEG] embedding, so
        `extra_tokens=[SEG] [B, 1, C]` with no prompts gives exactly its decoder input
        [not_a_point, not_a_point, seg] with the no-mask dense embedding. With points and/or
        boxes the encoder behaves as torch's PromptEncoder.forward (points padded only when no
        box follows), and extra tokens still come last.
        """
        if points is None and boxes is None:
            points = (
                jnp.zeros((batch_size, 1, 2), jnp.float32),
                -jnp.ones((batch_size, 1), jnp.int32),
            )
        sparse, dense = self.prompt_encoder(batch_size, points, boxes, mask_input)
        if extra_tokens is not None:
            sparse = jnp.concatenate([sparse, extra_tokens.astype(sparse.dtype)], axis=1)
        return sparse, dense

    def decode(
        self,
        image_embed: jax.Array,
        high_res_feats: list[jax.Array] | tuple[jax.Array, jax.Array] | None,
        extra_tokens: jax.Array | None = None,
        points: tuple[jax.Array, jax.Array] | None = None,
        boxes: jax.Array | None = None,
        mask_input: jax.Array | None = None,
        multimask: bool = False,
        stability_selection: bool | None = None,
    ) -> DecoderOutput:
        """Like `__call__` but returns every output, the mask tokens included."""
        b = self._check_inputs(image_embed, high_res_feats, extra_tokens, points, boxes, mask_input)
        sparse, dense = self.sparse_and_dense(b, extra_tokens, points, boxes, mask_input)
        embed = jnp.transpose(image_embed, (0, 2, 3, 1))
        high_res = None
        if high_res_feats is not None:
            high_res = tuple(jnp.transpose(f, (0, 2, 3, 1)) for f in high_res_feats)
        return self.mask_decoder(
            embed,
            self.prompt_encoder.dense_pe(),
            sparse,
            dense,
            multimask=multimask,
            high_res=high_res,
            stability_selection=stability_selection,
        )

    def __call__(
        self,
        image_embed: jax.Array,
        high_res_feats: list[jax.Array] | tuple[jax.Array, jax.Array] | None,
        extra_tokens: jax.Array | None = None,
        points: tuple[jax.Array, jax.Array] | None = None,
        boxes: jax.Array | None = None,
        mask_input: jax.Array | None = None,
        multimask: bool = False,
        stability_selection: bool | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """image_embed [B, C, h, w]; high_res_feats [[B, C/8, 4h, 4w], [B, C/4, 2h, 2w]]
        (already projected by conv_s0/conv_s1, as the sidecar returns them); extra_tokens
        [B, K, C]; points (coords [B, P, 2] pixel x,y of the input image, labels [B, P]);
        boxes [B, 4]; mask_input [B, 1, 4h, 4w] logits -> (low_res_logits [B, M, 4h, 4w],
        iou [B, M], obj_score_logits [B, 1]), M = 3 if multimask else 1.

        The logits are the decoder's, before `apply_object_score`. stability_selection: None
        follows cfg.dynamic_multimask_via_stability (torch uses it only in eval mode; pass
        False to match a torch module in training mode).
        """
        out = self.decode(
            image_embed,
            high_res_feats,
            extra_tokens,
            points,
            boxes,
            mask_input,
            multimask,
            stability_selection,
        )
        return out.masks, out.iou, out.object_score_logits

    def _check_inputs(self, image_embed, high_res_feats, extra_tokens, points, boxes, mask_input):
        cfg = self.cfg
        c, h = cfg.transformer_dim, cfg.image_embedding_size
        if image_embed.ndim != 4 or image_embed.shape[1:] != (c, h, h):
            raise ValueError(f"image_embed: expected [B, {c}, {h}, {h}], got {image_embed.shape}")
        b = image_embed.shape[0]
        if cfg.use_high_res_features:
            if high_res_feats is None or len(high_res_feats) != 2:
                raise ValueError("high_res_feats: expected 2 maps (use_high_res_features is set)")
            for i, (f, want) in enumerate(zip(high_res_feats, cfg.high_res_shapes, strict=True)):
                if f.shape != (b, *want):
                    raise ValueError(f"high_res_feats[{i}]: expected {(b, *want)}, got {f.shape}")
        if extra_tokens is not None and (
            extra_tokens.ndim != 3 or extra_tokens.shape[0] != b or extra_tokens.shape[2] != c
        ):
            raise ValueError(f"extra_tokens: expected [{b}, K, {c}], got {extra_tokens.shape}")
        if points is not None:
            coords, labels = points
            if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
                raise ValueError(
                    f"points: expected coords [B, P, 2] and labels [B, P], got "
                    f"{coords.shape} and {labels.shape}"
                )
            if coords.shape[0] not in (1, b):
                raise ValueError(f"points: batch {coords.shape[0]} is neither 1 nor {b}")
        if boxes is not None and (
            boxes.ndim != 2 or boxes.shape[1] != 4 or boxes.shape[0] not in (1, b)
        ):
            raise ValueError(f"boxes: expected [{b}, 4], got {boxes.shape}")
        if mask_input is not None:
            m = cfg.mask_input_size
            if (
                mask_input.ndim != 4
                or mask_input.shape[1:] != (1, m, m)
                or mask_input.shape[0] not in (1, b)
            ):
                raise ValueError(
                    f"mask_input: expected [{b}, 1, {m}, {m}] (resize to 4h x 4w first, as "
                    f"_forward_sam_heads does), got {mask_input.shape}"
                )
        return b


def apply_object_score(low_res_logits: jax.Array, obj_score_logits: jax.Array) -> jax.Array:
    """`_forward_sam_heads`: where the object score is <= 0, every mask logit becomes -1024.
    [B, M, H, W], [B, 1] -> [B, M, H, W]."""
    appearing = obj_score_logits[:, :, None, None] > 0
    return jnp.where(appearing, low_res_logits, NO_OBJ_SCORE)


def upscale_logits(logits: jax.Array, size: tuple[int, int]) -> jax.Array:
    """[B, M, h, w] -> [B, M, *size]: torch F.interpolate(bilinear, align_corners=False), as
    `_forward_sam_heads` makes high_res_masks (upsampling only; no antialias involved)."""
    b, m, h, w = logits.shape
    if size[0] < h or size[1] < w:
        raise ValueError(f"upscale_logits: {size} is smaller than {(h, w)} (upsampling only)")
    return jax.image.resize(logits, (b, m, *size), method="bilinear", antialias=False)
