"""VideoSEG-O3 rewards: seven terms, all weight 1, summed (VideoSEG-O3 repo `train_rl.sh`,
`projects/open_r1/rewards.py`, `projects/open_r1/rewards_dense.py`; arXiv 2606.06819). One scalar
per multi-turn rollout.

  R_f  strict_format_reward    +1 if every turn is <think>…</think><select|answer>…</…>
                               holding <VTG>{start,end,keyframe}</VTG> and <RefSeg>…[SEG]…
                               </RefSeg>, else -1                                 {-1, 1}
  R_f  step_format_reward      fraction of {"step 1","step 2","step 3","action"} in each
                               turn's <think>, averaged over turns                  [0, 1]
  R_t  temporal_reward         last turn's [start, end): score < 0.5 -> -0.5, else
                               0.5 * score. mode="released": score = present frames in
                               the interval / its length (a precision, what the code
                               computes); mode="iou": a true IoU of the predicted frames
                               with the frames where the object is present  [-0.5, 0.5]
  R_t  keyframe_reward         +1 if the GT mask is non-empty at the last keyframe    {-1, 1}
  R_m  mask_reward             per sampled frame IoU -> -1 (<= 0.2), 0 (<= 0.4),
                               min(3 (IoU - 0.4), 1.5); mean over frames       [-1, 1.5]
  R_p  progressive_reward      >= 2 turns: delta = last keyframe IoU - best earlier one;
                               > 0.05 -> +0.5, > -0.05 -> 0, else -1               [-1, 2]
  R_p  keyframe_vs_mask_reward >= 2 turns: delta = last keyframe IoU - last mean video
                               IoU; > 0.1 -> +0.5, > -0.05 -> 0, else -1           [-1, 2]

[code bug] In both R_p functions of the released code the large-improvement branch
(delta > 0.1 -> min(10 (delta - 0.05), 2); delta > 0.2 -> min(5 (delta - 0.1), 2)) is
overwritten by the next `if` (not `elif`), so the bonus is capped at 0.5. The intended
caps are the default here; `shipped=True` reproduces the released behaviour. Bounds
(sums of per-term bounds, as in the seeds' papers): max 9.0 intended, 6.0 shipped; min
-5.5. They are not jointly attainable: the R_m maximum needs video IoU >= 0.9, which
leaves keyframe-vs-mask no room above +0.

Other differences from the released code, on purpose: the turn structure is checked
strictly (no text before <think> or after the closing action tag, no stray
think/answer/select tags; the released regex uses `re.search`), and an empty episode
scores -1 on R_f (released: 0).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from jaxseg.rewards import format as fmt
from jaxseg.rewards.mask_iou import mask_iou, per_frame_iou

STEP_KEYWORDS = ("step 1", "step 2", "step 3", "action")
VTG_KEYS = frozenset({"start", "end", "keyframe"})
MAX_REWARD_INTENDED = 9.0
MAX_REWARD_SHIPPED = 6.0
MIN_REWARD = -5.5


def turn_format_ok(text: str) -> bool:
    """One turn is well-formed (structure, VTG JSON keys, [SEG] in RefSeg); never raises."""
    turn = fmt.parse_turn(text, ("select", "answer"))
    if turn is None:
        return False
    ok, vtg = fmt.parse_json(fmt.tag_content(turn.body, "VTG"))
    refseg = fmt.tag_content(turn.body, "RefSeg")
    return ok and isinstance(vtg, dict) and VTG_KEYS <= vtg.keys() and "[SEG]" in (refseg or "")


def strict_format_reward(turns: Sequence[str], *, require_answer_last: bool = False) -> float:
    """+1 if every turn is well-formed, else -1 (an empty episode is -1).

    require_answer_last: also demand that the final turn is <answer> and earlier ones
    <select> (what the released docstring says; its code does not check it).
    """
    if not turns or not all(turn_format_ok(t) for t in turns):
        return -1.0
    if require_answer_last:
        actions = [fmt.parse_turn(t, ("select", "answer")).action for t in turns]
        if actions[-1] != "answer" or any(a != "select" for a in actions[:-1]):
            return -1.0
    return 1.0


def step_format_reward(turns: Sequence[str]) -> float:
    """Mean over turns of the fraction of step keywords in the first <think> (case-free)."""
    if not turns:
        return 0.0
    scores = []
    for text in turns:
        think = fmt.tag_content(text, "think") if isinstance(text, str) else None
        if think is None:
            scores.append(0.0)
            continue
        lowered = think.lower()
        scores.append(sum(k in lowered for k in STEP_KEYWORDS) / len(STEP_KEYWORDS))
    return float(np.mean(scores))


def temporal_reward(
    interval: tuple[int, int] | None,
    presence,
    *,
    mode: str = "released",
    threshold: float = 0.5,
    r_pass: float = 0.5,
    r_fail: float = -0.5,
) -> float:
    """R_t for the last turn's half-open [start, end); presence is [T] bool per frame.

    interval None (unparseable) or start >= end after clamping to [0, T] -> r_fail.
    If the object is never present the score is 1 (released behaviour; both modes).
    """
    present = np.asarray(presence, dtype=bool)
    if present.ndim != 1:
        raise ValueError(f"presence must be [T], got shape {present.shape}")
    if mode not in ("released", "iou"):
        raise ValueError(f"mode must be 'released' or 'iou', got {mode!r}")
    if interval is None:
        return r_fail
    t = present.shape[0]
    s, e = (min(max(int(v), 0), t) for v in interval)
    if s >= e:
        return r_fail
    if not present.any():
        score = 1.0
    else:
        pred = np.zeros(t, dtype=bool)
        pred[s:e] = True
        inter = np.logical_and(pred, present).sum()
        denom = (e - s) if mode == "released" else np.logical_or(pred, present).sum()
        score = float(inter / denom)
    return r_fail if score < threshold else r_pass * score


def keyframe_reward(keyframe: int | None, presence) -> float:
    """+1 if the object is present at the (absolute) keyframe, else -1 (also when None
    or outside [0, T))."""
    present = np.asarray(presence, dtype=bool)
    if keyframe is None or not (0 <= int(keyframe) < present.shape[0]):
        return -1.0
    return 1.0 if present[int(keyframe)] else -1.0


def _mask_frame_score(iou: float) -> float:
    if iou > 0.4:
        return min(3.0 * (iou - 0.4), 1.5)
    if iou > 0.2:
        return 0.0
    return -1.0


def mask_reward_from_ious(frame_ious: Sequence[float]) -> float:
    """R_m from per-frame IoUs of the last turn; no frames -> -1 (released)."""
    if len(frame_ious) == 0:
        return -1.0
    return float(np.mean([_mask_frame_score(float(i)) for i in frame_ious]))


def mask_reward(pred_masks, gt_masks) -> float:
    """R_m from the last turn's masks on the sampled frames, [T, H, W] each."""
    return mask_reward_from_ious(per_frame_iou(pred_masks, gt_masks))


