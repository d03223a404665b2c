"""Per-frame mask IoU for mask rewards (Veason-R1 R_u, VideoSEG-O3 R_m / R_p).

A frame where both masks are empty scores 1 (the prediction correctly shows nothing);
this is the convention of both seeds' released reward code (`compute_iou` in Veason-R1,
the video IoU helper in VideoSEG-O3).
"""

from __future__ import annotations

import numpy as np


def mask_iou(pred, gt) -> float:
    """IoU of two boolean [H, W] masks; both empty -> 1.0."""
    p, g = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if p.shape != g.shape:
        raise ValueError(f"pred mask {p.shape} and gt mask {g.shape} differ")
    union = np.logical_or(p, g).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(p, g).sum() / union)


def per_frame_iou(pred, gt) -> np.ndarray:
    """[T, H, W] x [T, H, W] -> [T] IoU per frame (both empty -> 1)."""
    p, g = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"pred masks {p.shape} and gt masks {g.shape} must both be [T, H, W]")
    inter = np.logical_and(p, g).sum(axis=(1, 2))
    union = np.logical_or(p, g).sum(axis=(1, 2))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))
