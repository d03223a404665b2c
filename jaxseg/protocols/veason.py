"""Veason-R1 as an episode program (arXiv 2508.11538 (inference), Veason-R1 repo
`batch_eval_keyframe_sft_dataset_.py`): one turn.

Observation: N frames (uniform linspace, or the training sampler centred on a top-k-area
pseudo-keyframe, jaxseg.data.sampling), each resized to S x S and preceded by its absolute
frame index; the query. Answer:

    <think>…</think><answer>{"keyframe_timestamp": k, "bbox_2d_list": [[x1,y1,x2,y2], …]}</answer>

with boxes in S x S coordinates on frame k; `<answer>no target</answer>` abstains. Boxes are
rescaled to native pixels and each prompts the mask backend on frame k; masks propagate both
ways and the prediction is their union. Parse failure: keyframe 0 and box [0, 0, 0, 0] (the
released eval's fallback), which gives empty masks.

Reward (jaxseg.rewards.veason, max 5): R_f + R_k + R_s + R_u, with R_u over the sampled
frames from the *matched* boxes only, plus the zero-target term (jaxseg.rewards.null) when
enabled. On a null sample the seed's terms are undefined: reward = structure (0/1) + null
term (max 2).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from jaxseg.data.sampling import keyframe_centred_positions, uniform_positions
from jaxseg.protocols import annotations as ann
from jaxseg.protocols import parsing
from jaxseg.protocols.episode import Episode, FinalAction, Opening, Protocol, union_of
from jaxseg.protocols.observation import frame_parts, id_list, user_message
from jaxseg.protocols.policy import Message, last_user_meta, text_part
from jaxseg.protocols.sample import EpisodeSample
from jaxseg.protocols.scripted_text import fmt_box, random_junk, which_is
from jaxseg.rewards import format as rfmt
from jaxseg.rewards import null as rnull
from jaxseg.rewards import veason as rveason


@dataclasses.dataclass(frozen=True)
class VeasonConfig:
    """num_frames: N frames shown (the paper evaluates with 8, trains with 6); image_size:
    S, the side of every shown image (560 in the seed); sampling: "uniform" (eval) or
    "keyframe" (training sampler, top_k largest-area frames); null_reward: add the
    zero-target term."""

    num_frames: int = 8
    image_size: int = 112
    sampling: str = "uniform"
    top_k: int = 5
    null_reward: bool = True

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.image_size < 8:
            raise ValueError(f"veason: num_frames >= 1 and image_size >= 8 needed, got {self}")
        if self.sampling not in ("uniform", "keyframe"):
            raise ValueError(f"veason.sampling must be 'uniform' or 'keyframe': {self.sampling!r}")


INSTRUCTION = (
    "The video has {T} frames; {N} of them are shown above, each after its frame index. "
    'Query: "{query}". Pick the frame where the target is best seen and give its index as '
    '"keyframe_timestamp", then box every target in that frame in the {S}x{S} image '
    "coordinates. Think inside <think></think>, then answer inside <answer></answer> as "
    '{{"keyframe_timestamp": k, "bbox_2d_list": [[x1, y1, x2, y2]]}}. If nothing in the '
    "video matches the query, answer <answer>no target</answer>."
)


class VeasonEpisode(Episode):
    def __init__(self, protocol, sample, opening):
        super().__init__(protocol, sample, opening)
        self.text = ""
        self.parsed = parsing.KeyframeBoxes("no_turn")

    def _step(self, text: str, info=None) -> Message | None:
        self.text = text
        self.parsed = parsing.parse_veason(text)
        p = self.parsed
        action = {"keyframe": p.keyframe, "boxes": [list(b) for b in p.boxes]}
        self._record(text, "answer", p.status, action, info=info)
        return None

    def final_action(self) -> FinalAction:
        p, s, size = self.parsed, self.sample, self.cfg.image_size
        if p.no_target:
            return FinalAction(None, None, np.zeros((0, 4)), no_target=True)
        position = None if p.keyframe is None else s.position_of(p.keyframe)
        if not p.ok or position is None:
            return FinalAction(s.frame_ids[0], 0, np.zeros((1, 4)), fallback=True)
        boxes = ann.scale_boxes(p.boxes, (size, size), (s.height, s.width))
        return FinalAction(p.keyframe, position, boxes)

    def score(self, masks) -> dict[str, float]:
        s, p, size = self.sample, self.parsed, self.cfg.image_size
        shown = self.opening.context["positions"]
        null_term = rnull.null_reward(
            has_target=not s.is_null, said_no_target=p.no_target, num_pred_boxes=len(p.boxes)
        )
        if s.is_null:
            structure = rfmt.think_answer_format_reward(self.text)
            return {"structure": structure, "null": null_term, "total": structure + null_term}
        answer = None
        gt_boxes = np.zeros((0, 4))
        position = None if p.keyframe is None else s.position_of(p.keyframe)
        if p.keyframe is not None and not p.no_target:
            answer = rveason.VeasonAnswer(p.keyframe, list(p.boxes))
            if position is not None:
                gt_boxes = ann.scale_boxes(s.boxes_at(position), (s.height, s.width), (size, size))
        propagated = None
        if answer is not None:
            matched = rveason.spatial_match(answer.boxes, gt_boxes).pred_index
            video = union_of(masks.get("final"), s.target_masks.shape, obj_ids=matched.tolist())
            propagated = video[shown]
        r = rveason.veason_reward(
            self.text,
            answer,
            sampled_frame_ids=[s.frame_ids[q] for q in shown],
            gt_mask_areas=s.areas[shown],
            gt_boxes_at_keyframe=gt_boxes,
            propagated_masks=propagated,
            gt_masks=s.target_masks[shown],
        )
        out = {"format": r.format, "keyframe": r.keyframe, "spatial": r.spatial}
        out["propagation"] = r.propagation
        if self.cfg.null_reward:
            out["null"] = null_term
        out["total"] = float(sum(out.values()))
        return out


class VeasonProtocol(Protocol):
    name = "veason"
    stop_strings = ("</answer>",)

    def __init__(self, cfg: VeasonConfig | None = None):
        super().__init__(cfg or VeasonConfig())

    @property
    def max_turns(self) -> int:
        return 1

    def ground_truth_inputs(self) -> list[str]:
        if self.cfg.sampling == "keyframe":
            return ["veason.sampling='keyframe' centres the shown frames on a GT top-k-area frame"]
        return []

    def opening(self, sample: EpisodeSample, rng: np.random.Generator) -> Opening:
        cfg = self.cfg
        if cfg.sampling == "uniform":
            positions = uniform_positions(sample.num_frames, cfg.num_frames)
        else:
            positions, _ = keyframe_centred_positions(sample.areas, cfg.num_frames, rng, cfg.top_k)
        positions = [int(p) for p in positions]
        text = INSTRUCTION.format(
            T=sample.num_frames, N=len(positions), query=sample.query, S=cfg.image_size
        )
        parts = frame_parts(sample, positions, cfg.image_size) + [text_part(text)]
        user = user_message(
            parts, step="answer", sample=sample, shown=positions, image_size=cfg.image_size
        )
        return Opening(
            [self.system_message(), user],
            [sample.frame_ids[p] for p in positions],
            {"positions": positions},
        )

    def episode(self, sample: EpisodeSample, opening: Opening) -> VeasonEpisode:
        return VeasonEpisode(self, sample, opening)

    def max_reward(self, sample: EpisodeSample) -> float:
        null_max = 1.0  # rewards.null: an explicit "no target" on a null sample
        if sample.is_null:
            return 1.0 + null_max
        return rveason.MAX_REWARD  # null term is 0 when the target exists and is not denied

    # ------------------------------------------------------------------ scripted turns
    def oracle_turn(self, sample: EpisodeSample, conversation: Sequence[Message]) -> str:
        meta = last_user_meta(conversation)
        shown = [sample.position_of(i) for i in meta["shown"]]
        size = int(meta["image_size"])
        areas = sample.areas
        visible = [sample.frame_ids[p] for p in shown if areas[p] > 0]
        if not visible:
            return (
                f"<think>The query asks for {json.dumps(sample.query)}. None of the shown frames "
                f"({id_list(sample, shown)}) contains anything that matches it.</think>"
                "<answer>no target</answer>"
            )
        key = ann.best_position(areas, shown)
        boxes = ann.scale_boxes(sample.boxes_at(key), (sample.height, sample.width), (size, size))
        answer = {
            "keyframe_timestamp": sample.frame_ids[key],
            "bbox_2d_list": [fmt_box(b) for b in boxes],
        }
        n = len(boxes)
        think = (
            f"The query asks for {json.dumps(sample.query)}{which_is(sample)}. It is visible in "
            f"frames {', '.join(map(str, visible))} of the shown frames and appears largest in "
            f"frame {sample.frame_ids[key]}, so that is the keyframe. In that frame I box "
            f"{n} object{'s' if n > 1 else ''}."
        )
        return f"<think>{think}</think><answer>{json.dumps(answer)}</answer>"

    def random_turn(self, conversation: Sequence[Message], rng: np.random.Generator) -> str:
        meta = last_user_meta(conversation)
        shown, size = meta.get("shown") or [0], int(meta.get("image_size", 112))
        kind = rng.integers(5)
        if kind == 0:
            return random_junk(rng)
        if kind == 1:
            return "<think>I am not sure.</think><answer>no target</answer>"
        k = int(rng.choice(shown)) if kind != 2 else int(rng.integers(0, 10 * max(shown) + 10))
        boxes = [fmt_box(sorted_box(rng, size)) for _ in range(int(rng.integers(1, 3)))]
        text = (
            "<think>Guessing.</think><answer>"
            + json.dumps({"keyframe_timestamp": k, "bbox_2d_list": boxes})
            + "</answer>"
        )
        return text[: int(rng.integers(len(text) // 2, len(text)))] if kind == 4 else text


def sorted_box(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random valid box inside a size x size image."""
    xs = np.sort(rng.uniform(0, size, 2))
    ys = np.sort(rng.uniform(0, size, 2))
    return np.array([xs[0], ys[0], xs[1] + 1, ys[1] + 1])
