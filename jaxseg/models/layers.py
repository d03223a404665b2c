"""Small nnx building blocks whose parameters carry logical sharding axes.

Parameters are created with `out_sharding=<logical axes>` and `eager_sharding=False`, so the
metadata is there for `sharding.py` (logical -> mesh axes) but nothing is placed at creation:
the model builds and runs unsharded on one CPU without a mesh.

Numerics follow transformers' Qwen2.5-VL modules exactly (see each docstring).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

Axes = tuple[str | None, ...]


def param(rngs: nnx.Rngs | None, init, shape, dtype, axes: Axes) -> nnx.Param:
    """A Param holding `init(key, shape, dtype)` with logical axes `axes` (not placed)."""
    key = rngs.params() if rngs is not None else jax.random.key(0)
    return nnx.Param(init(key, shape, dtype), out_sharding=axes, eager_sharding=False)


_normal = nnx.initializers.normal(0.02)  # transformers' initializer_range
_zeros = nnx.initializers.zeros
_ones = nnx.initializers.ones


class Linear(nnx.Module):
    """y = x @ kernel (+ bias). `kernel [in, out]` is the transpose of torch's `weight [out, in]`."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool,
        axes: Axes,
        dtype: jnp.dtype,
        param_dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        self.kernel = param(rngs, _normal, (in_features, out_features), param_dtype, axes)
        self.bias = (
            param(rngs, _zeros, (out_features,), param_dtype, (axes[1],)) if use_bias else None
        )
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.matmul(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class RMSNorm(nnx.Module):
    """transformers' Qwen2_5_VLRMSNorm: normalise in float32, cast to the input dtype, then
    multiply by the weight (so in bf16 the product is bf16 * bf16, not float32)."""

    def __init__(self, size: int, *, eps: float, param_dtype: jnp.dtype, axes: Axes = ("norm",)):
        self.weight = param(None, _ones, (size,), param_dtype, axes)
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        normed = (x32 * jax.lax.rsqrt(variance + self.eps)).astype(x.dtype)
        return self.weight[...] * normed


class LayerNorm(nnx.Module):
    """torch `nn.LayerNorm(size, eps)` with weight and bias: statistics in float32, result cast
    to the input dtype, then scaled and shifted."""

    def __init__(self, size: int, *, eps: float, param_dtype: jnp.dtype, axes: Axes = ("norm",)):
        self.weight = param(None, _ones, (size,), param_dtype, axes)
        self.bias = param(None, _zeros, (size,), param_dtype, axes)
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        normed = ((x32 - mean) * jax.lax.rsqrt(var + self.eps)).astype(x.dtype)
        return normed * self.weight[...].astype(x.dtype) + self.bias[...].astype(x.dtype)


class Embed(nnx.Module):
    """Token embedding `[vocab, hidden]`; `attend` is the tied lm_head (x @ embedding.T)."""

    def __init__(
        self,
        num_embeddings: int,
        features: int,
        *,
        dtype: jnp.dtype,
        param_dtype: jnp.dtype,
        rngs: nnx.Rngs,
    ):
        self.embedding = param(
            rngs, _normal, (num_embeddings, features), param_dtype, ("vocab", "embed")
        )
        self.dtype = dtype

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        return jnp.matmul(x.astype(self.dtype), self.embedding[...].astype(self.dtype).T)


def gated_mlp(x: jax.Array, gate: Linear, up: Linear, down: Linear) -> jax.Array:
    """down(silu(gate(x)) * up(x)), Qwen2MLP / Qwen2_5_VLMLP."""
    return down(jax.nn.silu(gate(x)) * up(x))


def softmax_float32(scores: jax.Array) -> jax.Array:
    """Softmax over the last axis in float32: exp(s - max) / sum, the formula torch uses.

    Written out because on XLA:CPU it fuses into fewer passes than `jax.nn.softmax`."""
    s = scores.astype(jnp.float32)
    e = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
    return e / jnp.sum(e, axis=-1, keepdims=True)


def head_attention_probs(
    q: jax.Array, k: jax.Array, mask: jax.Array, scale: float, head: int
) -> jax.Array:
    """The attention probabilities of one query head, float32 `[B, Lq, Lk]`: q `[B, Lq, H, D]`,
    k `[B, Lk, KV, D]` (query head `head` reads KV head `head // (H // KV)`), mask
    broadcastable to `[B, 1, Lq, Lk]`; the same masking and softmax as
    `masked_softmax_attention`."""
    group = q.shape[2] // k.shape[2]
    scores = jnp.einsum("bqd,bkd->bqk", q[:, :, head], k[:, :, head // group]) * jnp.asarray(
        scale, q.dtype
    )
    scores = jnp.where(mask[:, 0], scores, jnp.finfo(scores.dtype).min)
    return softmax_float32(scores)


class AttentionCapture:
    """Mixin of a text attention module: while `capture_head` is set (by
    jaxseg.models.family.attention_capture), each cache-free pass sows that head's
    probabilities `[B, L, L]` as the `nnx.Intermediate` "attention_probs" and the values it
    reads `[B, L, Dh]` (its KV head's) as "attention_values"; while `route_head` is set (by
    `route_capture`), that head's probabilities as "route_probs"."""

    capture_head: int | None = None
    route_head: int | None = None

    def capture(
        self,
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        mask: jax.Array,
        scale: float,
        cached: bool,
    ):
        if self.capture_head is not None and not cached:
            head = self.capture_head
            self.sow(
                nnx.Intermediate,
                "attention_probs",
                head_attention_probs(q, k, mask, scale, head),
            )
            group = q.shape[2] // v.shape[2]
            self.sow(nnx.Intermediate, "attention_values", v[:, :, head // group])
        if self.route_head is not None and not cached:
            probs = head_attention_probs(q, k, mask, scale, self.route_head)
            self.sow(nnx.Intermediate, "route_probs", probs)


def masked_softmax_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float
) -> jax.Array:
    """Eager attention as transformers computes it.

    q `[B, Lq, H, D]`, k/v `[B, Lk, H, D]` (kv heads already repeated), mask broadcastable to
    `[B, H, Lq, Lk]` (True = attend). Scores in the input dtype, masked with the dtype's minimum
    (finite, so fully-masked pad rows give a uniform softmax rather than NaN, as in HF), softmax
    in float32, cast back, then weighted sum. Returns `[B, Lq, H, D]`.
    Heads are moved in front of the sequence axis so both products are plain batched GEMMs.
    """
    qh, kh, vh = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))  # [B, H, L, D]
    scores = jnp.einsum("bhqd,bhkd->bhqk", qh, kh) * jnp.asarray(scale, q.dtype)
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    probs = softmax_float32(scores).astype(q.dtype)
    return jnp.swapaxes(jnp.einsum("bhqk,bhkd->bhqd", probs, vh), 1, 2)
