"""Oracle backend: returns ground-truth masks, for upper bounds in tests and ablations.

"Perfect propagator" semantics: the prompt only chooses WHICH ground-truth object is meant,
and the oracle returns that object's GT masks on the frames the direction covers.
- match="box": the GT object whose keyframe bounding box has the highest IoU with the prompt
  box (or that contains the most positive clicks, or overlaps a mask prompt most), if that IoU
  reaches `min_iou`; otherwise the object gets empty masks (a wrong box earns nothing);
- match="obj_id": the prompt's obj_id names the GT object directly (missing id -> error).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jaxseg.segmenter.interface import (
    InvalidRequestError,
    MaskRequest,
    MaskResult,
    ObjectPrompt,
    UnknownVideoError,
    VideoHandle,
    covered_frames,
    handle_for,
    validate_request,
)


def _box_of(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def _iou_box(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class OracleBackend:
    name = "oracle"

    def __init__(self, match: str = "box", min_iou: float = 0.5):
        if match not in ("box", "obj_id"):
            raise ValueError(f"oracle.match: {match!r} is not 'box' or 'obj_id'")
        self.match = match
        self.min_iou = min_iou
        self._gt: dict[str, dict[int, np.ndarray]] = {}
        self._shapes: dict[str, tuple[int, int, int]] = {}

    def add_ground_truth(
        self, frames_or_handle: np.ndarray | VideoHandle, masks: Mapping[int, np.ndarray]
    ) -> VideoHandle:
        """masks: GT object id -> [T, H, W] bool. Returns the handle requests must use."""
        handle = (
            frames_or_handle
            if isinstance(frames_or_handle, VideoHandle)
            else handle_for(frames_or_handle)
        )
        gt = {}
        for k, m in masks.items():
            m = np.asarray(m, bool)
            if m.shape != handle.shape:
                raise InvalidRequestError(
                    f"oracle ground truth[{k}]: shape {m.shape} != video {handle.shape}"
                )
            gt[int(k)] = m
        self._gt[handle.video_id] = gt
        self._shapes[handle.video_id] = handle.shape
        return handle

    def register_video(self, frames: np.ndarray, video_id: str | None = None) -> VideoHandle:
        handle = handle_for(frames, video_id)
        if handle.video_id not in self._gt:
            raise UnknownVideoError(handle.video_id)  # the oracle needs add_ground_truth first
        return handle

    def _pick(self, gt: dict[int, np.ndarray], keyframe: int, p: ObjectPrompt) -> np.ndarray | None:
        if self.match == "obj_id":
            if p.obj_id not in gt:
                raise InvalidRequestError(f"prompt obj_id {p.obj_id} is not a GT object {list(gt)}")
            return gt[p.obj_id]
        best, best_score = None, 0.0
        for m in gt.values():
            key = m[keyframe]
            if p.box is not None:
                bb = _box_of(key)
                score = 0.0 if bb is None else _iou_box(bb, np.asarray(p.box, np.float64))
            elif p.mask is not None:
                pm = np.asarray(p.mask, bool)
                union = (pm | key).sum()
                score = float((pm & key).sum() / union) if union else 0.0
            else:
                pts = np.asarray(p.points)[np.asarray(p.point_labels) == 1]
                h, w = key.shape
                hits = [key[int(y), int(x)] for x, y in pts if 0 <= int(y) < h and 0 <= int(x) < w]
                score = float(np.mean(hits)) if hits else 0.0
            if score > best_score:
                best, best_score = m, score
        return best if best_score >= self.min_iou else None

    def segment(
        self, requests: Sequence[MaskRequest], deadline: float | None = None
    ) -> list[MaskResult]:
        del deadline
        out = []
        for i, r in enumerate(requests):
            validate_request(r, f"requests[{i}]")
            gt = self._gt.get(r.video.video_id)
            if gt is None:
                raise UnknownVideoError(r.video.video_id)
            t, h, w = r.video.shape
            covered = covered_frames(t, r.keyframe, r.direction)
            masks = np.zeros((len(r.prompts), t, h, w), bool)
            for j, p in enumerate(r.prompts):
                m = self._pick(gt, r.keyframe, p)
                if m is not None:
                    masks[j] = m & covered[:, None, None]
            out.append(MaskResult(tuple(p.obj_id for p in r.prompts), masks, covered, self.name))
        return out

    def close(self) -> None:
        self._gt.clear()
