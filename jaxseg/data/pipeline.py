"""grain input pipeline: reader records -> frame sampling -> resize -> encode -> bucketed batches.

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
