"""SEG-aware logit calibration and the auxiliary mask loss (VideoSEG-O3, arXiv 2606.06819).

The policy gradient of a latent `[SEG]` token sees only log pi([SEG] | ctx), which says
nothing about the mask it decodes to. VideoSEG-O3's released trainer
(`trainer_videorl_cot.py::_get_per_mask_logps_cot`, `compute_loss`) adds to the log-prob of
each `[SEG]` the mean pixel log-likelihood of the mask decoded in the training forward (F)
under the rollout's own binarised mask (R):

    l_mask = mean_{32x32} [ R_bin log sigma(F) + (1 - R_bin) log(1 - sigma(F)) ],
    R_bin  = [R > 0.5]   (threshold on the rollout's *logits*, as in the code),
    log pi~([SEG]) = log pi([SEG] | ctx) + l_mask,

F and R bilinearly resized to the grid first. A sample whose number of `[SEG]` tokens
differs from its number of masks is left uncalibrated. The paper text only says pixel
feedback enters token logits; the formula is the code's (VideoSEG-O3 arXiv 2606.06819, [SEG] decoding caveat).

The auxiliary loss is the supervised BCE + Dice of the decoded masks against ground truth
(VideoSEG-O3 arXiv 2606.06819, training loss; Sa2VA's mask BCE weight 2.0 and naive Dice weight 0.5 with eps 1), scaled by
lambda_seg = 0.2 (`res_loss_ratio`) in the GRPO stage.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

CALIBRATION_GRID = 32
AUX_WEIGHT = 0.2
BCE_WEIGHT = 2.0
DICE_WEIGHT = 0.5


def resize_logits(logits: Array, size: tuple[int, int]) -> Array:
    """Bilinear resize of [..., H, W] to [..., h, w] without antialiasing: torch's
    `F.interpolate(mode="bilinear", align_corners=False)`, which the released code uses."""
    shape = logits.shape[:-2] + tuple(size)
    return jax.image.resize(logits.astype(jnp.float32), shape, "bilinear", antialias=False)


def mask_loglik(pred_logits: Array, rollout_logits: Array, grid: int = CALIBRATION_GRID) -> Array:
    """Mean pixel log-likelihood of the rollout's binarised mask under the predicted one.

    pred_logits F [..., H, W] (differentiable), rollout_logits R [..., H', W'] (held fixed:
    it is data) -> [...]. Both are resized to grid x grid; R_bin = [R > 0.5] on logits."""
    if pred_logits.shape[:-2] != rollout_logits.shape[:-2]:
        raise ValueError(
            f"pred_logits {pred_logits.shape} and rollout_logits {rollout_logits.shape} differ "
            "in their leading dims"
        )
    f = resize_logits(pred_logits, (grid, grid))
    r_bin = (resize_logits(jax.lax.stop_gradient(rollout_logits), (grid, grid)) > 0.5).astype(
        jnp.float32
    )
    ll = r_bin * jax.nn.log_sigmoid(f) + (1.0 - r_bin) * jax.nn.log_sigmoid(-f)
    return ll.mean(axis=(-2, -1))


def calibrate_seg_logprobs(
    token_logp: Array, seg_positions: Array, mask_ll: Array, mask_count: Array
) -> Array:
    """token_logp [B, L] + mask_ll [B, K] at seg_positions [B, K] (indices into L, -1 = pad).

    The k-th valid position of a row gets the k-th mask's value (sequence order). A row
    whose number of valid positions differs from mask_count [B] (its number of masks) is
    returned unchanged, as the released trainer skips such a sample."""
    if seg_positions.shape != mask_ll.shape or seg_positions.ndim != 2:
        raise ValueError(
            f"seg_positions {seg_positions.shape} and mask_ll {mask_ll.shape} must both be [B, K]"
        )
    if token_logp.shape[0] != seg_positions.shape[0]:
        raise ValueError(f"token_logp {token_logp.shape} and seg_positions disagree on B")
    valid = seg_positions >= 0
    row_ok = valid.sum(axis=-1) == jnp.asarray(mask_count).reshape(-1)
    weights = jnp.where(valid & row_ok[:, None], mask_ll, 0.0).astype(jnp.float32)
    onehot = seg_positions[..., None] == jnp.arange(token_logp.shape[1])  # [B, K, L]
    return token_logp.astype(jnp.float32) + jnp.einsum("bk,bkl->bl", weights, onehot)


def bce_with_logits(logits: Array, target: Array) -> Array:
    """Per-mask mean binary cross-entropy: [..., H, W] -> [...]."""
    t = target.astype(jnp.float32)
    x = logits.astype(jnp.float32)
    return -(t * jax.nn.log_sigmoid(x) + (1.0 - t) * jax.nn.log_sigmoid(-x)).mean(axis=(-2, -1))


def dice_loss(logits: Array, target: Array, eps: float = 1.0) -> Array:
    """Per-mask naive Dice loss 1 - (2 sum(p g) + eps) / (sum p + sum g + eps) on
    p = sigmoid(logits) (mmdet DiceLoss(naive_dice=True, eps=1), Sa2VA): [..., H, W] -> [...]."""
    p = jax.nn.sigmoid(logits.astype(jnp.float32))
    g = target.astype(jnp.float32)
    inter = (p * g).sum(axis=(-2, -1))
    return 1.0 - (2.0 * inter + eps) / (p.sum(axis=(-2, -1)) + g.sum(axis=(-2, -1)) + eps)


def aux_mask_loss(
    pred_logits: Array,
    gt_masks: Array,
    valid: Array | None = None,
    *,
    weight: float = AUX_WEIGHT,
    bce_weight: float = BCE_WEIGHT,
    dice_weight: float = DICE_WEIGHT,
) -> tuple[Array, Array]:
    """(weighted sum, count) of weight * (bce_weight BCE + dice_weight Dice) over masks.

    pred_logits [..., h, w] are resized bilinearly to the GT's [..., H, W] first; valid [...]
    selects the masks that have ground truth. The mean is sum / count (kept apart so
    micro-batches accumulate exactly)."""
    if pred_logits.shape[:-2] != gt_masks.shape[:-2]:
        raise ValueError(
            f"pred_logits {pred_logits.shape} and gt_masks {gt_masks.shape} differ in their "
            "leading dims"
        )
    up = resize_logits(pred_logits, gt_masks.shape[-2:])
    per_mask = bce_weight * bce_with_logits(up, gt_masks) + dice_weight * dice_loss(up, gt_masks)
    v = jnp.ones(per_mask.shape, jnp.float32) if valid is None else valid.astype(jnp.float32)
    return weight * (per_mask * v).sum(), v.sum()
