"""The [SEG]-route policy: Qwen2.5-VL + projector + SAM2 mask decoder in one nnx module.

Teacher-forced over a whole multi-turn rollout it gives what the SEG-route loss needs
(VideoSEG-O3 arXiv 2606.06819 ([SEG] decoding) step 2): token log-probs, the last-layer hidden state at every
`[SEG]` (Sa2VA reads the hidden state *at* the `[SEG]` token), and the mask logits decoded
from each of them on its turn's keyframe. Frozen SAM2 image features come in the batch
(computed once per frame outside the jitted step); the projected `[SEG]` enters the decoder
as one extra sparse prompt token (VideoSEG-O3 arXiv 2606.06819, [SEG] decoding "[SEG] -> mask decoding"), no point/box prompts.

Decoder contract (jaxseg.models.sam2's `SAM2MaskDecoderModule`): called as
``decoder(image_embed [N, C, h, w], high_res_feats, extra_tokens [N, K, C], multimask=False)
-> (low_res_logits [N, M, 4h, 4w], iou [N, M], obj_score_logits [N, 1])``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxseg.rl.logprobs import next_token_logprobs
from jaxseg.train.batch import PolicyBatch

from .projector import SegProjector


@struct.dataclass
class SegBatch:
    """A PolicyBatch plus, for the K (padded) `[SEG]` slots of each of the B rows:

    seg_index [B, K] int32: input position of the k-th `[SEG]` the policy wrote (-1 = pad);
    mask_count [B] int32: masks the rollout decoded for the row (calibration skips a row
    whose `[SEG]` count differs); image_embed [B, K, C, h, w] and high_res_feats (tuple of
    [B, K, c_i, h_i, w_i]): the frozen SAM2 features of each `[SEG]`'s keyframe;
    rollout_logits [B, K, h', w']: the rollout's mask logits R; gt_masks [B, K, H, W] float
    and gt_valid [B, K]: ground truth on the keyframe for the auxiliary loss."""

    policy: PolicyBatch
    seg_index: jax.Array
    mask_count: jax.Array
    image_embed: jax.Array
    high_res_feats: tuple
    rollout_logits: jax.Array
    gt_masks: jax.Array
    gt_valid: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SegForward:
    """logits [B, L, V]; logp [B, L-1] (target-aligned text log-probs); seg_hidden [B, K, D];
    mask_logits [B, K, h, w] (the decoder's low-res logits)."""

    logits: jax.Array
    logp: jax.Array
    seg_hidden: jax.Array
    mask_logits: jax.Array


def gather_rows(x: jax.Array, index: jax.Array) -> jax.Array:
    """x [B, L, D], index [B, K] (-1 pads read row 0) -> [B, K, D]."""
    idx = jnp.clip(index, 0, x.shape[1] - 1)
    return jnp.take_along_axis(x, idx[..., None], axis=1)


class SegPolicy(nnx.Module):
    """qwen (any policy family's model, jaxseg.models.family), projector (SegProjector),
    decoder."""

    def __init__(self, qwen, decoder, *, prompt_dim: int, rngs: nnx.Rngs):
        self.qwen = qwen
        self.projector = SegProjector(qwen.config.text.hidden_size, prompt_dim, rngs=rngs)
        self.decoder = decoder

    def hidden_and_logits(self, batch: PolicyBatch) -> tuple[jax.Array, jax.Array]:
        """Final-normed hidden states [B, L, D] and logits [B, L, V], teacher-forced."""
        from jaxseg.train.steps import forward_logits

        hidden = forward_logits(self.qwen, batch, return_hidden=True)
        return hidden, self.qwen.compute_logits(hidden)

    def decode_masks(
        self, seg_hidden: jax.Array, image_embed: jax.Array, high_res_feats: tuple
    ) -> jax.Array:
        """[B, K, D] hidden + [B, K, C, h, w] features -> mask logits [B, K, 4h, 4w]; each
        `[SEG]` is decoded on its own keyframe as one extra sparse token (memory-free)."""
        b, k = seg_hidden.shape[:2]
        flat = lambda x: x.reshape((b * k,) + x.shape[2:])  # noqa: E731
        tokens = self.projector(seg_hidden).reshape(b * k, 1, -1)
        feats = tuple(flat(f) for f in high_res_feats) if high_res_feats else None
        low_res, _, _ = self.decoder(flat(image_embed), feats, tokens, multimask=False)
        return low_res[:, 0].reshape((b, k) + low_res.shape[-2:])

    def __call__(self, batch: SegBatch) -> SegForward:
        hidden, logits = self.hidden_and_logits(batch.policy)
        seg_hidden = gather_rows(hidden, batch.seg_index)
        masks = self.decode_masks(seg_hidden, batch.image_embed, batch.high_res_feats)
        logp = next_token_logprobs(logits, batch.policy.input_ids)
        return SegForward(logits, logp, seg_hidden, masks)
