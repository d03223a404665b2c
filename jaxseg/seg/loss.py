"""The SEG-route GRPO loss: calibrated policy term, text-only KL, auxiliary mask loss.

VideoSEG-O3 `trainer_videorl_cot.py::compute_loss` (arXiv 2606.06819: training, [SEG] decoding):

    logp~  = text log-probs with l_mask added at each [SEG]   (calibrate, switchable)
    loss   = agg(surrogate(logp~, A)) + beta * agg(KL(text logp, ref))     (KL before injection)
           + aux_weight * mean over decoded masks (BCE + Dice vs GT)        (switchable)

The policy and KL terms reuse jaxseg.rl (same aggregation modes and estimators as the text
route). With the PPO-clip surrogate the old policy's calibrated log-prob needs the old mask
term too: it is l_mask(R, R), the rollout mask's likelihood of its own binarisation.
Returned as WeightedSums (jaxseg.rl.aggregation) with separate denominators, so a step
accumulates micro-batches exactly: policy/KL over the policy-token weight, aux over masks.

Calibration reads each [SEG]'s first slot (its turn's keyframe); the final [SEG]'s repeats
on the sampled frames (jaxseg.seg.train) feed only the auxiliary loss. The released
"skip a sample whose [SEG] count differs from its mask count" is kept
(`calibrate_seg_logprobs`), but with jaxseg.seg.train it never fires: the rollout decodes
every [SEG] the policy wrote, so `mask_count` always equals the [SEG] count. It matters
only to a caller that decodes fewer masks than it has [SEG]s.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxseg.rl import aggregation
from jaxseg.rl.objective import KL_ESTIMATORS, GRPOLossConfig, grpo_loss

from .calibration import (
    AUX_WEIGHT,
    BCE_WEIGHT,
    CALIBRATION_GRID,
    DICE_WEIGHT,
    aux_mask_loss,
    calibrate_seg_logprobs,
    mask_loglik,
)
from .policy import SegBatch, SegForward


@dataclasses.dataclass(frozen=True)
class SegLossConfig:
    """grpo: the text-route knobs (VideoSEG-O3: on_policy, k3, beta 0.04); calibrate: add
    l_mask to each [SEG] log-prob; grid: its resize side (32); aux_weight: lambda_seg (0.2,
    0 turns it off); bce_weight / dice_weight inside the aux loss (Sa2VA 2.0 / 0.5)."""

    grpo: GRPOLossConfig = GRPOLossConfig(policy_loss="on_policy", kl_coef=0.04)
    calibrate: bool = True
    grid: int = CALIBRATION_GRID
    aux_weight: float = AUX_WEIGHT
    bce_weight: float = BCE_WEIGHT
    dice_weight: float = DICE_WEIGHT

    def __post_init__(self) -> None:
        if self.grid < 1:
            raise ValueError(f"SegLossConfig.grid must be >= 1, got {self.grid}")
        if self.aux_weight < 0:
            raise ValueError(f"SegLossConfig.aux_weight must be >= 0, got {self.aux_weight}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SegLossTerms:
    policy: aggregation.WeightedSum
    kl: aggregation.WeightedSum
    aux: aggregation.WeightedSum
    mask_ll: jax.Array  # [B, K] l_mask per [SEG] (0 where padded), for logging


def seg_positions(seg_index: jax.Array) -> jax.Array:
    """Input positions of [SEG] -> target-aligned log-prob positions (token i is scored at
    i - 1); pads stay -1."""
    return jnp.where(seg_index > 0, seg_index - 1, -1)


def repeated_slots(seg_index: jax.Array) -> jax.Array:
    """[B, K] bool: the slot decodes a [SEG] an earlier slot of the row already decodes (the
    final [SEG] on the sampled frames, jaxseg.seg.train). Calibration reads each [SEG]'s
    first slot, on its turn's keyframe, as the released trainer does; the repeats feed only
    the auxiliary loss (and R_m, on host)."""
    k = seg_index.shape[-1]
    same = seg_index[:, :, None] == seg_index[:, None, :]  # [B, k, j]
    earlier = jnp.tril(jnp.ones((k, k), bool), -1)[None]  # j < k
    return (same & earlier).any(-1) & (seg_index >= 0)


def seg_loss_terms(fwd: SegForward, batch: SegBatch, cfg: SegLossConfig) -> SegLossTerms:
    """The three unreduced terms of one (micro-)batch."""
    pb, g = batch.policy, cfg.grpo
    text_logp = fwd.logp
    valid = batch.seg_index >= 0
    cal = valid & ~repeated_slots(batch.seg_index)
    pos = jnp.where(cal, seg_positions(batch.seg_index), -1)
    ll = mask_loglik(fwd.mask_logits, batch.rollout_logits, cfg.grid) * valid
    logp, old = text_logp, pb.old_logp
    if cfg.calibrate:
        logp = calibrate_seg_logprobs(text_logp, pos, ll * cal, batch.mask_count)
        if g.policy_loss != "on_policy":
            old_ll = mask_loglik(batch.rollout_logits, batch.rollout_logits, cfg.grid) * cal
            old = calibrate_seg_logprobs(old, pos, old_ll, batch.mask_count)
    no_kl = dataclasses.replace(g, kl_coef=0.0)
    policy = grpo_loss(
        logp,
        pb.advantages,
        pb.loss_mask,
        no_kl,
        old_logp=None if g.policy_loss == "on_policy" else old,
    ).policy
    if g.kl_coef > 0:
        per_token = KL_ESTIMATORS[g.kl_estimator](text_logp, pb.ref_logp)  # before injection
        kl = aggregation.aggregate(
            per_token, pb.loss_mask, g.aggregation, norm_length=g.norm_length
        )
    else:
        kl = aggregation.WeightedSum(policy.total * 0.0, policy.weight)
    if cfg.aux_weight > 0:
        total, count = aux_mask_loss(
            fwd.mask_logits,
            batch.gt_masks,
            batch.gt_valid & valid,
            weight=cfg.aux_weight,
            bce_weight=cfg.bce_weight,
            dice_weight=cfg.dice_weight,
        )
        aux = aggregation.WeightedSum(total, count)
    else:
        aux = aggregation.WeightedSum(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
    return SegLossTerms(policy=policy, kl=kl, aux=aux, mask_ll=ll)


def seg_objective(terms: SegLossTerms, kl_coef: float, policy_denom, aux_denom) -> jax.Array:
    """policy/denom + beta * KL/denom + aux/aux_denom: the scalar a micro-batch contributes
    when the denominators are the whole step's (computed on host)."""
    pg = (terms.policy.total + kl_coef * terms.kl.total) / jnp.maximum(policy_denom, 1e-12)
    return pg + terms.aux.total / jnp.maximum(aux_denom, 1.0)
