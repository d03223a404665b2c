"""VideoSEG-O3 as an episode program, text-coordinate route (arXiv 2606.06819 (inference);
VideoSEG-O3 repo `modeling_sa2va_qwen_cotv3_keyframe_withvis.py::predict_forward`,
`dataset/refVOS_COT_v2.py`). Two answer modes (`O3Config.answer`): "box" (the text route,
default) and "seg" (the released [SEG] route, see the end of this docstring).

Turn 0 observation (the order of the released eval): `temporal_frames` uniform frames at
S_t, then a line listing their absolute indices; `spatial_frames` uniform frames at S_s and
their index line; the query and the video length. Every image is also preceded by its own
index. The system prompt states the format.

Each assistant turn (the text route of the format; the released one carries
`<RefSeg>[SEG]</RefSeg>` where this one carries `<box>`):

    <think>Step 1: … Step 2: … Step 3: … Action: see new segment | confirmed</think>
    <select|answer><VTG>{"start": s, "end": e, "keyframe": k}</VTG><box>[[x1, y1, x2, y2], …]</box></select|answer>

s, e, k are absolute frame indices; the boxes are on frame k in S_k x S_k coordinates (the
high-res keyframe size), one per target (the masks are their union); `<answer>no target
</answer>` abstains. A `<select>` asks to look closer: the environment clamps s, e to the
video (k to the nearest frame), stops if e < s, and shows up to `frames_per_round` frames
of [s, e] (all if few, else linspace) at S_t with an index line, frame k at S_k, and the
restated instruction; the history stays in context. The episode ends on a turn without
`<select>`, an unparseable select, e < s, or at `max_turns` (a select on the last turn is
not executed, as in RL training). The final turn's keyframe and boxes prompt the mask
backend (both directions, union). If the final turn has no VTG, the keyframe falls back to
the middle spatial frame (released eval) and there are no masks.

Reward: the seven VideoSEG-O3 terms of jaxseg.rewards.o3 (all weight 1), with the strict
format term checking this text format (every turn: think + select/answer holding VTG JSON
with integer start/end/keyframe and a box list) instead of `<RefSeg>[SEG]`. Per-turn keyframe
IoU (for R_p): the mask from turn t's boxes on turn t's keyframe (its VTG keyframe; the
previous turn's, or the middle frame, when it has none), the text-route reading of "the
[SEG] mask on the turn's keyframe". R_m uses the final masks on the turn-0 spatial frames
(the RL "sampled frames"). Plus the zero-target term. Null sample: structure + null term.

Per-turn keyframes of the [SEG] route (`keyframes`): "released" (default; VideoSEG-O3 repo
`generation_forward_cot`, `predict_forward`): turn 0's [SEG] is decoded on the middle frame of
the video, turn t >= 1's on the keyframe the previous turn's executed <select> asked for, and
the final propagation starts from the last executed select's keyframe (a one-turn episode:
its VTG keyframe, else the middle spatial frame); "paper": every turn's [SEG] on that turn's
own VTG keyframe. The box route always uses the turn's own VTG keyframe (its boxes are drawn
on that frame). R_m of the [SEG] route (`seg_mask_reward`): "decoded" (released, RL
`lr_maskiou_dense`): the final turn's [SEG] decoded memory-free on each sampled (spatial)
frame, from `protocol.seg_sampled_masks` (episode -> one [H, W] mask per spatial frame; the
propagated masks stand in when it is None, e.g. for the oracle); "propagated": the final
masks on those frames.

[SEG] route (`answer="seg"`, the released format, arXiv 2606.06819): each turn ends with
`<VTG>{…}</VTG><RefSeg>[SEG]</RefSeg>` in place of `<box>…</box>`. The environment turns a
turn's [SEG] into a mask on that turn's keyframe through `protocol.seg_masks`, a callable the
policy supplies (`episode -> one [H, W] bool mask or None per turn`; jaxseg.seg decodes the
last [SEG] of each turn with the SAM2 mask decoder). The final turn's keyframe mask goes to
the mask backend as a mask prompt and is propagated both ways; earlier turns' keyframe masks
give the per-turn keyframe IoU directly. `gt_keyframe_masks` is the oracle's source (the GT
mask on the keyframe of each turn that holds a [SEG]), for cold-start traces. The strict
format term checks the released format (VTG JSON + `<RefSeg>` holding `[SEG]`).

Temporal intervals: the reward reads [start, end) half-open (rewards.o3.temporal_reward);
the select fetch reads [start, end] inclusive (released code). Both use absolute indices,
mapped to positions for videos whose ids are not 0..T-1.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from jaxseg.data.sampling import uniform_positions
from jaxseg.protocols import annotations as ann
from jaxseg.protocols import parsing
from jaxseg.protocols.episode import (
    Episode,
    FinalAction,
    MaskJob,
    Opening,
    Protocol,
    prompts_for,
    union_of,
)
from jaxseg.protocols.observation import frame_parts, id_list, user_message
from jaxseg.protocols.policy import Message, image_part, last_user_meta, text_part
from jaxseg.protocols.sample import EpisodeSample
from jaxseg.protocols.scripted_text import fmt_box, random_junk, which_is
from jaxseg.protocols.veason import sorted_box
from jaxseg.rewards import format as rfmt
from jaxseg.rewards import null as rnull
from jaxseg.rewards import o3 as ro3
from jaxseg.rewards.mask_iou import mask_iou, per_frame_iou
from jaxseg.segmenter.interface import ObjectPrompt

ANSWER_MODES = ("box", "seg")
SEG_TOKEN = "[SEG]"


@dataclasses.dataclass(frozen=True)
class O3Config:
    """temporal_frames / spatial_frames: turn-0 frames (released eval 20 / 8, RL 10 / 5);
    frame_size (S_t), spatial_size (S_s), keyframe_size (S_k): image sides (released
    ~158 / ~448 / ~634 px); frames_per_round: frames fetched per select (5); max_turns (3);
    temporal_mode: "released" (precision) or "iou"; shipped: the released R_p caps;
    answer: "box" (text route) or "seg" (`<RefSeg>[SEG]</RefSeg>`, decoded into a mask);
    keyframes: the [SEG] route's per-turn keyframe convention, "released" or "paper";
    seg_mask_reward: the [SEG] route's R_m masks, "decoded" (released) or "propagated"."""

    temporal_frames: int = 10
    spatial_frames: int = 5
    frame_size: int = 84
    spatial_size: int = 112
    keyframe_size: int = 140
    frames_per_round: int = 5
    max_turns: int = 3
    temporal_mode: str = "released"
    shipped: bool = False
    null_reward: bool = True
    answer: str = "box"
    keyframes: str = "released"
    seg_mask_reward: str = "decoded"

    def __post_init__(self) -> None:
        if self.keyframes not in ("released", "paper"):
            raise ValueError(f"o3.keyframes must be 'released' or 'paper': {self}")
        if self.seg_mask_reward not in ("decoded", "propagated"):
            raise ValueError(f"o3.seg_mask_reward must be 'decoded' or 'propagated': {self}")
        if self.answer not in ANSWER_MODES:
            raise ValueError(f"o3.answer must be one of {ANSWER_MODES}: {self}")
        if min(self.temporal_frames, self.spatial_frames, self.frames_per_round) < 1:
            raise ValueError(f"o3: frame counts must be >= 1: {self}")
        if self.max_turns < 1:
            raise ValueError(f"o3.max_turns must be >= 1: {self}")
        if self.temporal_mode not in ("released", "iou"):
            raise ValueError(f"o3.temporal_mode must be 'released' or 'iou': {self}")


