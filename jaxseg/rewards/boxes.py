"""Box geometry and Hungarian matching for multi-object grounding rewards.

Boxes are [x1, y1, x2, y2] in pixels of the image the model saw. IoU is continuous
(area = (x2 - x1) * (y2 - y1)); `pixel_inclusive=True` reproduces the +1 convention of
Veason-R1's released `batch_iou` (area = (x2 - x1 + 1) * (y2 - y1 + 1)). Inverted boxes
(x2 < x1) have zero area, hence zero IoU. Matching uses scipy's
`linear_sum_assignment` (maximising total score); unmatched predictions or ground truths
are penalised by dividing by max(N_pred, N_gt) (Veason-R1 R_s, RCoT-Seg KTG R_a,
VisionReasoner template).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import linear_sum_assignment

from jaxseg.eval.metrics import box_iou


def as_boxes(boxes, name: str = "boxes") -> np.ndarray:
    """Validate and convert to float64 [N, 4]; an empty sequence gives [0, 4]."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must be [N, 4] (x1, y1, x2, y2), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite coordinates")
    return arr


def as_points(points, name: str = "points") -> np.ndarray:
    """Validate and convert to float64 [N, 2]; an empty sequence gives [0, 2]."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must be [N, 2] (x, y), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite coordinates")
    return arr


def box_iou_matrix(pred, gt, *, pixel_inclusive: bool = False) -> np.ndarray:
    """IoU of every (pred, gt) pair: [M, 4], [N, 4] -> [M, N] in [0, 1] (validated inputs;
    the geometry is `jaxseg.eval.metrics.box_iou`)."""
    a, b = as_boxes(pred, "pred boxes"), as_boxes(gt, "gt boxes")
    return box_iou(a, b, pixel_inclusive=pixel_inclusive)


def box_l1_matrix(pred, gt) -> np.ndarray:
    """Mean absolute coordinate difference of every pair: [M, N] (VisionReasoner)."""
    a, b = as_boxes(pred, "pred boxes"), as_boxes(gt, "gt boxes")
    return np.abs(a[:, None, :] - b[None, :, :]).mean(axis=-1)


def point_distance_matrix(pred, gt, metric: str = "euclidean") -> np.ndarray:
    """Distance of every (pred, gt) point pair: [M, 2], [N, 2] -> [M, N]; metric "euclidean"
    or "l1" (|dx| + |dy|, RCoT-Seg Eq. 10)."""
    a, b = as_points(pred, "pred points"), as_points(gt, "gt points")
    diff = a[:, None, :] - b[None, :, :]
    if metric == "l1":
        return np.abs(diff).sum(axis=-1)
    if metric == "euclidean":
        return np.sqrt((diff**2).sum(axis=-1))
    raise ValueError(f"point metric must be 'euclidean' or 'l1', got {metric!r}")


def points_in_boxes(points, boxes) -> np.ndarray:
    """[M] bool: point i lies inside (borders included) box i."""
    p, b = as_points(points), as_boxes(boxes)
    if p.shape[0] != b.shape[0]:
        raise ValueError(f"{p.shape[0]} points but {b.shape[0]} boxes")
    return (p[:, 0] >= b[:, 0]) & (p[:, 0] <= b[:, 2]) & (p[:, 1] >= b[:, 1]) & (p[:, 1] <= b[:, 3])


@dataclasses.dataclass(frozen=True)
class Matching:
    """A maximum-score assignment. reward = sum of matched scores / max(M, N)."""

    reward: float
    pred_index: np.ndarray  # [K] matched prediction rows
    gt_index: np.ndarray  # [K] matched ground-truth columns


def hungarian_reward(score: np.ndarray, *, empty_value: float = 0.0) -> Matching:
    """Maximum-total assignment on score [M, N]; reward = total / max(M, N).

    When M = N = 0 there is nothing to match and the reward is `empty_value` (callers
    decide what an empty prediction against empty ground truth is worth).
    """
    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 2:
        raise ValueError(f"score matrix must be [M, N], got shape {score.shape}")
    m, n = score.shape
    empty = np.zeros(0, dtype=np.int64)
    if m == 0 and n == 0:
        return Matching(float(empty_value), empty, empty)
    if m == 0 or n == 0:
        return Matching(0.0, empty, empty)
    rows, cols = linear_sum_assignment(score, maximize=True)
    return Matching(float(score[rows, cols].sum() / max(m, n)), rows, cols)
