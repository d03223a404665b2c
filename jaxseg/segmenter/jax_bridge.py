"""Host-callback bridge: jitted JAX code asks a MaskBackend for masks and gets arrays back.

Frames never go through the callback: clips are registered on the host once (`add_video`), and
the traced code passes only a clip index, the keyframe and per-object boxes / clicks. Inside
the callback the request goes to the backend (normally the SAM2 sidecar client, wrapped in
the LRU cache), so the JAX process never imports torch.

Uses `jax.pure_callback` (propagation is a deterministic function of its inputs; the cache
keeps it so) with vmap_method="broadcast_all": under `jax.vmap` the host function receives the
whole batch at once and sends it as ONE backend call, which is what lets a GRPO group share the
SAM2 image encoder. `io_callback=True` switches to `jax.experimental.io_callback` (unordered)
for callers that want the call kept even when its result is unused.

Bad per-request inputs never raise inside the callback (JAX treats exceptions there as
undefined behaviour): an out-of-range clip index or keyframe sets `ok=False` and gives empty
masks, and an object whose box is not finite or has x1 <= x0 / y1 <= y0 is treated as absent.
Backend failures (sidecar gone after its retries) do raise; they are real errors.

`FeatureBridge` does the same for SAM2 image features (the input of the JAX mask decoder,
jaxseg.models.sam2): traced code passes (clip index, frame) and gets the frozen encoder's
output back, fetched from the sidecar's per-(video, frame) cache when already computed.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback as _io_callback

from jaxseg.segmenter.interface import (
    DIRECTIONS,
    InvalidRequestError,
    MaskBackend,
    MaskRequest,
    ObjectPrompt,
    VideoHandle,
)


class BridgeMasks(NamedTuple):
    """union: [..., T, H, W] bool; objects: [..., N, T, H, W] bool; ok: [...] bool."""

    union: jax.Array
    objects: jax.Array
    ok: jax.Array


class MaskBridge:
    """All clips added to one bridge share a shape [T, H, W] (outputs are static-shaped)."""

    def __init__(self, backend: MaskBackend, *, io_callback: bool = False):
        self.backend = backend
        self.io_callback = io_callback
        self.handles: list[VideoHandle] = []

    @property
    def shape(self) -> tuple[int, int, int]:
        if not self.handles:
            raise InvalidRequestError("MaskBridge: add_video() a clip before tracing")
        return self.handles[0].shape

    def add_video(self, frames: np.ndarray, video_id: str | None = None) -> int:
        """Register a clip [T, H, W, 3] uint8 with the backend; returns its index for JAX code."""
        handle = self.backend.register_video(frames, video_id)
        if self.handles and handle.shape != self.shape:
            raise InvalidRequestError(
                f"MaskBridge.add_video: clip shape {handle.shape} != bridge shape {self.shape}"
            )
        self.handles.append(handle)
        return len(self.handles) - 1

    def __call__(
        self,
        video_index: jax.Array,
        keyframe: jax.Array,
        boxes: jax.Array,
        box_valid: jax.Array | None = None,
        points: jax.Array | None = None,
        point_labels: jax.Array | None = None,
        *,
        direction: str = "both",
    ) -> BridgeMasks:
        """video_index, keyframe: int [...]; boxes: float [..., N, 4] (x0, y0, x1, y1 px);
        box_valid: bool [..., N] (absent objects); points: float [..., N, P, 2];
        point_labels: int [..., N, P] (1 positive, 0 negative, -1 padding)."""
        if direction not in DIRECTIONS:
            raise InvalidRequestError(f"direction: {direction!r} is not one of {DIRECTIONS}")
        video_index = jnp.asarray(video_index, jnp.int32)
        keyframe = jnp.asarray(keyframe, jnp.int32)
        boxes = jnp.asarray(boxes, jnp.float32)
        lead = keyframe.shape
        n = boxes.shape[-2]
        if box_valid is None:
            box_valid = jnp.ones((*lead, n), bool)
        if points is None:
            points = jnp.zeros((*lead, n, 0, 2), jnp.float32)
            point_labels = jnp.zeros((*lead, n, 0), jnp.int32)
        t, h, w = self.shape
        out_shape = (
            jax.ShapeDtypeStruct((*lead, t, h, w), jnp.bool_),
            jax.ShapeDtypeStruct((*lead, n, t, h, w), jnp.bool_),
            jax.ShapeDtypeStruct(lead, jnp.bool_),
        )
        args = (
            video_index,
            keyframe,
            boxes,
            jnp.asarray(box_valid, bool),
            jnp.asarray(points, jnp.float32),
            jnp.asarray(point_labels, jnp.int32),
        )
        host = functools.partial(self._host, direction=direction)
        if self.io_callback:
            out = _io_callback(host, out_shape, *args, ordered=False)
        else:
            out = jax.pure_callback(host, out_shape, *args, vmap_method="broadcast_all")
        return BridgeMasks(*out)

    def propagate_masks(
        self,
        video_index: jax.Array,
        keyframe: jax.Array,
        masks: jax.Array,
        mask_valid: jax.Array | None = None,
        *,
        direction: str = "both",
    ) -> BridgeMasks:
        """Mask prompts: masks bool [..., N, H, W] on the keyframe (video resolution; e.g. the
        JAX decoder's keyframe logits upscaled and thresholded) are given to SAM2's
        `add_new_mask` and propagated in `direction`. mask_valid: bool [..., N]; an all-False
        mask counts as an absent object (empty result, no request)."""
        if direction not in DIRECTIONS:
            raise InvalidRequestError(f"direction: {direction!r} is not one of {DIRECTIONS}")
        t, h, w = self.shape
        masks = jnp.asarray(masks, bool)
        if masks.shape[-2:] != (h, w):
            raise InvalidRequestError(
                f"MaskBridge.propagate_masks: masks end in {masks.shape[-2:]}, clips are {(h, w)}"
            )
        keyframe = jnp.asarray(keyframe, jnp.int32)
        lead, n = keyframe.shape, masks.shape[-3]
        if mask_valid is None:
            mask_valid = jnp.ones((*lead, n), bool)
        out_shape = (
            jax.ShapeDtypeStruct((*lead, t, h, w), jnp.bool_),
            jax.ShapeDtypeStruct((*lead, n, t, h, w), jnp.bool_),
            jax.ShapeDtypeStruct(lead, jnp.bool_),
        )
        args = (jnp.asarray(video_index, jnp.int32), keyframe, masks, jnp.asarray(mask_valid, bool))
        host = functools.partial(self._host_masks, direction=direction)
        if self.io_callback:
            out = _io_callback(host, out_shape, *args, ordered=False)
        else:
            out = jax.pure_callback(host, out_shape, *args, vmap_method="broadcast_all")
        return BridgeMasks(*out)

    def _host_masks(self, video_index, keyframe, masks, mask_valid, *, direction):
        keyframe = np.asarray(keyframe)
        lead = keyframe.shape
        b_count = int(np.prod(lead, dtype=np.int64))
        vi = np.broadcast_to(np.asarray(video_index), lead).reshape(b_count)
        kf = keyframe.reshape(b_count)
        t, h, w = self.shape
        n = np.asarray(masks).shape[-3]
        masks = np.asarray(masks, bool).reshape(b_count, n, h, w)
        valid = np.asarray(mask_valid, bool).reshape(b_count, n)
        objects = np.zeros((b_count, n, t, h, w), bool)
        ok = np.zeros(b_count, bool)
        reqs, slots = [], []
        for b in range(b_count):
            if not (0 <= vi[b] < len(self.handles) and 0 <= kf[b] < t):
                continue
            ok[b] = True
            prompts = tuple(
                ObjectPrompt(obj_id=j, mask=masks[b, j])
                for j in range(n)
                if valid[b, j] and masks[b, j].any()
            )
            if prompts:
                reqs.append(MaskRequest(self.handles[vi[b]], int(kf[b]), prompts, direction))
                slots.append(b)
        if reqs:
            for b, res in zip(slots, self.backend.segment(reqs), strict=True):
                objects[b, list(res.obj_ids)] = res.object_masks
        return (
            objects.any(axis=1).reshape(*lead, t, h, w),
            objects.reshape(*lead, n, t, h, w),
            ok.reshape(lead),
        )

    def _host(self, video_index, keyframe, boxes, box_valid, points, point_labels, *, direction):
        keyframe = np.asarray(keyframe)
        lead = keyframe.shape
        b_count = int(np.prod(lead, dtype=np.int64))
        vi = np.broadcast_to(np.asarray(video_index), lead).reshape(b_count)
        kf = keyframe.reshape(b_count)
        n = np.asarray(boxes).shape[-2]
        boxes = np.asarray(boxes, np.float64).reshape(b_count, n, 4)
        valid = np.asarray(box_valid, bool).reshape(b_count, n)
        pts = np.asarray(points, np.float32)
        p_count = pts.shape[-2]
        pts = pts.reshape(b_count, n, p_count, 2)
        labels = np.asarray(point_labels, np.int32).reshape(b_count, n, p_count)
        t, h, w = self.shape
        objects = np.zeros((b_count, n, t, h, w), bool)
        ok = np.zeros(b_count, bool)
        reqs, slots = [], []
        for b in range(b_count):
            if not (0 <= vi[b] < len(self.handles) and 0 <= kf[b] < t):
                continue
            ok[b] = True
            prompts = []
            for j in range(n):
                if not valid[b, j]:
                    continue
                bx = boxes[b, j]
                has_box = bool(np.isfinite(bx).all() and bx[2] > bx[0] and bx[3] > bx[1])
                keep = labels[b, j] >= 0
                has_pts = bool(keep.any() and np.isfinite(pts[b, j][keep]).all())
                if not (has_box or has_pts):
                    continue
                prompts.append(
                    ObjectPrompt(
                        obj_id=j,
                        box=tuple(float(v) for v in bx) if has_box else None,
                        points=pts[b, j][keep] if has_pts else None,
                        point_labels=labels[b, j][keep] if has_pts else None,
                    )
                )
            if prompts:
                reqs.append(MaskRequest(self.handles[vi[b]], int(kf[b]), tuple(prompts), direction))
                slots.append(b)
        if reqs:
            for b, res in zip(slots, self.backend.segment(reqs)):
                objects[b, list(res.obj_ids)] = res.object_masks
        union = objects.any(axis=1)
        return (
            union.reshape(*lead, t, h, w),
            objects.reshape(*lead, n, t, h, w),
            ok.reshape(lead),
        )


class BridgeFeatures(NamedTuple):
    """image_embed [..., C, h, w]; high_res_0 [..., C/8, 4h, 4w]; high_res_1 [..., C/4, 2h, 2w]
    (float32, see transport.ImageFeatures); ok [...] bool (False: bad index, zeros given)."""

    image_embed: jax.Array
    high_res_0: jax.Array
    high_res_1: jax.Array
    ok: jax.Array

    @property
    def high_res_feats(self) -> list[jax.Array]:
        return [self.high_res_0, self.high_res_1]


class FeatureBridge:
    """SAM2 image features requested from jitted code (`jax.pure_callback`): the frozen
    encoder runs in the sidecar, the JAX mask decoder (jaxseg.models.sam2) consumes the result.

    channels / embed_size: C and h of the sidecar model (Sam2DecoderConfig.transformer_dim /
    image_embedding_size: 256 and image_size/16 for released SAM2), fixed so outputs have
    static shapes. Under vmap the host gets the whole batch and asks once per clip. Bad indices
    give zeros and ok=False (never an exception inside the callback); a backend failure raises.
    """

    def __init__(self, backend, channels: int, embed_size: int):
        inner = backend
        while not hasattr(inner, "image_features") and hasattr(inner, "inner"):
            inner = inner.inner  # make_backend("sam2") wraps the client in a CachingBackend
        if not hasattr(inner, "image_features"):
            raise InvalidRequestError(
                f"FeatureBridge: backend {type(backend).__name__} has no image_features "
                "(only the sam2 sidecar client computes SAM2 features)"
            )
        self.backend = inner
        self.channels = channels
        self.embed_size = embed_size
        self.handles: list[VideoHandle] = []

    def add_video(self, frames: np.ndarray, video_id: str | None = None) -> int:
        """Register a clip [T, H, W, 3] uint8; returns its index for JAX code."""
        self.handles.append(self.backend.register_video(frames, video_id))
        return len(self.handles) - 1

    def _shapes(self) -> tuple[tuple[int, int, int], ...]:
        c, h = self.channels, self.embed_size
        return (c, h, h), (c // 8, 4 * h, 4 * h), (c // 4, 2 * h, 2 * h)

    def __call__(self, video_index: jax.Array, frame: jax.Array) -> BridgeFeatures:
        """video_index, frame: int [...] -> BridgeFeatures with leading [...]."""
        video_index = jnp.asarray(video_index, jnp.int32)
        frame = jnp.asarray(frame, jnp.int32)
        video_index, frame = jnp.broadcast_arrays(video_index, frame)
        lead = frame.shape
        out_shape = tuple(
            jax.ShapeDtypeStruct((*lead, *s), jnp.float32) for s in self._shapes()
        ) + (jax.ShapeDtypeStruct(lead, jnp.bool_),)
        out = jax.pure_callback(
            self._host, out_shape, video_index, frame, vmap_method="broadcast_all"
        )
        return BridgeFeatures(*out)

    def _host(self, video_index, frame):
        frame = np.asarray(frame)
        lead = frame.shape
        n = int(np.prod(lead, dtype=np.int64))
        vi = np.asarray(video_index).reshape(n)
        fr = frame.reshape(n)
        outs = [np.zeros((n, *s), np.float32) for s in self._shapes()]
        ok = np.zeros(n, bool)
        by_video: dict[int, list[int]] = {}
        for b in range(n):
            if 0 <= vi[b] < len(self.handles) and 0 <= fr[b] < self.handles[vi[b]].num_frames:
                by_video.setdefault(int(vi[b]), []).append(b)
        for v, rows in by_video.items():
            feats = self.backend.image_features(self.handles[v], [int(fr[b]) for b in rows])
            for arr, got in zip(outs, feats[:3], strict=True):
                if got.shape[1:] != arr.shape[1:]:
                    raise InvalidRequestError(
                        f"FeatureBridge: sidecar features {got.shape[1:]} != expected "
                        f"{arr.shape[1:]} (channels/embed_size do not match the model)"
                    )
                arr[rows] = got
            ok[rows] = True
        return (*(a.reshape(*lead, *a.shape[1:]) for a in outs), ok.reshape(lead))
