"""LRU cache of propagation results, keyed by (video, keyframe, direction, quantised prompts).

GRPO samples G answers per prompt and many of them name the same keyframe and nearly the same
box, so identical (video, keyframe, box) requests repeat within and across groups. Coordinates
are rounded to `quantum_px` pixels before keying: two boxes that differ by less than that are
treated as the same prompt (SAM2 itself scales boxes to a 1024 grid, so sub-pixel differences do
not carry information). Mask prompts are keyed by a hash of their bits.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from jaxseg.segmenter.interface import (
    MaskBackend,
    MaskRequest,
    MaskResult,
    ObjectPrompt,
    VideoHandle,
    validate_request,
)


def _q(values, quantum: float) -> tuple[int, ...]:
    return tuple(int(v) for v in np.round(np.asarray(values, dtype=np.float64) / quantum).ravel())


def prompt_key(p: ObjectPrompt, quantum_px: float) -> Hashable:
    box = None if p.box is None else _q(p.box, quantum_px)
    pts = None
    if p.points is not None:
        pts = (_q(p.points, quantum_px), tuple(int(v) for v in np.asarray(p.point_labels)))
    mask = None
    if p.mask is not None:
        m = np.ascontiguousarray(np.asarray(p.mask, dtype=bool))
        mask = (m.shape, hashlib.blake2b(np.packbits(m).data, digest_size=16).hexdigest())
    return (p.obj_id, box, pts, mask)


def request_key(req: MaskRequest, quantum_px: float = 1.0) -> Hashable:
    """Requests with equal keys get the same masks (up to prompt quantisation)."""
    return (
        req.video.video_id,
        req.video.shape,
        int(req.keyframe),
        req.direction,
        tuple(prompt_key(p, quantum_px) for p in req.prompts),
    )


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class CachingBackend:
    """Wraps any MaskBackend; answers repeated requests from an LRU without calling it.

    Results are returned as read-only arrays shared between hits: treat them as immutable.
    Bounded by entry count and by the bytes of the stored masks.
    """

    def __init__(
        self,
        inner: MaskBackend,
        max_entries: int = 256,
        max_bytes: int = 2 << 30,
        quantum_px: float = 1.0,
    ):
        if quantum_px <= 0:
            raise ValueError(f"quantum_px must be > 0, got {quantum_px}")
        self.inner = inner
        self.name = inner.name
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.quantum_px = quantum_px
        self.stats = CacheStats()
        self._lru: OrderedDict[Hashable, MaskResult] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def register_video(self, frames: np.ndarray, video_id: str | None = None) -> VideoHandle:
        return self.inner.register_video(frames, video_id)

    def _get(self, key: Hashable) -> MaskResult | None:
        with self._lock:
            hit = self._lru.get(key)
            if hit is not None:
                self._lru.move_to_end(key)
                self.stats.hits += 1
            else:
                self.stats.misses += 1
            return hit

    def _put(self, key: Hashable, result: MaskResult) -> None:
        result.object_masks.setflags(write=False)
        result.covered.setflags(write=False)
        size = result.object_masks.nbytes + result.covered.nbytes
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._lru.pop(key, None)
            if old is not None:
                self._bytes -= old.object_masks.nbytes + old.covered.nbytes
            self._lru[key] = result
            self._bytes += size
            while len(self._lru) > self.max_entries or self._bytes > self.max_bytes:
                _, ev = self._lru.popitem(last=False)
                self._bytes -= ev.object_masks.nbytes + ev.covered.nbytes

    def segment(self, requests: Sequence[MaskRequest]) -> list[MaskResult]:
        for i, r in enumerate(requests):
            validate_request(r, f"requests[{i}]")
        keys = [request_key(r, self.quantum_px) for r in requests]
        out: list[MaskResult | None] = [self._get(k) for k in keys]
        # Duplicates inside one batch are sent once.
        todo: dict[Hashable, int] = {}
        for i, (k, res) in enumerate(zip(keys, out)):
            if res is None and k not in todo:
                todo[k] = i
        if todo:
            fresh = self.inner.segment([requests[i] for i in todo.values()])
            for k, res in zip(todo, fresh):
                self._put(k, res)
            by_key = dict(zip(todo, fresh))
            out = [by_key[k] if res is None else res for k, res in zip(keys, out)]
        return out  # type: ignore[return-value]

    def clear(self) -> None:
        with self._lock:
            self._lru.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._lru)

    def close(self) -> None:
        self.inner.close()
