"""Frame and mask resizing shared by the data pipeline and the protocols (no grain import).

Bilinear (PIL) for frames, as Veason-R1 resizes to 560x560; nearest for masks.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_frames(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """[M, H, W, 3] uint8 -> [M, h, w, 3] bilinear; unchanged when already (h, w) or size is None."""
    if size is None or frames.shape[1:3] == tuple(size):
        return frames
    h, w = size
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


def resize_masks(masks: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """[M, H, W] bool -> [M, h, w] nearest-neighbour."""
    if size is None or masks.shape[1:3] == tuple(size):
        return masks
    h, w = size
    return np.stack(
        [
            np.asarray(Image.fromarray(m.astype(np.uint8)).resize((w, h), Image.NEAREST))
            for m in masks
        ]
    ).astype(bool)
