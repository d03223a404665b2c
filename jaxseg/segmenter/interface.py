"""One interface for mask propagation, shared by every backend (sam2 sidecar, classical, oracle).

The seeds turn a keyframe plus boxes/points into masks over the whole clip with a frozen SAM2
(Veason-R1's keyframe + box -> SAM2 masks, VideoSEG-O3's mask rewards). Rewards, evaluation and the `segment` command all
speak this interface so a backend can be swapped without touching them.

Conventions:
- frames are RGB uint8 [T, H, W, 3];
- coordinates are pixels of the original frame, x before y (boxes are [x0, y0, x1, y1],
  points are [P, 2] as (x, y)), which is what SAM2's `add_new_points_or_box` takes;
- point labels: 1 = positive click, 0 = negative click;
- direction "forward" covers frames keyframe..T-1, "backward" 0..keyframe, "both" 0..T-1;
  frames outside the covered range are all-False in the result and `covered` says which
  frames were propagated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Direction = Literal["forward", "backward", "both"]
DIRECTIONS: tuple[str, ...] = ("forward", "backward", "both")


class SegmenterError(RuntimeError):
    """Base class for errors raised by mask backends."""


class InvalidRequestError(SegmenterError, ValueError):
    """A request is malformed; the message names the offending field."""


class UnknownVideoError(SegmenterError, KeyError):
    """A request references a video the backend does not hold (never registered or evicted)."""

    def __init__(self, video_id: str):
        super().__init__(f"unknown video_id {video_id!r}: register_video() it first")
        self.video_id = video_id

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class RequestTimeoutError(SegmenterError, TimeoutError):
    """A request ran past its timeout."""


@dataclass(frozen=True)
class VideoHandle:
    """A video already sent to a backend; requests carry this instead of the frames."""

    video_id: str
    num_frames: int
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.num_frames, self.height, self.width)


@dataclass(frozen=True, eq=False)
class ObjectPrompt:
    """Prompts for one object on the keyframe: a box and/or clicks and/or a mask.

    box: [4] float (x0, y0, x1, y1) in pixels; points: [P, 2] float (x, y) in pixels;
    point_labels: [P] int in {0, 1}; mask: [H, W] bool.
    """

    obj_id: int
    box: tuple[float, float, float, float] | None = None
    points: np.ndarray | None = None
    point_labels: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class MaskRequest:
    video: VideoHandle
    keyframe: int
    prompts: tuple[ObjectPrompt, ...]
    direction: Direction = "both"


@dataclass(eq=False)
class MaskResult:
    """object_masks: [N, T, H, W] bool in `obj_ids` order; covered: [T] bool."""

    obj_ids: tuple[int, ...]
    object_masks: np.ndarray
    covered: np.ndarray
    backend: str = field(default="")

    @property
    def union(self) -> np.ndarray:
        """[T, H, W] bool: the union over objects (what a single-target reward scores)."""
        return self.object_masks.any(axis=0)


@runtime_checkable
class MaskBackend(Protocol):
    """A mask propagator. `segment` takes a batch so backends can share work across requests."""

    name: str

    def register_video(self, frames: np.ndarray, video_id: str | None = None) -> VideoHandle: ...

    def segment(self, requests: Sequence[MaskRequest]) -> list[MaskResult]: ...

    def close(self) -> None: ...


def video_id_of(frames: np.ndarray) -> str:
    """Content hash of a clip: equal frames give equal ids, so caches survive re-sending."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((frames.dtype.str, frames.shape)).encode())
    h.update(np.ascontiguousarray(frames).data)
    return h.hexdigest()


