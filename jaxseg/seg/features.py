"""Frozen SAM2 image features per (clip, frame), fetched from the sidecar once and kept.

The image encoder stays frozen in the PyTorch sidecar; the [SEG] route needs its
output only on each turn's keyframe, and a GRPO group asks for the same keyframes many times,
so features are cached here on the host (LRU) as well as in the sidecar. They are gathered
into the batch before the jitted step (static shapes, no callback inside the gradient).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from jaxseg.segmenter.interface import video_id_of


class FeatureStore:
    """backend: anything with `register_video(frames)` and `image_features(handle, frames)`
    (the sam2 SidecarClient); `get(frames, positions)` -> (image_embed [N, C, h, w],
    high_res_0 [N, C/8, 4h, 4w], high_res_1 [N, C/4, 2h, 2w]) float32."""

    def __init__(self, backend, max_frames: int = 1024):
        if not hasattr(backend, "image_features"):
            raise ValueError(
                f"FeatureStore: backend {type(backend).__name__} has no image_features (use the "
                "sam2 SidecarClient, built with make_backend('sam2', ..., cache_entries=0))"
            )
        self.backend = backend
        self.max_frames = max_frames
        self._cache: OrderedDict[tuple[str, int], tuple[np.ndarray, ...]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, frames: np.ndarray, positions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        vid = video_id_of(frames)
        positions = [int(p) for p in positions]
        missing = sorted({p for p in positions if (vid, p) not in self._cache})
        self.hits += len(positions) - len(missing)
        self.misses += len(missing)
        if missing:
            handle = self.backend.register_video(frames, vid)
            feats = self.backend.image_features(handle, missing)
            for j, p in enumerate(missing):
                self._cache[(vid, p)] = (
                    feats.image_embed[j],
                    feats.high_res_0[j],
                    feats.high_res_1[j],
                )
        out = []
        for p in positions:
            self._cache.move_to_end((vid, p))
            out.append(self._cache[(vid, p)])
        while len(self._cache) > self.max_frames:
            self._cache.popitem(last=False)
        embed, hr0, hr1 = (np.stack(x).astype(np.float32) for x in zip(*out))
        return embed, hr0, hr1
