"""Ground-truth geometry the protocols and the scripted oracle read off masks, and the
coordinate maps between native frames and the square images a model is shown.

Boxes are [x1, y1, x2, y2] with exclusive right/bottom edges (the mask's pixel extent, the
convention of jaxseg.segmenter.oracle); points are [x, y].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from jaxseg.data.images import resize_frames


def box_of(mask: np.ndarray) -> np.ndarray | None:
    """[4] pixel extent of a [H, W] bool mask, None if empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def boxes_of(masks: np.ndarray) -> np.ndarray:
    """[K, H, W] -> [N, 4] boxes of the non-empty masks, in order."""
    boxes = [b for b in (box_of(m) for m in masks) if b is not None]
    return np.stack(boxes) if boxes else np.zeros((0, 4))


def inscribed_point(mask: np.ndarray) -> np.ndarray | None:
    """[2] (x, y) centre of the maximum inscribed circle (the pixel farthest from the
    background; RCoT-Seg's KTG point label, arXiv 2605.07334 (training)); None if empty.
    Ties go to the first pixel in row-major order. Pixel centres are at +0.5."""
    if not mask.any():
        return None
    padded = np.pad(mask, 1)  # the frame border counts as background
    dist = ndimage.distance_transform_edt(padded)[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return np.array([x + 0.5, y + 0.5], np.float64)


def scale_boxes(boxes, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    """[N, 4] boxes from an image of size from_hw=(h, w) to to_hw (axis-wise scaling)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    sx, sy = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
    return b * np.array([sx, sy, sx, sy])


def scale_points(points, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> np.ndarray:
    p = np.asarray(points, np.float64).reshape(-1, 2)
    return p * np.array([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]])


def clip_box(box, hw: tuple[int, int]) -> np.ndarray | None:
    """Clip a box to the image; None when nothing of positive area is left (a box a mask
    backend cannot take)."""
    b = np.asarray(box, np.float64)
    b = np.clip(b, 0, [hw[1], hw[0], hw[1], hw[0]])
    if not (b[2] > b[0] and b[3] > b[1]):
        return None
    return b


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, size, 3], bilinear (PIL), as Veason-R1 resizes to 560x560."""
    return resize_frames(image[None], (size, size))[0]


def presence_run(presence: Sequence[bool], position: int) -> tuple[int, int] | None:
    """[start, end) of the maximal run of present frames containing `position`."""
    p = np.asarray(presence, bool)
    if not 0 <= position < p.size or not p[position]:
        return None
    start = position
    while start > 0 and p[start - 1]:
        start -= 1
    end = position + 1
    while end < p.size and p[end]:
        end += 1
    return start, end


def best_position(areas: Sequence[float], positions: Sequence[int]) -> int:
    """The position among `positions` with the largest area (earliest on ties)."""
    a = np.asarray(areas)
    pos = list(positions)
    if not pos:
        raise ValueError("no positions to choose from")
    return pos[int(np.argmax([a[p] for p in pos]))]