def progressive_reward_from_ious(keyframe_ious: Sequence[float], *, shipped: bool = False) -> float:
    """R_p (progressive) from the per-turn keyframe IoUs, turn 0 first."""
    if len(keyframe_ious) < 2:
        return 0.0
    delta = float(keyframe_ious[-1]) - max(float(v) for v in keyframe_ious[:-1])
    if not shipped and delta > 0.1:
        return min(10.0 * (delta - 0.05), 2.0)
    if delta > 0.05:
        return 0.5
    if delta > -0.05:
        return 0.0
    return -1.0


def progressive_reward(pred_keyframe_masks, gt_keyframe_masks, *, shipped: bool = False) -> float:
    """R_p from per-turn keyframe masks: lists (one per turn) of [H, W] predicted / GT
    masks at that turn's keyframe (turn 0 uses the video's middle frame, VideoSEG-O3 repo
    `generation_forward_cot`)."""
    if len(pred_keyframe_masks) != len(gt_keyframe_masks):
        raise ValueError("one GT keyframe mask per turn is needed")
    ious = [mask_iou(p, g) for p, g in zip(pred_keyframe_masks, gt_keyframe_masks)]
    return progressive_reward_from_ious(ious, shipped=shipped)


def keyframe_vs_mask_reward(
    keyframe_ious: Sequence[float], last_video_iou: float, *, shipped: bool = False
) -> float:
    """R_p (keyframe vs video): last keyframe IoU against the last turn's mean video IoU."""
    if len(keyframe_ious) < 2:
        return 0.0
    delta = float(keyframe_ious[-1]) - float(last_video_iou)
    if not shipped and delta > 0.2:
        return min(5.0 * (delta - 0.1), 2.0)
    if delta > 0.1:
        return 0.5
    if delta > -0.05:
        return 0.0
    return -1.0


@dataclasses.dataclass(frozen=True)
class O3Reward:
    strict_format: float
    step_format: float
    temporal: float
    keyframe: float
    mask: float
    progressive: float
    keyframe_vs_mask: float

    @property
    def total(self) -> float:
        return sum(dataclasses.astuple(self))


def o3_reward(
    turns: Sequence[str],
    *,
    interval: tuple[int, int] | None,
    keyframe: int | None,
    presence,
    frame_ious: Sequence[float],
    keyframe_ious: Sequence[float],
    temporal_mode: str = "released",
    shipped: bool = False,
) -> O3Reward:
    """All seven terms for one rollout.

    interval / keyframe: the last turn's parsed VTG (None if unparseable); presence: [T]
    GT object presence; frame_ious: last turn's per-sampled-frame mask IoUs (see
    `mask_iou.per_frame_iou`); keyframe_ious: per-turn keyframe mask IoU, turn 0 first.
    """
    ious = np.asarray(frame_ious, dtype=np.float64)
    last_video_iou = float(ious.mean()) if ious.size else 0.0
    return O3Reward(
        strict_format=strict_format_reward(turns),
        step_format=step_format_reward(turns),
        temporal=temporal_reward(interval, presence, mode=temporal_mode),
        keyframe=keyframe_reward(keyframe, presence),
        mask=mask_reward_from_ious(ious),
        progressive=progressive_reward_from_ious(keyframe_ious, shipped=shipped),
        keyframe_vs_mask=keyframe_vs_mask_reward(keyframe_ious, last_video_iou, shipped=shipped),
    )


def o3_reward_from_masks(
    turns: Sequence[str],
    *,
    interval: tuple[int, int] | None,
    keyframe: int | None,
    presence,
    pred_masks,
    gt_masks,
    pred_keyframe_masks: Sequence,
    gt_keyframe_masks: Sequence,
    temporal_mode: str = "released",
    shipped: bool = False,
) -> O3Reward:
    """`o3_reward` from masks: the mask backend's outputs go straight in.

    pred_masks / gt_masks: [T_s, H, W] last-turn masks on the sampled frames;
    pred_keyframe_masks / gt_keyframe_masks: one [H, W] per turn at that turn's keyframe.
    """
    if len(pred_keyframe_masks) != len(gt_keyframe_masks):
        raise ValueError("one GT keyframe mask per turn is needed")
    return o3_reward(
        turns,
        interval=interval,
        keyframe=keyframe,
        presence=presence,
        frame_ious=per_frame_iou(pred_masks, gt_masks),
        keyframe_ious=[mask_iou(p, g) for p, g in zip(pred_keyframe_masks, gt_keyframe_masks)],
        temporal_mode=temporal_mode,
        shipped=shipped,
    )
