"""Per-host record shards (grain) and host-local <-> global batches (single process here; the
2-process run is in test_distributed.py)."""

from __future__ import annotations

import grain
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.data import batch_spec, shard_source, to_global, to_host_local


def _opts(index, count, drop=True):
    return grain.sharding.ShardOptions(shard_index=index, shard_count=count, drop_remainder=drop)


def test_shards_are_disjoint_equal_sized_and_cover_all_but_the_remainder():
    records = [f"r{i}" for i in range(11)]
    shards = [list(shard_source(records, _opts(i, 3))) for i in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    flat = [r for s in shards for r in s]
    assert len(set(flat)) == 9 and set(flat) <= set(records)
    keep_all = [list(shard_source(records, _opts(i, 3, drop=False))) for i in range(3)]
    assert sorted(r for s in keep_all for r in s) == sorted(records)


def test_shard_feeds_a_grain_pipeline_like_a_sequence():
    # jaxseg.data.pipeline.build_dataset wraps its source in MapDataset.source(...).
    ds = grain.MapDataset.source(shard_source(list(range(10)), _opts(1, 2))).map(lambda x: x * 10)
    assert list(ds) == [10, 30, 50, 70, 90]


def test_default_options_follow_the_jax_process():
    assert list(shard_source([1, 2, 3])) == [1, 2, 3]  # one process: everything


def test_bad_shard_requests():
    with pytest.raises(ValueError, match="cannot feed 4 hosts"):
        shard_source([1, 2], _opts(0, 4))


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
