"""Veason-R1 rewards: R = R_f + R_k + R_s + R_u, each weight 1, total in [0, 5].

Source: Veason-R1 repo `verl/utils/reward_score/video_match_keyframe_sam_sft_mod.py`; Veason-R1
paper (arXiv 2508.11538) §3.

  R_f in [0, 2]  1 for the think/answer structure + up to 1 for the answer JSON:
                 `keyframe_timestamp` is an int and `bbox_2d_list` a list; each
                 well-formed 4-number box adds 1/n (n = list length).
  R_k in [0, 1]  GT mask area at the chosen keyframe / max GT area over the sampled
                 frames; 0 if the keyframe is not one of the sampled absolute indices.
  R_s in [0, 1]  Hungarian matching on soft box IoU (no threshold) at the keyframe;
                 sum of matched IoU / max(N_pred, N_gt).
  R_u in [0, 1]  mean per-frame mask IoU over the sampled frames of the masks that the
                 frozen SAM2 propagates from the *matched* predicted boxes (both-empty
                 frames count 1). The caller propagates (the mask backend is a separate
                 component): `spatial_match` says which boxes, then pass the masks here.

Differences from the released code, on purpose: IoU is continuous (pass
pixel_inclusive=True for its +1 convention), and a keyframe whose GT has no boxes gives
R_s = 0 explicitly (the released code reaches 0 through a swallowed exception).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxseg.rewards import boxes as box_ops
from jaxseg.rewards import format as fmt
from jaxseg.rewards.mask_iou import per_frame_iou

MAX_REWARD = 5.0


@dataclasses.dataclass(frozen=True)
class VeasonAnswer:
    """Parsed answer: absolute keyframe index and boxes [N, 4] on that frame."""

    keyframe: int
    boxes: Sequence[Sequence[float]]


def format_reward(text: str) -> float:
    """R_f in [0, 2]; never raises."""
    structure = fmt.think_answer_format_reward(text)
    ok, data = fmt.parse_json(_stripped(fmt.tag_content(text, "answer")))
    json_part = 0.0
    if (
        ok
        and isinstance(data, dict)
        and fmt.is_int(data.get("keyframe_timestamp"))
        and isinstance(data.get("bbox_2d_list"), list)
    ):
        box_list = data["bbox_2d_list"]
        if box_list:
            json_part = sum(fmt.is_box(b) for b in box_list) / len(box_list)
    return structure + json_part


def _stripped(s: str | None) -> str | None:
    return None if s is None else s.strip()


def keyframe_reward(keyframe: int, sampled_frame_ids: Sequence[int], gt_mask_areas) -> float:
    """R_k in [0, 1]. gt_mask_areas[i] is the GT pixel count at sampled_frame_ids[i]."""
    ids = [int(i) for i in sampled_frame_ids]
    areas = np.asarray(gt_mask_areas, dtype=np.float64)
    if areas.shape != (len(ids),):
        raise ValueError(f"gt_mask_areas {areas.shape} must be [{len(ids)}] (one per sampled id)")
    if keyframe not in ids or areas.max(initial=0.0) <= 0:
        return 0.0
    return float(np.clip(areas[ids.index(keyframe)] / areas.max(), 0.0, 1.0))


def spatial_match(pred_boxes, gt_boxes, *, pixel_inclusive: bool = False) -> box_ops.Matching:
    """R_s and the matched boxes: .reward in [0, 1], .pred_index says which to propagate."""
    iou = box_ops.box_iou_matrix(pred_boxes, gt_boxes, pixel_inclusive=pixel_inclusive)
    return box_ops.hungarian_reward(iou, empty_value=0.0)


def propagation_reward(pred_masks, gt_masks) -> float:
    """R_u in [0, 1]: mean per-frame IoU of propagated masks [T, H, W] vs GT [T, H, W]."""
    ious = per_frame_iou(pred_masks, gt_masks)
    return float(ious.mean()) if ious.size else 0.0


@dataclasses.dataclass(frozen=True)
class VeasonReward:
    format: float
    keyframe: float
    spatial: float
    propagation: float

    @property
    def total(self) -> float:
        return self.format + self.keyframe + self.spatial + self.propagation


def veason_reward(
    text: str,
    answer: VeasonAnswer | None,
    *,
    sampled_frame_ids: Sequence[int],
    gt_mask_areas,
    gt_boxes_at_keyframe,
    propagated_masks=None,
    gt_masks=None,
) -> VeasonReward:
    """All four terms. `answer` None (unparseable) or a keyframe outside the sampled ids
    gives R_k = R_s = R_u = 0, as in the released code. `gt_boxes_at_keyframe` are the
    GT boxes at answer.keyframe; `propagated_masks` / `gt_masks` are [T, H, W] over the
    sampled frames (propagated from the boxes of `spatial_match(...).pred_index`).
    """
    r_f = format_reward(text)
    if answer is None or int(answer.keyframe) not in [int(i) for i in sampled_frame_ids]:
        return VeasonReward(r_f, 0.0, 0.0, 0.0)
    r_k = keyframe_reward(int(answer.keyframe), sampled_frame_ids, gt_mask_areas)
    r_s = spatial_match(answer.boxes, gt_boxes_at_keyframe).reward
    r_u = 0.0
    if propagated_masks is not None:
        if gt_masks is None:
            raise ValueError("propagated_masks given without gt_masks")
        r_u = propagation_reward(propagated_masks, gt_masks)
    return VeasonReward(r_f, r_k, r_s, r_u)