def check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    """Validate an RGB uint8 clip [T, H, W, 3] and return it C-contiguous."""
    if not isinstance(frames, np.ndarray):
        raise InvalidRequestError(f"{name}: expected a numpy array, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InvalidRequestError(f"{name}: expected shape [T, H, W, 3], got {frames.shape}")
    if frames.dtype != np.uint8:
        raise InvalidRequestError(f"{name}: expected dtype uint8, got {frames.dtype}")
    if min(frames.shape[:3]) < 1:
        raise InvalidRequestError(f"{name}: empty clip {frames.shape}")
    return np.ascontiguousarray(frames)


def handle_for(frames: np.ndarray, video_id: str | None = None) -> VideoHandle:
    frames = check_frames(frames)
    t, h, w, _ = frames.shape
    return VideoHandle(video_id or video_id_of(frames), t, h, w)


def covered_frames(num_frames: int, keyframe: int, direction: str) -> np.ndarray:
    """[T] bool: the frames a propagation in `direction` from `keyframe` visits."""
    t = np.arange(num_frames)
    if direction == "forward":
        return t >= keyframe
    if direction == "backward":
        return t <= keyframe
    return np.ones(num_frames, dtype=bool)


def validate_request(req: MaskRequest, where: str = "request") -> None:
    """Raise InvalidRequestError naming the field when `req` is malformed."""
    if not isinstance(req, MaskRequest):
        raise InvalidRequestError(f"{where}: expected MaskRequest, got {type(req).__name__}")
    v = req.video
    if not isinstance(v, VideoHandle):
        raise InvalidRequestError(f"{where}.video: expected VideoHandle, got {type(v).__name__}")
    if not isinstance(req.keyframe, int | np.integer) or not 0 <= req.keyframe < v.num_frames:
        raise InvalidRequestError(
            f"{where}.keyframe: {req.keyframe!r} is not a frame index in [0, {v.num_frames})"
        )
    if req.direction not in DIRECTIONS:
        raise InvalidRequestError(
            f"{where}.direction: {req.direction!r} is not one of {list(DIRECTIONS)}"
        )
    seen: set[int] = set()
    for i, p in enumerate(req.prompts):
        pw = f"{where}.prompts[{i}]"
        if not isinstance(p, ObjectPrompt):
            raise InvalidRequestError(f"{pw}: expected ObjectPrompt, got {type(p).__name__}")
        if p.obj_id in seen:
            raise InvalidRequestError(f"{pw}.obj_id: duplicate object id {p.obj_id}")
        seen.add(p.obj_id)
        if p.box is None and p.points is None and p.mask is None:
            raise InvalidRequestError(f"{pw}: needs a box, points or a mask")
        if p.mask is not None and (p.box is not None or p.points is not None):
            raise InvalidRequestError(
                f"{pw}.mask: a mask prompt cannot be combined with box/points"
            )
        if p.box is not None:
            b = np.asarray(p.box, dtype=np.float64)
            if b.shape != (4,) or not np.isfinite(b).all():
                raise InvalidRequestError(f"{pw}.box: expected 4 finite numbers, got {p.box!r}")
            if not (b[2] > b[0] and b[3] > b[1]):
                raise InvalidRequestError(f"{pw}.box: expected x1 > x0 and y1 > y0, got {p.box!r}")
        if (p.points is None) != (p.point_labels is None):
            raise InvalidRequestError(f"{pw}: points and point_labels must be given together")
        if p.points is not None:
            pts = np.asarray(p.points)
            lab = np.asarray(p.point_labels)
            if pts.ndim != 2 or pts.shape[1] != 2 or not np.isfinite(pts).all():
                raise InvalidRequestError(f"{pw}.points: expected finite [P, 2], got {pts.shape}")
            if lab.shape != (pts.shape[0],) or not np.isin(lab, (0, 1)).all():
                raise InvalidRequestError(
                    f"{pw}.point_labels: expected [{pts.shape[0]}] values in {{0, 1}}"
                )
        if p.mask is not None:
            m = np.asarray(p.mask)
            if m.shape != (v.height, v.width):
                raise InvalidRequestError(
                    f"{pw}.mask: expected shape {(v.height, v.width)}, got {m.shape}"
                )


def empty_result(req: MaskRequest, backend: str) -> MaskResult:
    t, h, w = req.video.shape
    n = len(req.prompts)
    return MaskResult(
        obj_ids=tuple(p.obj_id for p in req.prompts),
        object_masks=np.zeros((n, t, h, w), dtype=bool),
        covered=covered_frames(t, req.keyframe, req.direction),
        backend=backend,
    )


class VideoStore:
    """In-process registry of clips for backends that keep raw frames (classical, oracle)."""

    def __init__(self, max_videos: int = 64):
        from collections import OrderedDict

        self._videos: OrderedDict[str, np.ndarray] = OrderedDict()
        self.max_videos = max_videos

    def add(self, frames: np.ndarray, video_id: str | None = None) -> VideoHandle:
        handle = handle_for(frames, video_id)
        self._videos[handle.video_id] = check_frames(frames)
        self._videos.move_to_end(handle.video_id)
        while len(self._videos) > self.max_videos:
            self._videos.popitem(last=False)
        return handle

    def get(self, handle: VideoHandle) -> np.ndarray:
        frames = self._videos.get(handle.video_id)
        if frames is None:
            raise UnknownVideoError(handle.video_id)
        if frames.shape[:3] != handle.shape:
            raise InvalidRequestError(
                f"request.video: handle shape {handle.shape} != registered {frames.shape[:3]}"
            )
        self._videos.move_to_end(handle.video_id)
        return frames


def segment_frames(
    backend: MaskBackend,
    frames: np.ndarray,
    keyframe: int,
    prompts: Sequence[ObjectPrompt],
    direction: Direction = "both",
) -> MaskResult:
    """Convenience: register `frames` and run one request."""
    handle = backend.register_video(frames)
    return backend.segment([MaskRequest(handle, int(keyframe), tuple(prompts), direction)])[0]
