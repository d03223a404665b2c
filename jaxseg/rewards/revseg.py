"""ReVSeg rewards (ReVSeg project page framework figure "Reward Manager" and training curves;
ReVSeg arXiv 2512.02835 (rewards)). The code is unreleased, so exact forms are UNKNOWN; each
choice below is the documented inference and is configurable.

  r_f  format in [0, 1]     fraction of the two rounds that are well-formed:
                            round 1 `<think>…</think><answer>frame id: k ; object
                            description: d</answer>`, round 2 think/answer holding one box
                            (`[x1,y1,x2,y2]`, `[[…]]`, `{"bbox_2d": …}` or `[{"bbox_2d": …}]`)
  r_t  keyframe in [0, 1]   "BBox Area": GT box area at the chosen keyframe / max GT box
                            area over the frames the policy was shown (analogous to
                            Veason-R1's R_k over its sampled frames); the protocol passes
                            areas per frame *position*, 0 at frames not shown, and the
                            keyframe's position
  r_s  spatial in [0, 1]    IoU of the one predicted box with the keyframe's GT:
                            multi="best" (default) the best-matching GT box, so a box on one
                            of several targets scores fully (ReVSeg's round 2 shows one box;
                            its multi-object form is UNKNOWN); multi="union" the box
                            enclosing all targets, so missing a target costs
  total                     combine="product" (default; the logged total is below each
                            component, pointing to a gated or multiplicative combination)
                            or "sum"
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxseg.rewards import boxes as box_ops
from jaxseg.rewards import format as fmt

_ROUND1_RE = re.compile(
    r"\s*frame\s+id\s*:\s*\d{1,9}\s*;\s*object\s+description\s*:\s*\S", re.IGNORECASE
)


def _single_box(data: Any) -> bool:
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict):
        data = data.get("bbox_2d")
    return fmt.is_box(data)


def format_reward(turns: Sequence[str]) -> float:
    """r_f in [0, 1]; missing rounds count as malformed; never raises."""
    score = 0.0
    if len(turns) >= 1:
        t1 = fmt.parse_turn(turns[0], ("answer",))
        score += 0.5 * float(t1 is not None and _ROUND1_RE.match(t1.body) is not None)
    if len(turns) >= 2:
        t2 = fmt.parse_turn(turns[1], ("answer",))
        ok, data = fmt.parse_json(None if t2 is None else t2.body.strip())
        score += 0.5 * float(ok and _single_box(data))
    return score


def keyframe_reward(keyframe: int | None, gt_box_areas) -> float:
    """r_t in [0, 1]: gt_box_areas [T] indexed like `keyframe` (the protocol: frame
    positions, 0 where the target is absent or the frame was not shown); area at keyframe /
    max area."""
    areas = np.asarray(gt_box_areas, dtype=np.float64)
    if areas.ndim != 1:
        raise ValueError(f"gt_box_areas must be [T], got shape {areas.shape}")
    if keyframe is None or not (0 <= int(keyframe) < areas.shape[0]) or areas.max() <= 0:
        return 0.0
    return float(areas[int(keyframe)] / areas.max())


def spatial_reward(pred_box, gt_boxes_at_keyframe, multi: str = "best") -> float:
    """r_s in [0, 1]: IoU of the one predicted box against the keyframe's GT boxes, the best
    one (multi="best") or the box enclosing them all (multi="union")."""
    if multi not in ("best", "union"):
        raise ValueError(f"multi must be 'best' or 'union', got {multi!r}")
    if pred_box is None:
        return 0.0
    gt = box_ops.as_boxes(gt_boxes_at_keyframe, "gt boxes")
    if gt.shape[0] == 0:
        return 0.0
    if multi == "union":
        gt = np.concatenate([gt[:, :2].min(0), gt[:, 2:].max(0)])[None]
    return float(box_ops.box_iou_matrix([pred_box], gt).max())


def revseg_reward(
    turns: Sequence[str],
    *,
    keyframe: int | None,
    pred_box,
    gt_box_areas,
    gt_boxes_at_keyframe,
    combine: str = "product",
    multi: str = "best",
) -> float:
    """Total ReVSeg reward: r_f * r_t * r_s (in [0, 1]) or r_f + r_t + r_s (in [0, 3]).

    keyframe None (round 1 unparseable) gives r_t = r_s = 0; gt_boxes_at_keyframe are the
    GT boxes at `keyframe`.
    """
    if combine not in ("product", "sum"):
        raise ValueError(f"combine must be 'product' or 'sum', got {combine!r}")
    r_f = format_reward(turns)
    r_t = keyframe_reward(keyframe, gt_box_areas)
    r_s = 0.0 if keyframe is None else spatial_reward(pred_box, gt_boxes_at_keyframe, multi)
    return r_f * r_t * r_s if combine == "product" else r_f + r_t + r_s
