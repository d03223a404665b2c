"""Per-host data: each process reads its own shard of the records, and host-local batches
become global arrays on the mesh (and back, for host-side work such as SAM2 rewards).

    source = shard_source(records)                 # this host's records (grain slicing)
    ds = build_dataset(source, cfg, encode, seed=seed)   # jaxseg.data.pipeline, unchanged
    batch = to_global(next(iter(ds)), mesh)        # [B_global, ...] jax.Arrays
    rows = to_host_local(completions, mesh)        # this host's rows, for its own sidecar

Every host shuffles its shard with the same seed; shards are equal-sized by default
(`drop_remainder=True`), so all hosts run the same number of steps (a host that ran out first
would hang the others in the next collective).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grain
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec

from .rules import RULES, Rules, named_sharding

# Fields whose batch dimension is not the first (M-RoPE positions [3, B, L]).
BATCH_DIM = {"position_ids": 1}


def host_shard_options(drop_remainder: bool = True) -> grain.sharding.ShardOptions:
    """This process's shard: index = jax.process_index(), count = jax.process_count()."""
    return grain.sharding.ShardByJaxProcess(drop_remainder=drop_remainder)


def shard_source(
    source: Sequence[Any], options: grain.sharding.ShardOptions | None = None
) -> grain.MapDataset:
    """Records `index, index + count, ...` of `source` (grain's `ds[index::count]`), cut to
    `len(source) // count` when `drop_remainder`. A lazy view: nothing is read."""
    options = options or host_shard_options()
    index, count = options.shard_index, options.shard_count
    if not 0 <= index < count:
        raise ValueError(f"shard_index {index} outside [0, shard_count={count})")
    ds = grain.MapDataset.source(source)
    if len(ds) < count:
        raise ValueError(f"{len(ds)} records cannot feed {count} hosts")
    ds = ds[index::count]
    if options.drop_remainder:
        ds = ds[: len(source) // count]
    return ds


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