SYSTEM = (
    "You segment the object a query refers to in a video. Think inside <think></think> in "
    "three steps and an action: Step 1: temporal dynamics. Step 2: spatial details. Step 3: "
    "expression analysis. Action: see new segment, or confirmed. To look closer at part of "
    'the video, end the turn with <select><VTG>{"start": s, "end": e, "keyframe": k}</VTG>'
    "<box>[[x1, y1, x2, y2]]</box></select>; to finish, use <answer> instead of <select>. "
    "s, e and k are frame indices; the boxes are your current boxes of every target on frame "
    "k, in the coordinates of a {S}x{S} image of that frame. If nothing in the video matches "
    "the query, answer <answer>no target</answer>."
)
TURN0 = (
    'Query: "{query}". Show your thought process for finding and segmenting the target. '
    "The video has {T} frames."
)
SYSTEM_SEG = (
    "You segment the object a query refers to in a video. Think inside <think></think> in "
    "three steps and an action: Step 1: temporal dynamics. Step 2: spatial details. Step 3: "
    "expression analysis. Action: see new segment, or confirmed. To look closer at part of "
    'the video, end the turn with <select><VTG>{"start": s, "end": e, "keyframe": k}</VTG>'
    "<RefSeg>[SEG]</RefSeg></select>; to finish, use <answer> instead of <select>. s, e and k "
    "are frame indices; [SEG] segments the target on frame k. If nothing in the video matches "
    "the query, answer <answer>no target</answer>."
)
ROUND = (
    'Query: "{query}". Continue reasoning inside <think></think>; select again if needed, '
    "otherwise put the final answer in <answer></answer>."
)


