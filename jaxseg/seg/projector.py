"""[SEG] hidden state -> SAM2 prompt token (VideoSEG-O3 / Sa2VA `text_hidden_fcs`,
arXiv 2606.06819 (inference) step 6: Linear(h, h) -> ReLU -> Linear(h, 256))."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class SegProjector(nnx.Module):
    """[..., hidden] -> [..., prompt_dim]; torch Linear default init (uniform +-1/sqrt(fan_in)),
    like the released `nn.Linear` layers."""

    def __init__(self, hidden_size: int, prompt_dim: int = 256, *, rngs: nnx.Rngs):
        def linear(n_in, n_out):
            bound = n_in**-0.5
            init = nnx.initializers.uniform(2 * bound)
            return nnx.Linear(
                n_in,
                n_out,
                kernel_init=lambda k, s, d: init(k, s, d) - bound,
                bias_init=lambda k, s, d: init(k, s, d) - bound,
                rngs=rngs,
            )

        self.fc1 = linear(hidden_size, hidden_size)
        self.fc2 = linear(hidden_size, prompt_dim)

    def __call__(self, hidden: jax.Array) -> jax.Array:
        return self.fc2(jax.nn.relu(self.fc1(hidden.astype(jnp.float32))))
