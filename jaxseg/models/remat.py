"""Per-block rematerialisation (activation checkpointing) for the decoder and vision blocks.

A policy name says what one block keeps for the backward pass (jax.checkpoint_policies):

    none           every intermediate (no jax.checkpoint; the default)
    dots_saveable  matmul outputs; elementwise ops (norms, RoPE, softmax, SiLU) are recomputed
    full           only the block's inputs (`nothing_saveable`): one extra forward per block

Only the teacher-forced (training) path is wrapped; decoding with a KV cache never is (it has
no backward pass). Gradients are the same function either way (tests/models/qwen2_5_vl/
test_remat.py for each family); `jaxseg plan` prices each policy's memory and FLOPs (jaxseg/parallel/planner.py).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
    "none": None,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
}


def check_remat(policy: str, field: str = "remat") -> str:
    """`policy` if it is a known name, else a ValueError naming `field` and the choices."""
    if policy not in REMAT_POLICIES:
        raise ValueError(f"{field} = {policy!r}; expected one of {sorted(REMAT_POLICIES)}")
    return policy


def remat_block(fn: Callable, policy: str) -> Callable:
    """`fn(block, *args)` under `nnx.remat` with `policy` (unchanged for "none")."""
    if check_remat(policy) == "none":
        return fn
    return nnx.remat(fn, policy=REMAT_POLICIES[policy])


class RematStack:
    """Mixin of a module whose block stack honours `self.remat` (a vision tower, a decoder)."""

    remat: str = "none"


def set_remat(model: nnx.Module, policy: str) -> nnx.Module:
    """Switches every block stack of `model` that supports remat (`RematStack`: the vision
    tower, the decoder) to `policy`, in place: for models built elsewhere (`from_pretrained`)."""
    check_remat(policy)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, RematStack):
            module.remat = policy
    return model
