"""Small nnx blocks of SAM2's heads, channel-last inside, numerically sam2's torch modules.

Parameter layouts: `Embedding.weight`, `PatchConv.weight` and `UpConv2x2.weight` keep torch's
layouts ([N, C], [O, I, k, k], [I, O, 2, 2]) so weights.py maps them by name only; nnx.Linear
keeps flax's `kernel [in, out]` (torch weight transposed) and nnx.LayerNorm its `scale`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx


class Buffer(nnx.Variable):
    """A fixed tensor that is part of the checkpoint but not trained (torch register_buffer)."""


def gelu(x: jax.Array) -> jax.Array:
    """torch nn.GELU() default: the exact erf form."""
    return jax.nn.gelu(x, approximate=False)


def layer_norm(dim: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """torch nn.LayerNorm(dim): eps 1e-5 (flax's default is 1e-6) and the two-pass variance
    mean((x - mean)^2) (flax's default fast variance E[x^2] - E[x]^2 loses digits when the mean
    is large: measured 2.6x further from float64 than torch at 1024 px before this)."""
    return nnx.LayerNorm(dim, epsilon=1e-5, use_fast_variance=False, rngs=rngs)


class Embedding(nnx.Module):
    """torch nn.Embedding(n, dim) used as a table of learned tokens: `weight [n, dim]`, N(0, 1)."""

    def __init__(self, n: int, dim: int, rngs: nnx.Rngs):
        self.weight = nnx.Param(jax.random.normal(rngs.params(), (n, dim), jnp.float32))


class LayerNorm2d(nnx.Module):
    """sam2_utils.LayerNorm2d over the channel axis (last here), eps 1e-6."""

    def __init__(self, channels: int, eps: float = 1e-6):
        self.weight = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        u = x.mean(-1, keepdims=True)
        s = jnp.square(x - u).mean(-1, keepdims=True)
        return self.weight[...] * ((x - u) / jnp.sqrt(s + self.eps)) + self.bias[...]


def _uniform(key, shape, bound):
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


class PatchConv(nnx.Module):
    """torch nn.Conv2d(I, O, kernel_size=k, stride=k) (non-overlapping patches): [B,H,W,I] ->
    [B,H/k,W/k,O]. torch's default init (uniform +-1/sqrt(I k k))."""

    def __init__(self, cin: int, cout: int, k: int, rngs: nnx.Rngs):
        bound = (cin * k * k) ** -0.5
        self.weight = nnx.Param(_uniform(rngs.params(), (cout, cin, k, k), bound))
        self.bias = nnx.Param(_uniform(rngs.params(), (cout,), bound))
        self.k = k

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        k = self.k
        patches = x.reshape(b, h // k, k, w // k, k, c)
        return jnp.einsum("bhiwjc,ocij->bhwo", patches, self.weight[...]) + self.bias[...]


class UpConv2x2(nnx.Module):
    """torch nn.ConvTranspose2d(I, O, kernel_size=2, stride=2): each input pixel writes its own
    2x2 output block, so it is one einsum. [B,H,W,I] -> [B,2H,2W,O]."""

    def __init__(self, cin: int, cout: int, rngs: nnx.Rngs):
        bound = (cout * 4) ** -0.5  # torch: fan_in of a transposed conv is weight.size(1) * k * k
        self.weight = nnx.Param(_uniform(rngs.params(), (cin, cout, 2, 2), bound))
        self.bias = nnx.Param(_uniform(rngs.params(), (cout,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, _ = x.shape
        y = jnp.einsum("bhwc,coij->bhiwjo", x, self.weight[...])
        return y.reshape(b, 2 * h, 2 * w, -1) + self.bias[...]


class MLP(nnx.Module):
    """sam2_utils.MLP: `num_layers` Linear layers, activation between them, optional sigmoid."""

    def __init__(
        self,
        din: int,
        hidden: int,
        dout: int,
        num_layers: int,
        rngs: nnx.Rngs,
        activation: Callable[[jax.Array], jax.Array] = jax.nn.relu,
        sigmoid_output: bool = False,
    ):
        dims = [din] + [hidden] * (num_layers - 1) + [dout]
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:], strict=True)]
        )
        self.activation = activation
        self.sigmoid_output = sigmoid_output

    def __call__(self, x: jax.Array) -> jax.Array:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.activation(x)
        return jax.nn.sigmoid(x) if self.sigmoid_output else x
