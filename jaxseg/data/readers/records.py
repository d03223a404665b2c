"""The record every reader yields: one (video, expression) pair, masks decoded lazily."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from jaxseg.data.readers.errors import DataFormatError
from jaxseg.data.readers.images import load_rgb
from jaxseg.data.readers.masks import MaskSource

# ReVOS `type_id` values (cilinyan/VISA tools/eval_revos.py): 0 referring, 1 reasoning,
# 2 null / "is_nan" (the target does not exist).
TYPE_REFERRING = 0
TYPE_REASONING = 1
TYPE_NULL = 2

_DIGITS = re.compile(r"(\d+)$")


def frame_number(name: str, position: int) -> int:
    """Absolute frame index from a frame file stem ("00045" -> 45); the position if not numeric.

    Ref-YouTube-VOS keeps every 5th frame and names it by its index in the 30 fps video, so
    the name, not the position in the list, is the absolute index.
    """
    match = _DIGITS.search(name)
    return int(match.group(1)) if match else position


@dataclasses.dataclass(frozen=True, eq=False)
class VideoExpression:
    """One expression about one video.

    frame_names/frame_paths/frame_ids: [T] for every frame of the video, in order;
    frame_ids are absolute frame indices (see `frame_number`).
    target_ids: the annotation ids (ReVOS/MeViS anno_id) or object ids the expression refers to.
    masks: per-target masks, or None where the split publishes no ground truth.
    foreground: the union of every annotated object of the video (ReVOS robustness R).
    """

    dataset: str
    video_id: str
    exp_id: str
    expression: str
    frame_names: tuple[str, ...]
    frame_paths: tuple[str, ...]
    frame_ids: tuple[int, ...]
    height: int
    width: int
    target_ids: tuple[str, ...] = ()
    type_id: int = TYPE_REFERRING
    masks: MaskSource | None = None
    foreground: MaskSource | None = None
    extras: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    frame_store: Any = None  # optional: `.load(t) -> [H, W, 3]` instead of reading frame_paths

    @property
    def num_frames(self) -> int:
        return len(self.frame_paths)

    @property
    def key(self) -> str:
        return f"{self.video_id}/{self.exp_id}"

    @property
    def is_null(self) -> bool:
        """The target does not exist (ReVOS type 2, or no target id at all)."""
        return self.type_id == TYPE_NULL or not self.target_ids

    @property
    def is_multi_object(self) -> bool:
        return len(self.target_ids) > 1

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    def target_masks(self, positions: Sequence[int] | None = None) -> np.ndarray:
        """[T, H, W] bool: union of the target objects (the GT of every community script)."""
        if self.masks is None:
            raise DataFormatError(
                self.dataset, f"{self.key}.masks", "this split has no ground-truth masks"
            )
        if self.masks.num_objects == 0:
            n = self.num_frames if positions is None else len(positions)
            return np.zeros((n, self.height, self.width), dtype=bool)
        return self.masks.union(positions)

    def object_masks(self, positions: Sequence[int] | None = None) -> np.ndarray:
        """[K, T, H, W] bool, one slice per target id."""
        if self.masks is None:
            raise DataFormatError(
                self.dataset, f"{self.key}.masks", "this split has no ground-truth masks"
            )
        return self.masks.decode(positions)

    def target_areas(self) -> np.ndarray:
        """[T] pixel area of the target union on every frame (keyframe sampling)."""
        if self.masks is None or self.masks.num_objects == 0:
            return np.zeros(self.num_frames, dtype=np.int64)
        return self.masks.union_areas()

    def foreground_masks(self, positions: Sequence[int] | None = None) -> np.ndarray | None:
        """[T, H, W] bool or None."""
        return None if self.foreground is None else self.foreground.union(positions)

    def load_frames(self, positions: Sequence[int] | None = None) -> np.ndarray:
        """[T, H, W, 3] uint8; a frame whose size disagrees with the video is an error."""
        pos = range(self.num_frames) if positions is None else positions
        frames = []
        for t in pos:
            if self.frame_store is not None:
                frame = self.frame_store.load(t)
            else:
                frame = load_rgb(self.frame_paths[t], field=f"{self.key} frame {t}")
            if frame.shape[:2] != (self.height, self.width):
                raise DataFormatError(
                    self.frame_paths[t],
                    "frame",
                    f"size {list(frame.shape[:2])} disagrees with the video size "
                    f"[{self.height}, {self.width}]",
                )
            frames.append(frame)
        if not frames:
            return np.zeros((0, self.height, self.width, 3), dtype=np.uint8)
        return np.stack(frames)


class ExpressionIndex(Sequence[VideoExpression]):
    """What a reader returns: random-access records (a grain source) plus what was skipped."""

    def __init__(
        self,
        dataset: str,
        root: str,
        records: list[VideoExpression],
        skipped: list[DataFormatError] | None = None,
    ):
        self.dataset = dataset
        self.root = root
        self.records = records
        self.skipped = list(skipped or [])

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):  # type: ignore[override]
        return self.records[index]

    def __iter__(self) -> Iterator[VideoExpression]:
        return iter(self.records)

    def __repr__(self) -> str:
        return (
            f"ExpressionIndex({self.dataset!r}, root={self.root!r}, "
            f"expressions={len(self.records)}, skipped={len(self.skipped)})"
        )