def oracle_selects(key: str, max_turns: int) -> int:
    """The oracle's number of executed selects on a sample: 0 .. max_turns - 1, reproducible."""
    return zlib.crc32(f"o3-selects:{key}".encode()) % max(max_turns, 1)


def ranked_candidates(sample: EpisodeSample, k: int = 3) -> list[tuple[int, int]]:
    """Up to k non-overlapping candidate intervals [start, end) (positions), ranked, one of
    them the target's longest visible run: VTS-CoT's teacher proposes three ranked intervals,
    each found with the earlier ones masked out (VideoSEG-O3 arXiv 2606.06819 (training)). Here the others are
    the longest stretches outside it, each as long as the target run (at least 2 frames),
    and the target run's rank is reproducible per sample. [] for a null sample."""
    presence = sample.presence
    if not presence.any():
        return []
    best = int(np.argmax(sample.areas))
    s, e = ann.presence_run(presence, best)
    length = max(e - s, 2)
    free = [(0, s), (e, sample.num_frames)]
    others = []
    for _ in range(k - 1):
        free = [(a, b) for a, b in free if b - a >= 2]
        if not free:
            break
        a, b = max(free, key=lambda ab: ab[1] - ab[0])
        n = min(length, b - a)
        lo = a + (b - a - n) // 2
        others.append((lo, lo + n))
        free.remove((a, b))
        free += [(a, lo), (lo + n, b)]
    rank = zlib.crc32(f"o3-rank:{sample.key}".encode()) % (len(others) + 1)
    others = sorted(others)
    return others[:rank] + [(s, e)] + others[rank:]


def positions_in(sample: EpisodeSample, start_id: int, end_id: int) -> list[int]:
    """Positions whose absolute index lies in [start_id, end_id] (inclusive)."""
    return [p for p, i in enumerate(sample.frame_ids) if start_id <= i <= end_id]


def interval_positions(sample: EpisodeSample, start_id: int, end_id: int) -> tuple[int, int]:
    """Half-open absolute [start_id, end_id) -> half-open positions [s, e)."""
    ids = np.asarray(sample.frame_ids)
    return int(np.searchsorted(ids, start_id, "left")), int(np.searchsorted(ids, end_id, "left"))


def interval_ids(sample: EpisodeSample, s: int, e: int) -> tuple[int, int]:
    """Half-open positions [s, e) -> half-open absolute ids."""
    end = sample.frame_ids[e] if e < sample.num_frames else sample.frame_ids[-1] + 1
    return sample.frame_ids[s], end


def _strict_turn_ok(text: str, target_ok) -> bool:
    """think + select/answer holding VTG JSON with integer start/end/keyframe and a target
    that `target_ok(body)` accepts; an answer may be `no target` instead."""
    turn = rfmt.parse_turn(text, ("select", "answer"))
    if turn is None:
        return False
    if turn.action == "answer" and parsing.is_no_target(turn.body):
        return True
    ok, vtg = rfmt.parse_json(rfmt.tag_content(turn.body, "VTG"))
    if not (ok and isinstance(vtg, dict) and ro3.VTG_KEYS <= vtg.keys()):
        return False
    return all(rfmt.is_int(vtg[k]) for k in ro3.VTG_KEYS) and target_ok(turn.body)


