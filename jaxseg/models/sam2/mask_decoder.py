"""SAM2's mask decoder (sam2/modeling/sam/mask_decoder.py) in nnx.

Learned output tokens ([obj_score], iou, 1 + 3 mask tokens) are prepended to the sparse prompt
tokens; the two-way transformer mixes them with the image embedding (+ dense prompt); the image
side is upscaled 4x (adding the two projected high-res backbone maps when configured) and each
mask token's hypernetwork MLP gives the weights of a per-pixel dot product -> mask logits.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from .config import Sam2DecoderConfig
from .layers import MLP, Embedding, LayerNorm2d, PatchConv, UpConv2x2, gelu
from .transformer import TwoWayTransformer


class DecoderOutput(NamedTuple):
    """masks [B, M, 4h, 4w] logits; iou [B, M]; sam_tokens [B, M', C] (the mask-token outputs
    sam2 turns into object pointers); object_score_logits [B, 1]."""

    masks: jax.Array
    iou: jax.Array
    sam_tokens: jax.Array
    object_score_logits: jax.Array


class OutputUpscaling(nnx.Module):
    """torch `output_upscaling` Sequential: convT 2x2, LN2d, GELU, convT 2x2, GELU."""

    def __init__(self, c: int, rngs: nnx.Rngs):
        self.upconv1 = UpConv2x2(c, c // 4, rngs)
        self.norm1 = LayerNorm2d(c // 4)
        self.upconv2 = UpConv2x2(c // 4, c // 8, rngs)

    def __call__(self, x, feat_s1=None, feat_s0=None):
        """x [B, h, w, C]; feat_s1 [B, 2h, 2w, C/4], feat_s0 [B, 4h, 4w, C/8] (optional)."""
        y = self.upconv1(x)
        if feat_s1 is not None:
            y = y + feat_s1
        y = self.upconv2(gelu(self.norm1(y)))
        if feat_s0 is not None:
            y = y + feat_s0
        return gelu(y)


def stability_scores(mask_logits: jax.Array, delta: float) -> jax.Array:
    """[..., H, W] -> [...]: IoU of the masks thresholded at +delta and -delta (1 if empty)."""
    flat = mask_logits.reshape(*mask_logits.shape[:-2], -1)
    inter = jnp.sum(flat > delta, axis=-1).astype(jnp.float32)
    union = jnp.sum(flat > -delta, axis=-1).astype(jnp.float32)
    return jnp.where(union > 0, inter / jnp.maximum(union, 1.0), 1.0)


def dynamic_multimask_via_stability(
    all_masks: jax.Array, all_iou: jax.Array, delta: float, thresh: float
) -> tuple[jax.Array, jax.Array]:
    """Keep the single-mask output (token 0) where it is stable, else the multimask output with
    the highest predicted IoU. [B, 1+K, H, W], [B, 1+K] -> [B, 1, H, W], [B, 1]."""
    multi_masks, multi_iou = all_masks[:, 1:], all_iou[:, 1:]
    best = jnp.argmax(multi_iou, axis=-1)
    best_masks = jnp.take_along_axis(multi_masks, best[:, None, None, None], axis=1)
    best_iou = jnp.take_along_axis(multi_iou, best[:, None], axis=1)
    single_masks, single_iou = all_masks[:, :1], all_iou[:, :1]
    stable = stability_scores(single_masks, delta) >= thresh  # [B, 1]
    return (
        jnp.where(stable[..., None, None], single_masks, best_masks),
        jnp.where(stable, single_iou, best_iou),
    )


class MaskDecoder(nnx.Module):
    def __init__(self, cfg: Sam2DecoderConfig, rngs: nnx.Rngs):
        c = cfg.transformer_dim
        self.cfg = cfg
        self.transformer = TwoWayTransformer(cfg, rngs)
        self.iou_token = Embedding(1, c, rngs)
        self.mask_tokens = Embedding(cfg.num_mask_tokens, c, rngs)
        if cfg.pred_obj_scores:
            self.obj_score_token = Embedding(1, c, rngs)
        self.output_upscaling = OutputUpscaling(c, rngs)
        if cfg.use_high_res_features:
            self.conv_s0 = PatchConv(c, c // 8, 1, rngs)
            self.conv_s1 = PatchConv(c, c // 4, 1, rngs)
        self.output_hypernetworks_mlps = nnx.List(
            [MLP(c, c, c // 8, 3, rngs) for _ in range(cfg.num_mask_tokens)]
        )
        self.iou_prediction_head = MLP(
            c,
            cfg.iou_head_hidden_dim,
            cfg.num_mask_tokens,
            cfg.iou_head_depth,
            rngs,
            sigmoid_output=cfg.iou_prediction_use_sigmoid,
        )
        if cfg.pred_obj_scores:
            self.pred_obj_score_head = (
                MLP(c, c, 1, 3, rngs) if cfg.pred_obj_scores_mlp else nnx.Linear(c, 1, rngs=rngs)
            )

    def project_high_res(
        self, feat_s0: jax.Array, feat_s1: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """SAM2Base.forward_image's projection of the backbone's two finest FPN levels
        ([B, 4h, 4w, C] and [B, 2h, 2w, C], channel-last) with conv_s0 / conv_s1. The sidecar's
        features are already projected; this is for a caller holding raw FPN maps."""
        return self.conv_s0(feat_s0), self.conv_s1(feat_s1)

    def predict_masks(
        self,
        image_embed: jax.Array,
        image_pe: jax.Array,
        sparse: jax.Array,
        dense: jax.Array,
        high_res: tuple[jax.Array, jax.Array] | None,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """image_embed, dense [B, h, w, C]; image_pe [h, w, C]; sparse [B, N, C];
        high_res (feat_s0 [B, 4h, 4w, C/8], feat_s1 [B, 2h, 2w, C/4]) ->
        all masks [B, 1+K, 4h, 4w], all iou [B, 1+K], mask tokens [B, 1+K, C], obj [B, 1]."""
        cfg = self.cfg
        b, h, w, c = image_embed.shape
        learned = [self.iou_token.weight[...], self.mask_tokens.weight[...]]
        if cfg.pred_obj_scores:
            learned.insert(0, self.obj_score_token.weight[...])
        s = 1 if cfg.pred_obj_scores else 0
        out_tokens = jnp.broadcast_to(
            jnp.concatenate(learned, 0), (b, s + 1 + cfg.num_mask_tokens, c)
        )
        tokens = jnp.concatenate([out_tokens, sparse.astype(out_tokens.dtype)], axis=1)
        src = (image_embed + dense).reshape(b, h * w, c)
        pos = jnp.broadcast_to(image_pe.reshape(1, h * w, c), (b, h * w, c))
        hs, src = self.transformer(src, pos, tokens)
        iou_token_out = hs[:, s]
        mask_tokens_out = hs[:, s + 1 : s + 1 + cfg.num_mask_tokens]
        src = src.reshape(b, h, w, c)
        if cfg.use_high_res_features:
            if high_res is None:
                raise ValueError("high_res_feats: required when use_high_res_features is set")
            feat_s0, feat_s1 = high_res
            upscaled = self.output_upscaling(src, feat_s1=feat_s1, feat_s0=feat_s0)
        else:
            upscaled = self.output_upscaling(src)
        hyper = jnp.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            axis=1,
        )  # [B, 1+K, C/8]
        masks = jnp.einsum("bmc,bhwc->bmhw", hyper, upscaled)
        iou = self.iou_prediction_head(iou_token_out)
        if cfg.pred_obj_scores:
            obj = self.pred_obj_score_head(hs[:, 0])
        else:
            obj = jnp.full((b, 1), 10.0, iou.dtype)
        return masks, iou, mask_tokens_out, obj

    def __call__(
        self,
        image_embed: jax.Array,
        image_pe: jax.Array,
        sparse: jax.Array,
        dense: jax.Array,
        multimask: bool,
        high_res: tuple[jax.Array, jax.Array] | None = None,
        stability_selection: bool | None = None,
    ) -> DecoderOutput:
        """torch MaskDecoder.forward(repeat_image=False). stability_selection: None follows
        cfg.dynamic_multimask_via_stability (torch applies it in eval mode only)."""
        cfg = self.cfg
        masks, iou, mask_tokens_out, obj = self.predict_masks(
            image_embed, image_pe, sparse, dense, high_res
        )
        if stability_selection is None:
            stability_selection = cfg.dynamic_multimask_via_stability
        if multimask:
            masks, iou = masks[:, 1:], iou[:, 1:]
        elif stability_selection:
            masks, iou = dynamic_multimask_via_stability(
                masks,
                iou,
                cfg.dynamic_multimask_stability_delta,
                cfg.dynamic_multimask_stability_thresh,
            )
        else:
            masks, iou = masks[:, :1], iou[:, :1]
        if multimask and cfg.use_multimask_token_for_obj_ptr:
            sam_tokens = mask_tokens_out[:, 1:]
        else:
            sam_tokens = mask_tokens_out[:, :1]
        return DecoderOutput(masks, iou, sam_tokens, obj)
