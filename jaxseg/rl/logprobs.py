"""Per-token log-probabilities and entropies from logits.

Computed in float32 as logit[target] - logsumexp(logits), so bf16 logits do not lose
the small differences the importance ratio depends on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array


def _scaled(logits: Array, temperature: float) -> Array:
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return logits.astype(jnp.float32) / temperature


def token_logprobs(logits: Array, targets: Array, *, temperature: float = 1.0) -> Array:
    """log p(targets) under softmax(logits / temperature): [B, L, V], [B, L] -> [B, L].

    The trainer uses temperature 1 (the raw model distribution): jaxseg.sampling reports
    the sampled tokens' log-probs under that same distribution (`Rollout.logprobs`), whatever
    temperature / top-k / top-p it sampled with, so GRPO ratios compare like with like.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} disagree on [B, L]")
    scaled = _scaled(logits, temperature)
    picked = jnp.take_along_axis(scaled, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    # logit[target] - logsumexp: no second [B, L, V] buffer for the full log-softmax
    return picked - jax.nn.logsumexp(scaled, axis=-1)


def next_token_logprobs(logits: Array, input_ids: Array, *, temperature: float = 1.0) -> Array:
    """Log-probs of each token given its prefix: [B, L, V], [B, L] -> [B, L - 1].

    Position t of the result scores input_ids[:, t + 1] with logits[:, t]: a per-token loss
    mask `[B, L]` aligns with it as `mask[:, 1:]` (`PolicyBatch.loss_mask` is stored so).
    """
    return token_logprobs(logits[:, :-1], input_ids[:, 1:], temperature=temperature)


def token_entropy(logits: Array, *, temperature: float = 1.0) -> Array:
    """Entropy of softmax(logits / temperature) per position: [B, L, V] -> [B, L]."""
    logp_all = jax.nn.log_softmax(_scaled(logits, temperature), axis=-1)
    return -(jnp.exp(logp_all) * logp_all).sum(axis=-1)