def _boxes_ok(body: str) -> bool:
    ok, boxes = rfmt.parse_json(rfmt.tag_content(body, "box"))
    return ok and isinstance(boxes, list) and bool(boxes) and all(rfmt.is_box(b) for b in boxes)


def text_turn_format_ok(text: str) -> bool:
    """The strict text-route turn: the VTG plus a JSON list of boxes in `<box>`."""
    return _strict_turn_ok(text, _boxes_ok)


def text_strict_format_reward(turns: Sequence[str]) -> float:
    """+1 if every turn passes `text_turn_format_ok`, else -1 (rewards.o3 convention)."""
    return 1.0 if turns and all(text_turn_format_ok(t) for t in turns) else -1.0


def seg_count(text: str) -> int:
    """Number of [SEG] inside the turn's `<RefSeg>` (in its select/answer body)."""
    turn = parsing.parse_o3_turn(text)
    body = parsing.extract(text, turn.action) if turn.action else None
    refseg = parsing.extract(body, "RefSeg") if body is not None else None
    return 0 if refseg is None else refseg.count(SEG_TOKEN)


def parse_seg_turn(text: str) -> parsing.O3Turn:
    """The o3 parse of a [SEG]-route turn: status "ok" when the VTG parses and `<RefSeg>`
    holds a [SEG] ("no_seg" when it does not); boxes, if any, are ignored."""
    p = parsing.parse_o3_turn(text)
    if p.no_target or not p.has_vtg:
        return p
    return dataclasses.replace(p, status=parsing.OK if seg_count(text) else "no_seg", boxes=())


def seg_turn_format_ok(text: str) -> bool:
    """The released strict turn (`strict_format_reward_cot`): the VTG plus `<RefSeg>` holding
    [SEG]."""
    return _strict_turn_ok(text, lambda body: SEG_TOKEN in (rfmt.tag_content(body, "RefSeg") or ""))


def gt_keyframe_masks(episode: O3Episode) -> list[np.ndarray | None]:
    """The oracle's [SEG] masks: the GT union on each turn's keyframe, for turns whose
    answer holds a [SEG] (cold-start traces; `protocol.seg_masks = gt_keyframe_masks`)."""
    gt = episode.sample.target_masks
    return [gt[k].copy() if p.ok else None for p, k in zip(episode.parsed, episode.turn_keyframes)]


def best_temporal_score(presence: np.ndarray, mode: str) -> float:
    """The largest score any [s, e) reaches (1 in "released" mode if the target appears)."""
    p = np.asarray(presence, bool)
    if mode == "released" or not p.any():
        return 1.0
    t, total, best = p.size, int(p.sum()), 0.0
    csum = np.concatenate([[0], np.cumsum(p)])
    for s in range(t):
        e = np.arange(s + 1, t + 1)
        inter = csum[e] - csum[s]
        best = max(best, float((inter / (total + (e - s) - inter)).max()))
    return best


