"""Per-host batches on the mesh: host-local rows become global arrays (and back, for
host-side work such as SAM2 rewards).

    batch = to_global(local_rows, mesh)            # [B_global, ...] jax.Arrays
    rows = to_host_local(completions, mesh)        # this host's rows, for its own sidecar

Which records a host reads is the grain feed's business (jaxseg.data.pipeline.step_feed:
each process loads its contiguous share of every step, `ShardByJaxProcess`); the rows of
host i come after those of host i - 1, in the order `to_global` stacks them.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec

from .rules import RULES, Rules, named_sharding

# Fields whose batch dimension is not the first (M-RoPE positions [3, B, L]).
BATCH_DIM = {"position_ids": 1}


def batch_spec(name: str, ndim: int, mesh, rules: Rules = RULES) -> PartitionSpec:
    """PartitionSpec of a batch field: its batch dimension over data x fsdp."""
    dim = BATCH_DIM.get(name, 0)
    axes = (None,) * dim + ("batch",)
    return named_sharding((0,) * ndim, axes[:ndim], mesh, rules).spec


def to_global(
    local_batch: Mapping[str, np.ndarray], mesh, rules: Rules = RULES
) -> dict[str, jax.Array]:
    """Host-local batch (this host's rows) -> global arrays, rows of host i after host i-1
    (`multihost_utils.host_local_array_to_global_array`). One process: a plain placement."""
    specs = {k: batch_spec(k, np.ndim(v), mesh, rules) for k, v in local_batch.items()}
    return multihost_utils.host_local_array_to_global_array(dict(local_batch), mesh, specs)


def to_host_local(global_batch: Mapping[str, jax.Array], mesh, rules: Rules = RULES) -> dict:
    """Inverse of `to_global`: this host's rows of each global array (e.g. the completions it
    decodes and scores with its own SAM2 sidecar)."""
    specs = {k: batch_spec(k, v.ndim, mesh, rules) for k, v in global_batch.items()}
    local = multihost_utils.global_array_to_host_local_array(dict(global_batch), mesh, specs)
    return {k: np.asarray(v) for k, v in local.items()}
