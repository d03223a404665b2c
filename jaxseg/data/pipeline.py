"""grain input pipelines: the trainer's step feeds, and the clip pipeline.

**Step feeds** (`step_feed`): what every training stage reads. Element `s` of the
`grain.MapDataset` is step `s`'s share of this host:

    ds = step_feed(ShuffledSteps(n=len(examples), size=8, seed=0), load, steps=600)
    it = iter(ds)                 # a grain DatasetIterator, prefetching in a thread
    it.set_state(saved)           # {"next_index": step}: what the checkpoint's meta holds
    data = next(it)               # StepData(step, offset, positions, items)

The step's global positions (`ShuffledSteps`: epoch-wise permutations, numpy rng
[seed, epoch]; or any `grain.transforms.Map` from a step to its positions) are cut into equal
contiguous shares, one per process (`grain.sharding.ShardByJaxProcess`), and only this
host's share is loaded (`load(step, positions)`), so on a pod each host reads only its
records and the hosts together read the step's batch of a single-process run, in order.
Everything is a function of (seed, step): a resumed iterator continues with the next step's
records, none repeated or skipped, for any worker or process count.

**Clip pipeline** (`build_dataset`): reader records -> frame sampling -> resize -> encode ->
bucketed batches, for benchmarking the readers and encoders.

    ds = build_dataset(read_revos(root, "train"), PipelineConfig(...), encode=ByteEncode(), seed=0)
    it = iter(ds)
    batch = next(it)              # dict of [B, ...] numpy arrays
    state = it.get_state()        # goes into the checkpoint
    it2 = iter(ds); it2.set_state(state)   # continues exactly where `it` stands

Determinism: shuffling (grain's index shuffle) and keyframe sampling (`random_map`, one rng
per element derived from the seed and the element's index) depend only on `seed`, so the
stream is identical across runs and worker counts.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grain
import numpy as np

from jaxseg.data.collate import PadRule, collate
from jaxseg.data.encode import ByteEncode, Clip
from jaxseg.data.images import resize_frames, resize_masks
from jaxseg.data.readers.errors import BadInputWarning, DataFormatError
from jaxseg.data.readers.records import VideoExpression
from jaxseg.data.sampling import keyframe_centred_positions, uniform_positions

EncodeFn = Callable[[Clip], Mapping[str, np.ndarray]]


# ----------------------------------------------------------------------------- step feeds
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


# ----------------------------------------------------------------------------- clip pipeline


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """num_frames: N frames per clip (at most N; see `sampling`); sampling: "uniform" or
    "keyframe" (Veason-R1's top-k-area pseudo-keyframe); frame_size: (h, w) every frame is
    resized to (bilinear; masks nearest), None keeps the native size (then all videos of a
    batch must share it); seq_buckets: allowed padded text lengths."""

    num_frames: int = 8
    sampling: str = "uniform"
    top_k: int = 5
    frame_size: tuple[int, int] | None = (224, 224)
    with_masks: bool = True
    batch_size: int = 2
    drop_remainder: bool = False
    shuffle: bool = True
    num_epochs: int | None = 1  # None: repeat forever
    seq_buckets: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096, 8192)
    pixel_multiple: int = 256  # pixel_values rows are padded to a multiple of this
    pad_side: str = "left"  # prompts for generation are left-padded
    pad_token_id: int = 0
    worker_count: int = 0
    worker_buffer_size: int = 2
    skip_bad: bool = False  # a clip whose frame/mask cannot be decoded: warn and drop it

    def __post_init__(self):
        if self.sampling not in ("uniform", "keyframe"):
            raise ValueError(f"sampling must be 'uniform' or 'keyframe', got {self.sampling!r}")
        if self.pad_side not in ("left", "right"):
            raise ValueError(f"pad_side must be 'left' or 'right', got {self.pad_side!r}")


@dataclasses.dataclass(frozen=True)
class SampleFrames(grain.transforms.RandomMap):
    """record -> (record, positions [M], keyframe position or -1)."""

    num_frames: int
    sampling: str
    top_k: int

    def random_map(self, record: VideoExpression, rng: np.random.Generator):
        if self.sampling == "keyframe":
            positions, keyframe = keyframe_centred_positions(
                record.target_areas(), self.num_frames, rng, self.top_k
            )
        else:
            positions, keyframe = uniform_positions(record.num_frames, self.num_frames), -1
        return record, positions, keyframe


@dataclasses.dataclass(frozen=True)
class LoadClip(grain.transforms.Map):
    """Decode the sampled frames (and target masks) and resize them."""

    frame_size: tuple[int, int] | None
    with_masks: bool
    skip_bad: bool = False

    def map(self, element) -> Clip | None:
        try:
            return self._load(element)
        except DataFormatError as err:
            if not self.skip_bad:
                raise
            warnings.warn(f"dropped clip: {err}", BadInputWarning, stacklevel=2)
            return None

    def _load(self, element) -> Clip:
        record, positions, keyframe = element
        frames = resize_frames(record.load_frames(positions), self.frame_size)
        masks = None
        if self.with_masks and record.has_masks:
            masks = resize_masks(record.target_masks(positions), self.frame_size)
        return Clip(
            video_id=record.video_id,
            exp_id=record.exp_id,
            expression=record.expression,
            type_id=record.type_id,
            frames=frames,
            masks=masks,
            frame_ids=np.asarray([record.frame_ids[p] for p in positions], np.int64),
            positions=np.asarray(positions, np.int64),
            keyframe=int(keyframe),
            original_size=(record.height, record.width),
        )


@dataclasses.dataclass(frozen=True)
class Encode(grain.transforms.Map):
    """Clip -> flat dict: the encode function's arrays + clip arrays + identifiers."""

    encode: EncodeFn

    def map(self, clip: Clip | None) -> dict[str, Any] | None:
        if clip is None:
            return None
        out = {k: np.asarray(v) for k, v in self.encode(clip).items()}
        m = len(clip.positions)
        out.update(
            frames=clip.frames,
            frame_ids=clip.frame_ids,
            positions=clip.positions,
            frame_valid=np.ones(m, dtype=bool),
            keyframe=np.int64(clip.keyframe),
            type_id=np.int64(clip.type_id),
            original_size=np.asarray(clip.original_size, np.int64),
            video_id=np.str_(clip.video_id),
            exp_id=np.str_(clip.exp_id),
        )
        if clip.masks is not None:
            out["masks"] = clip.masks
        return out


def pad_rules(cfg: PipelineConfig) -> dict[str, PadRule]:
    """Text keys to a sequence bucket; per-frame keys to N frames; pixel rows to a multiple."""
    seq = dict(buckets=cfg.seq_buckets, side=cfg.pad_side)
    frames = dict(buckets=(cfg.num_frames,))
    return {
        "input_ids": PadRule(axis=-1, value=cfg.pad_token_id, **seq),
        "attention_mask": PadRule(axis=-1, value=0, **seq),
        "position_ids": PadRule(axis=-1, value=0, **seq),
        "frames": PadRule(axis=0, **frames),
        "masks": PadRule(axis=0, **frames),
        "frame_ids": PadRule(axis=0, value=-1, **frames),
        "positions": PadRule(axis=0, value=-1, **frames),
        "frame_valid": PadRule(axis=0, value=False, **frames),
        "image_grid_thw": PadRule(axis=0, **frames),
        "pixel_values": PadRule(axis=0, multiple=cfg.pixel_multiple),
    }


class IsPresent(grain.transforms.Filter):
    """Drops the clips `LoadClip(skip_bad=True)` could not decode."""

    def filter(self, element) -> bool:
        return element is not None


@dataclasses.dataclass(frozen=True)
class Collate:
    rules: Mapping[str, PadRule]

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        return collate(examples, self.rules)


def _absl_flags_ready() -> None:
    """grain's worker processes read absl flags; outside an absl app they are unparsed."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def build_dataset(
    source: Sequence[VideoExpression],
    cfg: PipelineConfig,
    encode: EncodeFn | None = None,
    *,
    seed: int = 0,
) -> grain.IterDataset:
    """The whole pipeline as a grain IterDataset of batches (see the module docstring)."""
    if len(source) == 0:
        raise ValueError("the source has no records")
    ds = grain.MapDataset.source(source).seed(seed)
    if cfg.shuffle:
        ds = ds.shuffle()
    if cfg.num_epochs != 1:
        ds = ds.repeat(cfg.num_epochs)
    ds = ds.random_map(SampleFrames(cfg.num_frames, cfg.sampling, cfg.top_k))
    ds = ds.map(LoadClip(cfg.frame_size, cfg.with_masks, cfg.skip_bad))
    ds = ds.map(Encode(encode or ByteEncode()))
    if cfg.skip_bad:
        ds = ds.filter(IsPresent())
    it = ds.to_iter_dataset()
    if cfg.worker_count > 0:
        # Workers decode and encode elements; batching stays in this process, so element
        # order, and with it every batch, is the same for any worker count.
        _absl_flags_ready()
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(
                num_workers=cfg.worker_count, per_worker_buffer_size=cfg.worker_buffer_size
            )
        )
    return it.batch(
        cfg.batch_size, drop_remainder=cfg.drop_remainder, batch_fn=Collate(pad_rules(cfg))
    )
