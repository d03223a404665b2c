"""Token -> scalar loss reductions kept as (weighted sum, denominator).

Each mode returns a `WeightedSum(total, weight)`; the scalar is total / weight. The
denominator never depends on parameters, so summing `WeightedSum`s over micro-batches
and dividing once gives exactly the full-batch loss and gradient (tunix
`common.aggregate_loss` + `WeightedMetric`). Modes (mask [B, L] selects loss tokens):

  token-mean               total = sum m*x                 weight = sum m
                           (DAPO; every token weighs the same across the batch)
  seq-mean-token-mean      total = sum_b (sum_t m*x / n_b)  weight = #rows with n_b > 0
                           (GRPO paper; VideoSEG-O3's per-sequence average)
  seq-mean-token-sum-norm  total = sum m*x / norm_length    weight = #rows with n_b > 0
                           (Dr.GRPO: a fixed length normaliser, e.g. the generation
                           budget, instead of each row's own length; verl's name)

`norm_length` is required for the last mode: a default (e.g. the padded length) would
differ between micro-batches padded differently and break exactness silently.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import Array

AGGREGATION_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class WeightedSum:
    """A mean kept unreduced: value = total / weight. Add micro-batches with `+`."""

    total: Array
    weight: Array

    def __add__(self, other: WeightedSum) -> WeightedSum:
        return WeightedSum(self.total + other.total, self.weight + other.weight)

    def value(self) -> Array:
        """total / weight; 0 when nothing was counted (weight 0)."""
        return jnp.where(self.weight > 0, self.total / jnp.maximum(self.weight, 1e-12), 0.0)

    def scale(self, factor: float | Array) -> WeightedSum:
        """Multiply the numerator (e.g. by a loss coefficient)."""
        return WeightedSum(self.total * factor, self.weight)


def aggregate(
    per_token: Array, mask: Array, mode: str, *, norm_length: float | None = None
) -> WeightedSum:
    """Reduce a [B, L] per-token quantity under a [B, L] mask to a WeightedSum."""
    if per_token.shape != mask.shape or per_token.ndim != 2:
        raise ValueError(f"per-token {per_token.shape} and mask {mask.shape} must both be [B, L]")
    x = per_token.astype(jnp.float32)
    m = mask.astype(jnp.float32)
    masked = x * m
    row_tokens = m.sum(axis=-1)
    rows = (row_tokens > 0).sum().astype(jnp.float32)
    if mode == "token-mean":
        return WeightedSum(masked.sum(), row_tokens.sum())
    if mode == "seq-mean-token-mean":
        row_means = masked.sum(axis=-1) / jnp.maximum(row_tokens, 1.0)
        return WeightedSum(row_means.sum(), rows)
    if mode == "seq-mean-token-sum-norm":
        if norm_length is None or norm_length <= 0:
            raise ValueError("seq-mean-token-sum-norm needs a positive norm_length")
        return WeightedSum(masked.sum() / norm_length, rows)
    raise ValueError(f"unknown aggregation mode {mode!r}; choose one of {AGGREGATION_MODES}")
