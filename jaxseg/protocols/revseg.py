"""ReVSeg as an episode program: two rounds with one policy (arXiv 2512.02835 (inference); the
code is unreleased, so the wording and sizes here are ours).

Round 1. Observation: N frames (uniform), each after its absolute index, and the query.
Answer: `<think>…</think><answer> frame id: k ; object description: d </answer>`, k a frame
index and d an explicit noun phrase rewritten from the query; description `no target`
abstains and ends the episode.
Round 2. Observation: frame k at S_k x S_k and "Detect <d> with bbox coordinates."
Answer: `<think>…</think><answer>[x1, y1, x2, y2]</answer>` in S_k x S_k coordinates.
The box prompts the mask backend on frame k, propagated both ways. Round 1 unparseable
(or k not a frame of the video) ends the episode with no masks (ReVSeg's rollout turn count
drops below 2 on such failures).

Reward (jaxseg.rewards.revseg, inferred forms): r_f * r_t * r_s (default) or their sum;
r_t is the GT box area at k over the largest one among the frames shown in round 1 (0 for
an unshown frame, as Veason-R1's R_k), GT box area = sum over the targets' boxes; plus the
zero-target term. Null sample: structure (every turn think/answer) + null term.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from jaxseg.data.sampling import uniform_positions
from jaxseg.protocols import annotations as ann
from jaxseg.protocols import parsing
from jaxseg.protocols.episode import Episode, FinalAction, Opening, Protocol
from jaxseg.protocols.observation import frame_parts, id_list, user_message
from jaxseg.protocols.policy import Message, image_part, last_user_meta, text_part
from jaxseg.protocols.sample import EpisodeSample
from jaxseg.protocols.scripted_text import fmt_box, random_junk, which_is
from jaxseg.protocols.veason import sorted_box
from jaxseg.rewards import format as rfmt
from jaxseg.rewards import null as rnull
from jaxseg.rewards import revseg as rrevseg


@dataclasses.dataclass(frozen=True)
class RevsegConfig:
    """num_frames / image_size: round-1 frames; keyframe_size: round-2 keyframe side;
    combine: "product" or "sum" (rewards.revseg); spatial_multi: r_s against the best GT
    box ("best") or the box enclosing all targets ("union")."""

    num_frames: int = 8
    image_size: int = 112
    keyframe_size: int = 140
    combine: str = "product"
    null_reward: bool = True
    spatial_multi: str = "best"

    def __post_init__(self) -> None:
        if self.num_frames < 1 or min(self.image_size, self.keyframe_size) < 8:
            raise ValueError(f"revseg: bad sizes {self}")
        if self.combine not in ("product", "sum"):
            raise ValueError(f"revseg.combine must be 'product' or 'sum': {self.combine!r}")
        if self.spatial_multi not in ("best", "union"):
            raise ValueError(f"revseg.spatial_multi must be 'best' or 'union': {self}")


ROUND1 = (
    "The video has {T} frames; {N} of them are shown above, each after its frame index. "
    'Query: "{query}". Decide which object the query means and the frame where it is best '
    "seen. Think inside <think></think>, then answer inside <answer></answer> as "
    '"frame id: k ; object description: d", where d names the object explicitly. If nothing '
    'in the video matches, use "no target" as the description.'
)
ROUND2 = (
    "Detect {d} with bbox coordinates. Think inside <think></think>, then answer inside "
    "<answer></answer> as [x1, y1, x2, y2] in the {S}x{S} image coordinates."
)


def _box_areas(sample: EpisodeSample, positions: Sequence[int]) -> np.ndarray:
    """[T] sum of the targets' GT box areas, only at `positions` (0 elsewhere)."""
    out = np.zeros(sample.num_frames)
    for p in positions:
        b = sample.boxes_at(p)
        out[p] = float(((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).sum()) if len(b) else 0.0
    return out


class RevsegEpisode(Episode):
    def __init__(self, protocol, sample, opening):
        super().__init__(protocol, sample, opening)
        self.texts: list[str] = []
        self.round1 = parsing.RevsegRound1("no_turn")
        self.round2 = parsing.KeyframeBoxes("no_turn")
        self.position: int | None = None

    def _step(self, text: str, info=None) -> Message | None:
        self.texts.append(text)
        s, cfg = self.sample, self.cfg
        if len(self.texts) == 1:
            r1 = self.round1 = parsing.parse_revseg_round1(text)
            self.position = None if r1.keyframe is None else s.position_of(r1.keyframe)
            status = r1.status if r1.keyframe is None or self.position is not None else "bad_frame"
            action = {"keyframe": r1.keyframe, "description": r1.description}
            self._record(text, "round1", status, action, info=info)
            if not r1.ok or self.position is None:
                return None
            parts = [
                text_part(f"Frame {r1.keyframe}: "),
                image_part(ann.resize_image(s.frames[self.position], cfg.keyframe_size)),
                text_part(ROUND2.format(d=r1.description, S=cfg.keyframe_size)),
            ]
            return user_message(
                parts,
                step="round2",
                sample=s,
                shown=[self.position],
                keyframe=self.position,
                image_size=cfg.keyframe_size,
            )
        r2 = self.round2 = parsing.parse_single_box(text)
        self._record(text, "round2", r2.status, {"boxes": [list(b) for b in r2.boxes]}, info=info)
        return None

    def final_action(self) -> FinalAction:
        s, size = self.sample, self.cfg.keyframe_size
        if self.round1.no_target or self.round2.no_target:
            return FinalAction(None, None, np.zeros((0, 4)), no_target=True)
        if self.position is None or not self.round2.ok:
            return FinalAction(self.round1.keyframe, self.position, np.zeros((0, 4)), fallback=True)
        boxes = ann.scale_boxes(self.round2.boxes, (size, size), (s.height, s.width))
        return FinalAction(self.round1.keyframe, self.position, boxes)

    def score(self, masks) -> dict[str, float]:
        s, size = self.sample, self.cfg.keyframe_size
        abstained = self.round1.no_target or self.round2.no_target
        n_boxes = len(self.round2.boxes)
        null_term = rnull.null_reward(
            has_target=not s.is_null, said_no_target=abstained, num_pred_boxes=n_boxes
        )
        if s.is_null:
            structure = float(all(rfmt.think_answer_format_reward(t) for t in self.texts))
            return {"structure": structure, "null": null_term, "total": structure + null_term}
        areas = _box_areas(s, self.opening.context["positions"])
        gt_boxes = np.zeros((0, 4))
        if self.position is not None:
            gt_boxes = ann.scale_boxes(s.boxes_at(self.position), (s.height, s.width), (size, size))
        pred = self.round2.boxes[0] if self.round2.ok else None
        for t, rec in enumerate(self.turns):  # each round's half of r_f ("" scores 0)
            rec.reward["format"] = rrevseg.format_reward([""] * t + [self.texts[t]])
        out = {
            "format": rrevseg.format_reward(self.texts),
            "keyframe": rrevseg.keyframe_reward(self.position, areas),
            "spatial": 0.0
            if self.position is None
            else rrevseg.spatial_reward(pred, gt_boxes, self.cfg.spatial_multi),
        }
        total = rrevseg.revseg_reward(
            self.texts,
            keyframe=self.position,
            pred_box=pred,
            gt_box_areas=areas,
            gt_boxes_at_keyframe=gt_boxes,
            combine=self.cfg.combine,
            multi=self.cfg.spatial_multi,
        )
        if self.cfg.null_reward:
            out["null"] = null_term
            total += null_term
        out["total"] = float(total)
        return out


class RevsegProtocol(Protocol):
    name = "revseg"
    stop_strings = ("</answer>",)

    def __init__(self, cfg: RevsegConfig | None = None):
        super().__init__(cfg or RevsegConfig())

    @property
    def max_turns(self) -> int:
        return 2

    def opening(self, sample: EpisodeSample, rng: np.random.Generator) -> Opening:
        cfg = self.cfg
        positions = [int(p) for p in uniform_positions(sample.num_frames, cfg.num_frames)]
        text = ROUND1.format(T=sample.num_frames, N=len(positions), query=sample.query)
        parts = frame_parts(sample, positions, cfg.image_size) + [text_part(text)]
        user = user_message(
            parts, step="round1", sample=sample, shown=positions, image_size=cfg.image_size
        )
        return Opening(
            [self.system_message(), user],
            [sample.frame_ids[p] for p in positions],
            {"positions": positions},
        )

    def episode(self, sample: EpisodeSample, opening: Opening) -> RevsegEpisode:
        return RevsegEpisode(self, sample, opening)

    def max_reward(self, sample: EpisodeSample) -> float:
        if sample.is_null:
            return 2.0  # structure 1 + null term 1
        return 1.0 if self.cfg.combine == "product" else 3.0

    # ------------------------------------------------------------------ scripted turns
    def oracle_turn(self, sample: EpisodeSample, conversation: Sequence[Message]) -> str:
        meta = last_user_meta(conversation)
        shown = [sample.position_of(i) for i in meta["shown"]]
        areas = sample.areas
        if meta["step"] == "round1":
            visible = [sample.frame_ids[p] for p in shown if areas[p] > 0]
            if not visible:
                return (
                    f"<think>The query asks for {json.dumps(sample.query)}. None of the shown "
                    f"frames ({id_list(sample, shown)}) contains anything that matches it."
                    "</think><answer>frame id: "
                    f"{sample.frame_ids[shown[0]]} ; object description: no target</answer>"
                )
            box_areas = _box_areas(sample, shown)
            key = ann.best_position(box_areas, shown)
            desc = sample.description or sample.query
            think = (
                f"The query asks for {json.dumps(sample.query)}{which_is(sample)}. "
                f"It is visible in frames {', '.join(map(str, visible))} of the shown frames and "
                f"its box is largest in frame {sample.frame_ids[key]}."
            )
            return (
                f"<think>{think}</think><answer>frame id: {sample.frame_ids[key]} ; "
                f"object description: {desc}</answer>"
            )
        key = shown[0]
        size = int(meta["image_size"])
        boxes = ann.scale_boxes(sample.boxes_at(key), (sample.height, sample.width), (size, size))
        areas_k = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        box = boxes[int(np.argmax(areas_k))]
        note = " The answer takes one box; I box the largest of them." if len(boxes) > 1 else ""
        return (
            f"<think>In frame {sample.frame_ids[key]} the target covers "
            f"{len(boxes)} region{'s' if len(boxes) > 1 else ''}.{note}</think>"
            f"<answer>{json.dumps(fmt_box(box))}</answer>"
        )

    def random_turn(self, conversation: Sequence[Message], rng: np.random.Generator) -> str:
        meta = last_user_meta(conversation)
        shown = meta.get("shown") or [0]
        kind = int(rng.integers(4))
        if kind == 0:
            return random_junk(rng)
        if meta.get("step") == "round1":
            k = int(rng.choice(shown))
            desc = "no target" if kind == 1 else "the shape"
            return (
                f"<think>Guess.</think><answer>frame id: {k} ; object description: {desc}</answer>"
            )
        size = int(meta.get("image_size", 140))
        text = f"<think>Guess.</think><answer>{json.dumps(fmt_box(sorted_box(rng, size)))}</answer>"
        return text[: int(rng.integers(1, len(text)))] if kind == 1 else text
