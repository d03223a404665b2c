"""A training run's state on its mesh: model, optimizer, batches and checkpoint restore targets.

What `jaxseg.train.trainer.Experiment` calls when `config.mesh` is set (each call is a no-op
for `mesh=None`, the single-device run, so the trainer has one code path):

    mesh = run_mesh(config)                          # None without a `mesh` block
    model = place(model, mesh)                       # params on their rule shardings
    optimizer = place(nnx.Optimizer(model, tx, wrt=nnx.Param), mesh)   # moments like params
    batch = place_batch(batch, mesh)                 # rows over data x fsdp
    restored, meta = ckpt.restore(abstract_like(live_state))   # lands on the rule shardings

The shardings are the logical-axis rules of rules.py (FSDP over the hidden dimension, tensor
parallel over heads/MLP/vocab, batch over data x fsdp); the jitted update pins its outputs to
the same shardings (rules.constrain_state, called from jaxseg.train.steps), so the layout
neither drifts nor recompiles between steps. The live arrays' shardings are therefore
`rules.abstract_on_mesh` of this mesh, and a restore target taken from them reads a
checkpoint written on any other mesh shape straight into this one (orbax reshards on read).

Multi-process: `place_batch` device_puts a host array onto the global mesh, which needs the
same array on every process; a run whose hosts hold different rows uses data.to_global.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import jax
from flax import nnx

from jaxseg.train.batch import PolicyBatch

from .mesh import create_mesh
from .rules import (
    RULES,
    Rules,
    batch_sharding,
    pixel_rows_sharding,
    position_ids_sharding,
    state_shardings,
)

M = TypeVar("M", bound=nnx.Module)
ROW_FIELDS = ("input_ids", "attention_mask", "loss_mask", "advantages", "old_logp", "ref_logp")


def run_mesh(config: Mapping[str, Any]) -> jax.sharding.Mesh | None:
    """The run's mesh from its `mesh` block (mesh.create_mesh), None when there is none."""
    block = config.get("mesh") if hasattr(config, "get") else None
    return None if block is None else create_mesh(block)


def place(module: M, mesh, *filters, rules: Rules = RULES) -> M:
    """Moves `module`'s variables (default: all) onto their rule shardings, in place."""
    if mesh is None:
        return module
    state = nnx.state(module, *filters) if filters else nnx.state(module)
    nnx.update(module, jax.device_put(state, state_shardings(state, mesh, rules=rules)))
    return module


def place_batch(batch: PolicyBatch, mesh, rules: Rules = RULES) -> PolicyBatch:
    """A PolicyBatch with its rows over data x fsdp (`[B, ...]` fields, positions `[3, B, L]`)
    and the vision tower's patch rows over the same axes; a dimension the axes do not divide is
    replicated. The host-side vision layout stays as it is (jit replicates it)."""
    if mesh is None:
        return batch
    put = {
        name: jax.device_put(
            getattr(batch, name), batch_sharding(getattr(batch, name).shape, mesh, rules)
        )
        for name in ROW_FIELDS
    }
    put["position_ids"] = jax.device_put(
        batch.position_ids, position_ids_sharding(batch.position_ids.shape, mesh, rules)
    )
    if batch.pixel_values is not None:
        put["pixel_values"] = jax.device_put(
            batch.pixel_values, pixel_rows_sharding(batch.pixel_values.shape, mesh, rules)
        )
    return batch.replace(**put)
