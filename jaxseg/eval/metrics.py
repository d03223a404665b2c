"""Video segmentation metrics, vectorised over frames (numpy, host side).

J and F follow davisvideochallenge/davis2017-evaluation `davis2017/metrics.py`
(`db_eval_iou`, `db_eval_boundary`, `_seg2bmap`), copied unchanged into the MeViS, ReVOS
(VISA), ReasonVOS (VideoLISA) and Long-RVOS scripts:

- masks are binarised with `!= 0`;
- J = |P & G| / |P | G| per frame, 1 where the union is empty;
- F: boundary maps by `_seg2bmap` (a pixel differs from its E, S or SE neighbour; the border
  rules reproduced exactly), matched within `ceil(0.008 * diagonal)` px using a disk
  structuring element (skimage `disk`: x^2 + y^2 <= r^2); P/R with the empty-boundary table;
- R (robustness, R2-VOS / VISA `get_r2vos_robustness`, the benchmarks' metric scripts):
  max(0, 1 - |pred \\ gt| / (|foreground| + 1e-6)) per frame.

A boundary pixel matches when it lies in the other map's dilation by disk(r), i.e. when its
Euclidean distance to the nearest boundary pixel of the other map is <= r. That is counted
with one k-d tree over the boundary pixels of all frames (frames offset far apart), which
equals cv2.dilate with the disk kernel and is ~30x faster than dilating full frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

BOUND_TH = 0.008


def _as_bool(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype == bool else x != 0


def _check_same_shape(gt: np.ndarray, pred: np.ndarray) -> None:
    if gt.shape != pred.shape:
        raise ValueError(f"GT shape {gt.shape} != prediction shape {pred.shape}")
    if gt.ndim < 2:
        raise ValueError(f"masks need at least 2 dims [.., H, W], got {gt.shape}")


def region_iou(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """J per frame: [..., H, W] x2 -> [...] float64 (1 where both are empty)."""
    _check_same_shape(gt, pred)
    gt, pred = _as_bool(gt), _as_bool(pred)
    keep = True if void is None else ~_as_bool(void)
    inter = np.sum(gt & pred & keep, axis=(-2, -1))
    union = np.sum((gt | pred) & keep, axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def boundary_map(masks: np.ndarray) -> np.ndarray:
    """[..., H, W] -> [..., H, W] bool, 1-px boundaries shifted half a pixel to the origin.

    Same rules as DAVIS `_seg2bmap`: compare with the east, south and south-east neighbour
    (outside = 0); in the last row only east changes count, in the last column only south
    changes count, and the bottom-right pixel is never a boundary.
    """
    seg = _as_bool(masks)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[..., :, :-1] = seg[..., :, 1:]
    s[..., :-1, :] = seg[..., 1:, :]
    se[..., :-1, :-1] = seg[..., 1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[..., -1, :] = seg[..., -1, :] ^ e[..., -1, :]
    b[..., :, -1] = seg[..., :, -1] ^ s[..., :, -1]
    b[..., -1, -1] = False
    return b


def bound_pixels(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Match tolerance in px: bound_th itself if >= 1, else ceil(bound_th * image diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk(radius: int) -> np.ndarray:
    """[2r+1, 2r+1] bool disk x^2 + y^2 <= r^2 (skimage.morphology.disk, strict radius)."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2


