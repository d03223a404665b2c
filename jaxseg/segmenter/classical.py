"""Classical (no-weights) box/point/mask-prompted segmenter and tracker: a STAND-IN for SAM2.

It exists so the demo and CI get meaningful masks on the synthetic world (flat, saturated
colour shapes on plain or low-saturation textured backgrounds, `jaxseg.data.synth`) with no
checkpoint. It is not a general video segmenter and must never replace SAM2 silently: the
backend factory builds it only when `backend="classical"` is asked for by name, and every
result it returns carries backend="classical".

Method (per object, per direction, frame to frame):
1. keyframe: the object's colour is learnt from the prompt. A box picks, among the colour
   clusters of salient pixels inside it, the connected component whose bounding box best
   matches the prompt box (the GT box of a visible mask is that mask's bounding box); a click
   picks the component under the positive point; a mask is used as is.
2. next frame: pixels within `colour_tol` of the object's colour are labelled; components
   touching the predicted region (last mask shifted by the last velocity, grown by a margin
   that scales with object size, speed and frames missing) form the mask. A component far larger
   than the object (merged with a same-colour distractor) is clipped to the predicted region.
3. no colour match near the prediction: if a salient component of another colour sits where the
   object was predicted with a similar size, the object changed colour; adopt it. Otherwise
   the object is missing (exit / full occlusion): the frame gets an empty mask and the search
   region keeps growing along the extrapolated path until it is found again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from jaxseg.eval.metrics import box_iou
from jaxseg.segmenter.interface import (
    MaskRequest,
    MaskResult,
    ObjectPrompt,
    VideoHandle,
    VideoStore,
    covered_frames,
    validate_request,
)


@dataclass
class ClassicalConfig:
    colour_tol: float = (
        48.0  # RGB distance to the object's colour (palette colours are >= 76 apart)
    )
    salient_chroma: float = 60.0  # max(rgb) - min(rgb) above this is a candidate object pixel
    min_component_px: int = 3
    max_videos: int = 64


def _chroma(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(np.int16)
    return f.max(-1) - f.min(-1)


def _dist(frame: np.ndarray, colour: np.ndarray) -> np.ndarray:
    d = frame.astype(np.float32) - colour.astype(np.float32)
    return np.sqrt((d * d).sum(-1))


def _bbox(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(box_iou(a, b)[0, 0])


def _centroid(mask: np.ndarray) -> np.ndarray:
    return np.array(ndimage.center_of_mass(mask), np.float64)


def _shift(mask: np.ndarray, dy: float, dx: float) -> np.ndarray:
    dy, dx = int(round(dy)), int(round(dx))
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    if abs(dy) < h and abs(dx) < w:
        out[yd, xd] = mask[ys, xs]
    return out


def _grow(mask: np.ndarray, margin: float) -> np.ndarray:
    if not mask.any():
        return mask
    return ndimage.distance_transform_edt(~mask) <= margin


def _median_colour(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.median(frame[mask].astype(np.float32), axis=0)


class _Track:
    """One object followed in one temporal direction."""

    def __init__(self, cfg: ClassicalConfig, mask: np.ndarray, colour: np.ndarray):
        self.cfg = cfg
        self.colour = colour
        self.last = mask
        self.area = float(mask.sum())  # decaying max of the visible area: survives occlusion
        self.velocity = np.zeros(2)
        self.missing = 0

    def step(self, frame: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        k = self.missing + 1
        pred = _shift(self.last, *(self.velocity * k))
        size = np.sqrt(max(self.area, 1.0))
        near = _grow(pred, 2.0 + 0.1 * size + 2.0 * self.missing)
        match = _dist(frame, self.colour) < cfg.colour_tol
        labels, _ = ndimage.label(match)
        mask = self._overlapping(labels, near)
        if mask.sum() > 1.3 * self.area + 10:
            mask &= _grow(pred, 1.0)  # merged with a same-colour neighbour: keep the object's shape
        if mask.sum() < cfg.min_component_px:
            around = _grow(pred, 3.0 + 2.0 * np.abs(self.velocity).max()) | _grow(self.last, 3.0)
            mask = self._colour_change(frame, match, around)
        if mask.sum() < cfg.min_component_px:
            margin = 3.0 + 0.5 * size + np.abs(self.velocity).max() * k + 4.0 * self.missing
            mask = self._reacquire(labels, pred, _grow(pred, margin))
        if mask.sum() < cfg.min_component_px:
            self.missing += 1
            return np.zeros_like(mask)
        prev = float(self.last.sum())
        if self.missing == 0 and 0.8 * prev <= mask.sum() <= 1.25 * prev:
            self.velocity = 0.5 * self.velocity + 0.5 * (_centroid(mask) - _centroid(self.last))
        self.area = max(float(mask.sum()), 0.95 * self.area)
        self.last = mask
        self.missing = 0
        return mask

    def _overlapping(self, labels: np.ndarray, near: np.ndarray) -> np.ndarray:
        """Components with at least 30% of their pixels where the object is expected."""
        sizes = np.bincount(labels.ravel())
        inside = np.bincount(labels[near].ravel(), minlength=sizes.size)
        ok = (inside >= 0.3 * sizes) & (sizes >= self.cfg.min_component_px)
        ok[0] = False
        return ok[labels]

    def _reacquire(self, labels: np.ndarray, pred: np.ndarray, region: np.ndarray) -> np.ndarray:
        """After a loss: the same-colour component nearest the predicted position."""
        if not pred.any():
            return np.zeros_like(region)
        target = _centroid(pred)
        best, best_d = 0, np.inf
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            comp = labels[sl] == i
            n = int(comp.sum())
            if n < self.cfg.min_component_px or n > 2.0 * self.area + 10:
                continue
            if not region[sl][comp].any():
                continue
            c = np.array(ndimage.center_of_mass(comp)) + [sl[0].start, sl[1].start]
            if not self._fits_shape(labels == i, c):
                continue
            d = float(np.hypot(*(c - target)))
            if d < best_d:
                best, best_d = i, d
        return labels == best if best else np.zeros_like(region)

    def _fits_shape(self, comp: np.ndarray, centre: np.ndarray) -> bool:
        """A piece of the object (e.g. half-emerged) lies inside the object's last shape once
        centroids are aligned; a different shape of the same colour mostly does not."""
        aligned = _shift(comp, *(_centroid(self.last) - centre))
        return (aligned & _grow(self.last, 1.5)).sum() >= 0.75 * comp.sum()

    def _colour_change(self, frame, match, near) -> np.ndarray:
        """The object's colour is gone where it should be, and a salient component of another
        colour with the object's shape (IoU >= 0.6 after aligning centroids) is there: the
        object changed colour; adopt the new colour."""
        none = np.zeros_like(match)
        salient = (_chroma(frame) > self.cfg.salient_chroma) & ~match
        labels, _ = ndimage.label(salient)
        ids = np.unique(labels[near & salient])
        best, best_d, new_colour = none, np.inf, self.colour
        here = _centroid(self.last)
        for i in ids[ids > 0]:
            comp = labels == i
            colour = _median_colour(frame, comp)
            comp = comp & (_dist(frame, colour) < self.cfg.colour_tol)
            if not comp.any():
                continue
            centre = _centroid(comp)
            aligned = _shift(comp, *(here - centre))
            iou = (aligned & self.last).sum() / max((aligned | self.last).sum(), 1)
            d = float(np.hypot(*(centre - here)))
            if iou >= 0.6 and d < best_d:  # the nearest component with the object's shape
                best, best_d, new_colour = comp, d, colour
        if best.any():
            self.colour = new_colour
        return best


def init_mask(frame: np.ndarray, prompt: ObjectPrompt, cfg: ClassicalConfig) -> np.ndarray:
    """[H, W] bool: the object on the keyframe from its box / clicks / mask."""
    h, w, _ = frame.shape
    if prompt.mask is not None:
        return np.asarray(prompt.mask, bool).copy()
    chroma = _chroma(frame)
    pos = None
    if prompt.points is not None:
        labels = np.asarray(prompt.point_labels)
        pts = np.asarray(prompt.points, np.float64)
        pos = pts[labels == 1]
    if prompt.box is not None:
        box = np.asarray(prompt.box, np.float64)
        x0, y0 = int(np.clip(np.floor(box[0]), 0, w)), int(np.clip(np.floor(box[1]), 0, h))
        x1, y1 = int(np.clip(np.ceil(box[2]), 0, w)), int(np.clip(np.ceil(box[3]), 0, h))
        inside = np.zeros((h, w), bool)
        inside[y0:y1, x0:x1] = True
        best, best_score = np.zeros((h, w), bool), -1.0
        cand = inside & (chroma > cfg.salient_chroma)
        tried: list[np.ndarray] = []
        for _ in range(8):  # one colour cluster per iteration, most frequent first
            if not cand.any():
                break
            colour = _colour_mode(frame[cand])
            tried.append(colour)
            comp_mask = (_dist(frame, colour) < cfg.colour_tol) & inside
            cand &= ~comp_mask
            labels, n = ndimage.label(comp_mask)
            for i in range(1, n + 1):
                comp = labels == i
                bb = _bbox(comp)
                score = _box_iou(bb, box)
                if pos is not None and pos.size:
                    score += sum(_hits(comp, p) for p in pos)
                if score > best_score:
                    best, best_score = comp, score
            # Also the union of same-colour pieces (an object split by an occluder).
            union_bb = _bbox(comp_mask)
            if union_bb is not None and _box_iou(union_bb, box) > best_score:
                best, best_score = comp_mask, _box_iou(union_bb, box)
        if best.any():
            return best
        # Nothing salient in the box: fall back to the box's dominant colour.
        colour = _colour_mode(frame[inside]) if inside.any() else None
        if colour is None:
            return np.zeros((h, w), bool)
        return (_dist(frame, colour) < cfg.colour_tol) & inside
    if pos is not None and pos.size:
        out = np.zeros((h, w), bool)
        for x, y in pos:
            xi, yi = int(np.clip(x, 0, w - 1)), int(np.clip(y, 0, h - 1))
            labels, _ = ndimage.label(
                _dist(frame, frame[yi, xi].astype(np.float32)) < cfg.colour_tol
            )
            if labels[yi, xi]:
                out |= labels == labels[yi, xi]
        return out
    return np.zeros((h, w), bool)


def _hits(mask: np.ndarray, point: np.ndarray) -> float:
    x, y = int(point[0]), int(point[1])
    h, w = mask.shape
    return float(0 <= y < h and 0 <= x < w and mask[y, x])


def _colour_mode(pixels: np.ndarray) -> np.ndarray:
    """Median colour of the most frequent coarse colour bin (robust to JPEG ringing)."""
    q = (pixels // 32).astype(np.int32)
    keys = q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2]
    top = np.bincount(keys).argmax()
    return np.median(pixels[keys == top].astype(np.float32), axis=0)


def track_object(
    frames: np.ndarray, keyframe: int, prompt: ObjectPrompt, direction: str, cfg: ClassicalConfig
) -> np.ndarray:
    """[T, H, W] bool masks of one object, propagated from the keyframe in `direction`."""
    t = frames.shape[0]
    out = np.zeros(frames.shape[:3], bool)
    first = init_mask(frames[keyframe], prompt, cfg)
    out[keyframe] = first
    if not first.any():
        return out
    colour = _median_colour(frames[keyframe], first)
    passes = {"forward": [1], "backward": [-1], "both": [1, -1]}[direction]
    for step in passes:
        track = _Track(cfg, first, colour)
        idx = keyframe + step
        while 0 <= idx < t:
            out[idx] = track.step(frames[idx])
            idx += step
    return out


class ClassicalBackend:
    """MaskBackend running `track_object` per object, in process (no torch, no weights)."""

    name = "classical"

    def __init__(self, cfg: ClassicalConfig | None = None):
        self.cfg = cfg or ClassicalConfig()
        self.store = VideoStore(self.cfg.max_videos)

    def register_video(self, frames: np.ndarray, video_id: str | None = None) -> VideoHandle:
        return self.store.add(frames, video_id)

    def segment(
        self, requests: Sequence[MaskRequest], deadline: float | None = None
    ) -> list[MaskResult]:
        del deadline  # a classical pass over a clip takes milliseconds
        for i, r in enumerate(requests):
            validate_request(r, f"requests[{i}]")
        out = []
        for r in requests:
            frames = self.store.get(r.video)
            t, h, w = r.video.shape
            masks = np.zeros((len(r.prompts), t, h, w), bool)
            for j, p in enumerate(r.prompts):
                masks[j] = track_object(frames, r.keyframe, p, r.direction, self.cfg)
            out.append(
                MaskResult(
                    obj_ids=tuple(p.obj_id for p in r.prompts),
                    object_masks=masks,
                    covered=covered_frames(t, r.keyframe, r.direction),
                    backend=self.name,
                )
            )
        return out

    def close(self) -> None:
        pass
