"""Per-token estimators of KL(policy || reference) from tokens sampled by the policy.

With x ~ pi and log-ratio d = log ref(x) - log pi(x) (Schulman, "Approximating KL
divergence", 2020; tunix `compute_kl_divergence`; verl `kl_penalty`):

  k1 = -d              = log pi - log ref     unbiased, high variance, can be negative
  k2 = d^2 / 2                                biased value (E[k2] = KL + O(d^3) for close
                                              policies), but as a loss on fixed samples its
                                              gradient is (log pi - log ref) grad log pi, whose
                                              expectation under pi is exactly grad KL(pi||ref)
  k3 = exp(d) - d - 1                         unbiased (E_pi[exp(d)] = 1), always >= 0;
                                              "low_var_kl" in verl, used by Veason-R1,
                                              RCoT-Seg; TRL's default, so VideoSEG-O3 (beta 0.04)

All return [B, L] float32. `max_log_ratio` clips d before exp so k3 stays finite
(verl clips at 20); inside the range the value is exact.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array


def _log_ratio(logp: Array, ref_logp: Array) -> Array:
    if logp.shape != ref_logp.shape:
        raise ValueError(f"logp {logp.shape} and ref_logp {ref_logp.shape} differ")
    return ref_logp.astype(jnp.float32) - logp.astype(jnp.float32)


def kl_k1(logp: Array, ref_logp: Array) -> Array:
    """k1 = log pi - log ref per token."""
    return -_log_ratio(logp, ref_logp)


def kl_k2(logp: Array, ref_logp: Array) -> Array:
    """k2 = (log pi - log ref)^2 / 2 per token."""
    return 0.5 * jnp.square(_log_ratio(logp, ref_logp))


def kl_k3(logp: Array, ref_logp: Array, *, max_log_ratio: float = 20.0) -> Array:
    """k3 = exp(d) - d - 1 with d = log ref - log pi, per token (>= 0)."""
    d = jnp.clip(_log_ratio(logp, ref_logp), -max_log_ratio, max_log_ratio)
    return jnp.expm1(d) - d
