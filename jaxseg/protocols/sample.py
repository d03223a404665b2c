"""What an episode runs on: one (video, query) with frames and per-object GT masks in memory.

Built from a reader record (`from_record`, any jaxseg.data.readers benchmark) or straight
from the synthetic generator (`from_synth`, no files). Frames stay at their native size; each
protocol resizes what it shows. `frame_ids` are the absolute frame indices written in the
prompts (Ref-YouTube-VOS keeps every 5th frame, so ids and positions differ there).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxseg.protocols import annotations as ann


@dataclasses.dataclass(frozen=True, eq=False)
class EpisodeSample:
    """frames: [T, H, W, 3] uint8; object_masks: [K, T, H, W] bool, one per target (K = 0 for
    a null query); frame_ids: [T] absolute indices, strictly increasing.
    description: an explicit noun phrase naming the target(s) when the source knows one
    (the synthetic scene graph does); the oracle uses it, a model never sees it."""

    key: str
    query: str
    frames: np.ndarray
    object_masks: np.ndarray
    frame_ids: tuple[int, ...]
    description: str | None = None
    type_id: int = 0
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        f, m = self.frames, self.object_masks
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"sample {self.key}: frames must be uint8 [T, H, W, 3]")
        if not isinstance(m, np.ndarray) or m.dtype != bool or m.ndim != 4:
            raise ValueError(f"sample {self.key}: object_masks must be bool [K, T, H, W]")
        if m.shape[1:] != f.shape[:3]:
            raise ValueError(
                f"sample {self.key}: object_masks {m.shape} do not match frames {f.shape}"
            )
        if len(self.frame_ids) != f.shape[0]:
            raise ValueError(
                f"sample {self.key}: {len(self.frame_ids)} frame_ids for {f.shape[0]} frames"
            )
        if any(b <= a for a, b in zip(self.frame_ids, self.frame_ids[1:])):
            raise ValueError(f"sample {self.key}: frame_ids must be strictly increasing")

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]

    @property
    def is_null(self) -> bool:
        """No target object anywhere in the video."""
        return not self.object_masks.any()

    @functools.cached_property
    def target_masks(self) -> np.ndarray:
        """[T, H, W] union of the targets."""
        return self.object_masks.any(axis=0)

    @functools.cached_property
    def areas(self) -> np.ndarray:
        """[T] target-union pixel area per frame."""
        return self.target_masks.sum(axis=(1, 2))

    @property
    def presence(self) -> np.ndarray:
        """[T] bool: some target is visible."""
        return self.areas > 0

    def position_of(self, frame_id: int) -> int | None:
        """Position of an absolute frame index, None if the video has no such frame."""
        try:
            return self.frame_ids.index(int(frame_id))
        except (ValueError, TypeError, OverflowError):
            return None

    def nearest_position(self, frame_id: int) -> int:
        """Position of the frame whose absolute index is closest (the earlier one on ties)."""
        ids = np.asarray(self.frame_ids)
        return int(np.argmin(np.abs(ids - int(frame_id))))

    def boxes_at(self, position: int) -> np.ndarray:
        """[N, 4] GT boxes (x1, y1, x2, y2 in native pixels) of the targets visible there."""
        return ann.boxes_of(self.object_masks[:, position])


def from_record(record, *, description: str | None = None) -> EpisodeSample:
    """From a jaxseg.data.readers `VideoExpression` (decodes every frame and mask)."""
    frames = record.load_frames()
    if record.masks is None:
        raise ValueError(f"{record.key}: the split has no ground-truth masks; episodes need them")
    obj = (
        record.object_masks()
        if record.masks.num_objects
        else np.zeros((0, *frames.shape[:3]), bool)
    )
    return EpisodeSample(
        key=record.key,
        query=record.expression,
        frames=frames,
        object_masks=np.asarray(obj, bool),
        frame_ids=tuple(int(i) for i in record.frame_ids),
        description=description,
        type_id=int(record.type_id),
        extras={"dataset": record.dataset},
    )


def from_synth(video, query_index: int, *, key: str | None = None) -> EpisodeSample:
    """From a `jaxseg.data.synth.SynthVideo` and the index of one of its queries. The
    description is the shortest unique attribute phrase of each target (scene graph)."""
    query = video.queries[query_index]
    targets: Sequence[int] = query["targets"]
    masks = video.masks[list(targets)] if targets else np.zeros((0, *video.masks.shape[1:]), bool)
    return EpisodeSample(
        key=key or f"synth/{query_index}",
        query=query["exp"],
        frames=video.frames,
        object_masks=np.asarray(masks, bool),
        frame_ids=tuple(range(video.frames.shape[0])),
        description=synth_description(video.graph, targets),
        type_id=int(query["type_id"]),
        extras={"kind": query["kind"], "targets": list(targets), "graph": video.graph},
    )


def synth_description(graph: dict, targets: Sequence[int]) -> str | None:
    """ "the red circle" / "the red circle and the blue square": each target by the shortest
    filter that names it uniquely with attributes it never changes; None if one has none."""
    from jaxseg.data.synth.queries import descriptions, noun_phrase

    if not targets:
        return None
    names = []
    for obj_id in targets:
        options = descriptions(graph, obj_id)
        if not options:
            return None
        best = min(options, key=lambda f: (len(f), sorted(f.items())))
        names.append("the " + noun_phrase(best))
    return " and ".join(names)
