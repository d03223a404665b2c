"""Per-token policy-gradient surrogate losses, [B, L] in, [B, L] out (lower is better).

Advantages may be per sequence [B] (broadcast over tokens) or per token [B, L].

  ppo_clip   -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), r = exp(logp - old_logp)
             PPO (Schulman et al. 2017); asymmetric eps_high is DAPO's clip-higher;
             tunix `grpo_loss_fn`, Veason-R1 (clip 0.2, verl).
  on_policy  -exp(logp - stopgrad(logp)) A
             VideoSEG-O3 `trainer_videorl_cot.py::compute_loss` (single on-policy update,
             no clipping). Its value is -A; its gradient is -A grad(logp), i.e. REINFORCE
             with the group advantage as baseline-corrected return.

The log-ratio is clipped to +-max_log_ratio before exp (tunix uses 20) so a stale or
corrupted old_logp cannot produce inf; inside that range the loss is exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array


def broadcast_advantages(advantages: Array, shape: tuple[int, ...]) -> Array:
    """[B] or [B, L] advantages -> [B, L] float32, with a clear error on mismatch."""
    adv = jnp.asarray(advantages, jnp.float32)
    if adv.shape == shape:
        return adv
    if adv.ndim == 1 and adv.shape[0] == shape[0]:
        return jnp.broadcast_to(adv[:, None], shape)
    raise ValueError(f"advantages of shape {adv.shape} do not fit per-token shape {shape}")


def importance_ratio(logp: Array, old_logp: Array, *, max_log_ratio: float = 20.0) -> Array:
    """exp(logp - old_logp) per token with the log-ratio clipped for safety: [B, L]."""
    if logp.shape != old_logp.shape:
        raise ValueError(f"logp {logp.shape} and old_logp {old_logp.shape} differ")
    log_ratio = logp.astype(jnp.float32) - old_logp.astype(jnp.float32)
    return jnp.exp(jnp.clip(log_ratio, -max_log_ratio, max_log_ratio))


def ppo_clip_loss(
    logp: Array,
    old_logp: Array,
    advantages: Array,
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    max_log_ratio: float = 20.0,
) -> Array:
    """PPO clipped surrogate per token: [B, L]. eps_high defaults to eps_low."""
    eps_high = eps_low if eps_high is None else eps_high
    if eps_low < 0 or eps_high < 0:
        raise ValueError(f"clip epsilons must be >= 0, got {eps_low}, {eps_high}")
    ratio = importance_ratio(logp, old_logp, max_log_ratio=max_log_ratio)
    adv = broadcast_advantages(advantages, ratio.shape)
    unclipped = ratio * adv
    clipped = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    return -jnp.minimum(unclipped, clipped)


def on_policy_loss(logp: Array, advantages: Array) -> Array:
    """VideoSEG-O3's un-clipped on-policy surrogate per token: [B, L]."""
    logp = logp.astype(jnp.float32)
    ratio = jnp.exp(logp - jax.lax.stop_gradient(logp))
    return -ratio * broadcast_advantages(advantages, logp.shape)