def dilate_disk(maps: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of every [H, W] slice of maps [..., H, W] by disk(radius)."""
    maps = _as_bool(maps)
    if not maps.any():
        return np.zeros_like(maps)
    h, w = maps.shape[-2:]
    flat = maps.reshape(-1, h, w)
    # Distances across the leading (frame) axis are scaled beyond any in-frame distance, so
    # one 3-D transform gives every frame's own 2-D distance map.
    far = float(h + w + radius + 1)
    dist_sq = ndimage.distance_transform_edt(~flat, sampling=(far, 1.0, 1.0)) ** 2
    return (np.rint(dist_sq) <= radius**2).reshape(maps.shape)


def count_within(src: np.ndarray, dst: np.ndarray, radius: int) -> np.ndarray:
    """[...] number of True pixels of src [..., H, W] within Euclidean distance `radius` of a
    True pixel of dst in the same [H, W] slice (= |src & dilate_disk(dst, radius)|)."""
    src, dst = _as_bool(src), _as_bool(dst)
    h, w = src.shape[-2:]
    lead = src.shape[:-2]
    src3, dst3 = src.reshape(-1, h, w), dst.reshape(-1, h, w)
    counts = np.zeros(src3.shape[0], dtype=np.int64)
    if src3.any() and dst3.any():
        ts, ys, xs = np.nonzero(src3)
        td, yd, xd = np.nonzero(dst3)
        gap = h + w + radius + 1  # frames further apart than any in-frame match
        tree = cKDTree(np.stack([yd + td * gap, xd], axis=1))
        dist, _ = tree.query(
            np.stack([ys + ts * gap, xs], axis=1), k=1, distance_upper_bound=radius + 1e-6
        )
        hit = np.isfinite(dist)
        hit[hit] = np.rint(dist[hit] ** 2) <= radius**2  # integer offsets: exact disk test
        counts = np.bincount(ts[hit], minlength=src3.shape[0])
    return counts.reshape(lead)


def boundary_f(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = BOUND_TH,
) -> np.ndarray:
    """F per frame (DAVIS boundary F-measure): [..., H, W] x2 -> [...] float64."""
    _check_same_shape(gt, pred)
    gt, pred = _as_bool(gt), _as_bool(pred)
    if void is not None:
        keep = ~_as_bool(void)
        gt, pred = gt & keep, pred & keep
    radius = bound_pixels(*gt.shape[-2:], bound_th=bound_th)
    gt_b, pred_b = boundary_map(gt), boundary_map(pred)
    n_pred = pred_b.sum(axis=(-2, -1)).astype(np.float64)
    n_gt = gt_b.sum(axis=(-2, -1)).astype(np.float64)
    pred_match = count_within(pred_b, gt_b, radius)
    gt_match = count_within(gt_b, pred_b, radius)
    precision = np.where(n_pred == 0, 1.0, pred_match / np.maximum(n_pred, 1))
    recall = np.where(n_gt == 0, 1.0, gt_match / np.maximum(n_gt, 1))
    # the empty-boundary table: exactly one side empty -> P or R is 0
    precision = np.where((n_pred > 0) & (n_gt == 0), 0.0, precision)
    recall = np.where((n_pred == 0) & (n_gt > 0), 0.0, recall)
    total = precision + recall
    return np.where(total == 0, 0.0, 2 * precision * recall / np.where(total == 0, 1, total))


def j_and_f(j: np.ndarray | float, f: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(j) + np.asarray(f)) / 2


def robustness(gt: np.ndarray, pred: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """R per frame on binary masks: max(0, 1 - |pred \\ gt| / (|foreground| + 1e-6)).

    The intended definition (R2-VOS). VISA's script computes it on raw PNG values; use
    `robustness_visa_uint8` to reproduce those numbers bit for bit.
    """
    _check_same_shape(gt, pred)
    gt, pred, fg = _as_bool(gt), _as_bool(pred), _as_bool(foreground)
    outside = np.sum(pred & ~gt, axis=(-2, -1))
    return np.maximum(0.0, 1.0 - outside / (fg.sum(axis=(-2, -1)) + 1e-6))


def robustness_visa_uint8(
    gt_u8: np.ndarray, pred_u8: np.ndarray, foreground_u8: np.ndarray
) -> np.ndarray:
    """R exactly as cilinyan/VISA `tools/metrics.py` computes it: uint8 arithmetic on raw
    values, so a 0/255 prediction counts each false-positive pixel 255 times.
    """
    gt_u8, pred_u8 = np.asarray(gt_u8, np.uint8), np.asarray(pred_u8, np.uint8)
    neg = ((np.uint8(1) - gt_u8) * pred_u8).sum(axis=(-2, -1), dtype=np.uint64)
    pos = np.asarray(foreground_u8, np.uint8).sum(axis=(-2, -1), dtype=np.uint64)
    return np.maximum(0.0, 1.0 - neg / (pos + 1e-6))


def pixel_accuracy(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """A per frame on binary masks (ReVOS reports it; VISA compares raw uint8 values)."""
    _check_same_shape(gt, pred)
    return np.mean(_as_bool(gt) == _as_bool(pred), axis=(-2, -1))


def temporal_iou(gt: np.ndarray, pred: np.ndarray, j: np.ndarray) -> tuple[float, float]:
    """Long-RVOS tIoU and vIoU (`eval/eval_long_rvos/eval_static.py`).

    tIoU = |frames where both are non-empty| / |frames where either is|;
    vIoU = sum of J over frames where both are non-empty / the same union; both 1 if no frame
    has either mask.
    """
    gt_on = _as_bool(gt).any(axis=(-2, -1))
    pred_on = _as_bool(pred).any(axis=(-2, -1))
    both = gt_on & pred_on
    union = int((gt_on | pred_on).sum())
    if union == 0:
        return 1.0, 1.0
    return float(both.sum() / union), float(np.asarray(j)[both].sum() / union)


def keyframe_area_ratio(areas: Sequence[int] | np.ndarray, keyframe: int, sampled: Sequence[int]):
    """Veason-R1's R_k (arXiv 2508.11538 (rewards)): GT area at the chosen keyframe / the largest
    GT area over the sampled frames; 0 when the keyframe is not a sampled frame or the target
    is absent from every sampled frame.

    areas: [T] target area per frame of the video; keyframe and sampled: frame positions.
    """
    areas = np.asarray(areas, dtype=np.float64)
    sampled = [int(s) for s in sampled]
    if int(keyframe) not in sampled:
        return 0.0
    best = areas[sampled].max() if sampled else 0.0
    return float(areas[int(keyframe)] / best) if best > 0 else 0.0


def box_iou(
    boxes_a: np.ndarray, boxes_b: np.ndarray, *, pixel_inclusive: bool = False
) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: [N, 4] x [M, 4] -> [N, M]; 0 where the union is empty.

    Continuous coordinates (area = (x2 - x1) * (y2 - y1)); `pixel_inclusive=True` is the +1
    convention of Veason-R1's released `batch_iou`. Inverted boxes have zero area."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    one = 1.0 if pixel_inclusive else 0.0
    area_a = np.clip(a[:, 2] - a[:, 0] + one, 0, None) * np.clip(a[:, 3] - a[:, 1] + one, 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0] + one, 0, None) * np.clip(b[:, 3] - b[:, 1] + one, 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt + one, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
    return np.clip(iou, 0.0, 1.0)


def mask_to_box(masks: np.ndarray) -> np.ndarray:
    """[..., H, W] -> [..., 4] xyxy of the extreme foreground pixel indices (Veason-R1's GT box
    convention: right/bottom are the last foreground column/row); all zeros for an empty mask.
    """
    m = _as_bool(masks)
    rows, cols = m.any(axis=-1), m.any(axis=-2)
    h, w = m.shape[-2:]
    top = np.argmax(rows, axis=-1)
    bottom = h - 1 - np.argmax(rows[..., ::-1], axis=-1)
    left = np.argmax(cols, axis=-1)
    right = w - 1 - np.argmax(cols[..., ::-1], axis=-1)
    box = np.stack([left, top, right, bottom], axis=-1).astype(np.float64)
    return np.where(rows.any(axis=-1)[..., None], box, 0.0)
