"""Per-batch training diagnostics (tunix `grpo_learner` metrics; what to watch in GRPO).

All means are over loss tokens (mask [B, L]). Keys:
  num_tokens                  loss tokens counted (weight these means by it when averaging
                              micro-batches)
  ratio_mean/min/max          importance ratio exp(logp - old_logp)
  clip_frac_low/high/total    tokens where the PPO clip is active: ratio < 1 - eps_low with
                              A < 0, or ratio > 1 + eps_high with A > 0
  kl_k3                       mean k3 to the reference (when ref_logp is given)
  entropy                     mean policy entropy (when entropy is given)
  sampler_logp_abs_diff_mean/max, sampler_prob_corr
                              |logp_trainer - logp_sampler| and the Pearson correlation
                              of token probabilities: a rollout engine that disagrees
                              with the trainer (precision, temperature, stale weights)
                              shows up here first.
  adv_mean/std, adv_nonzero_frac   per-sequence advantage stats
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array

from jaxseg.rl import kl, policy_loss


def _masked_mean(x: Array, m: Array) -> Array:
    return (x * m).sum() / jnp.maximum(m.sum(), 1.0)


def _masked_min(x: Array, m: Array) -> Array:
    return jnp.where(m.sum() > 0, jnp.where(m > 0, x, jnp.inf).min(), jnp.nan)


def _masked_max(x: Array, m: Array) -> Array:
    return jnp.where(m.sum() > 0, jnp.where(m > 0, x, -jnp.inf).max(), jnp.nan)


def _masked_corr(a: Array, b: Array, m: Array) -> Array:
    ma, mb = _masked_mean(a, m), _masked_mean(b, m)
    da, db = (a - ma) * m, (b - mb) * m
    denom = jnp.sqrt((da * da).sum() * (db * db).sum())
    return jnp.where(denom > 0, (da * db).sum() / jnp.maximum(denom, 1e-30), jnp.nan)


def policy_diagnostics(
    logp: Array,
    old_logp: Array,
    advantages: Array,
    mask: Array,
    *,
    eps_low: float = 0.2,
    eps_high: float | None = None,
    ref_logp: Array | None = None,
    entropy: Array | None = None,
    sampler_logp: Array | None = None,
) -> dict[str, Array]:
    """Scalar diagnostics of one batch; shapes [B, L] except advantages [B] or [B, L]."""
    eps_high = eps_low if eps_high is None else eps_high
    m = mask.astype(jnp.float32)
    ratio = policy_loss.importance_ratio(logp, old_logp)
    adv = policy_loss.broadcast_advantages(advantages, ratio.shape)
    clip_low = ((ratio < 1.0 - eps_low) & (adv < 0)).astype(jnp.float32)
    clip_high = ((ratio > 1.0 + eps_high) & (adv > 0)).astype(jnp.float32)
    seq_adv = jnp.asarray(advantages, jnp.float32)
    if seq_adv.ndim == 2:
        seq_adv = seq_adv[:, 0]
    out = {
        "num_tokens": m.sum(),
        "ratio_mean": _masked_mean(ratio, m),
        "ratio_min": _masked_min(ratio, m),
        "ratio_max": _masked_max(ratio, m),
        "clip_frac_low": _masked_mean(clip_low, m),
        "clip_frac_high": _masked_mean(clip_high, m),
        "clip_frac_total": _masked_mean(clip_low + clip_high, m),
        "adv_mean": seq_adv.mean(),
        "adv_std": seq_adv.std(),
        "adv_nonzero_frac": (seq_adv != 0).mean(),
    }
    if ref_logp is not None:
        out["kl_k3"] = _masked_mean(kl.kl_k3(logp, ref_logp), m)
    if entropy is not None:
        out["entropy"] = _masked_mean(entropy.astype(jnp.float32), m)
    if sampler_logp is not None:
        gap = jnp.abs(logp.astype(jnp.float32) - sampler_logp.astype(jnp.float32))
        out["sampler_logp_abs_diff_mean"] = _masked_mean(gap, m)
        out["sampler_logp_abs_diff_max"] = _masked_max(gap, m)
        out["sampler_prob_corr"] = _masked_corr(
            jnp.exp(logp.astype(jnp.float32)), jnp.exp(sampler_logp.astype(jnp.float32)), m
        )
    return out
