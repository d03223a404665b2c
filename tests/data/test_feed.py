"""The trainer's step feeds (jaxseg.data.pipeline.step_feed): order, host shards, resume."""

import grain
import numpy as np
import pytest

from jaxseg.data.pipeline import (
    ShuffledSteps,
    StreamSteps,
    host_slice,
    resume_iterator,
    step_feed,
)


def _shard(index, count):
    return grain.sharding.ShardOptions(shard_index=index, shard_count=count)


def _read(ds, n):
    it = iter(ds)
    return [next(it) for _ in range(n)]


def test_shuffled_steps_are_epoch_permutations():
    order = ShuffledSteps(n=10, size=4, seed=3)  # 2 steps an epoch, 2 records left out of each
    steps = [order.map(s) for s in range(6)]
    assert [s for s, _ in steps] == list(range(6))
    for epoch in range(3):
        a, b = steps[2 * epoch][1], steps[2 * epoch + 1][1]
        perm = np.random.default_rng([3, epoch]).permutation(10)
        assert a + b == [int(x) for x in perm[:8]]  # each record at most once an epoch
    assert steps[0][1] != steps[2][1]  # a new permutation every epoch
    # fewer records than a step: cycled to the step size, or the whole set
    assert len(ShuffledSteps(n=3, size=5, seed=0).map(0)[1]) == 5
    assert sorted(ShuffledSteps(n=3, size=5, seed=0, cycle=False).map(0)[1]) == [0, 1, 2]
    with pytest.raises(ValueError, match="n >= 1"):
        ShuffledSteps(n=0, size=4, seed=0)


def test_host_shards_are_disjoint_and_make_up_the_step():
    order = ShuffledSteps(n=20, size=6, seed=0)
    load = lambda step, idx: [(step, i) for i in idx]  # noqa: E731
    whole = _read(step_feed(order, load, steps=5, shard=_shard(0, 1)), 5)
    shards = [_read(step_feed(order, load, steps=5, shard=_shard(i, 3)), 5) for i in range(3)]
    for s in range(5):
        parts = [shards[i][s] for i in range(3)]
        assert [p.offset for p in parts] == [0, 2, 4]
        assert sum((p.positions for p in parts), []) == whole[s].positions
        assert set(parts[0].positions).isdisjoint(parts[1].positions + parts[2].positions)
        assert parts[1].items == [(s, i) for i in parts[1].positions]  # only its own loaded
    with pytest.raises(ValueError, match="sft.batch_size=6 does not divide by the 4 processes"):
        step_feed(ShuffledSteps(n=20, size=6, seed=0), load, steps=5, shard=_shard(0, 4),
                  what="sft.batch_size")  # fmt: skip
    with pytest.raises(ValueError, match="shard_index"):
        host_slice(6, _shard(3, 3))


def test_mid_epoch_resume_repeats_and_skips_nothing():
    order = ShuffledSteps(n=12, size=4, seed=1)  # 3 steps an epoch
    calls = []

    def load(step, idx):
        calls.append(step)
        return list(idx)

    ds = step_feed(order, load, steps=7, shard=_shard(1, 2), prefetch=0)
    unbroken = [d.positions for d in _read(ds, 7)]
    it = iter(ds)
    first = [next(it).positions for _ in range(4)]  # stops in the middle of epoch 1
    state = it.get_state()
    assert state == {"next_index": 4}
    calls.clear()
    rest = resume_iterator(ds, 4, state)
    second = [d.positions for d in rest]
    assert first + second == unbroken
    assert calls == [4, 5, 6]  # nothing before the resume point is read again
    # a checkpoint without iterator state (older layout) resumes at its step
    assert [d.step for d in resume_iterator(ds, 5, None)] == [5, 6]
    with pytest.raises(ValueError, match="iterator is at step 3 but its model at step 4"):
        resume_iterator(ds, 4, {"next_index": 3})


def test_prefetch_and_streams_are_deterministic():
    order = ShuffledSteps(n=9, size=3, seed=2)
    load = lambda step, idx: [step * 100 + i for i in idx]  # noqa: E731
    plain = [d.items for d in _read(step_feed(order, load, steps=6, prefetch=0), 6)]
    ahead = [d.items for d in _read(step_feed(order, load, steps=6, prefetch=2), 6)]
    assert plain == ahead
    stream = _read(step_feed(StreamSteps(4), load, steps=2, shard=_shard(1, 2)), 2)
    assert [(d.step, d.offset, d.items) for d in stream] == [(0, 2, [2, 3]), (1, 2, [102, 103])]
