"""grain step feeds: what every training stage reads (jaxseg.train.learner).

Element `s` of a feed is step `s`'s share of this host:

    ds = step_feed(ShuffledSteps(n=len(examples), size=8, seed=0), load, steps=600)
    it = iter(ds)                 # a grain DatasetIterator, prefetching in a thread
    it.set_state(saved)           # {"next_index": step}: what the checkpoint's meta holds
    data = next(it)               # StepData(step, offset, positions, items)

The step's global positions (`ShuffledSteps`: epoch-wise permutations, numpy rng
[seed, epoch]; `StreamSteps`: a generated stream; or any `grain.transforms.Map` from a step
to its positions, e.g. jaxseg.train.mix.MixedSteps) are cut into equal contiguous shares, one
per process (`grain.sharding.ShardByJaxProcess`), and only this host's share is loaded
(`load(step, positions)`), so on a pod each host reads only its records and the hosts
together read the step's batch of a single-process run, in order. Everything is a function
of (seed, step): a resumed iterator continues with the next step's records, none repeated or
skipped, for any process count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import grain
import numpy as np


@dataclasses.dataclass(frozen=True)
class StepData:
    """One step's data on this host: `positions` [n_local] are its records' positions in the
    stage's source, `offset` the index of the first of them in the step's global batch
    (process i holds global rows offset .. offset + n_local - 1), `items` what `load` made
    of them."""

    step: int
    offset: int
    positions: list[int]
    items: list


@dataclasses.dataclass(frozen=True)
class ShuffledSteps(grain.transforms.Map):
    """step -> the `size` positions of its global batch: epoch `e` is a permutation of
    [0, n) drawn from numpy rng [seed, e], cut into `max(n // size, 1)` steps (a tail shorter
    than `size` is left out of that epoch). With n < size, `cycle` repeats the permutation
    up to `size`; otherwise the step has all n."""

    n: int
    size: int
    seed: int
    cycle: bool = True

    def __post_init__(self):
        if self.n < 1 or self.size < 1:
            raise ValueError(
                f"ShuffledSteps needs n >= 1 and size >= 1, got n={self.n}, size={self.size}"
            )

    def map(self, step: int) -> tuple[int, list[int]]:
        per_epoch = max(self.n // self.size, 1)
        epoch, k = divmod(int(step), per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        if self.cycle and len(order) < self.size:
            order = np.resize(order, self.size)
        return int(step), [int(j) for j in order[k * self.size : (k + 1) * self.size]]


@dataclasses.dataclass(frozen=True)
class StreamSteps(grain.transforms.Map):
    """step -> (step, [0, size)): a stream whose step `s` is a function of `s` alone (e.g. the
    base curriculum's generated batches); positions index into the step's items."""

    size: int

    def map(self, step: int) -> tuple[int, list[int]]:
        return int(step), list(range(self.size))


def host_slice(
    size: int, options: grain.sharding.ShardOptions | None = None, what: str = "a step"
) -> slice:
    """This process's contiguous share [lo, hi) of a step's `size` global rows
    (`options`: default `ShardByJaxProcess`, i.e. jax.process_index() of process_count()).
    Shares are equal, so `size` must divide by the shard count (a host with fewer rows would
    leave the others waiting in the next collective); `what` names the size in that error."""
    options = options or grain.sharding.ShardByJaxProcess()
    index, count = options.shard_index, options.shard_count  # grain checks 0 <= index < count
    if size % count:
        raise ValueError(f"{what}={size} does not divide by the {count} processes of this run")
    per = size // count
    return slice(index * per, (index + 1) * per)


@dataclasses.dataclass(frozen=True)
class HostShare(grain.transforms.Map):
    """(step, global positions) -> (step, offset, this host's positions): the contiguous
    share `host_slice` gives this shard."""

    options: grain.sharding.ShardOptions
    what: str = "a step"

    def map(self, element: tuple[int, list[int]]) -> tuple[int, int, list[int]]:
        step, positions = element
        share = host_slice(len(positions), self.options, self.what)
        return step, share.start, positions[share]


@dataclasses.dataclass(frozen=True)
class LoadStep(grain.transforms.Map):
    """(step, offset, positions) -> StepData with `load(step, positions)` as its items."""

    load: Callable[[int, list[int]], list]

    def map(self, element: tuple[int, int, list[int]]) -> StepData:
        step, offset, positions = element
        return StepData(step, offset, positions, list(self.load(step, positions)))


def step_feed(
    order: grain.transforms.Map,
    load: Callable[[int, list[int]], list],
    *,
    steps: int,
    shard: grain.sharding.ShardOptions | None = None,
    prefetch: int = 1,
    what: str = "a step",
) -> grain.IterDataset:
    """A stage's data as a grain IterDataset of `StepData`, element s = step s (module
    docstring). `order`: step -> (step, global positions) (with a `size`, checked here to
    divide by the process count; `what` names it in the error, e.g. "sft.batch_size");
    `load`: (step, this host's positions) -> its items; `prefetch`: steps loaded ahead in a
    thread (0: none)."""
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    shard = shard or grain.sharding.ShardByJaxProcess()
    if hasattr(order, "size"):
        host_slice(order.size, shard, what)  # a clear error before any step runs
    ds = grain.MapDataset.range(steps).map(order).map(HostShare(shard, what)).map(LoadStep(load))
    threads = 1 if prefetch > 0 else 0  # one thread keeps the loads in step order
    return ds.to_iter_dataset(
        grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(prefetch, 0))
    )


def resume_iterator(ds: grain.IterDataset, start: int, state: Mapping | None = None):
    """An iterator of `ds` (a `step_feed`) positioned at step `start`: from the checkpoint's
    iterator `state` when it has one (it must agree with `start`: a checkpoint whose data
    and model disagree is refused), else from `start` itself (checkpoints written before
    the iterator state was kept)."""
    it = iter(ds)
    if state is not None:
        if int(state.get("next_index", -1)) != int(start):
            raise ValueError(
                f"the checkpoint's data iterator is at step {state.get('next_index')} but its "
                f"model at step {start}"
            )
        it.set_state(dict(state))
    else:
        it.set_state({"next_index": int(start)})
    return it