class O3Episode(Episode):
    def __init__(self, protocol, sample, opening):
        super().__init__(protocol, sample, opening)
        self.texts: list[str] = []
        self.parsed: list[parsing.O3Turn] = []
        self.turn_keyframes: list[int] = []  # position of each turn's keyframe
        self.select_keyframes: list[int] = []  # positions the executed selects asked for
        self._seg_masks: list[np.ndarray | None] | None = None

    @property
    def seg_mode(self) -> bool:
        return self.cfg.answer == "seg"

    def seg_masks(self) -> list[np.ndarray | None]:
        """Per turn, the [SEG] mask [H, W] bool on the turn's keyframe (None: no mask), from
        `protocol.seg_masks` (asked once, after the last turn)."""
        if self._seg_masks is None:
            fn = self.protocol.seg_masks
            if fn is None:
                raise ValueError(
                    "o3 with answer='seg' needs protocol.seg_masks (episode -> per-turn keyframe "
                    "masks): the policy's [SEG] decoder, or o3.gt_keyframe_masks for the oracle"
                )
            masks = list(fn(self))
            hw = (self.sample.height, self.sample.width)
            if len(masks) != len(self.texts):
                raise ValueError(
                    f"{self.sample.key}: seg_masks gave {len(masks)} masks for "
                    f"{len(self.texts)} turns"
                )
            for t, m in enumerate(masks):
                if m is not None and np.shape(m) != hw:
                    raise ValueError(
                        f"{self.sample.key}: seg_masks turn {t} mask shape {np.shape(m)} != {hw}"
                    )
            self._seg_masks = [None if m is None else np.asarray(m, bool) for m in masks]
        return self._seg_masks

    def turn_format_ok(self, text: str) -> bool:
        return seg_turn_format_ok(text) if self.seg_mode else text_turn_format_ok(text)

    def _step(self, text: str, info=None) -> Message | None:
        s, cfg = self.sample, self.cfg
        self.texts.append(text)
        p = parse_seg_turn(text) if self.seg_mode else parsing.parse_o3_turn(text)
        self.parsed.append(p)
        own = None if p.keyframe is None else s.position_of(p.keyframe)
        action = {
            "action": p.action,
            "start": p.start,
            "end": p.end,
            "keyframe": p.keyframe,
            "boxes": [list(b) for b in p.boxes],
        }
        if self.seg_mode:
            action["seg"] = seg_count(text)
        executes = p.action == "select" and p.has_vtg and len(self.texts) < cfg.max_turns
        lo, hi = s.frame_ids[0], s.frame_ids[-1]
        start = end = kf = None
        if executes:
            start, end = (min(max(v, lo), hi) for v in (p.start, p.end))
            kf = s.nearest_position(min(max(p.keyframe, lo), hi))
            executes = end >= start
        if self.seg_mode and cfg.keyframes == "released":
            if self.select_keyframes:  # the keyframe the previous executed select fetched
                k = self.select_keyframes[-1]
            elif executes:  # turn 0 of a multi-turn episode: the video's middle frame
                k = s.num_frames // 2
            else:  # a one-turn episode: its VTG keyframe, else the middle spatial frame
                spatial = self.opening.context["spatial"]
                k = own if own is not None else spatial[len(spatial) // 2]
        else:
            k = own
            if k is None:
                k = self.turn_keyframes[-1] if self.turn_keyframes else s.num_frames // 2
        self.turn_keyframes.append(k)
        if executes:
            self.select_keyframes.append(kf)
        status = p.status if executes or p.action != "select" else f"{p.status}:not_executed"
        self._record(text, p.action or "none", status, action, info=info)
        if not executes:
            return None
        fetched = positions_in(s, start, end)
        if len(fetched) > cfg.frames_per_round:
            fetched = [
                fetched[int(i)] for i in uniform_positions(len(fetched), cfg.frames_per_round)
            ]
        parts = frame_parts(s, fetched, cfg.frame_size)
        parts.append(text_part(f"Frames {id_list(s, fetched)} of [{start}, {end}] are shown. "))
        parts.append(text_part(f"Keyframe {s.frame_ids[kf]}: "))
        parts.append(image_part(ann.resize_image(s.frames[kf], cfg.keyframe_size)))
        parts.append(text_part(ROUND.format(query=s.query)))
        obs = user_message(
            parts,
            step="select",
            sample=s,
            shown=fetched + [kf],
            keyframe=kf,
            image_size=cfg.keyframe_size,
            interval=[start, end],
        )
        return obs

    # ---------------------------------------------------------------- outcome
    def _turn_boxes(self, t: int) -> np.ndarray:
        size, s = self.cfg.keyframe_size, self.sample
        return ann.scale_boxes(self.parsed[t].boxes, (size, size), (s.height, s.width))

    def final_action(self) -> FinalAction:
        if not self.parsed:
            return FinalAction(None, None, np.zeros((0, 4)), fallback=True)
        last = self.parsed[-1]
        if last.no_target:
            return FinalAction(None, None, np.zeros((0, 4)), no_target=True)
        if self.seg_mode and self.cfg.keyframes == "released":
            pos = self.turn_keyframes[-1]  # the last executed select's keyframe
            return FinalAction(
                self.sample.frame_ids[pos], pos, np.zeros((0, 4)), fallback=not last.ok
            )
        if last.keyframe is None or self.sample.position_of(last.keyframe) is None:
            spatial = self.opening.context["spatial"]
            mid = spatial[len(spatial) // 2]
            return FinalAction(self.sample.frame_ids[mid], mid, np.zeros((0, 4)), fallback=True)
        pos = self.turn_keyframes[-1]
        if self.seg_mode:
            return FinalAction(last.keyframe, pos, np.zeros((0, 4)), fallback=not last.ok)
        return FinalAction(last.keyframe, pos, self._turn_boxes(-1), fallback=not last.boxes)

    def mask_jobs(self) -> dict[str, MaskJob]:
        if self.seg_mode:
            return self._seg_mask_jobs()
        jobs = super().mask_jobs()
        hw = (self.sample.height, self.sample.width)
        for t in range(len(self.parsed) - 1):
            prompts = prompts_for(self._turn_boxes(t), None, hw)
            if prompts:
                jobs[f"turn{t}"] = MaskJob(self.turn_keyframes[t], prompts)
        return jobs

    def _seg_mask_jobs(self) -> dict[str, MaskJob]:
        """The final turn's [SEG] mask as a mask prompt on its keyframe (both directions)."""
        final = self.final_action()
        if final.no_target or not self.parsed:
            return {}
        mask = self.seg_masks()[-1]
        if mask is None or not mask.any():
            return {}
        return {"final": MaskJob(self.turn_keyframes[-1], (ObjectPrompt(0, mask=mask),))}

    def _turn_keyframe_mask(self, t: int, masks) -> np.ndarray:
        """Turn t's predicted mask on its keyframe (not the final turn)."""
        k, shape = self.turn_keyframes[t], self.sample.target_masks.shape
        if self.seg_mode:
            m = self.seg_masks()[t]
            return np.zeros(shape[1:], bool) if m is None else m
        return union_of(masks.get(f"turn{t}"), shape)[k]

    def score(self, masks) -> dict[str, float]:
        s, cfg = self.sample, self.cfg
        last = self.parsed[-1] if self.parsed else parsing.O3Turn("no_turn")
        abstained = last.no_target
        null_term = rnull.null_reward(
            has_target=not s.is_null, said_no_target=abstained, num_pred_boxes=len(last.boxes)
        )
        if s.is_null:
            structure = float(
                bool(self.texts)
                and all(rfmt.parse_turn(t, ("select", "answer")) for t in self.texts)
            )
            return {"structure": structure, "null": null_term, "total": structure + null_term}
        shape = s.target_masks.shape
        final = union_of(masks.get("final"), shape)
        spatial = self.opening.context["spatial"]
        sampled = final[spatial]
        decoded = getattr(self.protocol, "seg_sampled_masks", None)
        if self.seg_mode and cfg.seg_mask_reward == "decoded" and decoded is not None:
            sampled = np.stack([np.asarray(m, bool) for m in decoded(self)])
            if sampled.shape != final[spatial].shape:
                raise ValueError(
                    f"{s.key}: seg_sampled_masks gave {sampled.shape}, want {final[spatial].shape}"
                )
        frame_ious = per_frame_iou(sampled, s.target_masks[spatial])
        keyframe_ious = []
        for t, k in enumerate(self.turn_keyframes):
            last_turn = t == len(self.parsed) - 1
            pred = final[k] if last_turn else self._turn_keyframe_mask(t, masks)
            keyframe_ious.append(mask_iou(pred, s.target_masks[k]))
        for t, (rec, iou) in enumerate(zip(self.turns, keyframe_ious)):
            rec.reward.update(
                keyframe_iou=float(iou),
                format_ok=float(self.turn_format_ok(self.texts[t])),
                steps=ro3.step_format_reward([self.texts[t]]),
            )
        interval = None
        if last.has_vtg:
            interval = interval_positions(s, last.start, last.end)
        kf = None if last.keyframe is None else s.position_of(last.keyframe)
        strict = all(self.turn_format_ok(t) for t in self.texts) and bool(self.texts)
        r = ro3.O3Reward(
            strict_format=1.0 if strict else -1.0,
            step_format=ro3.step_format_reward(self.texts),
            temporal=ro3.temporal_reward(interval, s.presence, mode=cfg.temporal_mode),
            keyframe=ro3.keyframe_reward(kf, s.presence),
            mask=ro3.mask_reward_from_ious(frame_ious),
            progressive=ro3.progressive_reward_from_ious(keyframe_ious, shipped=cfg.shipped),
            keyframe_vs_mask=ro3.keyframe_vs_mask_reward(
                keyframe_ious, float(np.mean(frame_ious)), shipped=cfg.shipped
            ),
        )
        out = dataclasses.asdict(r)
        if cfg.null_reward:
            out["null"] = null_term
        out["total"] = float(sum(out.values()))
        return out


class O3Protocol(Protocol):
    name = "o3"
    stop_strings = ("</answer>", "</select>")

    def __init__(
        self,
        cfg: O3Config | None = None,
        *,
        seg_masks: Callable[[O3Episode], Sequence[np.ndarray | None]] | None = None,
    ):
        super().__init__(cfg or O3Config())
        self.system_prompt = (
            SYSTEM_SEG
            if self.cfg.answer == "seg"
            else SYSTEM.replace("{S}", str(self.cfg.keyframe_size))
        )
        self.seg_masks = seg_masks  # answer="seg": the policy's [SEG] -> keyframe-mask decoder
        # answer="seg": the final [SEG] decoded on each spatial frame (R_m), or None
        self.seg_sampled_masks: Callable[[O3Episode], Sequence[np.ndarray]] | None = None

    @property
    def max_turns(self) -> int:
        return self.cfg.max_turns

    def opening(self, sample: EpisodeSample, rng: np.random.Generator) -> Opening:
        cfg = self.cfg
        temporal = [int(p) for p in uniform_positions(sample.num_frames, cfg.temporal_frames)]
        spatial = [int(p) for p in uniform_positions(sample.num_frames, cfg.spatial_frames)]
        parts = frame_parts(sample, temporal, cfg.frame_size)
        parts.append(text_part(f"Frames {id_list(sample, temporal)} (low resolution). "))
        parts += frame_parts(sample, spatial, cfg.spatial_size)
        parts.append(text_part(f"Frames {id_list(sample, spatial)} (high resolution). "))
        parts.append(text_part(TURN0.format(query=sample.query, T=sample.num_frames)))
        shown = list(dict.fromkeys(temporal + spatial))
        user = user_message(
            parts, step="turn0", sample=sample, shown=shown, image_size=cfg.keyframe_size
        )
        return Opening(
            [self.system_message(), user],
            [sample.frame_ids[p] for p in shown],
            {"temporal": temporal, "spatial": spatial},
        )

    def episode(self, sample: EpisodeSample, opening: Opening) -> O3Episode:
        return O3Episode(self, sample, opening)

    def max_reward(self, sample: EpisodeSample) -> float:
        """The most a policy earns when every turn is right: R_p terms are 0 then (no turn
        improves on an already perfect one). A policy can earn more from R_p by making an
        earlier turn worse on purpose (`sandbag_ceiling`)."""
        if sample.is_null:
            return 2.0  # structure 1 + null term 1
        best_t = best_temporal_score(sample.presence, self.cfg.temporal_mode)
        temporal = 0.5 * best_t if best_t >= 0.5 else -0.5
        return 1.0 + 1.0 + temporal + 1.0 + 1.5

    def sandbag_ceiling(self, sample: EpisodeSample) -> float:
        """The supremum with >= 2 turns: a first turn with keyframe IoU <= 0.75 then a perfect
        one adds R_p = 2 (intended caps; 0.5 shipped); keyframe-vs-mask stays 0 because the
        perfect video IoU leaves no room."""
        if sample.is_null or self.cfg.max_turns < 2:
            return self.max_reward(sample)
        return self.max_reward(sample) + (0.5 if self.cfg.shipped else 2.0)

    # ------------------------------------------------------------------ scripted turns
    def oracle_turn(self, sample: EpisodeSample, conversation: Sequence[Message]) -> str:
        meta = last_user_meta(conversation)
        size = int(meta["image_size"])
        areas = sample.areas
        shown = sorted({sample.position_of(i) for i in meta["shown"]} - {None})
        visible = [p for p in shown if areas[p] > 0]
        query = json.dumps(sample.query)
        if sample.is_null:
            think = (
                f"Step 1: none of the shown frames ({id_list(sample, shown)}) shows anything "
                f"that matches {query}. Step 2: no region matches. Step 3: the query describes "
                "nothing in this video. Action: confirmed"
            )
            return f"<think>{think}</think><answer>no target</answer>"
        turn = sum(1 for m in conversation if m.get("role") == "assistant")
        # how many times this trace looks closer before answering: 0 .. max_turns - 1 by
        # sample (VTS-CoT's traces use a varying number of rounds; every turn stays correct,
        # so each trace earns the maximum reward)
        selects = oracle_selects(sample.key, self.cfg.max_turns)
        key = ann.best_position(areas, visible or shown)
        run = ann.presence_run(sample.presence, key)
        s, e = run if run is not None else (key, key + 1)
        start, end = interval_ids(sample, s, e)
        boxes = ann.scale_boxes(sample.boxes_at(key), (sample.height, sample.width), (size, size))
        vtg = {"start": start, "end": end, "keyframe": sample.frame_ids[key]}
        answer = (
            f"<RefSeg>{SEG_TOKEN}</RefSeg>"
            if self.cfg.answer == "seg"
            else f"<box>{json.dumps([fmt_box(b) for b in boxes])}</box>"
        )
        body = f"<VTG>{json.dumps(vtg)}</VTG>{answer}"
        seen = id_list(sample, visible) if visible else "none"
        step1 = (
            f"Step 1: the target appears in shown frames {seen}; it is visible without a "
            f"break from frame {start} up to frame {end} (exclusive)."
        )
        step2 = (
            f"Step 2: its area is largest in frame {sample.frame_ids[key]}, where it covers "
            f"{len(boxes)} region{'s' if len(boxes) > 1 else ''}."
        )
        step3 = f"Step 3: the query {query} refers to it{which_is(sample)}."
        if turn < selects:
            think = f"{step1} {step2} {step3} Action: see new segment"
            return f"<think>{think}</think><select>{body}</select>"
        think = f"{step1} {step2} {step3} Action: confirmed"
        return f"<think>{think}</think><answer>{body}</answer>"

    def random_turn(self, conversation: Sequence[Message], rng: np.random.Generator) -> str:
        meta = last_user_meta(conversation)
        shown = meta.get("shown") or [0]
        size = int(meta.get("image_size", 140))
        kind = int(rng.integers(5))
        if kind == 0:
            return random_junk(rng)
        if kind == 1:
            return "<think>Step 1: unsure. Action: confirmed</think><answer>no target</answer>"
        a, b = sorted(int(v) for v in rng.choice(shown, 2))
        vtg = {"start": a, "end": b, "keyframe": int(rng.choice(shown))}
        boxes = [fmt_box(sorted_box(rng, size))]
        tag = "select" if kind in (2, 3) else "answer"
        answer = (
            f"<RefSeg>{SEG_TOKEN}</RefSeg>"
            if self.cfg.answer == "seg"
            else f"<box>{json.dumps(boxes)}</box>"
        )
        text = (
            f"<think>Step 1: guess. Action: see new segment</think><{tag}><VTG>{json.dumps(vtg)}"
            f"</VTG>{answer}</{tag}>"
        )
        return text[: int(rng.integers(1, len(text)))] if kind == 3 else text
