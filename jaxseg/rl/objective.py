"""The GRPO objective: policy surrogate + beta * KL, aggregated without dividing.

loss = agg(policy_loss) + beta * agg(KL), both under the same mask and mode (tunix
`grpo_loss_fn`; VideoSEG-O3 `compute_loss` adds beta * k3 per token before averaging,
which is the same thing for a shared denominator). Returns `WeightedSum`s so the trainer
can accumulate micro-batches exactly and divide once.
"""

from __future__ import annotations

import dataclasses

import jax
from jax import Array

from jaxseg.rl import aggregation, policy_loss, registry

POLICY_LOSSES = tuple(registry.POLICY_LOSSES)
KL_ESTIMATORS = registry.KL_ESTIMATORS


@dataclasses.dataclass(frozen=True)
class GRPOLossConfig:
    """Static knobs of the loss (hashable, so it can be a jit static argument).

    Defaults follow Veason-R1 / verl (clip 0.2, k3). VideoSEG-O3: policy_loss="on_policy",
    kl_coef=0.04, kl_estimator="k3", aggregation="seq-mean-token-mean".
    """

    policy_loss: str = "ppo_clip"
    eps_low: float = 0.2
    eps_high: float | None = None
    kl_estimator: str = "k3"
    kl_coef: float = 0.0
    aggregation: str = "seq-mean-token-mean"
    norm_length: float | None = None

    def __post_init__(self) -> None:
        if self.policy_loss not in POLICY_LOSSES:
            raise ValueError(f"policy_loss {self.policy_loss!r} not in {POLICY_LOSSES}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator {self.kl_estimator!r} not in {tuple(KL_ESTIMATORS)}")
        if self.aggregation not in aggregation.AGGREGATION_MODES:
            raise ValueError(
                f"aggregation {self.aggregation!r} not in {aggregation.AGGREGATION_MODES}"
            )
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LossTerms:
    """Unreduced pieces of one (micro-)batch; `total.value()` is the scalar loss."""

    total: aggregation.WeightedSum
    policy: aggregation.WeightedSum
    kl: aggregation.WeightedSum


def grpo_loss(
    logp: Array,
    advantages: Array,
    mask: Array,
    cfg: GRPOLossConfig,
    *,
    old_logp: Array | None = None,
    ref_logp: Array | None = None,
) -> LossTerms:
    """GRPO loss terms for one batch: logp/old_logp/ref_logp/mask [B, L], advantages [B].

    old_logp=None means a single on-policy update: the PPO ratio is taken against
    stop_gradient(logp) (ratio 1, gradient of REINFORCE with group advantages).
    ref_logp is required when kl_coef > 0.
    """
    if cfg.policy_loss == "on_policy":
        per_token_pg = policy_loss.on_policy_loss(logp, advantages)
    else:
        if old_logp is None:
            old_logp = jax.lax.stop_gradient(logp)
        per_token_pg = policy_loss.ppo_clip_loss(
            logp, old_logp, advantages, eps_low=cfg.eps_low, eps_high=cfg.eps_high
        )
    pg = aggregation.aggregate(per_token_pg, mask, cfg.aggregation, norm_length=cfg.norm_length)
    if cfg.kl_coef > 0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs ref_logp (the frozen reference's log-probs)")
        per_token_kl = KL_ESTIMATORS[cfg.kl_estimator](logp, ref_logp)
        kl_term = aggregation.aggregate(
            per_token_kl, mask, cfg.aggregation, norm_length=cfg.norm_length
        )
    else:
        kl_term = aggregation.WeightedSum(pg.total * 0.0, pg.weight)
    total = aggregation.WeightedSum(pg.total + cfg.kl_coef * kl_term.total, pg.weight)
    return LossTerms(total=total, policy=pg, kl=kl_term)
