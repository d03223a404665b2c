"""Host-local <-> global batches (single process here; the 2-process run is in
test_distributed.py; which records each host reads: tests/data/test_feed.py)."""

from __future__ import annotations

import numpy as np
from jax.sharding import PartitionSpec as P

from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.data import batch_spec, to_global, to_host_local


def test_global_batch_round_trip_and_specs():
    mesh = mesh_from_shape((2, 2, 2))
    batch = {
        "input_ids": np.arange(8 * 5).reshape(8, 5),
        "position_ids": np.arange(3 * 8 * 5).reshape(3, 8, 5),
    }
    assert batch_spec("input_ids", 2, mesh) == P(("data", "fsdp"), None)
    assert batch_spec("position_ids", 3, mesh) == P(None, ("data", "fsdp"), None)
    glob = to_global(batch, mesh)
    assert glob["input_ids"].sharding.spec == P(("data", "fsdp"), None)
    assert glob["position_ids"].sharding.shard_shape((3, 8, 5)) == (3, 2, 5)
    back = to_host_local(glob, mesh)
    for k, v in batch.items():
        np.testing.assert_array_equal(back[k], v)
