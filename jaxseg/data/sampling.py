"""Frame sampling: pure functions from (video length, target areas, rng) to frame positions.

Positions index the video's full frame list; the absolute frame index shown to the model is
`record.frame_ids[position]` (Veason-R1's "absolute frame indexing", arXiv 2508.11538 (inference):
relative clip indices <0>..<N-1> invite index-collapse shortcuts).
"""

from __future__ import annotations

import math

import numpy as np


def uniform_positions(num_frames: int, num_samples: int) -> np.ndarray:
    """[N] int: `np.linspace(0, L - 1, N, dtype=int)` when L > N, else every frame.

    Exactly Veason-R1's evaluation sampler (SitongGong/Veason-R1
    `batch_eval_keyframe_sft_dataset_.py`): first and last frame included, floor rounding;
    a video no longer than N gives all L frames (so N is a maximum, not a count).
    """
    if num_frames <= 0:
        raise ValueError(f"cannot sample from an empty video (num_frames={num_frames})")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if num_frames <= num_samples:
        return np.arange(num_frames, dtype=np.int64)
    return np.linspace(0, num_frames - 1, num=num_samples, dtype=np.int64)


def top_k_area_frames(areas: np.ndarray, k: int = 5) -> np.ndarray:
    """[min(k, L)] positions of the k largest target areas, largest first (stable on ties:
    the earlier frame wins)."""
    areas = np.asarray(areas)
    order = np.argsort(-areas, kind="stable")
    return order[:k]


def keyframe_centred_positions(
    areas: np.ndarray, num_samples: int, rng: np.random.Generator, top_k: int = 5
) -> tuple[np.ndarray, int]:
    """Veason-R1 training sampler (arXiv 2508.11538 (rewards); Veason-R1 repo
    `verl/utils/revos_keyframe_sft_dataset_mod.py`).

    A pseudo-keyframe k is drawn uniformly among the `top_k` frames with the largest target
    area; frames are then taken with stride s = ceil(L / (N - 1)) starting at k mod s, so k is
    always included. Returns (positions [M] with M <= N, k). Like the reference, M can be
    smaller than N (e.g. L=10, N=6: s=2, k odd -> 5 frames); N=1 gives [k].

    areas: [L] target area per frame (all-zero areas, a null target, still give a valid k).
    """
    areas = np.asarray(areas)
    num_frames = len(areas)
    if num_frames == 0:
        raise ValueError("cannot sample from an empty video")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    keyframe = int(rng.choice(top_k_area_frames(areas, top_k)))
    if num_samples == 1:
        return np.array([keyframe], dtype=np.int64), keyframe
    stride = math.ceil(num_frames / (num_samples - 1))
    positions = np.arange(keyframe % stride, num_frames, stride, dtype=np.int64)
    return positions, keyframe
