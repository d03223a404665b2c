"""Decoder activation memory measured from XLA's buffer assignment of the real model.

The planner's activation lines are arithmetic over the ops the model runs; what XLA keeps
alive for the backward pass depends on the backend's fusion decisions (CPU keeps about twice
the residuals TPU/GPU fusion would). This compiles -- shapes only, nothing is allocated -- the
loss + gradient of the decoder with 1 and 2 layers for one device's micro-batch on the local
backend and reads `compiled.memory_analysis()`: the difference is one layer's kept bytes,
the rest is what does not scale with depth (logits, log-softmax and their gradient, one
block's recompute under remat). Run it on the target machine (a TPU VM host, a GPU node) for
that backend's numbers: `jaxseg plan --measure`.

Remat is the model's own (jaxseg/models/remat.py): each decoder block under
`nnx.remat` with `dots_saveable` or `nothing_saveable` ("full"), as the trainer runs it with
`model.remat` set (measurable on a TPU/GPU backend only, see `measure_decoder`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.models.family import PolicyConfig
from jaxseg.models.remat import set_remat
from jaxseg.rl.logprobs import next_token_logprobs


@dataclasses.dataclass(frozen=True)
class DecoderMemory:
    per_layer_bytes: float
    rest_bytes: float  # not scaling with depth: logits, log-softmax, recompute of one block
    backend: str


def _text_only(mcfg: PolicyConfig, layers: int) -> PolicyConfig:
    return dataclasses.replace(mcfg, text=dataclasses.replace(mcfg.text, num_hidden_layers=layers))


def _temp_bytes(mcfg: PolicyConfig, rows: int, length: int, dtype, remat: str) -> int:
    from .planner import abstract_model  # no cycle at import time

    graphdef, state = nnx.split(set_remat(abstract_model(mcfg, dtype), remat))

    def loss(state, ids):
        m = nnx.merge(graphdef, state)
        pos = jnp.broadcast_to(jnp.arange(length), (3, rows, length))
        logits, _ = m.forward(ids, None, pos)  # the family's own text-only teacher forcing
        return -next_token_logprobs(logits, ids).mean()

    ids = jax.ShapeDtypeStruct((rows, length), jnp.int32)
    compiled = jax.jit(jax.grad(loss)).lower(state, ids).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


def measure_decoder(
    mcfg: PolicyConfig, rows: int, length: int, dtype=jnp.bfloat16, remat: str = "none"
) -> DecoderMemory:
    """Per-layer and depth-independent temp bytes of loss+grad for `rows` sequences of
    `length` tokens on one device of the local backend.

    On CPU only remat "none" is meaningful: XLA:CPU's buffer assignment does not reflect
    rematerialisation (a plain 8-layer jax.checkpoint chain reports *more* temp memory than
    without it), so other policies raise there."""
    if remat != "none" and jax.default_backend() == "cpu":
        raise ValueError(
            f"remat {remat!r} cannot be measured on the CPU backend (its buffer assignment "
            "ignores rematerialisation); measure on the TPU/GPU host, or use remat 'none'"
        )
    one = _temp_bytes(_text_only(mcfg, 1), rows, length, dtype, remat)
    two = _temp_bytes(_text_only(mcfg, 2), rows, length, dtype, remat)
    per_layer = max(two - one, 0)
    return DecoderMemory(float(per_layer), float(one - per_layer), jax.default_backend())
