"""RCoT-Seg rewards (RCoT-Seg paper §3.3-3.4; arXiv 2605.07334 (rewards)). The repo is a
placeholder, so the definitions follow the paper and, where it is silent, the
VisionReasoner / Seg-Zero template it names (noted per function).

AKS (agentic keyframe selection), total = lambda_f R_f + lambda_a R_a, 1 and 2, max 3:
  R_f in {0, 1}  think/answer structure and the answer is exactly one option ("A"/"B")
  R_a in {0, 1}  the A/B choice equals the ground truth
KTG (keyframe target grounding), total = R_f + R_a, max 6:
  R_f in [0, 3]  1 for structure + (valid bbox_2d fraction) + (valid point_2d fraction)
                 over the answer's list items (VisionReasoner format reward, boxes and
                 points one credit each)
  R_a in [0, 3]  per (pred i, gt j): S = [IoU > 0.5] + [box L1 < 10] + [L1(point) < 30
                 and pred point inside pred box]; Hungarian maximising S;
                 R_a = sum matched S / max(N_pred, N_gt). Coordinates at the 840x840
                 keyframe scale; box L1 is the mean absolute coordinate difference; the
                 point distance is L1 (|dx| + |dy|) as the paper's Eq. 10 writes it
                 (`point_metric="euclidean"` gives the VisionReasoner template's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxseg.rewards import boxes as box_ops
from jaxseg.rewards import format as fmt

AKS_OPTIONS = ("A", "B")
AKS_MAX = 3.0
KTG_MAX = 6.0


def aks_format_reward(text: str, options: Sequence[str] = AKS_OPTIONS) -> float:
    """R_f in {0, 1}; never raises."""
    turn = fmt.parse_turn(text, ("answer",))
    return 1.0 if turn is not None and turn.body.strip() in options else 0.0


def aks_accuracy_reward(choice: str | None, gt_choice: str) -> float:
    """R_a in {0, 1}: the parsed choice (None if unparseable) equals the ground truth."""
    if gt_choice not in AKS_OPTIONS:
        raise ValueError(f"gt_choice must be one of {AKS_OPTIONS}, got {gt_choice!r}")
    return 1.0 if choice == gt_choice else 0.0


def aks_reward(
    text: str, choice: str | None, gt_choice: str, *, lambda_f: float = 1.0, lambda_a: float = 2.0
) -> float:
    """lambda_f R_f + lambda_a R_a, in [0, 3] with the paper's weights."""
    return lambda_f * aks_format_reward(text) + lambda_a * aks_accuracy_reward(choice, gt_choice)


@dataclasses.dataclass(frozen=True)
class RCoTObject:
    """One grounded target: box [x1, y1, x2, y2] and a point [x, y] inside it."""

    box: Sequence[float]
    point: Sequence[float]


def ktg_format_reward(text: str) -> float:
    """R_f in [0, 3]; never raises. Answer must be a JSON list of objects."""
    structure = fmt.think_answer_format_reward(text)
    body = fmt.tag_content(text, "answer")
    ok, data = fmt.parse_json(None if body is None else body.strip())
    content = 0.0
    if ok and isinstance(data, list) and data:
        items = [d if isinstance(d, dict) else {} for d in data]
        content = sum(fmt.is_box(d.get("bbox_2d")) for d in items) / len(items)
        content += sum(fmt.is_point(d.get("point_2d")) for d in items) / len(items)
    return structure + content


def ktg_score_matrix(
    pred: Sequence[RCoTObject],
    gt: Sequence[RCoTObject],
    *,
    iou_thresh: float = 0.5,
    l1_thresh: float = 10.0,
    point_thresh: float = 30.0,
    point_metric: str = "l1",
) -> np.ndarray:
    """S[i, j] in {0, 1, 2, 3} for every (pred, gt) pair (eta, gamma_box, gamma_pt)."""
    pb = box_ops.as_boxes([o.box for o in pred], "pred boxes")
    pp = box_ops.as_points([o.point for o in pred], "pred points")
    gb = box_ops.as_boxes([o.box for o in gt], "gt boxes")
    gp = box_ops.as_points([o.point for o in gt], "gt points")
    s_iou = box_ops.box_iou_matrix(pb, gb) > iou_thresh
    s_l1 = box_ops.box_l1_matrix(pb, gb) < l1_thresh
    inside = box_ops.points_in_boxes(pp, pb) if len(pred) else np.zeros(0, bool)
    s_pt = (box_ops.point_distance_matrix(pp, gp, point_metric) < point_thresh) & inside[:, None]
    return s_iou.astype(float) + s_l1.astype(float) + s_pt.astype(float)


def ktg_accuracy_reward(
    pred: Sequence[RCoTObject], gt: Sequence[RCoTObject], *, point_metric: str = "l1"
) -> float:
    """R_a in [0, 3]. RCoT-Seg does not support zero-target queries: gt must be non-empty
    (use rewards.null for those)."""
    if len(gt) == 0:
        raise ValueError("KTG ground truth has no objects; zero-target queries use rewards.null")
    scores = ktg_score_matrix(pred, gt, point_metric=point_metric)
    return box_ops.hungarian_reward(scores).reward


def ktg_reward(text: str, pred: Sequence[RCoTObject] | None, gt: Sequence[RCoTObject]) -> float:
    """R_f + R_a in [0, 6]; pred None (unparseable) scores R_a = 0."""
    accuracy = 0.0 if pred is None else ktg_accuracy_reward(pred, gt)
    return ktg_format_reward(text) + accuracy
